// The contract between a protocol engine and the worker that hosts it. The host (see
// supervisor/engine-worker.ts) owns the worker's life: it reads the metabase, diffs listeners
// on hot reload and calls `listen`/`close` per listener, so a changed listener restarts alone
// while sessions on the others carry on. The engine owns only its wire protocol.
import type { StoreClient } from "../ipc/store-client.ts";
import type { Logger } from "../log/mod.ts";
import type { Listener, Metabase, SmtpConnector } from "../metabase/schema.ts";

export interface TlsMaterial {
  /** PEM strings, loaded by the host from the metabase's files or the generated pair. */
  cert: string;
  key: string;
}

export interface EngineContext {
  /** The live metabase: read it per session, not once, so hot reloads of limits apply. */
  config(): Metabase;
  tls(): TlsMaterial;
  store: StoreClient;
  log: Logger;
  /** This worker's index in its engine's pool. */
  workerIndex: number;
  /** The data directory: where the metabase's relative paths start (DKIM key files). */
  dataDir?: string;
}

export interface BoundListener {
  /** The port actually bound (differs from the config when it asked for 0). */
  port: number;
  /** Sessions open right now. */
  connections(): number;
  /** Stop accepting; let sessions end within graceMs, then close them. */
  close(graceMs: number): Promise<void>;
}

export interface ProtocolEngine<L = Listener> {
  name: string;
  /** Bind one listener (with `reusePort: true` so a pool shares it); resolves once bound. */
  listen(listener: L, ctx: EngineContext): Promise<BoundListener>;
  /** Optional per-worker background work (e.g. the SMTP queue runner), stopped with the worker. */
  start?(ctx: EngineContext): Promise<{ stop(): Promise<void> }>;
}

export type SmtpEngine = ProtocolEngine<SmtpConnector>;
