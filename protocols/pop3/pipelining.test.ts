// Pipelined RETR with read-ahead (prefetch.ts): replies stay in order and byte-exact whatever
// mix of small, large, deleted and failing messages is queued; the bytes read ahead stay within
// limits.connectionBufferBytes; reads nobody will use (after QUIT, a dropped connection) stop.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { StoreError } from "../../ipc/store-api.ts";
import type { StoreService } from "../../ipc/store-client.ts";
import { MemoryStore } from "../../tests/pop3/memory-store.ts";
import { RawClient, startPop3, type TestServer } from "../../tests/pop3/harness.ts";

const BUDGET = 16 * 1024; // limits.connectionBufferBytes: its smallest allowed value

/**
 * Counts message.read streams started and ended (`hold` makes them wait before any byte), and
 * adds message.readMany to the test double, answering through those counted reads; `manyFails`
 * makes the next readMany call fail as a whole, `manyMax` answers "invalid" above that size.
 */
function instrument(service: StoreService) {
  const stats = { started: 0, ended: 0, open: 0, maxOpen: 0, manyCalls: 0, manyIds: 0 };
  let gate: Promise<void> | null = null;
  let release = () => {};
  const read = service.streams["message.read"];
  const control = { manyFails: false, manyMax: Infinity };
  (service.calls as Record<string, unknown>)["message.readMany"] = async (
    req: { userId: number; messageIds: number[] },
    ctx: never,
  ) => {
    stats.manyCalls++;
    stats.manyIds += req.messageIds.length;
    if (control.manyFails) {
      control.manyFails = false;
      throw new StoreError("busy", "readMany failed (test)");
    }
    // Through the counted (and holdable) message.read below, all at once.
    return await Promise.all(req.messageIds.map(async (messageId) => {
      try {
        const parts: Uint8Array[] = [];
        const stream = service.streams["message.read"]({ userId: req.userId, messageId }, ctx);
        for await (const c of stream) parts.push(c);
        const bytes = Buffer.concat(parts);
        return bytes.length > control.manyMax
          ? { code: "invalid" as const, message: "too big (test)" }
          : { bytes: new Uint8Array(bytes) };
      } catch (e) {
        return { code: (e as StoreError).code, message: String(e) };
      }
    }));
  };
  service.streams["message.read"] = (req, ctx) =>
    (async function* () {
      stats.started++;
      stats.open++;
      stats.maxOpen = Math.max(stats.maxOpen, stats.open);
      try {
        if (gate) await gate;
        yield* read(req, ctx);
      } finally {
        stats.open--;
        stats.ended++;
      }
    })();
  return {
    stats,
    control,
    /** The next read throws at once, the way a client whose store connection died does. */
    failNextAtOnce() {
      const real = service.streams["message.read"];
      service.streams["message.read"] = () => {
        service.streams["message.read"] = real;
        throw new StoreError("unavailable", "the store worker is gone (test)");
      };
    },
    hold() {
      gate = new Promise<void>((r) => release = r);
    },
    open() {
      gate = null;
      release();
    },
  };
}

let store: MemoryStore;
let server: TestServer;
let probe: ReturnType<typeof instrument>;
const bodies: string[] = [];

function body(i: number, size: number): string {
  let s = `Subject: m${i}\r\n\r\n.starts with a dot\r\n`;
  while (s.length < size - 8) s += `line ${i} .\r\n`;
  return s + "\r\n.\r\nend\r\n";
}

beforeAll(async () => {
  store = new MemoryStore();
  store.chunkBytes = 1000; // several chunks per message: read-ahead gathers them
  store.addUser("dave@example.com", "davepw");
  for (let i = 1; i <= 30; i++) {
    // Message 7 does not fit the read-ahead budget: it is streamed when its turn comes.
    const b = body(i, i === 7 ? BUDGET + 5000 : 500 + 97 * i);
    bodies.push(b);
    store.deliver("dave@example.com", b);
  }
  const service = store.service();
  probe = instrument(service);
  server = await startPop3(service, { limits: { connectionBufferBytes: BUDGET } });
});
afterAll(async () => {
  await server.close();
});

