// The supervisor room: the main thread of a running server (see supervisor.ts), the worker
// entries it starts, the run directory's status file and its control socket.
export { Supervisor, type SupervisorOptions } from "./supervisor.ts";
export { type ListenerStatus, readStatus, type StatusFile } from "./status.ts";
export { controlRequest } from "./control.ts";
