// The contract between the wire layer (sockets, TLS, limits) and a protocol session. A session
// never touches a socket: it receives decrypted bytes and writes replies through `Connection`,
// so its state machine can be driven by tests and fuzzers without a network.

export interface Connection {
  /** Unique per process, for logs: "smtp-1-42". */
  readonly id: string;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly localAddress: string;
  readonly localPort: number;
  /** The listener this connection arrived on (its metabase name). */
  readonly listenerName: string;
  /** TLS is in effect (implicit TLS, or after a completed STARTTLS/STLS). */
  readonly secure: boolean;
  /** The peer is on 127.0.0.0/8 or ::1. */
  readonly loopback: boolean;
  /** The negotiated TLS version and cipher suite, once `secure` (for trace headers and logs). */
  tlsInfo?(): TlsInfo | null;
  /**
   * Queue bytes for the peer. Never throws; after close it is a no-op. A view over shared
   * memory (the ipc heap) is copied before write returns, so the caller may release it at once;
   * any other array may be kept as it is until sent: do not change it afterwards.
   */
  write(data: string | Uint8Array): void;
  /** Resolves when the write buffer is below its high-water mark (backpressure for streams). */
  drained(): Promise<void>;
  /**
   * Upgrade to TLS. Call it after writing the "go ahead" reply (SMTP 220, POP3 +OK, IMAP OK).
   * Any bytes the client sent after the command in plaintext are discarded, never handed to
   * the session (the STARTTLS command-injection class, CVE-2011-0411).
   */
  startTls(): Promise<void>;
  /** Stop / restart delivering `onData` (while the session awaits the store). */
  pause(): void;
  resume(): void;
  /** Flush what was written, then close. */
  close(): void;
}

export interface TlsInfo {
  /** "TLSv1.3" */
  version: string;
  /** "TLS_AES_256_GCM_SHA384" */
  cipher: string;
}

export type CloseReason = "peer" | "timeout" | "error" | "shutdown" | "local";

export interface Session {
  /** Bytes from the peer, already decrypted, in order. */
  onData(chunk: Uint8Array): void;
  /** The connection ended; release everything the session holds. Called exactly once. */
  onClose(reason: CloseReason): void;
  /** The server is shutting down: finish the current transaction, say goodbye, close. */
  onShutdown?(): void;
}

export type SessionFactory = (conn: Connection) => Session;
