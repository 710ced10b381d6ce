// Binds one receive connector on the wire layer and starts an SmtpSession per connection.
// Limits come from the metabase at bind time for the socket, and per connection for sessions
// (a hot reload applies to new connections without rebinding).
import type { SmtpConnector } from "../../metabase/schema.ts";
import type { BoundListener, EngineContext, SmtpEngine } from "../engine.ts";
import { listen } from "../wire/mod.ts";
import { formatReply, reply } from "./reply.ts";
import { SmtpSession } from "./session.ts";

/** The wire's idle timer is a backstop behind the session's own 421 4.4.2 timeouts. */
const IDLE_MARGIN_SECONDS = 30;

async function listenConnector(
  connector: SmtpConnector,
  ctx: EngineContext,
): Promise<BoundListener> {
  const mb = ctx.config();
  const log = ctx.log.child("smtp");
  const idleSeconds = Math.max(connector.commandTimeoutSeconds, connector.dataTimeoutSeconds) +
    IDLE_MARGIN_SECONDS;
  return await listen({
    listener: connector,
    tls: ctx.tls,
    idleTimeoutMs: idleSeconds * 1000,
    maxConnections: mb.limits.maxConnections,
    connectionsPerIp: mb.limits.connectionsPerIp,
    bufferBytes: mb.limits.connectionBufferBytes,
    log,
    idPrefix: `smtp${ctx.workerIndex}-${connector.name}`,
    // RFC 5321 §3.1: a server that cannot serve now answers 421 and closes.
    onRejected: () =>
      formatReply(
        reply(421, "4.7.0", `${mb.server.hostname} Too many connections, try again later`),
      ),
  }, (conn) => new SmtpSession(conn, { connector, config: ctx.config(), store: ctx.store, log }));
}

export const smtpEngine: SmtpEngine = {
  name: "smtp",
  listen: listenConnector,
};
