// A small in-memory StoreService double for the SMTP tests: accounts, local domains, uploads
// and deliveries, with switches to make calls fail the way a busy or broken store would.
import {
  type AccountInfo,
  type CallName,
  type CallReq,
  type CallRes,
  StoreError,
  type StoreErrorCode,
} from "../../ipc/store-api.ts";
import {
  type CallHandlers,
  createDirectStoreClient,
  type StoreService,
  type StreamHandlers,
} from "../../ipc/store-client.ts";

export interface StoredMessage {
  sender: string;
  recipients: CallReq<"delivery.commit">["recipients"];
  body: Uint8Array;
  localPrefix: Uint8Array | null;
  envid?: string;
  ret?: "FULL" | "HDRS";
  smtputf8?: boolean;
  bodyType?: string;
}

export class MemoryStore {
  domains = new Set<string>(["example.com"]);
  users = new Map<string, { password: string; account: AccountInfo }>();
  /** alias → the one user address it reaches (enough for the sender-ownership rule). */
  aliases = new Map<string, string>();
  uploads = new Map<number, Uint8Array[]>();
  aborted: number[] = [];
  messages: StoredMessage[] = [];
  authFailures = new Map<string, number>();
  /** Per remote IP before "throttled". */
  failuresBeforeThrottle = 3;
  /** The next calls of these methods fail with the given code. */
  failNext = new Map<CallName, StoreErrorCode>();
  appendCalls = 0;
  /** When set, delivery.commit waits for it (a slow fsync). */
  commitGate: Promise<void> | null = null;
  #nextUpload = 1;
  #nextMessage = 1;

  addUser(address: string, password: string): AccountInfo {
    const account: AccountInfo = {
      userId: this.users.size + 1,
      address,
      displayName: address,
      quotaBytes: null,
      quotaMessages: null,
      usedBytes: 0,
      usedMessages: 0,
    };
    this.users.set(address, { password, account });
    return account;
  }

  /** Bytes of the n-th stored message as a local reader would see them (prefix + body). */
  text(n = 0): string {
    const m = this.messages[n]!;
    return Buffer.concat([m.localPrefix ?? new Uint8Array(0), m.body]).toString("latin1");
  }

  #maybeFail(method: CallName): void {
    const code = this.failNext.get(method);
    if (code) {
      this.failNext.delete(method);
      throw new StoreError(code, `injected ${code} on ${method}`);
    }
  }

  service(): StoreService {
    const unsupported = (method: string) => () => {
      throw new StoreError("internal", `${method} is not in the SMTP test double`);
    };
    const handlers: Partial<CallHandlers> = {
      "auth.verify": (req) => {
        this.#maybeFail("auth.verify");
        const fails = this.authFailures.get(req.remoteIp) ?? 0;
        if (fails >= this.failuresBeforeThrottle) return { ok: false, reason: "throttled" };
        const user = this.users.get(req.username.toLowerCase());
        if (user && user.password === req.password) return { ok: true, account: user.account };
        this.authFailures.set(req.remoteIp, fails + 1);
        return { ok: false, reason: "bad_credentials" };
      },
      "account.ownsAddress": (req) => {
        this.#maybeFail("account.ownsAddress");
        const owner = [...this.users.values()].find((u) => u.account.userId === req.userId);
        let address = req.address.toLowerCase();
        address = this.aliases.get(address) ?? address.replace(/\+[^@]*@/, "@");
        return owner !== undefined && address === owner.account.address;
      },
      "recipient.resolve": (req) => {
        this.#maybeFail("recipient.resolve");
        let address = req.address.toLowerCase();
        // RFC 5321 §4.1.1.3: bare <postmaster> is the primary domain's.
        if (address === "postmaster") address = `postmaster@${[...this.domains][0]}`;
        const domain = address.slice(address.lastIndexOf("@") + 1);
        if (!this.domains.has(domain)) return { kind: "remote", address: req.address, domain };
        const user = this.users.get(address);
        if (!user) return { kind: "unknown", address };
        return { kind: "local", address, userIds: [user.account.userId], via: "mailbox" };
      },
      "body.begin": (req) => {
        this.#maybeFail("body.begin");
        const id = this.#nextUpload++;
        this.uploads.set(id, []);
        if (req?.chunk) {
          this.appendCalls++; // a chunk crossed, with the begin
          this.uploads.get(id)!.push(new Uint8Array(req.chunk));
        }
        return { uploadId: id };
      },
      "body.append": async (req) => {
        this.appendCalls++;
        await Promise.resolve(); // always asynchronous, like the ring
        this.#maybeFail("body.append");
        const chunks = this.uploads.get(req.uploadId);
        if (!chunks) throw new StoreError("not_found", "no such upload");
        chunks.push(new Uint8Array(req.chunk)); // copy: the caller may reuse nothing, but be safe
        return { size: chunks.reduce((n, c) => n + c.length, 0) };
      },
      "body.abort": (req) => {
        this.uploads.delete(req.uploadId);
        this.aborted.push(req.uploadId);
        return null;
      },
      "delivery.commitWhole": async (req, ctx) => {
        const { body, ...rest } = req;
        this.appendCalls++; // one chunk crossed, with the commit
        const id = this.#nextUpload++;
        this.uploads.set(id, [new Uint8Array(body)]);
        try {
          return await handlers["delivery.commit"]!({ ...rest, uploadId: id }, ctx);
        } finally {
          this.uploads.delete(id);
        }
      },
      "delivery.commit": async (req) => {
        if (this.commitGate) await this.commitGate;
        this.#maybeFail("delivery.commit");
        const chunks = this.uploads.get(req.uploadId);
        if (!chunks) throw new StoreError("not_found", "no such upload");
        if (req.chunk) {
          this.appendCalls++; // the last chunk crossed with the commit
          chunks.push(new Uint8Array(req.chunk));
        }
        this.uploads.delete(req.uploadId);
        this.messages.push({
          sender: req.sender,
          recipients: req.recipients,
          body: Buffer.concat(chunks),
          localPrefix: req.localPrefix ?? null,
          ...(req.envid ? { envid: req.envid } : {}),
          ...(req.ret ? { ret: req.ret } : {}),
          ...(req.bodyType ? { bodyType: req.bodyType } : {}),
          smtputf8: req.smtputf8 ?? false,
        });
        const res: CallRes<"delivery.commit"> = { delivered: [], queued: [], failed: [] };
        for (const r of req.recipients) {
          const domain = r.address.slice(r.address.lastIndexOf("@") + 1).toLowerCase();
          if (this.domains.has(domain)) {
            res.delivered.push({ address: r.address, messageId: this.#nextMessage++ });
          } else res.queued.push({ address: r.address, queueId: this.#nextMessage++ });
        }
        return res;
      },
    };
    const calls = new Proxy(handlers, {
      get: (target, key: string) => target[key as CallName] ?? unsupported(key),
    }) as CallHandlers;
    const streams = new Proxy({}, { get: (_t, key: string) => unsupported(key) }) as StreamHandlers;
    return { calls, streams, peerGone: () => {}, setPublisher: () => {} };
  }

  client() {
    return createDirectStoreClient(this.service(), "smtp-test");
  }
}

export type { CallReq, CallRes };
