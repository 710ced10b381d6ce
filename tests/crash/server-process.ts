// `posthorn serve` as a child process, the way users run it: started from source with Bun,
// ready when it prints a line starting with "ready", its bound ports read from run/status.json.
// Every process started here is remembered so a failing test can still kill them all.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { BUN, ROOT } from "../helpers.ts";

const started = new Set<ServerProcess>();

/** Kills every server this module started that is still running (for afterAll / finally). */
export async function killAllServers(): Promise<void> {
  for (const s of [...started]) await s.kill();
}

/** Keeps the last `max` characters of a stream, for the failure message. */
class Tail {
  text = "";
  constructor(private readonly max = 16_000) {}
  push(s: string): void {
    this.text = (this.text + s).slice(-this.max);
  }
}

export interface ListenerPorts {
  [listener: string]: number;
}

export class ServerProcess {
  readonly proc: Bun.Subprocess<"ignore", "pipe", "pipe">;
  readonly stdout = new Tail();
  readonly stderr = new Tail();
  readonly #readyLine: Promise<string>;
  #ready = false;

  private constructor(readonly metabaseFile: string, readonly dataDir: string) {
    this.proc = Bun.spawn([BUN, join(ROOT, "main.ts"), "serve", "--metabase", metabaseFile], {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, BUN_RUNTIME_TRANSPILER_CACHE_PATH: "0" },
    });
    started.add(this);
    void this.proc.exited.then(() => started.delete(this));
    this.#readyLine = this.#watchStdout();
    this.#readyLine.catch(() => {}); // a server killed on purpose before ready is no failure
    void this.#drain(this.proc.stderr, this.stderr);
  }

  get pid(): number {
    return this.proc.pid;
  }

  /** Starts the server without waiting for it (to kill it while it starts up). */
  static spawn(metabaseFile: string, dataDir: string): ServerProcess {
    return new ServerProcess(metabaseFile, dataDir);
  }

  /** Whether the "ready" line has been printed yet. */
  get isReady(): boolean {
    return this.#ready;
  }

  /** Sends a signal without waiting (SIGTERM to begin a clean stop). */
  signal(sig: "SIGTERM" | "SIGKILL"): void {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill(sig);
  }

  /** Starts the server and waits for its "ready" line; throws (after killing it) otherwise. */
  static async start(
    metabaseFile: string,
    dataDir: string,
    timeoutMs = 30_000,
  ): Promise<ServerProcess> {
    const s = new ServerProcess(metabaseFile, dataDir);
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        s.#readyLine,
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`no "ready" line within ${timeoutMs} ms`)),
            timeoutMs,
          );
        }),
      ]);
    } catch (err) {
      await s.kill();
      throw new Error(
        `posthorn serve did not become ready: ${(err as Error).message}\n` +
          `--- stdout ---\n${s.stdout.text}\n--- stderr ---\n${s.stderr.text}`,
      );
    } finally {
      clearTimeout(timer);
    }
    return s;
  }

  /** The ports each listener bound, by listener name, from DIR/run/status.json. */
  ports(): ListenerPorts {
    const status = JSON.parse(readFileSync(join(this.dataDir, "run", "status.json"), "utf8")) as {
      pid: number;
      listeners: { name: string; boundPort: number | null }[];
    };
    if (status.pid !== this.pid) {
      throw new Error(`status.json belongs to pid ${status.pid}, not to ${this.pid}`);
    }
    const out: ListenerPorts = {};
    for (const l of status.listeners) if (l.boundPort !== null) out[l.name] = l.boundPort;
    return out;
  }

  /** SIGKILL: the whole process, its worker threads with it; waits until it is reaped. */
  async kill(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill("SIGKILL");
    }
    await this.proc.exited;
  }

  /** SIGTERM, then waits for a clean exit; returns the exit code (SIGKILL after `graceMs`). */
  async stop(graceMs = 20_000): Promise<number | null> {
    this.proc.kill("SIGTERM");
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), graceMs);
    try {
      await this.proc.exited;
    } finally {
      clearTimeout(timer);
    }
    // Let the pipes drain so "stopped" is in the tail.
    await Bun.sleep(20);
    return this.proc.exitCode;
  }

  async #watchStdout(): Promise<string> {
    const decoder = new TextDecoder();
    let pending = "";
    let resolveReady!: (line: string) => void;
    let rejectReady!: (err: Error) => void;
    const promise = new Promise<string>((res, rej) => {
      resolveReady = res;
      rejectReady = rej;
    });
    void (async () => {
      for await (const chunk of this.proc.stdout) {
        const text = decoder.decode(chunk, { stream: true });
        this.stdout.push(text);
        if (this.#ready) continue;
        pending += text;
        const line = pending.split("\n").find((l) => l.startsWith("ready"));
        if (line !== undefined && pending.includes(line + "\n")) {
          this.#ready = true;
          resolveReady(line);
        }
      }
      if (!this.#ready) {
        rejectReady(new Error(`exited (code ${await this.proc.exited}) before "ready"`));
      }
    })();
    return await promise;
  }

  async #drain(stream: ReadableStream<Uint8Array>, into: Tail): Promise<void> {
    const decoder = new TextDecoder();
    for await (const chunk of stream) into.push(decoder.decode(chunk, { stream: true }));
  }
}