async function login(): Promise<RawClient> {
  const c = await RawClient.connect(server.port);
  expect(await c.line()).toStartWith("+OK");
  expect(await c.command("USER dave@example.com")).toStartWith("+OK");
  expect(await c.command("PASS davepw")).toStartWith("+OK");
  return c;
}

/** The lines of a message as a client sees them after removing the byte-stuffing. */
const linesOf = (b: string) => b.slice(0, -2).split("\r\n");
const unstuff = (lines: string[]) => lines.map((l) => (l.startsWith(".") ? l.slice(1) : l));

describe("pipelined RETR", () => {
  test("thirty RETRs in one write come back in order, byte-exact, big one included", async () => {
    const c = await login();
    const calls = probe.stats.manyCalls;
    let batch = "";
    for (let i = 1; i <= 30; i++) batch += `RETR ${i}\r\n`;
    c.send(batch);
    for (let i = 1; i <= 30; i++) {
      expect(await c.line()).toBe(`+OK ${bodies[i - 1]!.length} octets`);
      expect(unstuff(await c.multiline())).toEqual(linesOf(bodies[i - 1]!));
    }
    // The small ones came several to a call; the big one (7) was streamed on its own.
    const manyCalls = probe.stats.manyCalls - calls;
    expect(manyCalls).toBeGreaterThan(0);
    expect(manyCalls).toBeLessThan(29);
    expect(await c.command("QUIT")).toStartWith("+OK");
    await c.untilClosed();
  });

  test("pipelined TOPs (a header scan) are read ahead too, and cut at the right line", async () => {
    const c = await login();
    const calls = probe.stats.manyCalls;
    let batch = "";
    for (let i = 1; i <= 30; i++) batch += `TOP ${i} 0\r\n`;
    batch += "TOP 3 2\r\nTOP 7 1\r\nTOP 4 x\r\n";
    c.send(batch);
    for (let i = 1; i <= 30; i++) {
      expect(await c.line()).toBe("+OK Top of message follows");
      expect(await c.multiline()).toEqual([`Subject: m${i}`, ""]);
    }
    expect(await c.line()).toBe("+OK Top of message follows");
    expect(unstuff(await c.multiline())).toEqual([
      "Subject: m3",
      "",
      ".starts with a dot",
      "line 3 .",
    ]);
    // message 7 is too big to read ahead: its head is read in its turn
    expect(await c.line()).toBe("+OK Top of message follows");
    expect(unstuff(await c.multiline())).toEqual(["Subject: m7", "", ".starts with a dot"]);
    expect(await c.line()).toStartWith("-ERR");
    const manyCalls = probe.stats.manyCalls - calls;
    expect(manyCalls).toBeGreaterThan(0);
    expect(manyCalls).toBeLessThan(29);
    expect(await c.command("QUIT")).toStartWith("+OK");
    await c.untilClosed();
  });

  test("a failed readMany call, or an answer 'too big', falls back to a stream each", async () => {
    // Failed call: 3 reads of the engine's own. "Too big" above message 1's size (so 2 and 3):
    // the call's 3 reads, then 2 streams of the engine's own.
    const cases = [
      { setup: () => probe.control.manyFails = true, reads: 3 },
      { setup: () => probe.control.manyMax = bodies[0]!.length, reads: 5 },
    ];
    for (const { setup, reads } of cases) {
      setup();
      const c = await login();
      const streams = probe.stats.started;
      c.send("RETR 1\r\nRETR 2\r\nRETR 3\r\n");
      for (let i = 1; i <= 3; i++) {
        expect(await c.line()).toBe(`+OK ${bodies[i - 1]!.length} octets`);
        expect(unstuff(await c.multiline())).toEqual(linesOf(bodies[i - 1]!));
      }
      expect(probe.stats.started - streams).toBe(reads);
      expect(await c.command("QUIT")).toStartWith("+OK");
      await c.untilClosed();
      probe.control.manyMax = Infinity;
    }
  });

  test("DELE, bad numbers and a failing read in a pipeline each get their own answer", async () => {
    const c = await login();
    store.failNext.set("message.read", "busy"); // the first read: RETR 1's
    c.send("RETR 1\r\nDELE 2\r\nRETR 2\r\nRETR 0\r\nRETR 99\r\nRETR 3\r\nRSET\r\nRETR 2\r\n");
    expect(await c.line()).toStartWith("-ERR [SYS/TEMP]");
    expect(await c.line()).toStartWith("+OK Message 2 deleted");
    expect(await c.line()).toStartWith("-ERR"); // marked as deleted before its turn
    expect(await c.line()).toStartWith("-ERR");
    expect(await c.line()).toStartWith("-ERR");
    expect(await c.line()).toBe(`+OK ${bodies[2]!.length} octets`);
    expect(unstuff(await c.multiline())).toEqual(linesOf(bodies[2]!));
    expect(await c.line()).toStartWith("+OK");
    expect(await c.line()).toBe(`+OK ${bodies[1]!.length} octets`);
    expect(unstuff(await c.multiline())).toEqual(linesOf(bodies[1]!));
    expect(await c.command("QUIT")).toStartWith("+OK");
    await c.untilClosed();
  });

  test("a read that cannot even start is a -ERR in its turn; the session goes on", async () => {
    const c = await login();
    probe.control.manyFails = true; // so both are read through message.read streams
    probe.failNextAtOnce(); // the engine's own stream for RETR 4 cannot even open
    c.send("RETR 4\r\nRETR 5\r\n");
    expect(await c.line()).toStartWith("-ERR [SYS/TEMP]");
    expect(await c.line()).toBe(`+OK ${bodies[4]!.length} octets`);
    expect(unstuff(await c.multiline())).toEqual(linesOf(bodies[4]!));
    expect(await c.command("QUIT")).toStartWith("+OK");
    await c.untilClosed();
  });

  test("reads ahead only as many bytes as limits.connectionBufferBytes allows", async () => {
    const c = await login();
    const before = probe.stats.started;
    probe.hold();
    let batch = "";
    for (let i = 8; i <= 30; i++) batch += `RETR ${i}\r\n`; // 23 messages, ~48 KiB
    c.send(batch);
    for (let i = 0; i < 100 && probe.stats.started === before; i++) await Bun.sleep(5);
    await Bun.sleep(50); // anything more that was going to start has started
    const started = probe.stats.started - before;
    let fit = 0; // how many of the first messages fit the budget together
    for (let i = 8, sum = 0; i <= 30 && (sum += bodies[i - 1]!.length) <= BUDGET; i++) fit++;
    expect(started).toBeGreaterThan(1); // read ahead...
    expect(started).toBe(fit); // ...exactly what fits, no more
    probe.open();
    for (let i = 8; i <= 30; i++) {
      expect(await c.line()).toBe(`+OK ${bodies[i - 1]!.length} octets`);
      expect(unstuff(await c.multiline())).toEqual(linesOf(bodies[i - 1]!));
    }
    expect(probe.stats.started - before).toBe(23); // the rest followed as room freed
    c.end();
    await c.untilClosed();
  });

  test("nothing is read for RETRs after QUIT; a drop stops the reads in flight", async () => {
    const c = await login();
    const before = probe.stats.started;
    c.send("RETR 1\r\nQUIT\r\nRETR 2\r\nRETR 3\r\n");
    expect(await c.line()).toStartWith("+OK");
    await c.multiline();
    expect(await c.line()).toStartWith("+OK"); // signing off
    await c.untilClosed();
    expect(probe.stats.started - before).toBe(1);

    const d = await login();
    probe.hold();
    const started = probe.stats.started;
    d.send("RETR 3\r\nRETR 4\r\nRETR 5\r\n");
    for (let i = 0; i < 100 && probe.stats.started < started + 3; i++) await Bun.sleep(5);
    expect(probe.stats.started).toBe(started + 3);
    d.socket.terminate(); // dropped with three reads waiting on the store
    await d.untilClosed();
    await Bun.sleep(30);
    probe.open();
    for (let i = 0; i < 100 && probe.stats.open > 0; i++) await Bun.sleep(5);
    expect(probe.stats.open).toBe(0); // every stream ended: none left running
    // The lock went with the connection: a new session gets the maildrop.
    const e = await login();
    expect(await e.command("STAT")).toStartWith("+OK 30 ");
    e.end();
  });
});
