// The supervisor room: the main thread of a running server (see supervisor.ts), the worker
// entries it starts, and the run directory's status file.
export { Supervisor, type SupervisorOptions } from "./supervisor.ts";
export { type ListenerStatus, readStatus, type StatusFile } from "./status.ts";
