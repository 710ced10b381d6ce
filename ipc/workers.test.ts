// The ring transport between real Worker threads: a store worker, engine workers, the main
// thread as a client too; workers terminated mid-request; 100 MB streamed byte-exact.
import { afterAll, describe, expect, test } from "bun:test";
import { attachStoreClient, QueueManager } from "./mod.ts";
import type { StoreError } from "./store-api.ts";
import { patternBlock } from "./fixtures/test-service.ts";
import { INLINE_BYTES } from "./ring.ts";

const workers: Worker[] = [];
afterAll(() => {
  for (const w of workers) w.terminate();
});

function spawn(file: string): Worker {
  const w = new Worker(new URL(`./fixtures/${file}`, import.meta.url));
  workers.push(w);
  return w;
}

/** The next message from `w` matching `type` (and `pred`). */
function next(w: Worker, type: string, pred: (m: any) => boolean = () => true): Promise<any> {
  return new Promise((resolve) => {
    const on = (e: MessageEvent) => {
      if (e.data?.type === type && pred(e.data)) {
        w.removeEventListener("message", on);
        resolve(e.data);
      }
    };
    w.addEventListener("message", on);
  });
}

function closed(w: Worker): Promise<void> {
  return new Promise((resolve) => w.addEventListener("close", () => resolve(), { once: true }));
}

async function serve(qm: QueueManager, store: Worker, storeId: string, clientId: string) {
  const { server, client } = qm.bind(storeId, clientId);
  const serving = next(store, "serving");
  store.postMessage({ type: "serve", descriptor: server });
  await serving;
  return client;
}

async function engineCall(w: Worker, n: number, method: string, req: unknown): Promise<any> {
  const reply = next(w, "result", (m) => m.n === n).then((m) => ({ ok: true, ...m }));
  const fail = next(w, "error", (m) => m.n === n).then((m) => ({ ok: false, ...m }));
  w.postMessage({ type: "call", n, method, req });
  return await Promise.race([reply, fail]);
}

async function eventually(check: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !check(); i++) await new Promise((r) => setTimeout(r, 5));
}

