// Owns: an in-memory StoreService double for transport tests: just the queue, bodies,
// delivery.commit and queue.report, with the semantics ipc/store-api.ts documents for them.
// Local domains' mail lands in `mailboxes`; remote recipients become queue entries. Bodies are
// streamed back in deliberately tiny chunks so chunk-boundary bugs show.
import {
  type CallName,
  type CallReq,
  type CallRes,
  type QueueEntry,
  type QueueSettlement,
  StoreError,
  type StoreTopics,
} from "../../ipc/store-api.ts";
import {
  type CallHandlers,
  createDirectStoreClient,
  type Publisher,
  type StoreService,
  type StreamHandlers,
} from "../../ipc/store-client.ts";

export interface Delivered {
  sender: string;
  body: Uint8Array;
}

export class MemoryStore {
  readonly entries = new Map<number, QueueEntry>();
  readonly bodies = new Map<number, Uint8Array>();
  readonly mailboxes = new Map<string, Delivered[]>();
  readonly failed: { queueId: number; error: string }[] = [];
  readonly done: number[] = [];
  readonly defers: { queueId: number; error: string; nextAttemptAt: number }[] = [];
  private readonly uploads = new Map<number, Uint8Array[]>();
  private nextId = 1;
  private publish: Publisher = () => {};
  /** queue.report calls that committed. */
  reports = 0;
  /** Bytes per chunk of queue.read. */
  chunkBytes = 7;
  /** Calls that should throw (fault injection). */
  failing = new Set<CallName>();

  constructor(readonly localDomains: string[], public now: () => number = Date.now) {}

  client() {
    return createDirectStoreClient(this.service());
  }

  inbox(address: string): Delivered[] {
    return this.mailboxes.get(address) ?? [];
  }

  /** Queue a message for remote recipients as delivery.commit would. */
  enqueue(
    sender: string,
    recipients: string[],
    body: string | Uint8Array,
    extra: Partial<QueueEntry> = {},
  ): number[] {
    const bytes = typeof body === "string" ? new TextEncoder().encode(body) : body;
    const bodyId = this.nextId++;
    this.bodies.set(bodyId, bytes);
    return recipients.map((r) => this.addEntry(sender, r, bodyId, bytes.length, extra));
  }

  private addEntry(
    sender: string,
    recipient: string,
    bodyId: number,
    size: number,
    extra: Partial<QueueEntry>,
  ): number {
    const queueId = this.nextId++;
    const now = this.now();
    this.entries.set(queueId, {
      queueId,
      sender,
      recipient,
      nextHop: recipient.slice(recipient.lastIndexOf("@") + 1).toLowerCase(),
      attempts: 0,
      nextAttemptAt: now,
      createdAt: now,
      lastError: null,
      size,
      bodyId,
      ...extra,
    });
    this.publish("queue", { queueId } satisfies StoreTopics["queue"]);
    return queueId;
  }

  /** One settlement, as queue.settle and queue.report apply it; false if the entry is gone. */
  private settleOne(s: QueueSettlement, delayNotice: boolean): boolean {
    const e = this.entries.get(s.queueId);
    if (!e || (delayNotice && s.outcome === "deferred" && e.delayNotified)) return false;
    if (s.outcome === "deferred") {
      e.attempts++;
      e.lastError = s.error;
      e.nextAttemptAt = s.nextAttemptAt;
      if (delayNotice) e.delayNotified = true;
      this.defers.push({ queueId: s.queueId, error: s.error, nextAttemptAt: s.nextAttemptAt });
      return true;
    }
    this.entries.delete(s.queueId);
    if (s.outcome === "done") this.done.push(s.queueId);
    else this.failed.push({ queueId: s.queueId, error: s.error });
    return true;
  }

  private deliver(req: CallReq<"delivery.commit">): CallRes<"delivery.commit"> {
    const parts = this.uploads.get(req.uploadId);
    if (!parts) throw new StoreError("not_found", "no such upload");
    this.uploads.delete(req.uploadId);
    const body = Buffer.concat(parts);
    const bodyId = this.nextId++;
    this.bodies.set(bodyId, body);
    const res = {
      delivered: [] as { address: string; messageId: number }[],
      queued: [] as { address: string; queueId: number }[],
      failed: [] as { address: string; code: "not_found"; reason: string }[],
    };
    for (const r of req.recipients) {
      const domain = r.address.slice(r.address.lastIndexOf("@") + 1).toLowerCase();
      if (this.localDomains.includes(domain)) {
        const box = this.mailboxes.get(r.address) ?? [];
        box.push({ sender: req.sender, body });
        this.mailboxes.set(r.address, box);
        res.delivered.push({ address: r.address, messageId: this.nextId++ });
      } else if (r.address === "") {
        res.failed.push({ address: r.address, code: "not_found", reason: "empty address" });
      } else {
        const queueId = this.addEntry(req.sender, r.address, bodyId, body.length, {
          dsnNotify: r.dsnNotify ?? null,
          orcpt: r.orcpt ?? null,
          envid: req.envid ?? null,
          dsnRet: req.ret ?? null,
        });
        res.queued.push({ address: r.address, queueId });
      }
    }
    return res;
  }

