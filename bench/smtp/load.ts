// The SMTP load generator: a small raw SMTP client that keeps N connections busy, one message
// per transaction, several transactions per connection, and measures end-of-DATA → 250 latency.
// It runs as its own process (spawned by run.ts) so it never shares an event loop with a server.
//   bun bench/smtp/load.ts --port P --rcpt ADDR --size BYTES --conns N --seconds S [--warmup S]
// Prints one JSON line (LoadResult) on stdout.
import { parseArgs } from "node:util";
import type { Socket } from "bun";

export interface LoadResult {
  /** 250 replies to the final dot, warm-up and tail included: what the mailbox must hold. */
  acked: number;
  /** Transactions refused (4xx/5xx at any step) or cut by a dropped connection. */
  failed: number;
  /** Acks whose final dot was sent inside the measured window. */
  measured: number;
  windowSeconds: number;
  /** End of DATA (last byte of the dot line written) to the 250, in ms, sorted. */
  p50: number;
  p99: number;
  pipelining: boolean;
  firstError: string | null;
  /** Wall clock (ms since the epoch) when the first connection opened and the last closed. */
  startedAt: number;
  endedAt: number;
}

const { values } = parseArgs({
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string" },
    rcpt: { type: "string" },
    from: { type: "string", default: "load@sender.example" },
    size: { type: "string", default: "1024" },
    conns: { type: "string", default: "8" },
    seconds: { type: "string", default: "10" },
    warmup: { type: "string", default: "1" },
    "per-connection": { type: "string", default: "25" },
    tag: { type: "string", default: "run" },
  },
});
if (!values.port || !values.rcpt) {
  console.error("usage: load.ts --port P --rcpt ADDR [--size B] [--conns N] [--seconds S]");
  process.exit(2);
}
const HOST = values.host!;
const PORT = Number(values.port);
const RCPT = values.rcpt;
const FROM = values.from!;
const SIZE = Number(values.size);
const CONNS = Number(values.conns);
const PER_CONNECTION = Number(values["per-connection"]);
const TAG = values.tag!;
const encoder = new TextEncoder();

/** A connection with a reply reader and a writer that honours backpressure. */
class SmtpConnection {
  private text = "";
  private waiter: (() => void) | null = null;
  private drainWaiter: (() => void) | null = null;
  closed = false;

  private socket: Socket<SmtpConnection> | null = null;

  static async open(): Promise<SmtpConnection> {
    // The connection object exists before the socket, so no event can find `data` unset.
    const conn = new SmtpConnection();
    conn.socket = await Bun.connect<SmtpConnection>({
      hostname: HOST,
      port: PORT,
      data: conn,
      socket: {
        data(s, bytes) {
          const c = s.data;
          c.text += bytes.toString("latin1");
          c.wake();
        },
        drain(s) {
          const d = s.data.drainWaiter;
          s.data.drainWaiter = null;
          d?.();
        },
        close(s) {
          s.data.closed = true;
          s.data.wake();
        },
        error(s) {
          s.data.closed = true;
          s.data.wake();
        },
      },
    });
    return conn;
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
    if (this.closed) {
      const d = this.drainWaiter;
      this.drainWaiter = null;
      d?.();
    }
  }

  /** The next complete reply (RFC 5321 §4.2.1: "ddd-" lines, then one "ddd " line). */
  async reply(): Promise<{ code: number; text: string }> {
    for (;;) {
      const m = /^(?:\d{3}-[^\n]*\n)*(\d{3})(?: [^\n]*)?\r?\n/.exec(this.text);
      if (m) {
        this.text = this.text.slice(m[0].length);
        return { code: Number(m[1]), text: m[0].trimEnd() };
      }
      if (this.closed) throw new Error("connection closed by the server");
      await new Promise<void>((r) => (this.waiter = r));
    }
  }

  /** Resolves once every byte is accepted by the kernel (so a timer started after it measures
   * the server, not our own send queue). */
  async write(data: Uint8Array): Promise<void> {
    let rest = data;
    for (;;) {
      if (this.closed) throw new Error("connection closed by the server");
      const n = this.socket!.write(rest);
      if (n >= rest.length) return;
      if (n > 0) rest = rest.subarray(n);
      await new Promise<void>((r) => (this.drainWaiter = r));
    }
  }

  end(): void {
    this.socket?.end();
  }
}

/** A message of exactly `size` bytes before the dot line, unique per transaction (Posthorn
 * stores identical bodies once; every message here must be a distinct body). */
function messageTemplate(size: number): { head: string; tail: Uint8Array } {
  const head = `From: <${FROM}>\r\nTo: <${RCPT}>\r\nSubject: bench ${size} bytes\r\n` +
    `Date: ${new Date().toUTCString().replace("GMT", "+0000")}\r\n`;
  const line = "The quick brown fox jumps over the lazy dog. 0123456789 abcdefghijklmnopqrst\r\n";
  // The unique Message-ID header that goes between head and body is 64 bytes long.
  let body = "\r\n";
  const budget = size - head.length - 64;
  while (body.length + line.length <= budget) body += line;
  body += "y".repeat(Math.max(0, budget - body.length - 2)) + "\r\n";
  return { head, tail: encoder.encode(body + ".\r\n") };
}

