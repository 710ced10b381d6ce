// Test harness for the POP3 engine: a server on ephemeral ports over the in-memory store (or
// any StoreService), plus helpers to run Python's poplib and curl against it.
import type { BoundListener, TlsMaterial } from "../../protocols/engine.ts";
import { createDirectStoreClient, type StoreService } from "../../ipc/store-client.ts";
import { memoryLogger } from "../../log/mod.ts";
import { Metabase, type MetabaseInput } from "../../metabase/schema.ts";
import { pop3Engine } from "../../protocols/pop3/mod.ts";
import { generateSelfSigned } from "../../protocols/wire/mod.ts";

let material: TlsMaterial | null = null;
export function testTls(): TlsMaterial {
  return material ??= generateSelfSigned("localhost");
}

export interface TestServer {
  port: number; // plaintext + STLS
  tlsPort: number; // implicit TLS (pop3s)
  log: ReturnType<typeof memoryLogger>;
  config: Metabase;
  close(): Promise<void>;
}

export async function startPop3(
  service: StoreService,
  over: { auth?: MetabaseInput["auth"]; limits?: MetabaseInput["limits"] } = {},
): Promise<TestServer> {
  const config = Metabase.parse({
    auth: { plaintext: "tls-or-loopback", failureDelayMs: 20, ...over.auth },
    limits: over.limits ?? {},
    pop3: {
      listeners: [
        { name: "pop3", port: 0, tls: "starttls" },
        { name: "pop3s", port: 0, tls: "implicit" },
      ],
    },
  });
  const log = memoryLogger("pop3-test");
  const store = createDirectStoreClient(service, "pop3-test");
  const ctx = {
    config: () => config,
    tls: testTls,
    store,
    log,
    workerIndex: 0,
  };
  const bound: BoundListener[] = [];
  for (const l of config.pop3.listeners) bound.push(await pop3Engine.listen(l, ctx));
  return {
    port: bound[0]!.port,
    tlsPort: bound[1]!.port,
    log,
    config,
    async close() {
      await Promise.all(bound.map((b) => b.close(200)));
      store.close();
    },
  };
}

/** Runs a Python script (poplib) and returns its stdout; fails the test on a non-zero exit. */
export async function python(script: string, env: Record<string, string> = {}): Promise<string> {
  const proc = Bun.spawn(["python3", "-c", script], {
    env: { ...process.env, ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, errText, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  if (code !== 0) throw new Error(`python exited ${code}: ${errText}\n${out}`);
  return out;
}

export async function curl(
  args: string[],
): Promise<{ code: number; stdout: Uint8Array; stderr: string }> {
  const proc = Bun.spawn(["curl", "-s", "-S", "--max-time", "30", ...args], {
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, errText, code] = await Promise.all([
    new Response(proc.stdout).bytes(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, stdout: out, stderr: errText };
}

/** A raw line client for the protocol-level tests (bad input, pipelining, drops). */
export class RawClient {
  #buf = "";
  #waiters: (() => void)[] = [];
  closed = false;
  socket!: import("bun").Socket<undefined>;

  static async connect(port: number): Promise<RawClient> {
    const c = new RawClient();
    c.socket = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        data: (_s, d) => {
          c.#buf += Buffer.from(d).toString("latin1");
          for (const w of c.#waiters.splice(0)) w();
        },
        close: () => {
          c.closed = true;
          for (const w of c.#waiters.splice(0)) w();
        },
        error: () => {},
      },
    });
    return c;
  }

  send(s: string): void {
    this.socket.write(s);
  }

  async line(): Promise<string> {
    for (;;) {
      const i = this.#buf.indexOf("\r\n");
      if (i >= 0) {
        const l = this.#buf.slice(0, i);
        this.#buf = this.#buf.slice(i + 2);
        return l;
      }
      if (this.closed) return "<closed>";
      await new Promise<void>((r) => this.#waiters.push(r));
    }
  }

  /** Lines of a multi-line reply after its status line, up to and excluding ".". */
  async multiline(): Promise<string[]> {
    const out: string[] = [];
    for (let l = await this.line(); l !== "."; l = await this.line()) {
      if (l === "<closed>") throw new Error("closed inside a multi-line reply");
      out.push(l);
    }
    return out;
  }

  async command(s: string): Promise<string> {
    this.send(s + "\r\n");
    return await this.line();
  }

  async untilClosed(): Promise<void> {
    while (!this.closed) await new Promise<void>((r) => this.#waiters.push(r));
  }

  end(): void {
    this.socket.end();
  }
}
