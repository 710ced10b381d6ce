// The transport room: the outbound half of SMTP. `startTransport` runs the queue runner in the
// worker the supervisor gives it: it polls the store's SMTP queue (and wakes on its "queue"
// topic), routes each next hop (static route, smarthost, MX, A/AAAA), delivers with our own
// SMTP client and sends DSN bounces and delay notices through the store.
import type { EngineContext, ProtocolEngine } from "../protocols/engine.ts";
import type { MxResolver, PasswordReader } from "./routing.ts";
import type { Metabase } from "../metabase/schema.ts";
import { QueueRunner } from "./runner.ts";

export interface Transport {
  /** Stop looking at the queue; deliveries in progress are dropped and retried later. */
  stop(): Promise<void>;
  /** Look at the queue now (e.g. after `posthorn queue retry`). */
  kick(): void;
}

/** Test seams; the supervisor passes none. */
export interface TransportOptions {
  dns?: (mb: Metabase) => MxResolver;
  readPassword?: PasswordReader;
  now?: () => number;
  smtpPort?: number;
}

export async function startTransport(
  ctx: EngineContext,
  options: TransportOptions = {},
): Promise<Transport> {
  const log = ctx.log.child("transport");
  const runner = new QueueRunner({
    store: ctx.store,
    config: ctx.config,
    log,
    dataDir: ctx.dataDir,
    ...options,
  });
  // New entries are published on "queue" by the store (delivery.commit, queue.retry).
  const unsubscribe = ctx.store.subscribe("queue", () => runner.kick());
  runner.start();
  log.info("started", { concurrency: ctx.config().smtp.queue.concurrency });
  return {
    async stop() {
      unsubscribe();
      await runner.stop();
      log.info("stopped");
    },
    kick: () => runner.kick(),
  };
}

/**
 * The transport as a worker role for supervisor/engines.ts (`transport: transportEngine`): it
 * has no listeners; the engine host calls `start` once and `stop` at shutdown.
 */
export const transportEngine: ProtocolEngine = {
  name: "transport",
  listen: () => Promise.reject(new Error("the transport has no listeners")),
  start: (ctx) => startTransport(ctx),
};

export { QueueRunner } from "./runner.ts";
export { planRoute, type RoutePlan } from "./routing.ts";
export { SmtpClient } from "./smtp-client.ts";
export { retryDelaySeconds } from "./backoff.ts";
export { renderDsn } from "./dsn.ts";
