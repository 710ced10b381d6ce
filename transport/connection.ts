// Owns: one outbound TCP (or TLS) connection to an SMTP server, seen as "write bytes, read the
// next whole reply with a deadline". Sockets are node:net/node:tls: the transport opens only a
// few connections at a time, and node:tls upgrades an existing socket in place (STARTTLS).
import * as net from "node:net";
import * as tls from "node:tls";
import { ReplyError, ReplyParser, type SmtpReply } from "./reply.ts";

export class ConnectionError extends Error {
  constructor(message: string, readonly code: "timeout" | "closed" | "protocol" | "io" | "tls") {
    super(message);
    this.name = "ConnectionError";
  }
}

export interface ConnectOptions {
  host: string;
  port: number;
  /** TLS from the first byte (smarthost on 465). */
  implicitTls: boolean;
  /** Refuse a certificate that does not verify; otherwise accept it and report it. */
  verifyCertificate: boolean;
  connectTimeoutMs: number;
  replyLineBytes: number;
  replyLines: number;
  signal?: AbortSignal;
}

export interface TlsOutcome {
  /** The certificate chain verified against the system CAs and matched the host name. */
  authorized: boolean;
  /** Why it did not verify (for the log). */
  error: string | null;
  protocol: string | null;
}

export class SmtpConnection {
  private socket: net.Socket;
  private parser: ReplyParser;
  private replies: SmtpReply[] = [];
  private waiter: { resolve: (r: SmtpReply) => void; reject: (e: Error) => void } | null = null;
  private failure: Error | null = null;
  private tlsState: TlsOutcome | null = null;
  private readonly onData = (chunk: Buffer) => this.received(chunk);
  private readonly onEnd = () =>
    this.fail(new ConnectionError("connection closed by server", "closed"));
  private readonly onError = (err: Error) => this.fail(new ConnectionError(err.message, "io"));

  private constructor(socket: net.Socket, private readonly opts: ConnectOptions) {
    this.socket = socket;
    this.parser = new ReplyParser(opts.replyLineBytes, opts.replyLines);
    this.attach(socket);
    opts.signal?.addEventListener("abort", this.onAbort, { once: true });
  }

  private readonly onAbort = () => this.destroy("aborted");

