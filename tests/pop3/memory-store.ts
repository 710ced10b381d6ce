// A small in-memory StoreService for the POP3 tests: just the calls the POP3 engine makes
// (auth.verify, mailbox.lock/unlock/expunge, message.list, message.read), with switches to make
// a call fail the way the real store can (busy, throttled).
import {
  type AuthResult,
  type MessageSummary,
  StoreError,
  type StoreErrorCode,
} from "../../ipc/store-api.ts";
import type { CallHandlers, StoreService, StreamHandlers } from "../../ipc/store-client.ts";

interface StoredMessage {
  uid: number;
  messageId: number;
  body: Uint8Array;
  uniqueId: string;
}

interface User {
  userId: number;
  address: string;
  password: string;
  nextUid: number;
  messages: StoredMessage[];
}

export class MemoryStore {
  users = new Map<string, User>();
  locks = new Map<number, string>(); // userId → lockId
  /** Sessions that released their locks by owner (a lock call that failed on their side). */
  unlockedByOwner: string[] = [];
  lockOwners = new Map<string, number>(); // lockId → userId
  /** lockId → the owner (session) named by the mailbox.lock call, as the real store keeps it. */
  lockSessions = new Map<string, string>();
  /** Make the next call of a method fail with this code. */
  failNext = new Map<string, StoreErrorCode>();
  /** auth.verify answers "throttled" for everyone while set. */
  throttled = false;
  /** Chunk size of message.read streams (small values exercise chunk boundaries). */
  chunkBytes = 64 * 1024;
  calls: string[] = [];
  /** folder.messages batches produced so far; while set, each batch after the first waits
   * for this promise (a listing caught in the middle). */
  listedBatches = 0;
  listingGate: Promise<void> | null = null;
  #nextMessageId = 1;
  #nextLock = 1;

  addUser(address: string, password: string): User {
    const u: User = {
      userId: this.users.size + 1,
      address,
      password,
      nextUid: 1,
      messages: [],
    };
    this.users.set(address, u);
    return u;
  }

  deliver(address: string, body: string | Uint8Array): StoredMessage {
    const u = this.users.get(address)!;
    const m: StoredMessage = {
      uid: u.nextUid++,
      messageId: this.#nextMessageId++,
      body: typeof body === "string" ? new TextEncoder().encode(body) : body,
      uniqueId: `m${this.#nextMessageId}.${Math.random().toString(36).slice(2, 8)}`,
    };
    u.messages.push(m);
    return m;
  }

  #user(userId: number): User {
    for (const u of this.users.values()) if (u.userId === userId) return u;
    throw new StoreError("not_found", "no such user");
  }

  #check(method: string): void {
    this.calls.push(method);
    const code = this.failNext.get(method);
    if (code) {
      this.failNext.delete(method);
      throw new StoreError(code, `${method} failed (test)`);
    }
  }

  #summaries(u: User): MessageSummary[] {
    return u.messages.map((m) => ({
      messageId: m.messageId,
      uid: m.uid,
      size: m.body.length,
      flags: [],
      internalDate: 0,
      modseq: 1,
      uniqueId: m.uniqueId,
    }));
  }

  async *#read(userId: number, messageId: number): AsyncGenerator<Uint8Array> {
    this.#check("message.read");
    const m = this.#user(userId).messages.find((x) => x.messageId === messageId);
    if (!m) throw new StoreError("not_found", "no such message");
    for (let i = 0; i < m.body.length; i += this.chunkBytes) {
      yield m.body.slice(i, i + this.chunkBytes);
    }
  }

  service(): StoreService {
    const unsupported = (name: string) => () => {
      throw new StoreError("internal", `${name} is not in the test double`);
    };
    const calls: Partial<CallHandlers> = {
      "auth.verify": (req): AuthResult => {
        this.#check("auth.verify");
        if (this.throttled) return { ok: false, reason: "throttled" };
        const u = this.users.get(req.username);
        if (!u || u.password !== req.password) return { ok: false, reason: "bad_credentials" };
        return {
          ok: true,
          account: {
            userId: u.userId,
            address: u.address,
            displayName: "",
            quotaBytes: null,
            quotaMessages: null,
            usedBytes: 0,
            usedMessages: u.messages.length,
          },
        };
      },
      "mailbox.lock": (req) => {
        this.#check("mailbox.lock");
        if (this.locks.has(req.userId)) throw new StoreError("in_use", "maildrop locked");
        const u = this.#user(req.userId);
        const lockId = `lock-${this.#nextLock++}`;
        this.locks.set(req.userId, lockId);
        this.lockOwners.set(lockId, req.userId);
        this.lockSessions.set(lockId, req.owner);
        return {
          lockId,
          folder: {
            folderId: u.userId * 100,
            name: "INBOX",
            specialUse: null,
            uidValidity: 1,
            uidNext: u.nextUid,
            highestModseq: 1,
            messages: u.messages.length,
            unseen: 0,
            subscribed: true,
          },
        };
      },
      "mailbox.unlock": (req) => {
        this.#check("mailbox.unlock");
        const release = (lockId: string) => {
          const userId = this.lockOwners.get(lockId);
          if (userId !== undefined) {
            this.lockOwners.delete(lockId);
            this.lockSessions.delete(lockId);
            this.locks.delete(userId);
          }
        };
        if (!("lockId" in req)) {
          // As the store does: every lock taken for that owner goes (one binding here).
          this.unlockedByOwner.push(req.owner);
          for (const [lockId, owner] of [...this.lockSessions]) {
            if (owner === req.owner) release(lockId);
          }
          return null;
        }
        release(req.lockId);
        return null;
      },
      "mailbox.expunge": (req) => {
        this.#check("mailbox.expunge");
        const u = this.#user(req.userId);
        const gone = new Set(req.uids);
        const expunged = u.messages.filter((m) => gone.has(m.uid)).map((m) => m.uid);
        u.messages = u.messages.filter((m) => !gone.has(m.uid));
        return { expunged, modseq: 2 };
      },
      "message.list": (req) => {
        this.#check("message.list");
        return this.#summaries(this.#user(req.userId));
      },
    };
    const streams: Partial<StreamHandlers> = {
      "message.read": (req) => this.#read(req.userId ?? 0, req.messageId),
      "folder.messages": (req) => {
        this.#check("folder.messages");
        const all = this.#summaries(this.#user(req.userId))
          .filter((m) => m.uid > (req.sinceUid ?? 0));
        const gate = () => this.listingGate;
        const counted = () => this.listedBatches++;
        return (async function* () {
          for (let i = 0; i < all.length; i += 2) {
            if (i > 0) await gate();
            counted();
            yield all.slice(i, i + 2); // small batches
          }
        })();
      },
    };
    return {
      calls: new Proxy(calls, {
        get: (t, k: string) => t[k as keyof CallHandlers] ?? unsupported(k),
      }) as CallHandlers,
      streams: new Proxy(streams, {
        get: (t, k: string) => t[k as keyof StreamHandlers] ?? unsupported(k),
      }) as StreamHandlers,
      peerGone: () => {},
      setPublisher: () => {},
    };
  }
}
