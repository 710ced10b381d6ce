// The ring transport in one thread (client and server are separate pumps with their own
// doorbells): the same semantics as createDirectStoreClient, plus clean-up and backpressure.
import { afterEach, describe, expect, test } from "bun:test";
import { type AttachedStoreClient, attachStoreClient, QueueManager, serveStore } from "./mod.ts";
import { FOLDER_MESSAGES_BATCH, StoreError } from "./store-api.ts";
import { createTestService, patternBlock } from "./fixtures/test-service.ts";
import { INLINE_BYTES } from "./ring.ts";
import { ITEMS, STREAM_OPEN, viewBinding } from "./binding.ts";
import { ringDoorbell } from "./doorbell.ts";
import { eventually } from "../tests/helpers.ts";

const opened: { close(): void }[] = [];
afterEach(() => {
  for (const c of opened.splice(0)) c.close();
});

function setup(
  opts: Partial<
    { ringSlots: number; heapBytes: number; chunkBytes: number; window: number; timeout: number }
  > = {},
) {
  const qm = new QueueManager({
    heapBytes: opts.heapBytes ?? 4 << 20,
    ringSlots: opts.ringSlots ?? 64,
    chunkBytes: opts.chunkBytes ?? 16 * 1024,
    streamWindowChunks: opts.window ?? 4,
    callTimeoutMs: opts.timeout,
  });
  const t = createTestService();
  const connect = (clientId: string): AttachedStoreClient => {
    const { server, client } = qm.bind("store", clientId);
    opened.push(serveStore(server, t.service));
    const c = attachStoreClient(client);
    opened.push(c);
    return c;
  };
  return { qm, ...t, connect };
}

async function rejection(p: Promise<unknown>): Promise<StoreError> {
  try {
    await p;
  } catch (e) {
    return e as StoreError;
  }
  throw new Error("expected a rejection");
}

