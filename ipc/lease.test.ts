// callLeased: over the ring transport a result's bytes are views into its heap block, held until
// released (then the heap is empty again); over the direct client they are ordinary bytes and
// release does nothing. A request mark passes any proxy that hands the request on unchanged.
import { afterEach, describe, expect, test } from "bun:test";
import { attachStoreClient, QueueManager, serveStore } from "./mod.ts";
import { StoreError } from "./store-api.ts";
import { callLeased, createDirectStoreClient, type StoreClient } from "./store-client.ts";
import { createTestService, patternBlock } from "./fixtures/test-service.ts";

const opened: { close(): void }[] = [];
afterEach(() => {
  for (const c of opened.splice(0)) c.close();
});

function setup() {
  const qm = new QueueManager({
    heapBytes: 4 << 20,
    ringSlots: 64,
    chunkBytes: 64 * 1024,
    streamWindowChunks: 4,
  });
  const t = createTestService();
  const { server, client } = qm.bind("store", "pop3-0");
  opened.push(serveStore(server, t.service));
  const store = attachStoreClient(client);
  opened.push(store);
  return { qm, store, service: t.service };
}

type Echo = { size: number; echo: Uint8Array };

/** Polls until the heap is empty (the server frees request blocks on its own pump turn). */
async function heapUsed(qm: QueueManager, until = 0): Promise<number> {
  for (let i = 0; i < 200 && qm.stats().heapUsedBytes !== until; i++) await Bun.sleep(2);
  return qm.stats().heapUsedBytes;
}

describe("callLeased", () => {
  test("ring client: views into the heap until released, then nothing is held", async () => {
    const { qm, store } = setup();
    const chunk = patternBlock(3, 50_000);
    const leased = await callLeased(store, "body.append", { uploadId: 1, chunk });
    const { echo } = leased.value as unknown as Echo;
    expect(echo.buffer).toBeInstanceOf(SharedArrayBuffer); // no copy was made
    expect(echo).toEqual(chunk);
    expect(qm.stats().heapUsedBytes).toBeGreaterThanOrEqual(50_000); // the block is held
    leased.release();
    leased.release(); // a second release is harmless
    expect(await heapUsed(qm)).toBe(0);
    // The plain call still hands private copies and holds nothing.
    const plain = await store.call("body.append", { uploadId: 1, chunk }) as unknown as Echo;
    expect(plain.echo.buffer).not.toBeInstanceOf(SharedArrayBuffer);
    expect(await heapUsed(qm)).toBe(0);
  });

  test("a result without bytes, or an error, leaves nothing to release", async () => {
    const { qm, store } = setup();
    const small = await callLeased(store, "body.append", {
      uploadId: 2,
      chunk: patternBlock(0, 10),
    });
    expect((small.value as unknown as Echo).size).toBe(10);
    small.release();
    const err = await callLeased(store, "body.append", { uploadId: 1, chunk: "x" } as never)
      .catch((e) => e);
    expect(err).toBeInstanceOf(StoreError);
    expect((err as StoreError).code).toBe("invalid");
    expect(await heapUsed(qm)).toBe(0);
  });

  test("a lease outlives the binding: released after close, the heap is still emptied", async () => {
    const { qm, store } = setup();
    const chunk = patternBlock(9, 20_000);
    const leased = await callLeased(store, "body.append", { uploadId: 1, chunk });
    store.close();
    expect((leased.value as unknown as Echo).echo).toEqual(chunk); // still valid bytes
    leased.release();
    expect(await heapUsed(qm)).toBe(0);
  });

  test("through a proxy that hands the request on, the lease still applies", async () => {
    const { qm, store } = setup();
    const proxy: StoreClient = {
      call: (method, req) => store.call(method, req),
      stream: (method, req) => store.stream(method, req),
      subscribe: (topic, listener) => store.subscribe(topic, listener),
    };
    const leased = await callLeased(proxy, "body.append", {
      uploadId: 1,
      chunk: patternBlock(1, 30_000),
    });
    expect((leased.value as unknown as Echo).echo.buffer).toBeInstanceOf(SharedArrayBuffer);
    leased.release();
    expect(await heapUsed(qm)).toBe(0);
  });

  test("direct client: ordinary bytes, release does nothing", async () => {
    const { service } = createTestService();
    const direct = createDirectStoreClient(service, "direct-lease");
    opened.push(direct);
    const chunk = patternBlock(5, 1000);
    const leased = await callLeased(direct, "body.append", { uploadId: 1, chunk });
    expect((leased.value as unknown as Echo).echo).toEqual(chunk);
    leased.release();
    expect((leased.value as unknown as Echo).echo).toEqual(chunk);
  });
});
