// BodySink's lazy upload against a store that answers when the test says: an abort that
// arrives while the upload is being opened still releases it, and nothing more is appended.
import { expect, test } from "bun:test";
import type { StoreClient } from "../../ipc/store-client.ts";
import { silentLogger } from "../../log/mod.ts";
import { BodySink } from "../../protocols/smtp/body-sink.ts";

test("an abort during body.begin releases the upload once it exists; no append follows", async () => {
  const calls: string[] = [];
  let answerBegin!: (v: { uploadId: number }) => void;
  const store = {
    call(method: string, req: { uploadId?: number }) {
      calls.push(method + (req.uploadId === undefined ? "" : ` ${req.uploadId}`));
      if (method === "body.begin") return new Promise((resolve) => answerBegin = resolve);
      return Promise.resolve(method === "body.append" ? { size: 0 } : null);
    },
  } as unknown as StoreClient;
  const sink = new BodySink(store, {
    maxMessageBytes: 1 << 20,
    chunkBytes: 1024,
    maxHops: 50,
    dataLineBytes: 1000,
  }, silentLogger);
  // SIZE says it will not fit one chunk: the upload is opened at once.
  const begun = sink.begin(5000, new TextEncoder().encode("Received: x\r\n"));
  await Bun.sleep(1);
  expect(calls).toEqual(["body.begin"]);
  await sink.abort(); // the client hung up meanwhile
  answerBegin({ uploadId: 7 });
  expect(await begun).toBeNull();
  await Bun.sleep(1);
  expect(calls).toEqual(["body.begin", "body.abort 7"]);
  // Whatever the session still flushes goes nowhere.
  sink.write(new Uint8Array(3000), 0, 3000);
  await sink.flush();
  expect(calls).toEqual(["body.begin", "body.abort 7"]);
});