describe("ring transport across workers", () => {
  test("engine worker and main thread call one store worker; events fan out", async () => {
    const qm = new QueueManager({ heapBytes: 4 << 20, ringSlots: 64, chunkBytes: 65536 });
    const store = spawn("store-worker.ts");
    const engine = spawn("engine-worker.ts");
    const engineDesc = await serve(qm, store, "store", "imap-0");
    const bound = next(engine, "bound");
    engine.postMessage({ type: "bind", descriptor: engineDesc });
    await bound;
    const main = attachStoreClient(await serve(qm, store, "store", "supervisor"));
    expect(qm.stats().bindings).toBe(2);

    const r = await engineCall(engine, 1, "account.get", { address: "e@example.com" });
    expect(r.ok).toBe(true);
    expect(r.result.displayName).toMatch(/^imap-0#\d+$/);
    const m = await main.call("account.get", { address: "m@example.com" });
    expect(m?.displayName).toMatch(/^supervisor#\d+$/);

    const subscribed = next(engine, "subscribed");
    engine.postMessage({ type: "subscribe" });
    await subscribed;
    const mainEvents: number[] = [];
    main.subscribe("mailbox", (e) => mainEvents.push(e.uids[0]!));
    await engineCall(engine, 2, "domain.isLocal", { domain: "x" }); // subscription is in place
    await main.call("domain.isLocal", { domain: "x" });
    const event = next(engine, "event");
    await main.call("delivery.commit", { uploadId: 42, sender: "", recipients: [] });
    expect((await event).event.uids).toEqual([42]);
    await eventually(() => mainEvents.length > 0);
    expect(mainEvents).toEqual([42]);
    main.close();
  });

  test("engine worker terminated mid-request: store hears peerGone, its blocks are freed", async () => {
    const qm = new QueueManager({ heapBytes: 4 << 20, ringSlots: 64, chunkBytes: 65536 });
    const store = spawn("store-worker.ts");
    const engine = spawn("engine-worker.ts");
    const desc = await serve(qm, store, "store", "pop3-0");
    engine.postMessage({ type: "bind", descriptor: desc });
    await next(engine, "bound");
    engine.postMessage({ type: "call", n: 1, method: "account.get", req: { address: "hold" } });
    for (let held = 0; held === 0;) { // the held request has reached the store's handler
      const log = next(store, "log");
      store.postMessage({ type: "log" });
      held = (await log).held;
    }
    const leaked = next(engine, "leaked");
    engine.postMessage({ type: "leak" });
    await leaked;
    expect(qm.stats().heapUsedBytes).toBeGreaterThanOrEqual(10 * 10_000);
    const gone = next(store, "gone");
    const exited = closed(engine);
    engine.terminate();
    await exited;
    qm.workerGone("pop3-0");
    expect((await gone).peer).toBe(desc.peer);
    expect(qm.stats().heapUsedBytes).toBe(0);
    expect(qm.stats().blocksReclaimed).toBe(10);
    // a restarted engine binds again and works
    const engine2 = spawn("engine-worker.ts");
    engine2.postMessage({ type: "bind", descriptor: await serve(qm, store, "store", "pop3-0") });
    await next(engine2, "bound");
    expect((await engineCall(engine2, 1, "domain.isLocal", { domain: "example.com" })).result)
      .toBe(true);
  });

  test("a worker dying while it holds the heap lock does not wedge the heap", async () => {
    const qm = new QueueManager({ heapBytes: 4 << 20, ringSlots: 64, chunkBytes: 65536 });
    const store = spawn("store-worker.ts");
    const engine = spawn("engine-worker.ts");
    engine.postMessage({ type: "bind", descriptor: await serve(qm, store, "store", "nntp-0") });
    await next(engine, "bound");
    const main = attachStoreClient(await serve(qm, store, "store", "supervisor"));
    const locked = next(engine, "locked");
    engine.postMessage({ type: "die-holding-lock" });
    await locked;
    // while the dead-to-be holds the lock, a call needing a heap block gets "busy", never a hang
    const busy = await main.call("domain.isLocal", { domain: "x".repeat(INLINE_BYTES) })
      .catch((e: StoreError) => e);
    expect((busy as StoreError).code).toBe("busy");
    const exited = closed(engine);
    engine.terminate();
    await exited;
    qm.workerGone("nntp-0");
    expect(await main.call("domain.isLocal", { domain: "example.com" })).toBe(true);
    main.close();
  });

  test("calls a stalled store never took are retracted at their deadline: they never run", async () => {
    const qm = new QueueManager({
      heapBytes: 4 << 20,
      ringSlots: 16,
      chunkBytes: 65536,
      callTimeoutMs: 300,
    });
    const store = spawn("store-worker.ts");
    const main = attachStoreClient(await serve(qm, store, "store", "stalled-caller"));
    const before = await new Promise<number>((resolve) => {
      next(store, "log").then((m) => resolve(m.calls));
      store.postMessage({ type: "log" });
    });
    const blocked = next(store, "blocked");
    store.postMessage({ type: "block", ms: 1500 });
    await blocked;
    // 16 fit the ring; the other 24 wait in the outbox. Requests big enough for a heap block,
    // whose names (method, key) the first of them defines.
    const calls = Array.from(
      { length: 40 },
      (_, i) =>
        main.call("account.get", { address: `${"u".repeat(INLINE_BYTES)}${i}@example.com` })
          .catch((e: StoreError) => e),
    );
    const errors = (await Promise.all(calls)) as StoreError[];
    expect(errors.every((e) => e.code === "unavailable")).toBe(true);
    const retracted = errors.filter((e) => e.message.includes("not run")).length;
    expect(retracted).toBe(24);
    // Once the store wakes up (its answer to a message says so), only the 16 in the ring
    // run; the binding still works (the retracted entries were read, so the names they
    // defined are known).
    const log = () =>
      new Promise<number>((resolve) => {
        next(store, "log").then((m) => resolve(m.calls));
        store.postMessage({ type: "log" });
      });
    await log();
    expect((await main.call("account.get", { address: "a@example.com" }))?.address).toBe(
      "a@example.com",
    );
    const after = await log();
    expect(after - before).toBe(16 + 1);
    main.close();
  });

  test("store worker terminated mid-request: pending calls reject at once; a new store serves", async () => {
    const qm = new QueueManager({ heapBytes: 4 << 20, ringSlots: 64, chunkBytes: 65536 });
    const store = spawn("store-worker.ts");
    const main = attachStoreClient(await serve(qm, store, "store", "supervisor"));
    const held = [1, 2, 3].map(() =>
      main.call("account.get", { address: "hold" }).catch((e: StoreError) => e)
    );
    await main.call("domain.isLocal", { domain: "x" });
    const exited = closed(store);
    store.terminate();
    await exited;
    qm.workerGone("store");
    for (const r of await Promise.all(held)) expect((r as StoreError).code).toBe("unavailable");
    expect(main.closed).toBe(true);
    expect(qm.stats().heapUsedBytes).toBe(0);
    const store2 = spawn("store-worker.ts");
    const fresh = attachStoreClient(await serve(qm, store2, "store", "supervisor"));
    expect(await fresh.call("domain.isLocal", { domain: "example.com" })).toBe(true);
    fresh.close();
  });

  test("100 MB streamed byte-exact from the store worker, memory bounded", async () => {
    const chunkBytes = 64 * 1024;
    const qm = new QueueManager({ heapBytes: 8 << 20, ringSlots: 64, chunkBytes });
    const store = spawn("store-worker.ts");
    const main = attachStoreClient(await serve(qm, store, "store", "http-0"));
    const total = 100 * 1024 * 1024;
    let offset = 0;
    let mismatches = 0;
    let maxUsed = 0;
    // the store yields 1 MiB pieces; the transport cuts them into 64 KiB chunks
    for await (const chunk of main.stream("message.read", { userId: 1 << 20, messageId: total })) {
      const expected = patternBlock(offset, chunk.byteLength);
      if (!Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).equals(expected)) {
        mismatches++;
      }
      offset += chunk.byteLength;
      maxUsed = Math.max(maxUsed, qm.stats().heapUsedBytes);
    }
    expect(offset).toBe(total);
    expect(mismatches).toBe(0);
    expect(maxUsed).toBeLessThanOrEqual(8 * chunkBytes); // the credit window, never the body
    main.close();
  }, 60_000);
});
