// Drives an SmtpSession without a network: a fake Connection that records what the session
// writes, and a tiny client that sends lines and reads complete replies.
import { type LogRecord, memoryLogger } from "../../log/mod.ts";
import { Metabase, type MetabaseInput, SmtpConnector } from "../../metabase/schema.ts";
import type { CloseReason, Connection, Session } from "../../protocols/wire/mod.ts";
import { SmtpSession } from "../../protocols/smtp/mod.ts";
import { MemoryStore } from "./memory-store.ts";

export class FakeConnection implements Connection {
  readonly id = "smtp-test-1";
  remoteAddress = "192.0.2.10";
  readonly remotePort = 40000;
  readonly localAddress = "127.0.0.1";
  readonly localPort = 25;
  readonly listenerName = "test";
  secure = false;
  loopback = false;
  out = "";
  closed = false;
  paused = false;
  tlsUpgrades = 0;
  session: Session | null = null;

  write(data: string | Uint8Array): void {
    if (this.closed) return;
    this.out += typeof data === "string" ? data : Buffer.from(data).toString("latin1");
  }
  async drained(): Promise<void> {}
  async startTls(): Promise<void> {
    this.tlsUpgrades++;
    this.secure = true;
  }
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
  }
  close(): void {
    if (this.closed) return;
    this.closed = true;
    queueMicrotask(() => this.session?.onClose("local" as CloseReason));
  }
}

export interface Reply {
  code: number;
  lines: string[];
  /** The whole reply text, lines joined by "\n". */
  text: string;
}

export interface SessionSetup {
  connector?: Partial<SmtpConnector> & Record<string, unknown>;
  metabase?: MetabaseInput;
  remoteAddress?: string;
  loopback?: boolean;
  secure?: boolean;
  store?: MemoryStore;
}

export class TestClient {
  #cursor = 0;
  constructor(
    readonly conn: FakeConnection,
    readonly session: SmtpSession,
    readonly store: MemoryStore,
    readonly logs: LogRecord[],
  ) {}

  /** Strings are sent as Latin-1 (one byte per character) unless told otherwise. */
  send(data: string | Uint8Array, encoding: "latin1" | "utf8" = "latin1"): void {
    this.session.onData(typeof data === "string" ? Buffer.from(data, encoding) : data);
  }

  /** Sends a command line and returns its reply. */
  async cmd(line: string, encoding: "latin1" | "utf8" = "latin1"): Promise<Reply> {
    this.send(line + "\r\n", encoding);
    return await this.reply();
  }

  /** The next complete reply the session wrote; fails the test if none comes. */
  async reply(): Promise<Reply> {
    for (let i = 0; i < 2000; i++) {
      const r = this.#take();
      if (r) return r;
      if (this.conn.closed && i > 5) break;
      await Bun.sleep(1);
    }
    throw new Error(`no complete reply; output after cursor: ${JSON.stringify(this.pending())}`);
  }

  /** Output not yet consumed by reply(). */
  pending(): string {
    return this.conn.out.slice(this.#cursor);
  }

  #take(): Reply | null {
    const rest = this.conn.out.slice(this.#cursor);
    const lines: string[] = [];
    let at = 0;
    for (;;) {
      const end = rest.indexOf("\r\n", at);
      if (end < 0) return null;
      const line = rest.slice(at, end);
      at = end + 2;
      lines.push(line);
      if (/^\d{3}( |$)/.test(line)) {
        this.#cursor += at;
        return {
          code: Number(line.slice(0, 3)),
          lines: lines.map((l) => l.slice(4)),
          text: lines.map((l) => l.slice(4)).join("\n"),
        };
      }
    }
  }

  /** Waits until the session has closed the connection. */
  async closed(): Promise<void> {
    for (let i = 0; i < 2000 && !this.conn.closed; i++) await Bun.sleep(1);
    if (!this.conn.closed) throw new Error("connection still open");
  }
}

export function testMetabase(input: MetabaseInput = {}): Metabase {
  return Metabase.parse({
    server: { hostname: "mx.test" },
    domains: [{ name: "example.com" }],
    ...input,
    auth: { failureDelayMs: 0, ...input.auth },
  });
}

/** A session on a fake connection, greeted; the greeting is already consumed. */
export async function openSession(setup: SessionSetup = {}): Promise<TestClient> {
  const store = setup.store ?? new MemoryStore();
  const log = memoryLogger("smtp");
  const conn = new FakeConnection();
  if (setup.remoteAddress) conn.remoteAddress = setup.remoteAddress;
  conn.loopback = setup.loopback ?? false;
  conn.secure = setup.secure ?? false;
  const connector = SmtpConnector.parse({ name: "test", port: 0, ...setup.connector });
  const session = new SmtpSession(conn, {
    connector,
    config: testMetabase(setup.metabase),
    store: store.client(),
    log,
  });
  conn.session = session;
  const client = new TestClient(conn, session, store, log.records);
  const greeting = await client.reply();
  if (greeting.code !== 220) throw new Error(`bad greeting ${greeting.text}`);
  return client;
}