  private entry(queueId: number): QueueEntry {
    const e = this.entries.get(queueId);
    if (!e) throw new StoreError("not_found", `no queue entry ${queueId}`);
    return e;
  }

  service(): StoreService {
    const calls: Partial<CallHandlers> = {
      "body.begin": () => {
        const uploadId = this.nextId++;
        this.uploads.set(uploadId, []);
        return { uploadId };
      },
      "body.append": ({ uploadId, chunk }) => {
        const parts = this.uploads.get(uploadId);
        if (!parts) throw new StoreError("not_found", "no such upload");
        parts.push(chunk.slice());
        return { size: parts.reduce((n, p) => n + p.length, 0) };
      },
      "body.abort": ({ uploadId }) => {
        this.uploads.delete(uploadId);
        return null;
      },
      "delivery.commit": (req) => this.deliver(req),
      // All or nothing, as the store's one transaction: checks first, then every change.
      "queue.report": (req) => {
        if (!this.uploads.has(req.uploadId)) throw new StoreError("not_found", "no such upload");
        const live = req.entries.filter((s) => {
          const e = this.entries.get(s.queueId);
          if (e && e.sender !== req.to) throw new StoreError("invalid", "another sender's entry");
          return e && !(s.outcome === "deferred" && e.delayNotified);
        });
        if (live.length === 0) throw new StoreError("not_found", "no queue entry left");
        const res = this.deliver({
          uploadId: req.uploadId,
          sender: "",
          recipients: [{ address: req.to }],
          localPrefix: req.localPrefix,
        });
        this.reports++;
        return {
          ...res,
          settled: live.filter((s) => this.settleOne(s, true)).map((s) => s.queueId),
        };
      },
      "queue.settle": ({ entries }) => ({
        settled: entries.filter((s) => this.settleOne(s, false)).map((s) => s.queueId),
      }),
      "queue.due": ({ now, limit }) => {
        return [...this.entries.values()]
          .filter((e) => e.nextAttemptAt <= now)
          .sort((a, b) => a.createdAt - b.createdAt || a.queueId - b.queueId)
          .slice(0, limit)
          .map((e) => ({ ...e }));
      },
      "queue.done": ({ queueId }) => {
        this.entry(queueId);
        this.entries.delete(queueId);
        this.done.push(queueId);
        return null;
      },
      "queue.defer": ({ queueId, error, nextAttemptAt }) => {
        const e = this.entry(queueId);
        e.attempts++;
        e.lastError = error;
        e.nextAttemptAt = nextAttemptAt;
        this.defers.push({ queueId, error, nextAttemptAt });
        return null;
      },
      "queue.fail": ({ queueId, error }) => {
        this.entry(queueId);
        this.entries.delete(queueId);
        this.failed.push({ queueId, error });
        return null;
      },
      "queue.list": () => [...this.entries.values()].map((e) => ({ ...e })),
      "queue.delayNotified": ({ queueId }) => {
        this.entry(queueId).delayNotified = true;
        return null;
      },
      "queue.retry": (req) => {
        const list = "all" in req ? [...this.entries.values()] : [this.entry(req.queueId)];
        for (const e of list) e.nextAttemptAt = this.now();
        for (const e of list) this.publish("queue", { queueId: e.queueId });
        return { count: list.length };
      },
      "queue.delete": ({ queueId }) => {
        this.entry(queueId);
        this.entries.delete(queueId);
        return null;
      },
    };
    const read = async function* (store: MemoryStore, queueId: number) {
      const e = store.entry(queueId);
      const body = store.bodies.get(e.bodyId ?? -1);
      if (!body) throw new StoreError("not_found", "body gone");
      for (let i = 0; i < body.length; i += store.chunkBytes) {
        yield body.slice(i, i + store.chunkBytes);
      }
    };
    const streams: Partial<StreamHandlers> = {
      "queue.read": ({ queueId }) => read(this, queueId),
    };
    const missing = (name: string) => () => {
      throw new StoreError("internal", `${name} is not in the memory store double`);
    };
    return {
      calls: new Proxy(calls, {
        get: (t, k: string) =>
          this.failing.has(k as CallName)
            ? () => {
              throw new StoreError("unavailable", `${k} failing (test)`);
            }
            : t[k as CallName] ?? missing(k),
      }) as CallHandlers,
      streams: new Proxy(streams, {
        get: (t, k: string) => t[k as keyof StreamHandlers] ?? missing(k),
      }) as StreamHandlers,
      peerGone: () => {},
      setPublisher: (p) => {
        this.publish = p;
      },
    };
  }
}