function messageIdHeader(seq: string): string {
  const h = `Message-ID: <${seq}@load.bench>\r\n`;
  return h.length >= 64 ? h : h.replace("<", "<" + "0".repeat(64 - h.length));
}

const template = messageTemplate(SIZE);
const headBytes = encoder.encode(template.head);
const envelope = encoder.encode(`MAIL FROM:<${FROM}>\r\nRCPT TO:<${RCPT}>\r\nDATA\r\n`);
const latencies: number[] = [];
let acked = 0;
let failed = 0;
let measured = 0;
let pipelining = true;
let firstError: string | null = null;
const startedAt = Date.now();
const start = performance.now();
const windowStart = start + Number(values.warmup) * 1000;
const deadline = windowStart + Number(values.seconds) * 1000;

function fail(why: string): void {
  failed++;
  firstError ??= why;
}

function body(seq: string): Uint8Array {
  const id = encoder.encode(messageIdHeader(seq));
  const out = new Uint8Array(headBytes.length + id.length + template.tail.length);
  out.set(headBytes, 0);
  out.set(id, headBytes.length);
  out.set(template.tail, headBytes.length + id.length);
  return out;
}

/** One transaction; returns false when the connection must be dropped. */
async function transaction(c: SmtpConnection, seq: string): Promise<boolean> {
  const message = body(seq);
  if (pipelining) {
    // RFC 2920 §3.1: MAIL, RCPT and DATA may be sent as one group; DATA is the last.
    await c.write(envelope);
    const replies = [await c.reply(), await c.reply(), await c.reply()];
    if (replies[0]!.code !== 250 || replies[1]!.code !== 250 || replies[2]!.code !== 354) {
      fail(replies.map((r) => r.text).join(" | "));
      if (replies[2]!.code === 354) {
        // The server took DATA without a recipient: end the transaction cleanly.
        await c.write(encoder.encode(".\r\n"));
        await c.reply();
      }
      return true;
    }
  } else {
    for (
      const [cmd, want] of [[`MAIL FROM:<${FROM}>`, 250], [`RCPT TO:<${RCPT}>`, 250], [
        "DATA",
        354,
      ]] as const
    ) {
      await c.write(encoder.encode(cmd + "\r\n"));
      const r = await c.reply();
      if (r.code !== want) {
        fail(r.text);
        await c.write(encoder.encode("RSET\r\n"));
        await c.reply();
        return true;
      }
    }
  }
  await c.write(message);
  const t0 = performance.now();
  const done = await c.reply();
  const t1 = performance.now();
  if (done.code !== 250) {
    fail(done.text);
    return true;
  }
  acked++;
  if (t0 >= windowStart && t0 < deadline) {
    measured++;
    latencies.push(t1 - t0);
  }
  return true;
}

/** One of the N busy connections: reconnects after PER_CONNECTION transactions. */
async function worker(index: number): Promise<void> {
  let seq = 0;
  let reconnects = 0;
  while (performance.now() < deadline) {
    let c: SmtpConnection;
    try {
      c = await SmtpConnection.open();
      const greeting = await c.reply();
      if (greeting.code !== 220) throw new Error(`greeting: ${greeting.text}`);
      await c.write(encoder.encode("EHLO load.bench\r\n"));
      const ehlo = await c.reply();
      if (ehlo.code !== 250) throw new Error(`EHLO: ${ehlo.text}`);
      pipelining = /^250[- ]PIPELINING\b/im.test(ehlo.text);
    } catch (e) {
      fail(`connect: ${(e as Error).message}`);
      if (++reconnects > 20) return;
      await Bun.sleep(50);
      continue;
    }
    try {
      for (let i = 0; i < PER_CONNECTION && performance.now() < deadline; i++) {
        await transaction(c, `${TAG}.${index}.${seq++}.${process.pid}`);
      }
      await c.write(encoder.encode("QUIT\r\n"));
      await c.reply().catch(() => null);
    } catch (e) {
      fail((e as Error).message);
      if (++reconnects > 20) return;
    }
    c.end();
  }
}

await Promise.all(Array.from({ length: CONNS }, (_, i) => worker(i)));
latencies.sort((a, b) => a - b);
const pct = (p: number) =>
  latencies.length
    ? latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))]!
    : NaN;
const result: LoadResult = {
  acked,
  failed,
  measured,
  windowSeconds: (deadline - windowStart) / 1000,
  p50: pct(0.5),
  p99: pct(0.99),
  pipelining,
  firstError,
  startedAt,
  endedAt: Date.now(),
};
console.log(JSON.stringify(result));
