import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as net from "node:net";
import * as tls from "node:tls";
import type { BoundListener, TlsMaterial } from "../engine.ts";
import { memoryLogger } from "../../log/mod.ts";
import { generateSelfSigned } from "./certificate.ts";
import { LineReader } from "./line-reader.ts";
import { listen, type ListenOptions } from "./listen.ts";
import type { CloseReason, Connection, Session } from "./types.ts";

let material: TlsMaterial;
beforeAll(() => {
  material = generateSelfSigned("localhost");
});

/** What the test sessions saw, per connection id. */
const seen = new Map<string, { lines: string[]; closed?: CloseReason }>();

/** A tiny line protocol exercising every Connection feature. */
function testSession(conn: Connection): Session {
  const reader = new LineReader({ maxLineBytes: 200 });
  const record = { lines: [] as string[], closed: undefined as CloseReason | undefined };
  seen.set(conn.id, record);
  let busy = false;
  const pump = () => {
    while (!busy) {
      const ev = reader.next();
      if (!ev) return;
      if (ev.kind !== "line") continue;
      const line = Buffer.from(ev.line).toString();
      record.lines.push(`${conn.secure ? "tls" : "plain"}:${line}`);
      const [cmd, arg] = line.split(" ");
      if (cmd === "PING") conn.write(`PONG ${conn.secure}\r\n`);
      else if (cmd === "ID") conn.write(`ID ${conn.id}\r\n`);
      else if (cmd === "BOOM") throw new Error("session bug");
      else if (cmd === "QUIT") {
        conn.write("BYE\r\n");
        conn.close();
        return;
      } else if (cmd === "STARTTLS") {
        conn.write("OK go ahead\r\n");
        reader.clear(); // the session's half of the injection defence
        busy = true;
        conn.pause();
        conn.startTls().then(() => {
          busy = false;
          conn.resume();
          pump();
        }, () => {});
        return;
      } else if (cmd === "SLOW") {
        busy = true;
        conn.pause();
        setTimeout(() => {
          conn.write("SLOW done\r\n");
          busy = false;
          conn.resume();
          pump();
        }, 30);
        return;
      } else if (cmd === "BIG") {
        // Stream n bytes respecting backpressure.
        busy = true;
        conn.pause();
        const total = Number(arg);
        (async () => {
          const block = new Uint8Array(65536).fill(0x61);
          let sent = 0;
          while (sent < total) {
            const n = Math.min(block.length, total - sent);
            conn.write(block.subarray(0, n));
            sent += n;
            await conn.drained();
          }
          conn.write("\r\nEND\r\n");
          busy = false;
          conn.resume();
          pump();
        })();
        return;
      } else conn.write(`ERR ${cmd}\r\n`);
    }
  };
  conn.write("HELLO\r\n");
  return {
    onData(chunk) {
      reader.push(chunk);
      pump();
    },
    onClose(reason) {
      record.closed = reason;
    },
    onShutdown() {
      conn.write("SHUTDOWN\r\n");
      conn.close();
    },
  };
}

/** A line client over a node socket (plain or TLS) for the tests. */
class LineClient {
  buf = "";
  waiters: (() => void)[] = [];
  closed = false;
  constructor(public sock: net.Socket) {
    this.attach(sock);
  }
  attach(sock: net.Socket) {
    this.sock = sock;
    sock.on("data", (d) => {
      this.buf += d.toString("latin1");
      for (const w of this.waiters.splice(0)) w();
    });
    sock.on("close", () => {
      this.closed = true;
      for (const w of this.waiters.splice(0)) w();
    });
    sock.on("error", () => {});
  }
  async line(): Promise<string> {
    for (;;) {
      const i = this.buf.indexOf("\r\n");
      if (i >= 0) {
        const l = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 2);
        return l;
      }
      if (this.closed) return "<closed>";
      await new Promise<void>((r) => this.waiters.push(r));
    }
  }
  async untilClosed(): Promise<void> {
    while (!this.closed) await new Promise<void>((r) => this.waiters.push(r));
  }
  send(s: string) {
    this.sock.write(s);
  }
  static async connect(port: number, secure = false): Promise<LineClient> {
    const sock = secure
      ? tls.connect({ host: "127.0.0.1", port, rejectUnauthorized: false })
      : net.connect(port, "127.0.0.1");
    await new Promise<void>((r) => sock.once(secure ? "secureConnect" : "connect", () => r()));
    return new LineClient(sock);
  }
  async upgrade(): Promise<void> {
    const t = tls.connect({ socket: this.sock, rejectUnauthorized: false });
    await new Promise<void>((r, j) => {
      t.once("secureConnect", () => r());
      t.once("error", j);
    });
    this.buf = "";
    this.attach(t);
  }
}

const log = memoryLogger("wire");
function options(over: Partial<ListenOptions> & { tlsMode?: "none" | "starttls" | "implicit" }) {
  return {
    listener: { name: "t", bind: "127.0.0.1", port: 0, tls: over.tlsMode ?? "starttls" },
    tls: () => material,
    idleTimeoutMs: 5000,
    maxConnections: 50,
    connectionsPerIp: 50,
    log,
    ...over,
  } satisfies ListenOptions;
}

