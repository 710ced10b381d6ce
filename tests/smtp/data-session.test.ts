// DATA and BDAT through a whole SmtpSession with random messages cut into random reads: the
// replies, the stored bytes (in chunks of ipc.chunkBytes) and the commands pipelined after the
// final dot must be what the old per-line path (old-line-path.ts) says.
import { describe, expect, test } from "bun:test";
import { openSession, type TestClient } from "./harness.ts";
import { MemoryStore } from "./memory-store.ts";
import { oldBdat, oldData } from "./old-line-path.ts";
import { makeCase, rng, split } from "./random-message.ts";

const CASES = 150;
const CHUNK = 1024;

async function session(
  seed: number,
  maxMessageBytes: number,
  maxHops: number,
): Promise<TestClient> {
  const store = new MemoryStore();
  store.addUser("alice@example.com", "secret");
  const c = await openSession({
    store,
    connector: { maxMessageBytes },
    metabase: { ipc: { chunkBytes: CHUNK }, limits: { dataLineBytes: 1000 }, smtp: { maxHops } },
  });
  await c.cmd("EHLO c");
  await c.cmd(`MAIL FROM:<s${seed}@remote.example>`);
  expect((await c.cmd("RCPT TO:<alice@example.com>")).code).toBe(250);
  return c;
}

/** The stored body is our Received: header, then exactly `content`, sent in full chunks. */
function expectStored(c: TestClient, content: Uint8Array): void {
  expect(c.store.messages.length).toBe(1);
  const body = c.store.messages[0]!.body;
  const header = Buffer.from(body.subarray(0, body.length - content.length)).toString("latin1");
  expect(header).toStartWith("Received: from c ");
  expect(header).toEndWith("\r\n");
  expect(header.split("\r\n").length).toBeLessThan(6);
  expect(Buffer.from(body.subarray(body.length - content.length))).toEqual(Buffer.from(content));
  expect(c.store.appendCalls).toBe(Math.ceil(body.length / CHUNK));
}

function limitsFor(seed: number) {
  return { maxLineBytes: 1000, maxMessageBytes: seed % 3 === 0 ? 300 : 20_000 };
}

describe("random messages through the session", () => {
  test(`DATA: ${CASES} messages, then a pipelined NOOP`, async () => {
    for (let seed = 1; seed <= CASES; seed++) {
      const { limits, bytes: content } = makeCase(seed + 2_000_000, false, limitsFor(seed));
      const wire = Buffer.concat([content, Buffer.from("\r\n.\r\nNOOP\r\n")]);
      const pieces = split(wire, rng(seed));
      const want = oldData(pieces, limits);
      const c = await session(seed, limits.maxMessageBytes, limits.maxHops);
      expect((await c.cmd("DATA")).code).toBe(354);
      for (const p of pieces) c.send(p);
      const r = await c.reply();
      if (want.verdict) {
        expect({ seed, code: r.code, text: r.text }).toEqual({
          seed,
          code: want.verdict.code,
          text: `${want.verdict.enhanced} ${want.verdict.text}`,
        });
        expect(c.store.messages.length).toBe(0);
        expect(c.store.uploads.size).toBe(0); // aborted
      } else {
        expect({ seed, code: r.code }).toEqual({ seed, code: 250 });
        expectStored(c, want.stored);
      }
      if (want.end === wire.length - 6) {
        expect((await c.reply()).text).toBe("2.0.0 Ok"); // the NOOP, as a command
        expect(c.pending()).toBe("");
      }
    }
  });

  test(`BDAT: ${CASES} messages in random chunks, each cut into random reads`, async () => {
    for (let seed = 1; seed <= CASES; seed++) {
      const { limits, bytes: content } = makeCase(seed + 3_000_000, false, limitsFor(seed));
      const r = rng(seed);
      const sizes: number[] = [];
      for (let at = 0; at < content.length || sizes.length === 0;) {
        const n = Math.min(content.length - at, Math.floor(r() * 400));
        sizes.push(n);
        at += n;
      }
      const chunks: Uint8Array[][] = [];
      let wire = "";
      let at = 0;
      for (const [k, n] of sizes.entries()) {
        const part = content.subarray(at, at + n);
        chunks.push(split(part, r));
        wire += `BDAT ${n}${k === sizes.length - 1 ? " LAST" : ""}\r\n`;
        wire += Buffer.from(part).toString("latin1");
        at += n;
      }
      const want = oldBdat(chunks, limits);
      const c = await session(seed, limits.maxMessageBytes, limits.maxHops);
      for (const p of split(Buffer.from(wire, "latin1"), r)) c.send(p);
      const last = want.verdict ? want.failedAt : sizes.length - 1;
      for (let k = 0; k < last; k++) {
        expect({ seed, k, text: (await c.reply()).text }).toEqual({
          seed,
          k,
          text: `2.0.0 ${sizes[k]} octets received`,
        });
      }
      const final = await c.reply();
      if (want.verdict) {
        expect({ seed, code: final.code, text: final.text }).toEqual({
          seed,
          code: want.verdict.code,
          text: `${want.verdict.enhanced} ${want.verdict.text}`,
        });
        expect(c.store.messages.length).toBe(0);
      } else {
        expect({ seed, code: final.code }).toEqual({ seed, code: 250 });
        expectStored(c, want.stored);
      }
    }
  });
});
