// Control messages between the supervisor (main thread) and its workers, over postMessage.
// Data never travels here: store calls go through ipc/ rings; this is lifecycle only.
import type { LogRecord } from "../log/mod.ts";
import type { Metabase, MetabasePaths } from "../metabase/mod.ts";
import type { TlsMaterial } from "../protocols/engine.ts";

/** What runs in a worker: the store, or an engine by name ("transport" is the queue runner). */
export type WorkerRole = "store" | "smtp" | "pop3" | "imap" | "nntp" | "http" | "transport";

export interface BoundInfo {
  name: string;
  bind: string;
  /** Configured port; `boundPort` is what the kernel gave (they differ when port is 0). */
  port: number;
  boundPort: number | null;
  error: string | null;
}

export type ToWorker =
  | {
    type: "init";
    role: WorkerRole;
    workerId: string;
    workerIndex: number;
    metabase: Metabase;
    paths: MetabasePaths;
    tls: TlsMaterial | null;
    testHooks: boolean;
  }
  /** Engine workers: the binding to the store (replaces any previous one). */
  | { type: "bind"; descriptor: unknown }
  /** Store worker: serve one more binding, for the peer named. */
  | { type: "serve"; descriptor: unknown; peer: string }
  /** Store worker: the peer's worker is gone; drop its served binding. */
  | { type: "unserve"; peer: string }
  | { type: "reload"; metabase: Metabase; tls: TlsMaterial | null }
  | { type: "stop"; graceMs: number }
  /** Test hook (only honoured with testHooks): throw from a timer, as a real bug would. */
  | { type: "test.crash" }
  /** Test hook: block the worker's thread forever, as a hung disk would. */
  | { type: "test.hang" };

export type FromWorker =
  | { type: "log"; record: LogRecord }
  /** Sent once after init; for engines, every started listener has been tried. */
  | { type: "started"; listeners: BoundInfo[] }
  /** After a reload changed listeners. */
  | { type: "listeners"; listeners: BoundInfo[] }
  | { type: "stopped" }
  | { type: "failed"; error: string };