describe("wire listen", () => {
  let bound: BoundListener;
  beforeAll(async () => {
    bound = await listen(options({}), testSession);
  });
  afterAll(async () => {
    await bound.close(100);
  });

  test("plain commands, pipelining, close reason", async () => {
    const c = await LineClient.connect(bound.port);
    expect(await c.line()).toBe("HELLO");
    c.send("ID\r\nPING\r\nNOPE\r\n");
    const id = (await c.line()).slice(3);
    expect(await c.line()).toBe("PONG false");
    expect(await c.line()).toBe("ERR NOPE");
    c.send("QUIT\r\n");
    expect(await c.line()).toBe("BYE");
    await c.untilClosed();
    await Bun.sleep(20);
    expect(seen.get(id)?.closed).toBe("local");
  });

  test("STARTTLS: a command pipelined in the same packet never reaches the session", async () => {
    const c = await LineClient.connect(bound.port);
    expect(await c.line()).toBe("HELLO");
    c.send("ID\r\n");
    const id = (await c.line()).slice(3);
    c.send("STARTTLS\r\nPING injected\r\n"); // one write: one packet on loopback
    expect(await c.line()).toBe("OK go ahead");
    await c.upgrade();
    c.send("PING\r\n");
    expect(await c.line()).toBe("PONG true");
    expect(seen.get(id)?.lines).toEqual(["plain:ID", "plain:STARTTLS", "tls:PING"]);
    c.send("QUIT\r\n");
    expect(await c.line()).toBe("BYE");
  });

  test("STARTTLS: plaintext arriving before the handshake is dropped, never delivered", async () => {
    const c = await LineClient.connect(bound.port);
    expect(await c.line()).toBe("HELLO");
    c.send("ID\r\n");
    const id = (await c.line()).slice(3);
    c.send("STARTTLS\r\n");
    c.send("PING late\r\n"); // a second packet, racing the server's upgrade
    expect(await c.line()).toBe("OK go ahead");
    // Dropped before the upgrade: the handshake works. Fed to TLS as garbage: it fails. Either
    // way the session never sees the line.
    const upgraded = await c.upgrade().then(() => true, () => false);
    if (upgraded) {
      c.send("PING\r\n");
      expect(await c.line()).toBe("PONG true");
    } else await c.untilClosed();
    await Bun.sleep(20);
    expect(seen.get(id)?.lines.some((l) => l.includes("late"))).toBe(false);
  });

  test("a throw in onData closes only that connection", async () => {
    const a = await LineClient.connect(bound.port);
    const b = await LineClient.connect(bound.port);
    expect(await a.line()).toBe("HELLO");
    expect(await b.line()).toBe("HELLO");
    a.send("BOOM\r\n");
    await a.untilClosed();
    b.send("PING\r\n");
    expect(await b.line()).toBe("PONG false");
    expect(log.records.some((r) => r.event === "session.data_failed")).toBe(true);
    b.sock.destroy();
  });

  test("pause/resume keeps pipelined commands in order", async () => {
    const c = await LineClient.connect(bound.port);
    expect(await c.line()).toBe("HELLO");
    c.send("SLOW\r\nPING\r\nSLOW\r\nPING\r\n");
    expect([await c.line(), await c.line(), await c.line(), await c.line()]).toEqual([
      "SLOW done",
      "PONG false",
      "SLOW done",
      "PONG false",
    ]);
    c.sock.destroy();
  });

  test("backpressure: a large stream to a slow reader arrives complete", async () => {
    const c = await LineClient.connect(bound.port);
    expect(await c.line()).toBe("HELLO");
    c.sock.pause(); // the reader stalls: the server must wait in drained(), not buffer 8 MB
    c.send("BIG 8000000\r\n");
    await Bun.sleep(100);
    c.sock.resume();
    const body = await c.line();
    expect(body.length).toBe(8_000_000);
    expect(await c.line()).toBe("END");
    c.sock.destroy();
  });
});

describe("wire listen: TLS, limits, timeouts, shutdown", () => {
  test("implicit TLS: secure from the first byte", async () => {
    const bound = await listen(options({ tlsMode: "implicit" }), testSession);
    try {
      const c = await LineClient.connect(bound.port, true);
      expect(await c.line()).toBe("HELLO");
      c.send("PING\r\nSTARTTLS\r\n");
      expect(await c.line()).toBe("PONG true");
      expect(await c.line()).toBe("OK go ahead"); // the session tried; the wire refused
      c.sock.destroy();
    } finally {
      await bound.close(50);
    }
  });

  test("connectionsPerIp: the extra connection gets the protocol's refusal", async () => {
    const bound = await listen(
      options({ connectionsPerIp: 1, onRejected: (_c, why) => `BUSY ${why}\r\n` }),
      testSession,
    );
    try {
      const a = await LineClient.connect(bound.port);
      expect(await a.line()).toBe("HELLO");
      const b = await LineClient.connect(bound.port);
      expect(await b.line()).toBe("BUSY per_ip");
      await b.untilClosed();
      expect(bound.connections()).toBe(1);
      a.sock.destroy();
    } finally {
      await bound.close(50);
    }
  });

  test("idle timeout closes a silent connection with reason timeout", async () => {
    const bound = await listen(options({ idleTimeoutMs: 150 }), testSession);
    try {
      const c = await LineClient.connect(bound.port);
      expect(await c.line()).toBe("HELLO");
      c.send("ID\r\n");
      const id = (await c.line()).slice(3);
      await c.untilClosed();
      expect(seen.get(id)?.closed).toBe("timeout");
    } finally {
      await bound.close(50);
    }
  });

  test("close(grace) asks sessions to finish, then stops", async () => {
    const bound = await listen(options({}), testSession);
    const c = await LineClient.connect(bound.port);
    expect(await c.line()).toBe("HELLO");
    expect(bound.connections()).toBe(1);
    await bound.close(1000);
    expect(await c.line()).toBe("SHUTDOWN");
    await c.untilClosed();
    expect(bound.connections()).toBe(0);
    // No longer accepting.
    const refused = await new Promise<boolean>((resolve) => {
      const s = net.connect(bound.port, "127.0.0.1");
      s.on("error", () => resolve(true));
      s.on("connect", () => {
        s.destroy();
        resolve(false);
      });
    });
    expect(refused).toBe(true);
  });
});
