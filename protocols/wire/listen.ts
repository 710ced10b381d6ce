// The socket side of every TCP engine: binds a listener with Bun.listen (reusePort, so a pool of
// workers shares the port), enforces connection limits and the idle timeout, buffers writes
// with backpressure, pauses reading on request, upgrades to TLS (STARTTLS/STLS, implicit TLS),
// and shuts down gracefully. Sessions only ever see `Connection` (types.ts).
import type { Socket, TCPSocketListener, TCPSocketListenOptions } from "bun";
import type { BoundListener, TlsMaterial } from "../engine.ts";
import type { Logger } from "../../log/mod.ts";
import { isLoopbackAddress } from "./auth-policy.ts";
import { BufferPool } from "./buffer-pool.ts";
import type { CloseReason, Connection, Session, SessionFactory, TlsInfo } from "./types.ts";

export interface WireListenerConfig {
  name: string;
  bind: string;
  port: number;
  tls: "none" | "starttls" | "implicit";
}

export type RejectReason = "max_connections" | "per_ip";

export interface ListenOptions {
  listener: WireListenerConfig;
  /** Called at bind time (implicit TLS) and on each STARTTLS, so a renewed certificate applies. */
  tls: () => TlsMaterial;
  /** Close a connection after this long with no byte read or written. */
  idleTimeoutMs: number;
  /** Connections open at once on this listener (in this worker). */
  maxConnections: number;
  connectionsPerIp: number;
  log: Logger;
  /** The protocol's "too many connections" greeting, sent before closing a refused peer. */
  onRejected?: (conn: Connection, reason: RejectReason) => string;
  /**
   * Bytes a connection may buffer in each direction before backpressure: writes above it make
   * `drained()` wait; reads arriving while paused above it close the connection (the peer
   * ignored flow control). Default 256 KiB (metabase limits.connectionBufferBytes).
   */
  bufferBytes?: number;
  /** Prefix of connection ids for logs, e.g. "pop3-0" → "pop3-0-17". Default: listener name. */
  idPrefix?: string;
}

const DEFAULT_BUFFER_BYTES = 256 * 1024;
/**
 * Output is copied into slabs of this size, taken from and returned to a per-worker pool: small
 * replies written in a row share one slab (one syscall), and a large reply copied out of the
 * ipc heap costs no fresh allocation (a fresh large buffer costs page faults and GC work).
 */
const SLAB_BYTES = 128 * 1024;
/** Free slabs kept for reuse by this worker's connections; more go to the GC. */
const SLAB_POOL_MAX = 16;
/** A caller's own (non-shared) array at least this large is queued as it is, not copied. */
const ADOPT_BYTES = 16 * 1024;
/** When the kernel pushes back, a slab holding less than this is swapped for an exact copy, so
 * a peer that stops reading holds its pending bytes, not a mostly empty slab. */
const SLAB_KEEP_BYTES = SLAB_BYTES / 8;
/** After close(), a peer that never lets the FIN through is cut off after this long. */
const CLOSE_FALLBACK_MS = 10_000;

const encoder = new TextEncoder();

const slabs = new BufferPool(SLAB_BYTES, SLAB_POOL_MAX);

/** Queued output: bytes[start, end) still to go; `slab` marks a pooled buffer we may append to. */
interface OutSegment {
  bytes: Uint8Array;
  start: number;
  end: number;
  slab: boolean;
}

type State = WireConnection;

