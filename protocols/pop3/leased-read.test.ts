// Pipelined RETR over the ring transport, as the appliance runs it (StoreProxy over the ring
// client): read-ahead answers are leased views into the shared heap, copied once into the
// replies. Whatever happens (normal run, a peer that stops reading, a dropped connection with
// reads in flight, failing reads) every heap block is released: the heap ends empty.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import { attachStoreClient, QueueManager, serveStore } from "../../ipc/mod.ts";
import { StoreError } from "../../ipc/store-api.ts";
import { leaseMarkOf, type StoreClient, type StoreService } from "../../ipc/store-client.ts";
import { memoryLogger } from "../../log/mod.ts";
import { Metabase } from "../../metabase/schema.ts";
import { StoreProxy } from "../../supervisor/store-proxy.ts";
import { MemoryStore } from "../../tests/pop3/memory-store.ts";
import type { BoundListener } from "../engine.ts";
import { pop3Engine } from "./mod.ts";

const USER = "erin@example.com";
const BUDGET = 64 * 1024; // limits.connectionBufferBytes

/**
 * message.readMany for the test double, through its message.read; `gate` delays its answers,
 * `bigGate` the message.read stream of message 31 (the one too big to read ahead).
 */
function addReadMany(service: StoreService) {
  const probe = {
    calls: 0,
    gate: null as Promise<void> | null,
    bigGate: null as Promise<void> | null,
    failCall: false,
  };
  const read = service.streams["message.read"];
  service.streams["message.read"] = (req, ctx) =>
    (async function* () {
      if (req.messageId === bigMessageId && probe.bigGate) await probe.bigGate;
      yield* read(req, ctx);
    })();
  (service.calls as Record<string, unknown>)["message.readMany"] = async (
    req: { userId: number; messageIds: number[] },
    ctx: never,
  ) => {
    probe.calls++;
    if (probe.gate) await probe.gate;
    if (probe.failCall) {
      probe.failCall = false;
      throw new StoreError("busy", "readMany failed (test)");
    }
    return await Promise.all(req.messageIds.map(async (messageId) => {
      try {
        const parts: Uint8Array[] = [];
        for await (const c of service.streams["message.read"]({ ...req, messageId }, ctx)) {
          parts.push(c);
        }
        return { bytes: new Uint8Array(Buffer.concat(parts)) };
      } catch (e) {
        return { code: (e as StoreError).code, message: String(e) };
      }
    }));
  };
  return probe;
}

/** Sits under the StoreProxy (as the ring client does in a worker) and counts granted leases. */
function leaseCounter(ring: StoreClient & { close(): void }) {
  const counts = { asked: 0, granted: 0 };
  const client = {
    call: ((method, req) => {
      const mark = leaseMarkOf(req);
      if (mark) counts.asked++;
      const p = ring.call(method, req);
      p.then(() => mark?.release && counts.granted++, () => {});
      return p;
    }) as StoreClient["call"],
    stream: ring.stream.bind(ring),
    subscribe: ring.subscribe.bind(ring),
    close: () => ring.close(),
  };
  return { client, counts };
}

let store: MemoryStore;
let probe: ReturnType<typeof addReadMany>;
let qm: QueueManager;
let proxy: StoreProxy;
let counts: { asked: number; granted: number };
let bound: BoundListener;
let served: { close(): void };
const bodies: string[] = [];
let bigMessageId = 0;

function body(i: number, size: number): string {
  let s = `Subject: m${i}\r\n\r\n${i % 3 === 0 ? ".a dot starts this line\r\n" : ""}`;
  while (s.length < size - 12) s += `line ${i} of text .\r\n`;
  return s + "end\r\n";
}

/** What a client receives for RETR of `b`: status, byte-stuffed lines, terminator. */
function expectedReply(b: string): string {
  return `+OK ${b.length} octets\r\n` + b.replace(/(^|\r\n)\./g, "$1..") + ".\r\n";
}

beforeAll(async () => {
  store = new MemoryStore();
  store.addUser(USER, "erinpw");
  for (let i = 1; i <= 30; i++) bodies.push(body(i, 300 + 700 * i)); // 1 KB … 21 KB
  bodies.push(body(31, BUDGET + 16_000)); // too big to read ahead: streamed
  for (const b of bodies) bigMessageId = store.deliver(USER, b).messageId;
  const service = store.service();
  probe = addReadMany(service);
  qm = new QueueManager({
    heapBytes: 8 << 20,
    ringSlots: 64,
    chunkBytes: 64 * 1024,
    streamWindowChunks: 4,
  });
  const { server, client } = qm.bind("store", "pop3-0");
  served = serveStore(server, service);
  const counter = leaseCounter(attachStoreClient(client));
  counts = counter.counts;
  proxy = new StoreProxy();
  proxy.attach(counter.client);
  const config = Metabase.parse({
    auth: { plaintext: "always", failureDelayMs: 0 },
    limits: { connectionBufferBytes: BUDGET },
    pop3: { listeners: [{ name: "pop3", port: 0, tls: "none" }] },
  });
  bound = await pop3Engine.listen(config.pop3.listeners[0]!, {
    config: () => config,
    tls: () => {
      throw new Error("no TLS in this test");
    },
    store: proxy,
    log: memoryLogger("pop3-lease"),
    workerIndex: 0,
  });
});

afterAll(async () => {
  await bound.close(200);
  proxy.detach();
  served.close();
});