  /** Connect (and for implicit TLS, handshake) within the connect timeout. */
  static open(opts: ConnectOptions): Promise<SmtpConnection> {
    return new Promise((resolve, reject) => {
      if (opts.signal?.aborted) return reject(new ConnectionError("aborted", "closed"));
      const socket = opts.implicitTls
        ? tls.connect({
          host: opts.host,
          port: opts.port,
          servername: net.isIP(opts.host) ? undefined : opts.host,
          rejectUnauthorized: opts.verifyCertificate,
        })
        : net.connect({ host: opts.host, port: opts.port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new ConnectionError(`connect to ${opts.host}:${opts.port} timed out`, "timeout"));
      }, opts.connectTimeoutMs);
      const ready = opts.implicitTls ? "secureConnect" : "connect";
      socket.once(ready, () => {
        clearTimeout(timer);
        socket.removeAllListeners("error");
        const conn = new SmtpConnection(socket, opts);
        if (opts.implicitTls) conn.tlsState = tlsOutcome(socket as tls.TLSSocket);
        resolve(conn);
      });
      socket.once("error", (err: Error & { code?: string }) => {
        clearTimeout(timer);
        socket.destroy();
        reject(
          new ConnectionError(
            `connect to ${opts.host}:${opts.port} failed: ${err.code ?? err.message}`,
            opts.implicitTls ? "tls" : "io",
          ),
        );
      });
    });
  }

  get remote(): string {
    return `${this.opts.host}[${this.socket.remoteAddress ?? "?"}]:${this.opts.port}`;
  }

  get tls(): TlsOutcome | null {
    return this.tlsState;
  }

  /** The next whole reply, or a ConnectionError after timeoutMs (the connection is then dead). */
  readReply(timeoutMs: number): Promise<SmtpReply> {
    const ready = this.replies.shift();
    if (ready) return Promise.resolve(ready);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        const err = new ConnectionError(
          `no reply from ${this.remote} in ${timeoutMs} ms`,
          "timeout",
        );
        this.fail(err);
        reject(err);
      }, timeoutMs);
      this.waiter = {
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
    });
  }

  /** Write and wait until the socket buffer drains (backpressure), within timeoutMs. */
  write(data: string | Uint8Array, timeoutMs: number): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    const flushed = this.socket.write(data);
    if (flushed) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const done = (err?: Error) => {
        clearTimeout(timer);
        this.socket.off("drain", onDrain);
        this.socket.off("close", onClose);
        if (err) reject(err);
        else resolve();
      };
      const onDrain = () => done();
      const onClose = () =>
        done(this.failure ?? new ConnectionError("connection closed", "closed"));
      const timer = setTimeout(() => {
        const err = new ConnectionError(
          `write to ${this.remote} stalled ${timeoutMs} ms`,
          "timeout",
        );
        this.fail(err);
        done(err);
      }, timeoutMs);
      this.socket.on("drain", onDrain);
      this.socket.on("close", onClose);
    });
  }

  /**
   * Upgrade to TLS after the server's 220 to STARTTLS. Anything the server sent after that
   * reply in plaintext is discarded (RFC 3207 §4.2: knowledge from before TLS is void; it is
   * also how an attacker would inject replies).
   */
  startTls(servername: string, timeoutMs: number): Promise<TlsOutcome> {
    const plain = this.socket;
    this.detach(plain);
    this.replies = [];
    this.parser = new ReplyParser(this.opts.replyLineBytes, this.opts.replyLines);
    return new Promise((resolve, reject) => {
      const secure = tls.connect({
        socket: plain,
        servername: net.isIP(servername) ? undefined : servername,
        rejectUnauthorized: this.opts.verifyCertificate,
      });
      const timer = setTimeout(() => {
        secure.destroy();
        const err = new ConnectionError(`TLS handshake with ${this.remote} timed out`, "timeout");
        this.fail(err);
        reject(err);
      }, timeoutMs);
      secure.once("secureConnect", () => {
        clearTimeout(timer);
        secure.removeAllListeners("error");
        this.socket = secure;
        this.attach(secure);
        this.tlsState = tlsOutcome(secure);
        resolve(this.tlsState);
      });
      secure.once("error", (err: Error) => {
        clearTimeout(timer);
        secure.destroy();
        const e = new ConnectionError(
          `TLS handshake with ${this.remote} failed: ${err.message}`,
          "tls",
        );
        this.fail(e);
        reject(e);
      });
    });
  }

  /** Say nothing more; drop the connection (also the way to abandon a DATA transfer). */
  destroy(reason = "closed"): void {
    this.fail(new ConnectionError(reason, "closed"));
    this.socket.destroy();
  }

  /** Half-close after QUIT. */
  end(): void {
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 1000).unref?.();
  }

  private attach(s: net.Socket): void {
    s.on("data", this.onData);
    s.on("end", this.onEnd);
    s.on("close", this.onEnd);
    s.on("error", this.onError);
  }

  private detach(s: net.Socket): void {
    s.off("data", this.onData);
    s.off("end", this.onEnd);
    s.off("close", this.onEnd);
    s.off("error", this.onError);
  }

  private received(chunk: Buffer): void {
    if (this.failure) return;
    let parsed: SmtpReply[];
    try {
      parsed = this.parser.push(chunk);
    } catch (err) {
      const msg = err instanceof ReplyError ? err.message : String(err);
      this.fail(new ConnectionError(`bad reply from ${this.remote}: ${msg}`, "protocol"));
      this.socket.destroy();
      return;
    }
    for (const r of parsed) {
      const w = this.waiter;
      if (w) {
        this.waiter = null;
        w.resolve(r);
      } else if (this.replies.length < this.opts.replyLines) {
        this.replies.push(r);
      } else {
        // A server that floods unrequested replies is broken; stop listening to it.
        this.fail(new ConnectionError(`unsolicited replies from ${this.remote}`, "protocol"));
        this.socket.destroy();
        return;
      }
    }
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    // The runner's signal outlives every connection: do not leave a listener per connection.
    this.opts.signal?.removeEventListener("abort", this.onAbort);
    const w = this.waiter;
    this.waiter = null;
    w?.reject(err);
  }
}

function tlsOutcome(s: tls.TLSSocket): TlsOutcome {
  const reason = s.authorizationError;
  return {
    authorized: s.authorized,
    error: reason ? String(reason) : null,
    protocol: s.getProtocol?.() ?? null,
  };
}