/** Bind `opts.listener` and run `factory` for every accepted connection. */
export async function listen(opts: ListenOptions, factory: SessionFactory): Promise<BoundListener> {
  const { listener, log } = opts;
  const live = new Set<WireConnection>();
  const perIp = new Map<string, number>();
  let seq = 0;
  let stopping = false;
  const idPrefix = opts.idPrefix ?? listener.name;
  const bufferBytes = opts.bufferBytes ?? DEFAULT_BUFFER_BYTES;

  const release = (c: WireConnection) => {
    if (!live.delete(c)) return;
    const n = (perIp.get(c.remoteAddress) ?? 1) - 1;
    if (n <= 0) perIp.delete(c.remoteAddress);
    else perIp.set(c.remoteAddress, n);
  };

  const handlers = {
    open(socket: Socket<State>) {
      try {
        const conn = new WireConnection(
          socket,
          `${idPrefix}-${++seq}`,
          listener,
          opts,
          bufferBytes,
          release,
        );
        socket.data = conn;
        let reason: RejectReason | null = null;
        if (stopping) reason = "max_connections";
        else if (live.size >= opts.maxConnections) reason = "max_connections";
        else if ((perIp.get(conn.remoteAddress) ?? 0) >= opts.connectionsPerIp) reason = "per_ip";
        if (reason) {
          log.warn("connection.rejected", {
            conn: conn.id,
            remote: conn.remoteAddress,
            reason,
            listener: listener.name,
          });
          conn.reject(opts.onRejected?.(conn, reason) ?? "");
          return;
        }
        live.add(conn);
        perIp.set(conn.remoteAddress, (perIp.get(conn.remoteAddress) ?? 0) + 1);
        log.debug("connection.open", {
          conn: conn.id,
          remote: conn.remoteAddress,
          port: conn.remotePort,
        });
        conn.attach(factory);
      } catch (err) {
        log.error("connection.open_failed", { error: err as Error });
        try {
          socket.terminate();
        } catch { /* already gone */ }
      }
    },
    data(socket: Socket<State>, data: Uint8Array) {
      const conn = socket.data;
      // After STARTTLS the original handlers keep firing for the raw socket with ciphertext.
      if (!conn || conn.socket !== socket) return;
      conn.received(data);
    },
    drain(socket: Socket<State>) {
      const conn = socket.data;
      if (!conn || conn.socket !== socket) return;
      conn.flush();
    },
    end(socket: Socket<State>) {
      const conn = socket.data;
      if (!conn || conn.socket !== socket) return;
      conn.peerEnded();
    },
    close(socket: Socket<State>, error?: Error) {
      const conn = socket.data;
      if (!conn || conn.socket !== socket) return;
      conn.closed(error ? "error" : undefined, error);
    },
    error(socket: Socket<State>, error: Error) {
      // Without this handler one bad connection would take the whole worker down.
      const conn = socket.data;
      log.warn("connection.error", { conn: conn?.id, error });
      if (conn && conn.socket === socket) conn.abort("error");
    },
  };

  let server: TCPSocketListener<State>;
  try {
    const options: TCPSocketListenOptions<State> & { reusePort: boolean } = {
      hostname: listener.bind,
      port: listener.port,
      reusePort: true, // a pool of workers shares the port (DESIGN.md); missing from the types
      ...(listener.tls === "implicit" ? { tls: toBunTls(opts.tls()) } : {}),
      socket: handlers,
    };
    server = Bun.listen<State>(options);
  } catch (err) {
    log.error("listener.bind_failed", {
      listener: listener.name,
      bind: listener.bind,
      port: listener.port,
      error: err as Error,
    });
    throw err;
  }
  log.info("listener.started", {
    listener: listener.name,
    bind: listener.bind,
    port: server.port,
    tls: listener.tls,
  });

  let closing: Promise<void> | null = null;
  return {
    port: server.port,
    connections: () => live.size,
    close(graceMs: number) {
      closing ??= (async () => {
        stopping = true;
        server.stop(false); // stop accepting; sessions carry on
        for (const c of [...live]) c.shutdown();
        const deadline = Date.now() + Math.max(0, graceMs);
        while (live.size > 0 && Date.now() < deadline) {
          await Bun.sleep(Math.min(25, Math.max(1, deadline - Date.now())));
        }
        for (const c of [...live]) c.abort("shutdown");
        server.stop(true);
        log.info("listener.stopped", { listener: listener.name, port: server.port });
      })();
      return closing;
    },
  };
}

function toBunTls(m: TlsMaterial) {
  return { key: m.key, cert: m.cert };
}