describe("ring transport, one thread", () => {
  test("calls, results and peers", async () => {
    const { connect } = setup();
    const store = connect("imap-0");
    const acc = await store.call("account.get", { address: "a@example.com" });
    expect(acc?.address).toBe("a@example.com");
    expect(acc?.displayName).toMatch(/^imap-0#\d+$/); // the handler saw this binding's peer
    expect(await store.call("account.get", { address: "missing@example.com" })).toBeNull();
    expect(await store.call("domain.isLocal", { domain: "example.com" })).toBe(true);
    expect(await store.call("domain.isLocal", { domain: "other.org" })).toBe(false);
  });

  test("errors keep their code; unknown methods are invalid", async () => {
    const { connect } = setup();
    const store = connect("pop3-0");
    const denied = await rejection(store.call("account.get", { address: "denied" }));
    expect(denied).toBeInstanceOf(StoreError);
    expect([denied.code, denied.message]).toEqual(["denied", "not yours"]);
    const boom = await rejection(store.call("account.get", { address: "boom" }));
    expect([boom.code, boom.message]).toEqual(["internal", "handler exploded"]);
    const unknown = await rejection(store.call("folder.list" as never, { userId: 1 } as never));
    expect(unknown.code).toBe("invalid");
  });

  test("a handler that throws something that is not even printable still gets an answer", async () => {
    const { connect, service } = setup();
    const calls = service.calls as Record<string, unknown>;
    const odd = Object.create(null); // String(odd) throws
    calls["account.get"] = () => {
      throw odd;
    };
    calls["domain.isLocal"] = () => Promise.reject(odd);
    const store = connect("pop3-9");
    const sync = await rejection(store.call("account.get", { address: "a@example.com" }));
    expect(sync.code).toBe("internal");
    const async = await rejection(store.call("domain.isLocal", { domain: "example.com" }));
    expect(async.code).toBe("internal");
  });

  test("bytes travel both ways through heap blocks", async () => {
    const { connect, qm } = setup();
    const store = connect("smtp-0");
    const chunk = patternBlock(5, 100_000);
    const res = await store.call("body.append", { uploadId: 1, chunk }) as unknown as {
      size: number;
      echo: Uint8Array;
    };
    expect(res.size).toBe(100_000);
    expect(res.echo).toEqual(chunk);
    expect(qm.stats().heapUsedBytes).toBe(0); // every block was freed by its consumer
  });

  test("per-binding ordering with several bindings at once", async () => {
    const { connect, log } = setup({ ringSlots: 16 });
    const clients = [connect("a"), connect("b"), connect("c")];
    const all: Promise<unknown>[] = [];
    for (let i = 0; i < 300; i++) {
      for (const c of clients) all.push(c.call("queue.done", { queueId: i }));
    }
    // 900 calls through rings of 16 slots: the rest waited in the outboxes (backpressure)
    await Promise.all(all);
    const byPeer = new Map<string, number[]>();
    for (const c of log.calls) {
      if (c.method !== "queue.done") continue;
      let seqs = byPeer.get(c.peer);
      if (!seqs) byPeer.set(c.peer, seqs = []);
      seqs.push(c.seq);
    }
    expect(byPeer.size).toBe(3);
    for (const seqs of byPeer.values()) expect(seqs).toEqual([...Array(300).keys()]);
  });

  test("results resolve in the order of their calls", async () => {
    const { connect } = setup();
    const store = connect("x");
    const order: number[] = [];
    await Promise.all(
      [...Array(50).keys()].map((i) =>
        store.call("queue.done", { queueId: i }).then(() => order.push(i))
      ),
    );
    expect(order).toEqual([...Array(50).keys()]);
  });

  test("a stream arrives whole, in bounded chunks, with credit", async () => {
    const { connect, qm } = setup({ chunkBytes: 8 * 1024 });
    const store = connect("imap-1");
    const total = 1_000_000;
    let offset = 0;
    let maxUsed = 0;
    for await (const chunk of store.stream("message.read", { userId: 100_000, messageId: total })) {
      expect(chunk.byteLength).toBeLessThanOrEqual(8 * 1024);
      expect(chunk).toEqual(patternBlock(offset, chunk.byteLength));
      offset += chunk.byteLength;
      maxUsed = Math.max(maxUsed, qm.stats().heapUsedBytes);
      await new Promise((r) => setTimeout(r, 0)); // a slow consumer
    }
    expect(offset).toBe(total);
    // window of 4 chunks: the producer never ran ahead of its credit
    expect(maxUsed).toBeLessThanOrEqual(4 * 8 * 1024);
  });

  test("a 100,000-message listing arrives whole and in order, in bounded batches", async () => {
    const { connect, qm, log } = setup({ window: 4 });
    const store = connect("imap-9");
    let next = 1;
    let batches = 0;
    let maxUsed = 0;
    const closed = log.streamsClosed;
    for await (
      const batch of store.stream("folder.messages", { userId: 1, folderId: 1, sinceUid: 100_000 })
    ) {
      expect(batch.length).toBeLessThanOrEqual(FOLDER_MESSAGES_BATCH);
      for (const m of batch) {
        expect(m.uid).toBe(next);
        expect(m.uniqueId).toBe(`u${next}`);
        next++;
      }
      batches++;
      maxUsed = Math.max(maxUsed, qm.stats().heapUsedBytes);
      if (batches % 50 === 0) await new Promise((r) => setTimeout(r, 0)); // a slow consumer
    }
    expect(next - 1).toBe(100_000);
    expect(batches).toBe(100_000 / FOLDER_MESSAGES_BATCH);
    // a window of 4 batches of ~100 B records: never the whole listing in the shared heap
    expect(maxUsed).toBeLessThan(4 * FOLDER_MESSAGES_BATCH * 256);
    expect(qm.stats().heapUsedBytes).toBe(0);
    // breaking out early cancels the producer
    for await (
      const _ of store.stream("folder.messages", { userId: 1, folderId: 1, sinceUid: 100_000 })
    ) break;
    await eventually(() => log.streamsClosed === closed + 2);
  });

  test("items of a stream the consumer already left are still read: names they define stay known", async () => {
    const { connect, service } = setup();
    let open!: () => void;
    const gate = new Promise<void>((r) => open = r);
    let reached!: () => void;
    const atGate = new Promise<void>((r) => reached = r);
    (service.streams as Record<string, unknown>)["folder.messages"] = () =>
      (async function* () {
        reached();
        await gate;
        yield [{ firstName: 1, secondName: "a" }]; // compact form: defines both names
        yield [{ firstName: 2, secondName: "b" }];
      })();
    (service.calls as Record<string, unknown>)["domain.isLocal"] = () => ({
      firstName: 3,
      secondName: "c",
    });
    const store = connect("pop3-8");
    const it = store.stream("folder.messages", { userId: 1, folderId: 1 })[Symbol.asyncIterator]();
    const waiting = it.next();
    await atGate;
    // Left before the items arrive: the CANCEL reaches the store only after they were sent
    // (no macrotask between the two lines, so the store's pump cannot read it first).
    await it.return!();
    open();
    expect(await waiting).toEqual({ done: true, value: undefined });
    // A later result cites the names by number: they must be known on this side.
    expect(await store.call("domain.isLocal", { domain: "x" }) as unknown).toEqual({
      firstName: 3,
      secondName: "c",
    });
  });

  test("an items entry that cannot be read fails its stream at once; it does not hang", async () => {
    const qm = new QueueManager({
      heapBytes: 1 << 20,
      ringSlots: 16,
      chunkBytes: 4096,
      streamWindowChunks: 4,
      callTimeoutMs: 2_000,
    });
    const { server, client } = qm.bind("store", "pop3-7");
    const store = attachStoreClient(client);
    opened.push(store);
    const it = store.stream("folder.messages", { userId: 1, folderId: 1 })[Symbol.asyncIterator]();
    const first = it.next();
    // A hand-made store side: read the open, answer with a damaged ITEMS entry.
    const view = viewBinding(server.binding, server.ringSlots);
    let id = 0;
    await eventually(() => {
      view.requests.drain((kind, i) => {
        if (kind === STREAM_OPEN) id = i;
      });
      return id !== 0;
    });
    view.responses.push(ITEMS, id, 0, 0x7fff); // no such inline value
    ringDoorbell(new Int32Array(server.peerBell));
    const err = await rejection(first);
    expect(err).toBeInstanceOf(StoreError);
    expect(err.code).toBe("internal"); // not "unavailable" from the call timeout
  });

  test("every stream length arrives whole, the last chunk ending it, even with a window of 1", async () => {
    const chunk = 4096;
    for (const window of [1, 2, 4]) {
      const { connect, qm } = setup({ chunkBytes: chunk, window });
      const store = connect(`pop3-${window}`);
      for (const total of [0, 1, chunk - 1, chunk, chunk + 1, 5 * chunk + 3]) {
        for (const piece of [1000, chunk, 3 * chunk]) {
          const parts: Uint8Array[] = [];
          for await (const c of store.stream("message.read", { userId: piece, messageId: total })) {
            expect(c.byteLength).toBeLessThanOrEqual(chunk);
            parts.push(c);
          }
          expect(Buffer.concat(parts)).toEqual(Buffer.from(patternBlock(0, total)));
        }
      }
      // Small streams in flight at once: each ends on its own, nothing stays in the heap.
      const sizes = [...Array(40).keys()].map((i) => 1 + 97 * i);
      const all = await Promise.all(sizes.map(async (n) => {
        let got = 0;
        for await (const c of store.stream("message.read", { userId: 0, messageId: n })) {
          got += c.byteLength;
        }
        return got;
      }));
      expect(all).toEqual(sizes);
      for (let i = 0; i < 100 && qm.stats().heapUsedBytes !== 0; i++) await Bun.sleep(2);
      expect(qm.stats().heapUsedBytes).toBe(0);
    }
  });

  test("return() while a next() waits on a silent producer settles that next()", async () => {
    const { connect, service, log } = setup();
    service.streams["message.read"] = () =>
      (async function* () {
        try {
          await new Promise(() => {}); // never produces
          yield new Uint8Array(1);
        } finally {
          log.streamsClosed++;
        }
      })();
    const store = connect("pop3-9");
    const it = store.stream("message.read", { userId: 1, messageId: 1 })[Symbol.asyncIterator]();
    const waiting = it.next();
    await Bun.sleep(5); // the open has reached the server
    await it.return!();
    expect(await waiting).toEqual({ done: true, value: undefined });
  });

  test("breaking out of the loop cancels the producer", async () => {
    const { connect, log, qm } = setup({ chunkBytes: 4096 });
    const store = connect("imap-2");
    let got = 0;
    for await (const chunk of store.stream("message.read", { userId: 4096, messageId: 10 << 20 })) {
      got += chunk.byteLength;
      if (got >= 3 * 4096) break;
    }
    for (let i = 0; i < 100 && log.streamsClosed === 0; i++) {
      await new Promise((r) => setTimeout(r, 2));
    }
    expect(log.streamsClosed).toBe(1); // the generator's finally ran: it was told to stop
    for (let i = 0; i < 100 && qm.stats().heapUsedBytes !== 0; i++) {
      await new Promise((r) => setTimeout(r, 2));
    }
    expect(qm.stats().heapUsedBytes).toBe(0);
  });

  test("a stream error reaches the consumer after the chunks before it", async () => {
    const { connect } = setup();
    const store = connect("smtp-out");
    const got: number[] = [];
    const err = await rejection((async () => {
      for await (const c of store.stream("queue.read", { queueId: 1 })) got.push(...c);
    })());
    expect(got).toEqual([1, 2, 3]);
    expect(err.code).toBe("not_found");
  });

  test("published events reach every subscribed binding, and only those", async () => {
    const { connect } = setup();
    const imap0 = connect("imap-0");
    const imap1 = connect("imap-1");
    const smtp = connect("smtp-0");
    const seen: string[] = [];
    imap0.subscribe("mailbox", (e) => seen.push(`imap0:${e.uids[0]}`));
    const off = imap1.subscribe("mailbox", (e) => seen.push(`imap1:${e.uids[0]}`));
    await imap0.call("domain.isLocal", { domain: "x" }); // subscriptions are ordered before this
    await imap1.call("domain.isLocal", { domain: "x" });
    await smtp.call("delivery.commit", { uploadId: 7, sender: "", recipients: [] });
    await imap0.call("domain.isLocal", { domain: "x" });
    await imap1.call("domain.isLocal", { domain: "x" });
    expect(seen.sort()).toEqual(["imap0:7", "imap1:7"]);
    off();
    await imap1.call("domain.isLocal", { domain: "x" });
    await smtp.call("delivery.commit", { uploadId: 8, sender: "", recipients: [] });
    await imap0.call("domain.isLocal", { domain: "x" });
    await imap1.call("domain.isLocal", { domain: "x" });
    expect(seen.sort()).toEqual(["imap0:7", "imap0:8", "imap1:7"]);
  });

  test("a full heap is a temporary 'busy' on the caller's side", async () => {
    const { connect, qm } = setup({ heapBytes: 1 << 20 });
    const store = connect("smtp-1");
    const hog: number[] = [];
    for (let h = qm.heap.alloc(4096, 0); h !== 0; h = qm.heap.alloc(4096, 0)) hog.push(h);
    // too big for a ring slot: it needs a heap block
    const long = `${"a".repeat(INLINE_BYTES)}@example.com`;
    const err = await rejection(store.call("account.get", { address: long }));
    expect(err.code).toBe("busy");
    expect(err.temporary).toBe(true);
    // a small call travels inside its ring slot, both ways: the full heap does not stop it
    expect((await store.call("account.get", { address: "a@example.com" }))?.address).toBe(
      "a@example.com",
    );
    for (const h of hog) qm.heap.free(h);
    expect((await store.call("account.get", { address: long }))?.address).toBe(long);
    expect(qm.heap.usedBytes).toBe(0);
  });

  test("names defined in a ring slot are cited from heap blocks and back, both ways", async () => {
    const { connect, service } = setup();
    (service.calls as Record<string, unknown>)["account.get"] = (req: { address: string }) => ({
      address: req.address,
      displayName: req.address.startsWith("big") ? "x".repeat(INLINE_BYTES) : "small",
    });
    const store = connect("smtp-3");
    for (
      const who of ["a@x", `big${"b".repeat(INLINE_BYTES)}@x`, "c@x", `big${"d".repeat(300)}@x`]
    ) {
      const res = await store.call("account.get", { address: who });
      expect(res?.address).toBe(who);
      expect(res?.displayName).toBe(who.startsWith("big") ? "x".repeat(INLINE_BYTES) : "small");
    }
  });

  test("a result that finds the heap full waits for space: work done is never reported failed", async () => {
    const { connect, qm, service } = setup({ heapBytes: 1 << 20 });
    const hog: number[] = [];
    let handled = 0;
    // The handler "commits" (counts), then the heap fills before its result is encoded.
    (service.calls as Record<string, unknown>)["account.get"] = async (
      req: { address: string },
    ) => {
      handled++;
      for (const size of [4096, 64]) {
        for (let h = qm.heap.alloc(size, 0); h !== 0; h = qm.heap.alloc(size, 0)) hog.push(h);
      }
      setTimeout(() => hog.splice(0).forEach((h) => qm.heap.free(h)), 80);
      return { address: req.address, displayName: "x".repeat(1000) };
    };
    const store = connect("smtp-2");
    const res = await store.call("account.get", { address: "a@example.com" });
    expect(res?.address).toBe("a@example.com");
    expect(handled).toBe(1);
  });

  test("a call the store never answers fails 'unavailable' after ipc.callTimeoutMs; so does a stalled stream", async () => {
    const { connect, service } = setup({ timeout: 200 });
    const calls = service.calls as Record<string, unknown>;
    const streams = service.streams as Record<string, unknown>;
    let answer: (v: unknown) => void = () => {};
    calls["account.get"] = () => new Promise((resolve) => answer = resolve); // wedged
    streams["queue.read"] = async function* () {
      yield new Uint8Array([1, 2, 3]);
      await new Promise(() => {}); // a producer that stalls for ever
    };
    const store = connect("smtp-4");
    const err = await rejection(store.call("account.get", { address: "a@example.com" }));
    expect(err.code).toBe("unavailable");
    expect(err.temporary).toBe(true);
    // the late answer is dropped; the binding goes on working
    answer({ address: "late@example.com" });
    expect(await store.call("domain.isLocal", { domain: "example.com" })).toBe(true);
    const chunks: number[] = [];
    const streamErr = await (async () => {
      try {
        for await (const c of store.stream("queue.read", { queueId: 1 })) chunks.push(c.length);
      } catch (e) {
        return e as StoreError;
      }
      return null;
    })();
    expect(chunks.length).toBeLessThanOrEqual(1); // the server may hold its newest chunk back
    expect(streamErr?.code).toBe("unavailable");
    expect(await store.call("domain.isLocal", { domain: "example.com" })).toBe(true);
  });

  test("a request whose getter closes the client rejects; it never waits for ever", async () => {
    const { connect, qm } = setup();
    const store = connect("smtp-5");
    const closing = {
      get address() {
        store.close();
        return `${"a".repeat(INLINE_BYTES)}@example.com`; // needs a heap block
      },
    };
    const err = await rejection(store.call("account.get", closing));
    expect(err.code).toBe("unavailable");
    expect(qm.heap.usedBytes).toBe(0); // the block sent after the close is not lost
    const again = connect("smtp-6");
    const streamErr = await rejection((async () => {
      const req = {
        get queueId() {
          again.close();
          return 1;
        },
      };
      for await (const _ of again.stream("queue.read", req)) { /* nothing */ }
    })());
    expect(streamErr.code).toBe("unavailable");
  });

  test("client close: pending calls reject, the store hears peerGone", async () => {
    const { connect, log } = setup();
    const store = connect("pop3-1");
    const held = store.call("account.get", { address: "hold" });
    await store.call("domain.isLocal", { domain: "x" }); // the held call has reached the store
    store.close();
    const err = await rejection(held);
    expect(err.code).toBe("unavailable");
    expect((await rejection(store.call("domain.isLocal", { domain: "x" }))).code).toBe(
      "unavailable",
    );
    for (let i = 0; i < 100 && log.gone.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 1));
    }
    expect(log.gone).toEqual([expect.stringMatching(/^pop3-1#\d+$/)]);
  });

  test("the store worker gone: every pending call rejects at once, blocks are freed", async () => {
    const { connect, qm } = setup();
    const a = connect("imap-0");
    const b = connect("imap-1");
    const held = [
      a.call("account.get", { address: "hold" }),
      b.call("account.get", { address: "hold" }),
    ];
    await a.call("domain.isLocal", { domain: "x" });
    await b.call("domain.isLocal", { domain: "x" });
    qm.workerGone("store");
    for (const p of held) expect((await rejection(p)).code).toBe("unavailable");
    expect(a.closed && b.closed).toBe(true);
    expect(qm.stats().bindings).toBe(0);
    expect(qm.stats().heapUsedBytes).toBe(0);
  });
});
