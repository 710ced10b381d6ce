// The locked maildrop as one session sees it (RFC 1939 §5): messages numbered from 1 in the
// order they were when the lock was taken, deletion marks that only QUIT commits.
import type { FolderInfo, MailboxLock, MessageSummary, UserId } from "../../ipc/store-api.ts";
import type { StoreClient } from "../../ipc/store-client.ts";

/**
 * The messages of a locked maildrop: the folder's, up to the last uid the lock saw (RFC 1939
 * §8), read in batches so a maildrop of any size crosses from the store in bounded pieces.
 * Stops early (with what it has) once `abandoned()` says nobody will use it: a peer that left
 * mid-listing must not keep the lock (and the store) busy for the rest of a big maildrop.
 */
export async function listMaildrop(
  store: StoreClient,
  userId: UserId,
  lock: MailboxLock,
  abandoned: () => boolean = () => false,
): Promise<MessageSummary[]> {
  const out: MessageSummary[] = [];
  const folderId = lock.folder.folderId;
  for await (const batch of store.stream("folder.messages", { userId, folderId })) {
    if (abandoned()) return out; // leaving the loop cancels the stream
    for (const m of batch) {
      if (m.uid >= lock.folder.uidNext) return out; // arrived after the lock: not ours
      out.push(m);
    }
  }
  return out;
}

export type Lookup =
  | { kind: "ok"; message: MessageSummary }
  | { kind: "deleted" }
  | { kind: "missing" };

export class Maildrop {
  readonly lockId: string;
  readonly folder: FolderInfo;
  readonly #messages: MessageSummary[];
  readonly #deleted: boolean[];

  constructor(lock: MailboxLock, messages: MessageSummary[]) {
    this.lockId = lock.lockId;
    this.folder = lock.folder;
    this.#messages = [...messages].sort((a, b) => a.uid - b.uid);
    this.#deleted = this.#messages.map(() => false);
  }

  /** Messages including those marked deleted (message numbers never shift, RFC 1939 §5). */
  get total(): number {
    return this.#messages.length;
  }

  get(n: number): Lookup {
    const m = this.#messages[n - 1];
    if (!m || n < 1) return { kind: "missing" };
    if (this.#deleted[n - 1]) return { kind: "deleted" };
    return { kind: "ok", message: m };
  }

  /** STAT: what is left once marked messages are gone. */
  stat(): { count: number; size: number } {
    let count = 0;
    let size = 0;
    this.#messages.forEach((m, i) => {
      if (this.#deleted[i]) return;
      count++;
      size += m.size;
    });
    return { count, size };
  }

  /** Undeleted messages with their numbers (LIST, UIDL without argument). */
  *live(): Generator<[number, MessageSummary]> {
    for (let i = 0; i < this.#messages.length; i++) {
      if (!this.#deleted[i]) yield [i + 1, this.#messages[i]!];
    }
  }

  markDeleted(n: number): boolean {
    if (this.get(n).kind !== "ok") return false;
    this.#deleted[n - 1] = true;
    return true;
  }

  /** RSET: unmark everything. */
  reset(): void {
    this.#deleted.fill(false);
  }

  deletedUids(): number[] {
    return this.#messages.filter((_, i) => this.#deleted[i]).map((m) => m.uid);
  }
}
