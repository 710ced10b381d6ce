// What every worker entry shares: the control-message loop with the supervisor, logging
// forwarded to it, and the rules for a worker's own failures (an unawaited rejection is logged
// loudly and the worker keeps serving; a failed init is reported so the slot can retry).
/// <reference lib="webworker" />
import { forwardingLogger, type Logger, type LogLevel } from "../log/mod.ts";
import type { FromWorker, ToWorker } from "./messages.ts";

declare const self: Worker;

export interface WorkerRuntime {
  post(msg: FromWorker): void;
  /** The worker's logger; replaced once init says the level and the worker's name. */
  log: Logger;
  setLogger(component: string, level: LogLevel): Logger;
  /** Test hook: throw from a timer, as a real bug would (only when init allowed it). */
  crash(): void;
  /** Test hook: block this thread for good (only when init allowed it). */
  hang(): void;
  testHooks: boolean;
}

export function runWorker(
  component: string,
  handle: (msg: ToWorker, rt: WorkerRuntime) => Promise<void>,
): WorkerRuntime {
  const post = (msg: FromWorker) => self.postMessage(msg);
  const rt: WorkerRuntime = {
    post,
    log: forwardingLogger(component, (m) => post(m as FromWorker)),
    setLogger(name, level) {
      rt.log = forwardingLogger(name, (m) => post(m as FromWorker), level);
      return rt.log;
    },
    crash() {
      if (!rt.testHooks) return;
      setTimeout(() => {
        throw new Error("test crash requested by the supervisor");
      }, 0);
    },
    hang() {
      if (rt.testHooks) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
    },
    testHooks: false,
  };
  self.addEventListener("unhandledrejection", (event) => {
    const ev = event as Event & { reason: unknown };
    ev.preventDefault();
    rt.log.error("worker.unhandled_rejection", {
      error: ev.reason instanceof Error ? ev.reason : String(ev.reason),
    });
  });
  self.onmessage = (ev: MessageEvent<ToWorker>) => {
    const msg = ev.data;
    if (msg.type === "init") rt.testHooks = msg.testHooks;
    handle(msg, rt).catch((err) => {
      rt.log.error("worker.control_failed", { type: msg.type, error: err });
      if (msg.type === "init") {
        post({ type: "failed", error: String((err as Error)?.message ?? err) });
      }
    });
  };
  return rt;
}
