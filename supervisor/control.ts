// The control socket: how the command line asks a running server to do what only the server
// may do (it owns the store's page file), such as importing a mailbox. A Unix socket in the run
// directory, mode 0600, so only the server's own user (or root) can use it. One request per
// connection, one JSON line; the answer is JSON lines: progress, then exactly one of
// {"done": …} or {"error": {code, message}}. A client that hangs up cancels its request.
import { chmodSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Socket, UnixSocketListener } from "bun";
import type { Logger } from "../log/mod.ts";
import { StoreError } from "../ipc/store-api.ts";

export const CONTROL_SOCKET = "control.sock";
/** A request line longer than this is refused (requests are a few paths and names). */
const MAX_REQUEST_BYTES = 64 * 1024;
/** A connection that has not sent its whole request by then is closed. */
const REQUEST_TIMEOUT_SECONDS = 30;

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
}

export class ControlServer {
  #listener: UnixSocketListener<ConnState> | null = null;
  readonly #path: string;

  constructor(
    runDir: string,
    private readonly handlers: Record<string, ControlHandler>,
    private readonly log: Logger,
  ) {
    this.#path = join(runDir, CONTROL_SOCKET);
  }

  /** Listens; a failure (a path too long for a Unix socket) leaves the server without it. */
  start(): void {
    // We hold the run lock: a socket file left here is a dead server's.
    rmSync(this.#path, { force: true });
    try {
      this.#listener = Bun.listen<ConnState>({
        unix: this.#path,
        socket: {
          open: (s) => {
            s.data = { buffered: "", started: false, gone: false };
            s.timeout(REQUEST_TIMEOUT_SECONDS);
          },
          timeout: (s) => {
            if (!s.data.started) s.end();
          },
          data: (s, chunk) => this.#received(s, chunk),
          close: (s) => {
            if (s.data) s.data.gone = true;
          },
          error: (s) => {
            if (s.data) s.data.gone = true;
          },
        },
      });
      chmodSync(this.#path, 0o600);
    } catch (err) {
      this.log.warn("control.unavailable", { path: this.#path, error: err as Error });
      this.#listener?.stop(true);
      this.#listener = null;
    }
  }

  stop(): void {
    this.#listener?.stop(true);
    this.#listener = null;
    rmSync(this.#path, { force: true });
  }

  #received(s: Socket<ConnState>, chunk: Uint8Array): void {
    const st = s.data;
    if (st.started) return; // one request per connection: anything after it is ignored
    st.buffered += Buffer.from(chunk).toString("utf8");
    const eol = st.buffered.indexOf("\n");
    if (eol < 0) {
      if (st.buffered.length > MAX_REQUEST_BYTES) {
        this.#finish(s, { error: { code: "invalid", message: "request too long" } });
      }
      return;
    }
    st.started = true;
    s.timeout(0); // the work may take long; the client hanging up is what ends it
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
      progress: (value) => this.#send(s, { progress: value }),
      get gone() {
        return st.gone;
      },
    };
    handler(request, reply).then(
      (done) => this.#finish(s, { done: done ?? null }),
      (err) => {
        const e = err instanceof StoreError
          ? err
          : new StoreError("internal", err instanceof Error ? err.message : String(err));
        this.log.info("control.failed", { op, code: e.code, error: e.message });
        this.#finish(s, { error: { code: e.code, message: e.message } });
      },
    );
  }

  #send(s: Socket<ConnState>, line: unknown): void {
    if (!s.data.gone) s.write(JSON.stringify(line) + "\n");
  }

  #finish(s: Socket<ConnState>, line: unknown): void {
    this.#send(s, line);
    s.end();
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