/** One accepted TCP connection, plain or TLS: the `Connection` a session holds. */
class WireConnection implements Connection {
  readonly id: string;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly localAddress: string;
  readonly localPort: number;
  readonly listenerName: string;
  readonly loopback: boolean;
  secure: boolean;
  /** The socket whose events count: the accepted one, then the TLS one after STARTTLS. */
  socket: Socket<State>;

  #opts: ListenOptions;
  #bufferBytes: number;
  #release: (c: WireConnection) => void;
  #session: Session | null = null;
  #log: Logger;

  #out: OutSegment[] = [];
  #outBytes = 0;
  #flushScheduled = false;
  #drainWaiters: (() => void)[] = [];

  #paused = false;
  /** Reading stopped because the peer is not reading our replies (write buffer over the mark). */
  #throttled = false;
  #in: Uint8Array[] = [];
  #inBytes = 0;
  #delivering = false;

  /** STARTTLS requested: plaintext from now on is discarded. */
  #upgrading = false;
  #closing = false;
  #closeReason: CloseReason | null = null;
  #ended = false;
  #lastActivity = Date.now();
  #idleTimer: ReturnType<typeof setTimeout> | null = null;
  #fallbackTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    socket: Socket<State>,
    id: string,
    listener: WireListenerConfig,
    opts: ListenOptions,
    bufferBytes: number,
    release: (c: WireConnection) => void,
  ) {
    this.socket = socket;
    this.id = id;
    this.remoteAddress = stripMapped(socket.remoteAddress ?? "");
    this.remotePort = socket.remotePort ?? 0;
    this.localAddress = stripMapped(socket.localAddress ?? "");
    this.localPort = socket.localPort ?? 0;
    this.listenerName = listener.name;
    this.loopback = isLoopbackAddress(this.remoteAddress);
    this.secure = listener.tls === "implicit";
    this.#opts = opts;
    this.#bufferBytes = bufferBytes;
    this.#release = release;
    this.#log = opts.log;
  }

  // ------------------------------------------------------------------ life cycle

  attach(factory: SessionFactory): void {
    this.#armIdle();
    try {
      this.#session = factory(this);
    } catch (err) {
      this.#log.error("session.create_failed", { conn: this.id, error: err as Error });
      this.abort("error");
    }
  }

  /** Refused at accept time: send the greeting, close, never create a session. */
  reject(greeting: string): void {
    this.#closeReason = "local";
    if (greeting) this.write(greeting);
    this.close();
  }

  shutdown(): void {
    if (this.#ended) return;
    const s = this.#session;
    if (s?.onShutdown) {
      try {
        s.onShutdown();
      } catch (err) {
        this.#log.error("session.shutdown_failed", { conn: this.id, error: err as Error });
        this.abort("shutdown");
      }
    } else this.abort("shutdown");
  }

  /** Close now, dropping unsent output. */
  abort(reason: CloseReason): void {
    if (this.#ended) return;
    this.#closeReason ??= reason;
    this.#dropOutput();
    try {
      this.socket.terminate();
    } catch { /* already closed */ }
    // Bun fires close() for a terminated socket; do not rely on it for bookkeeping.
    this.closed(reason);
  }

  peerEnded(): void {
    // The peer sent FIN. Its pipelined commands were already delivered; we answer what we can
    // (allowHalfOpen is off, so Bun closes the socket right after).
    this.#closeReason ??= "peer";
  }

  /** The socket is gone: tell the session exactly once. */
  closed(reason?: CloseReason, error?: Error): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#closeReason ??= reason ?? "peer";
    if (this.#idleTimer) clearTimeout(this.#idleTimer);
    if (this.#fallbackTimer) clearTimeout(this.#fallbackTimer);
    this.#dropOutput();
    this.#in = [];
    this.#inBytes = 0;
    for (const w of this.#drainWaiters.splice(0)) w();
    this.#release(this);
    this.#log.debug("connection.closed", {
      conn: this.id,
      reason: this.#closeReason,
      error: error?.message,
    });
    const s = this.#session;
    this.#session = null;
    if (s) {
      try {
        s.onClose(this.#closeReason);
      } catch (err) {
        this.#log.error("session.close_failed", { conn: this.id, error: err as Error });
      }
    }
    this.#tlsSettle?.(new Error("connection closed"));
  }

  #armIdle(): void {
    const ms = this.#opts.idleTimeoutMs;
    if (!(ms > 0) || this.#ended) return;
    const wait = Math.max(1, this.#lastActivity + ms - Date.now());
    this.#idleTimer = setTimeout(() => {
      this.#idleTimer = null;
      if (this.#ended) return;
      if (Date.now() - this.#lastActivity >= ms) {
        this.#log.info("connection.idle_timeout", { conn: this.id, remote: this.remoteAddress });
        this.abort("timeout");
      } else this.#armIdle();
    }, wait);
  }

  // ------------------------------------------------------------------ reading

  received(data: Uint8Array): void {
    if (this.#ended) return;
    this.#lastActivity = Date.now();
    if (this.#upgrading) return; // CVE-2011-0411: plaintext after STARTTLS never reaches the session
    if (this.#paused || this.#delivering || this.#in.length > 0) {
      this.#in.push(data);
      this.#inBytes += data.length;
      if (this.#inBytes > this.#bufferBytes) {
        this.#log.warn("connection.input_overflow", { conn: this.id, bytes: this.#inBytes });
        this.abort("error");
      }
      return;
    }
    this.#deliver(data);
  }

  #deliver(data: Uint8Array): void {
    const s = this.#session;
    if (!s) return;
    this.#delivering = true;
    try {
      s.onData(data);
    } catch (err) {
      // A session bug costs this connection, never the worker.
      this.#log.error("session.data_failed", { conn: this.id, error: err as Error });
      this.abort("error");
    } finally {
      this.#delivering = false;
    }
  }

  pause(): void {
    if (this.#paused || this.#ended) return;
    this.#paused = true;
    try {
      this.socket.pause();
    } catch { /* closed */ }
  }

  resume(): void {
    if (!this.#paused || this.#ended) return;
    this.#paused = false;
    if (!this.#throttled) {
      try {
        this.socket.resume();
      } catch { /* closed */ }
    }
    if (this.#in.length > 0) queueMicrotask(() => this.#drainInput());
  }

  #drainInput(): void {
    while (!this.#paused && !this.#ended && !this.#upgrading && this.#in.length > 0) {
      const chunk = this.#in.shift()!;
      this.#inBytes -= chunk.length;
      this.#deliver(chunk);
    }
  }

  // ------------------------------------------------------------------ writing

  write(data: string | Uint8Array): void {
    if (this.#ended || this.#closing) return; // after close(): nothing more goes out
    if (data.length === 0) return;
    if (typeof data === "string") this.#appendText(data);
    else if (this.#adoptable(data)) {
      // The caller hands a large array over (a stream chunk): queued as it is, no copy.
      this.#out.push({ bytes: data, start: 0, end: data.length, slab: false });
      this.#outBytes += data.length;
    } else {
      // Small replies are gathered for one syscall; views over shared memory (the ipc heap)
      // may be reused once the caller moves on: either way, copied now.
      this.#appendBytes(data);
    }
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      queueMicrotask(() => {
        this.#flushScheduled = false;
        this.flush();
      });
    }
  }

  /**
   * Large, private (not shared memory), and not following a slab still filling: one copy less.
   * Behind a slab with room (a status line just written) it is copied, so both leave in one
   * syscall rather than the status line in a small one of its own.
   */
  #adoptable(data: Uint8Array): boolean {
    if (data.length < ADOPT_BYTES || data.buffer instanceof SharedArrayBuffer) return false;
    const tail = this.#out[this.#out.length - 1];
    return !(tail?.slab && tail.end < tail.bytes.length);
  }

  /** The last queued segment if it is a slab with room, else a fresh one from the pool. */
  #tailSlab(): OutSegment {
    const tail = this.#out[this.#out.length - 1];
    if (tail?.slab && tail.end < tail.bytes.length) return tail;
    const seg = { bytes: slabs.take(), start: 0, end: 0, slab: true };
    this.#out.push(seg);
    return seg;
  }

  #appendBytes(data: Uint8Array): void {
    let from = 0;
    while (from < data.length) {
      const seg = this.#tailSlab();
      const n = Math.min(data.length - from, seg.bytes.length - seg.end);
      seg.bytes.set(
        from === 0 && n === data.length ? data : data.subarray(from, from + n),
        seg.end,
      );
      seg.end += n;
      from += n;
    }
    this.#outBytes += data.length;
  }

  #appendText(text: string): void {
    let rest = text;
    while (rest.length > 0) {
      const seg = this.#tailSlab();
      const { read, written } = encoder.encodeInto(rest, seg.bytes.subarray(seg.end));
      seg.end += written;
      this.#outBytes += written;
      if (read < rest.length) {
        rest = rest.slice(read);
        // No room for even one more character: close this slab so the next loop takes a new one.
        if (written === 0) this.#out.push({ bytes: slabs.take(), start: 0, end: 0, slab: true });
      } else rest = "";
    }
  }

  /** Forget unsent output (the connection is gone); its slabs go back to the pool. */
  #dropOutput(): void {
    for (const seg of this.#out) if (seg.slab) slabs.give(seg.bytes);
    this.#out = [];
    this.#outBytes = 0;
  }

  /** Push queued bytes into the socket until it pushes back; Bun calls drain() to continue. */
  flush(): void {
    if (this.#ended) return;
    while (this.#out.length > 0) {
      const seg = this.#out[0]!;
      const pending = seg.end - seg.start;
      let written: number;
      try {
        written = this.socket.write(seg.bytes, seg.start, pending);
      } catch {
        written = -1;
      }
      if (written < 0) {
        this.abort(this.#closeReason ?? "error");
        return;
      }
      if (written > 0) this.#lastActivity = Date.now();
      this.#outBytes -= written;
      seg.start += written;
      if (written < pending) {
        this.#trimSlabs();
        break; // the kernel buffer is full: Bun calls drain() when it empties
      }
      this.#out.shift();
      if (seg.slab) slabs.give(seg.bytes);
    }
    if (this.#outBytes <= this.#bufferBytes) {
      for (const w of this.#drainWaiters.splice(0)) w();
      if (this.#throttled) {
        this.#throttled = false;
        if (!this.#paused && !this.#upgrading) this.socket.resume();
      }
    } else if (!this.#throttled && !this.#upgrading) {
      // A peer that pipelines commands without reading the replies gets no more reads until
      // it catches up: the write buffer stays bounded whatever it sends.
      this.#throttled = true;
      this.socket.pause();
    }
    if (this.#out.length === 0) {
      for (const w of this.#flushWaiters.splice(0)) w();
      if (this.#closing) this.#finishClose();
    }
  }

  #flushWaiters: (() => void)[] = [];

  /** The peer is not keeping up: nearly empty slabs become exact copies (bounded memory). */
  #trimSlabs(): void {
    for (let i = 0; i < this.#out.length; i++) {
      const seg = this.#out[i]!;
      if (!seg.slab || seg.end - seg.start >= SLAB_KEEP_BYTES) continue;
      const bytes = seg.bytes.slice(seg.start, seg.end);
      slabs.give(seg.bytes);
      this.#out[i] = { bytes, start: 0, end: bytes.length, slab: false };
    }
  }

  drained(): Promise<void> {
    if (this.#ended || this.#outBytes <= this.#bufferBytes) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  /** Resolves when every queued byte is in the kernel (or the connection is gone). */
  #flushed(): Promise<void> {
    if (this.#ended || this.#out.length === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.#flushWaiters.push(resolve);
      this.flush();
    });
  }

  close(): void {
    if (this.#ended || this.#closing) return;
    this.#closing = true;
    this.#closeReason ??= "local";
    if (this.#out.length === 0 && !this.#flushScheduled) this.#finishClose();
    // otherwise flush() finishes the close once the queue is empty
  }

  #finishClose(): void {
    if (this.#ended || this.#fallbackTimer) return;
    try {
      this.socket.end();
    } catch { /* already closed */ }
    this.#fallbackTimer = setTimeout(
      () => this.abort(this.#closeReason ?? "local"),
      CLOSE_FALLBACK_MS,
    );
  }

  // ------------------------------------------------------------------ TLS

  #tlsSettle: ((err?: Error) => void) | null = null;

  async startTls(): Promise<void> {
    if (this.#ended) throw new Error("connection closed");
    if (this.secure || this.#upgrading) throw new Error("TLS is already active");
    if (this.#opts.listener.tls !== "starttls") {
      throw new Error(`listener ${this.listenerName} does not offer STARTTLS`);
    }
    this.#upgrading = true;
    // Whatever the client pipelined after the command is plaintext: never hand it on.
    this.#in = [];
    this.#inBytes = 0;
    // The "go ahead" reply must leave in plaintext before the handshake starts.
    await this.#flushed();
    if (this.#ended) throw new Error("connection closed");
    let material: TlsMaterial;
    try {
      material = this.#opts.tls();
    } catch (err) {
      this.#log.error("tls.material_failed", { conn: this.id, error: err as Error });
      this.abort("error");
      throw err;
    }
    const done = new Promise<void>((resolve, reject) => {
      this.#tlsSettle = (err?: Error) => {
        this.#tlsSettle = null;
        if (err) reject(err);
        else resolve();
      };
    });
    // A paused socket would never read the ClientHello: read again (plaintext is dropped while
    // #upgrading); the session's pause is re-applied to the TLS socket after the handshake.
    try {
      this.socket.resume();
    } catch { /* closed: the close handler settles */ }
    try {
      const [, tls] = this.socket.upgradeTLS<State>({
        tls: toBunTls(material),
        data: this,
        socket: TLS_UPGRADE_HANDLERS,
      });
      this.socket = tls;
    } catch (err) {
      this.#log.warn("tls.upgrade_failed", { conn: this.id, error: err as Error });
      this.abort("error");
      throw err;
    }
    await done;
  }

  tlsInfo(): TlsInfo | null {
    if (!this.secure) return null;
    try {
      const version = this.socket.getTLSVersion();
      const cipher = this.socket.getCipher()?.name;
      return version && cipher ? { version, cipher } : null;
    } catch {
      return null; // closed meanwhile
    }
  }

  logTlsError(error: Error): void {
    this.#log.info("tls.error", { conn: this.id, error: error.message });
  }

  /** The STARTTLS handshake ended (see TLS_UPGRADE_HANDLERS). */
  tlsHandshake(socket: Socket<State>, success: boolean, error: Error | null): void {
    if (this.socket !== socket) return;
    if (!success) {
      this.#log.info("tls.handshake_failed", { conn: this.id, error: error?.message });
      this.abort("error");
      return;
    }
    this.secure = true;
    this.#upgrading = false;
    if (this.#paused || this.#throttled) socket.pause();
    this.#lastActivity = Date.now();
    this.#tlsSettle?.();
  }
}

/** Handlers of the TLS socket made by upgradeTLS; `socket.data` is its WireConnection. */
const TLS_UPGRADE_HANDLERS = {
  // Fires synchronously inside upgradeTLS, before the handshake: nothing to do yet.
  open() {},
  handshake(socket: Socket<State>, success: boolean, error: Error | null) {
    socket.data?.tlsHandshake(socket, success, error);
  },
  data(socket: Socket<State>, data: Uint8Array) {
    if (socket.data?.socket === socket) socket.data.received(data);
  },
  drain(socket: Socket<State>) {
    if (socket.data?.socket === socket) socket.data.flush();
  },
  end(socket: Socket<State>) {
    if (socket.data?.socket === socket) socket.data.peerEnded();
  },
  close(socket: Socket<State>, error?: Error) {
    if (socket.data?.socket === socket) socket.data.closed(error ? "error" : undefined, error);
  },
  error(socket: Socket<State>, error: Error) {
    const conn = socket.data;
    if (conn?.socket === socket) {
      conn.logTlsError(error);
      conn.abort("error");
    }
  },
};

function stripMapped(address: string): string {
  return address.toLowerCase().startsWith("::ffff:") && address.includes(".")
    ? address.slice(7)
    : address;
}
