// The POP3 engine (RFC 1939, CAPA RFC 2449, STLS RFC 2595, AUTH RFC 5034): the Inbox only.
// The host calls `pop3Engine.listen(listener, ctx)` per metabase listener; each connection
// gets a `Pop3Session` over the wire layer.
import type { EngineContext, ProtocolEngine } from "../engine.ts";
import type { Listener } from "../../metabase/schema.ts";
import { listen } from "../wire/mod.ts";
import { err } from "./replies.ts";
import { Pop3Session } from "./session.ts";

export { Pop3Session } from "./session.ts";
export type { Pop3Deps } from "./session.ts";

export const pop3Engine: ProtocolEngine = {
  name: "pop3",
  listen(listener: Listener, ctx: EngineContext) {
    const mb = ctx.config();
    const log = ctx.log.child("pop3");
    return listen(
      {
        listener,
        tls: ctx.tls,
        idleTimeoutMs: listener.idleTimeoutSeconds * 1000, // RFC 1939 §3: at least 10 minutes
        maxConnections: mb.limits.maxConnections,
        connectionsPerIp: mb.limits.connectionsPerIp,
        bufferBytes: mb.limits.connectionBufferBytes,
        log,
        idPrefix: `pop3-${ctx.workerIndex}`,
        onRejected: () => err("[SYS/TEMP] Too many connections, try again later"),
      },
      (conn) =>
        new Pop3Session(conn, {
          store: ctx.store,
          config: ctx.config,
          log,
          stls: listener.tls === "starttls",
        }),
    );
  },
};
