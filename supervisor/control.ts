// The control socket: how the command line asks a running server to do what only the server
// may do (it owns the store's page file), such as importing a mailbox. A Unix socket in the run
// directory, mode 0600, so only the server's own user (or root) can use it. One request per
// connection, one JSON line; the answer is JSON lines: progress, then exactly one of
// {"done": …} or {"error": {code, message}}. A client that hangs up cancels its request.
import { chmodSync, mkdtempSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Socket, UnixSocketListener } from "bun";
import type { Logger } from "../log/mod.ts";
import { StoreError } from "../ipc/store-api.ts";
import { toStoreError } from "../ipc/errors.ts";

export const CONTROL_SOCKET = "control.sock";
/** A request line longer than this is refused (requests are a few paths and names). */
const MAX_REQUEST_BYTES = 64 * 1024;
/** A connection that has not sent its whole request by then is closed (however it trickles),
 * and so is one whose answer has waited that long for the client to read it. */
const REQUEST_TIMEOUT_MS = 30_000;
const encoder = new TextEncoder();

/** What a request handler may send back: progress lines as it goes. */
export interface ControlReply {
  progress(value: unknown): void;
  /** True once the client has hung up: stop the work. */
  readonly gone: boolean;
}

export type ControlHandler = (request: Record<string, unknown>, reply: ControlReply) => Promise<
  unknown
>;

interface ConnState {
  buffered: string;
  started: boolean;
  gone: boolean;
  /** Bytes the socket did not take yet (Bun's write does not buffer: it says how much went). */
  unsent: Uint8Array | null;
  /** The answer is queued: close once it has gone. */
  ending: boolean;
  deadline: ReturnType<typeof setTimeout> | null;
}

export class ControlServer {
  #listener: UnixSocketListener<ConnState> | null = null;
  readonly #path: string;
  readonly #runDir: string;

  constructor(
    runDir: string,
    private readonly handlers: Record<string, ControlHandler>,
    private readonly log: Logger,
    private readonly requestTimeoutMs = REQUEST_TIMEOUT_MS,
  ) {
    this.#runDir = runDir;
    this.#path = join(runDir, CONTROL_SOCKET);
  }

  /** Listens; a failure (a path too long for a Unix socket) leaves the server without it. */
  start(): void {
    // We hold the run lock: a socket file left here is a dead server's.
    rmSync(this.#path, { force: true });
    // Bound where only we can reach it, made 0600 there, then renamed into place. Bound at
    // its final path and chmod-ed after, it would take connections from anyone the umask
    // let in until the chmod (the kernel checks the mode at connect() and queues the
    // connection); and a chmod by path could be sent through a symlink planted meanwhile.
    let privateDir: string | null = null;
    try {
      privateDir = mkdtempSync(join(this.#runDir, ".c")); // mode 0700, whatever the umask
      const bound = join(privateDir, "s"); // short: a Unix socket path has ~107 bytes
      this.#listener = Bun.listen<ConnState>({
        unix: bound,
        socket: {
          open: (s) => {
            const st: ConnState = {
              buffered: "",
              started: false,
              gone: false,
              unsent: null,
              ending: false,
              deadline: null,
            };
            s.data = st;
            // A deadline, not an idle timeout: a request trickled a byte at a time ends too.
            st.deadline = setTimeout(() => {
              if (!st.started) s.end();
            }, this.requestTimeoutMs);
          },
          timeout: (s) => {
            if (s.data.ending) s.terminate(); // the client never read its answer
          },
          data: (s, chunk) => this.#received(s, chunk),
          drain: (s) => this.#flush(s),
          close: (s) => this.#gone(s),
          error: (s) => this.#gone(s),
        },
      });
      chmodSync(bound, 0o600);
      renameSync(bound, this.#path); // atomic; replaces whatever is there, never follows it
    } catch (err) {
      this.log.warn("control.unavailable", { path: this.#path, error: err as Error });
      this.#listener?.stop(true);
      this.#listener = null;
    } finally {
      if (privateDir) rmSync(privateDir, { recursive: true, force: true });
    }
  }

  #gone(s: Socket<ConnState>): void {
    const st = s.data;
    if (!st) return;
    st.gone = true;
    st.unsent = null;
    if (st.deadline) clearTimeout(st.deadline);
    st.deadline = null;
  }

  stop(): void {
    this.#listener?.stop(true);
    this.#listener = null;
    rmSync(this.#path, { force: true });
  }

  #received(s: Socket<ConnState>, chunk: Uint8Array): void {
    const st = s.data;
    // One request per connection: anything after it (or after a refusal) is ignored.
    if (st.started || st.ending) return;
    st.buffered += Buffer.from(chunk).toString("utf8");
    const eol = st.buffered.indexOf("\n");
    // However it arrives (in one chunk or many), a longer line is refused.
    if ((eol < 0 ? st.buffered.length : eol) > MAX_REQUEST_BYTES) {
      return this.#finish(s, { error: { code: "invalid", message: "request too long" } });
    }
    if (eol < 0) return;
    st.started = true; // the work may take long; the client hanging up is what ends it
    if (st.deadline) clearTimeout(st.deadline);
    st.deadline = null;
    let request: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(st.buffered.slice(0, eol));
      if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
        throw new Error("not an object");
      }
      request = parsed as Record<string, unknown>;
    } catch {
      return this.#finish(s, { error: { code: "invalid", message: "request is not JSON" } });
    }
    const op = String(request.op ?? "");
    const handler = Object.hasOwn(this.handlers, op) ? this.handlers[op] : undefined;
    if (!handler) {
      return this.#finish(s, { error: { code: "invalid", message: `unknown request ${op}` } });
    }
    this.log.info("control.request", { op });
    const reply: ControlReply = {
      progress: (value) => this.#send(s, { progress: value }, true),
      get gone() {
        return st.gone;
      },
    };
    handler(request, reply).then(
      (done) => this.#finish(s, { done: done ?? null }),
      (err) => {
        const e = toStoreError(err);
        this.log.info("control.failed", { op, code: e.code, error: e.message });
        this.#finish(s, { error: { code: e.code, message: e.message } });
      },
    );
  }

  /**
   * Sends one JSON line whole or not at all: Bun's write takes what fits in the socket and
   * drops the rest, so what it did not take waits for drain. While it waits, progress is
   * skipped (a later line says more), so a client that stops reading costs one line of memory.
   */
  #send(s: Socket<ConnState>, line: unknown, skippable = false): void {
    const st = s.data;
    if (st.gone || st.ending) return;
    const bytes = encoder.encode(JSON.stringify(line) + "\n");
    if (st.unsent) {
      if (skippable) return;
      st.unsent = Buffer.concat([st.unsent, bytes]);
      return;
    }
    const n = s.write(bytes);
    if (n < 0) st.gone = true;
    else if (n < bytes.length) st.unsent = bytes.subarray(n);
  }