/** A byte-exact client: keeps everything received, in one growing list of chunks. */
class ByteClient {
  #chunks: Buffer[] = [];
  received = 0;
  closed = false;
  #waiters: (() => void)[] = [];
  socket!: Socket<undefined>;

  static async login(port: number): Promise<ByteClient> {
    const c = new ByteClient();
    c.socket = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        data: (_s, d) => {
          c.#chunks.push(Buffer.from(d));
          c.received += d.length;
          for (const w of c.#waiters.splice(0)) w();
        },
        close: () => {
          c.closed = true;
          for (const w of c.#waiters.splice(0)) w();
        },
        error: () => {},
      },
    });
    c.socket.write(`USER ${USER}\r\nPASS erinpw\r\n`);
    await c.until((text) => text.split("\r\n").length > 3);
    c.#chunks = [];
    c.received = 0;
    return c;
  }

  text(): string {
    const all = Buffer.concat(this.#chunks);
    this.#chunks = [all];
    return all.toString("latin1");
  }

  async until(done: (text: string) => boolean): Promise<string> {
    for (;;) {
      const t = this.text();
      if (done(t) || this.closed) return t;
      await new Promise<void>((r) => this.#waiters.push(r));
    }
  }

  /** Waits for `bytes` bytes (or the close) and returns everything. */
  async bytes(bytes: number): Promise<string> {
    while (this.received < bytes && !this.closed) {
      await new Promise<void>((r) => this.#waiters.push(r));
    }
    return this.text();
  }
}

async function heapEmpty(): Promise<number> {
  for (let i = 0; i < 500 && qm.stats().heapUsedBytes !== 0; i++) await Bun.sleep(2);
  return qm.stats().heapUsedBytes;
}

const retrs = (from: number, to: number) => {
  let s = "";
  for (let i = from; i <= to; i++) s += `RETR ${i}\r\n`;
  return s;
};

describe("leased read-ahead over the ring transport", () => {
  test("pipelined RETRs come back byte-exact from leased blocks; the heap ends empty", async () => {
    const c = await ByteClient.login(bound.port);
    const before = { ...counts };
    c.socket.write(retrs(1, 30));
    const expected = bodies.slice(0, 30).map(expectedReply).join("");
    expect(await c.bytes(expected.length)).toBe(expected);
    expect(counts.asked - before.asked).toBeGreaterThan(0);
    expect(counts.granted - before.granted).toBe(counts.asked - before.asked); // all leased
    c.socket.write("QUIT\r\n");
    await c.until(() => false);
    expect(await heapEmpty()).toBe(0);
  });

  test("answers that must wait their turn are copied out: no heap block is held meanwhile", async () => {
    const c = await ByteClient.login(bound.port);
    const calls = probe.calls;
    let open!: () => void;
    probe.bigGate = new Promise<void>((r) => open = r);
    // RETR 31 is too big to read ahead: streamed in its turn, and its stream is held, so the
    // messages read ahead for the RETRs behind it wait (as they would behind a slow peer).
    c.socket.write(`RETR 31\r\n${retrs(1, 12)}`);
    for (let i = 0; i < 200 && probe.calls === calls; i++) await Bun.sleep(5);
    expect(probe.calls).toBeGreaterThan(calls); // read ahead, answered...
    expect(c.received).toBe(0); // ...and waiting behind RETR 31
    expect(await heapEmpty()).toBe(0); // copied out of the heap meanwhile
    probe.bigGate = null;
    open();
    const expected = [bodies[30]!, ...bodies.slice(0, 12)].map(expectedReply).join("");
    expect(await c.bytes(expected.length)).toBe(expected);
    c.socket.end();
    await c.until(() => false);
    expect(await heapEmpty()).toBe(0);
  });

  test("a drop with reads in flight: the late answers are released", async () => {
    const c = await ByteClient.login(bound.port);
    const calls = probe.calls;
    let open!: () => void;
    probe.gate = new Promise<void>((r) => open = r);
    c.socket.write(retrs(1, 10));
    for (let i = 0; i < 200 && probe.calls === calls; i++) await Bun.sleep(5);
    expect(probe.calls).toBeGreaterThan(calls);
    c.socket.terminate();
    await c.until(() => false);
    await Bun.sleep(20); // the server sees the drop and cancels the reads
    probe.gate = null;
    open(); // now the answers arrive, for nobody
    expect(await heapEmpty()).toBe(0);
  });

  test("failed reads and a failed call answer -ERR or fall back; the heap ends empty", async () => {
    const c = await ByteClient.login(bound.port);
    store.failNext.set("message.read", "busy"); // one answer of the first readMany fails
    c.socket.write(retrs(1, 4));
    const text = await c.until((t) => t.split("\r\n.\r\n").length > 3);
    expect(text).toStartWith("-ERR [SYS/TEMP]");
    expect(text).toContain(expectedReply(bodies[3]!));
    c.socket.end(); // releases the maildrop for the next session
    await c.until(() => false);
    probe.failCall = true; // the whole next call fails: each message is streamed instead
    const d = await ByteClient.login(bound.port);
    d.socket.write(retrs(5, 7));
    const expected = bodies.slice(4, 7).map(expectedReply).join("");
    expect(await d.bytes(expected.length)).toBe(expected);
    expect(probe.failCall).toBe(false); // the failing call did happen
    d.socket.end();
    await d.until(() => false);
    expect(await heapEmpty()).toBe(0);
  });
});