  #flush(s: Socket<ConnState>): void {
    const st = s.data;
    if (st.unsent && !st.gone) {
      const n = s.write(st.unsent);
      if (n < 0) st.gone = true;
      st.unsent = n >= 0 && n < st.unsent.length ? st.unsent.subarray(n) : null;
    }
    if (!st.unsent && st.ending) s.end();
  }

  #finish(s: Socket<ConnState>, line: unknown): void {
    this.#send(s, line);
    s.data.ending = true;
    if (s.data.unsent) s.timeout(Math.ceil(this.requestTimeoutMs / 1000));
    else s.end();
  }
}

/**
 * The command line's side: sends one request to the server of `runDir` and hands each progress
 * value to `onProgress`; resolves with the final "done" value, rejects with a StoreError.
 * Null when no server listens there (not running, or running without a control socket).
 */
export async function controlRequest(
  runDir: string,
  request: Record<string, unknown>,
  onProgress: (value: unknown) => void,
): Promise<{ done: unknown } | null> {
  let settle!: (v: { done: unknown } | null) => void;
  let fail!: (e: unknown) => void;
  const result = new Promise<{ done: unknown } | null>((res, rej) => {
    settle = res;
    fail = rej;
  });
  let buffered = "";
  let answered = false;
  const onLine = (line: string) => {
    let msg: { progress?: unknown; done?: unknown; error?: { code?: string; message?: string } };
    try {
      msg = JSON.parse(line);
    } catch {
      return fail(new StoreError("internal", "bad answer from the server"));
    }
    if ("progress" in msg) return onProgress(msg.progress);
    answered = true;
    if (msg.error) {
      const code = (msg.error.code ?? "internal") as StoreError["code"];
      fail(new StoreError(code, msg.error.message ?? "the server refused the request"));
    } else settle({ done: msg.done });
  };
  try {
    await Bun.connect({
      unix: join(runDir, CONTROL_SOCKET),
      socket: {
        open: (s) => void s.write(JSON.stringify(request) + "\n"),
        data: (_s, chunk) => {
          buffered += Buffer.from(chunk).toString("utf8");
          for (let eol = buffered.indexOf("\n"); eol >= 0; eol = buffered.indexOf("\n")) {
            onLine(buffered.slice(0, eol));
            buffered = buffered.slice(eol + 1);
          }
        },
        close: () => {
          if (!answered) fail(new StoreError("unavailable", "the server closed the connection"));
        },
        error: (_s, err) => fail(err),
      },
    });
  } catch {
    return null; // nobody listens: the caller falls back or says the server must run
  }
  return await result;
}
