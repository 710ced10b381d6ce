// Which engines this build contains, and which listeners each one serves. The supervisor
// starts whichever engines exist; listeners of an engine not built yet are reported, not bound.
import type { Listener, Metabase, SmtpConnector } from "../metabase/schema.ts";
import type { ProtocolEngine } from "../protocols/engine.ts";
import { pop3Engine } from "../protocols/pop3/mod.ts";
import { smtpEngine } from "../protocols/smtp/mod.ts";
import { transportEngine } from "../transport/mod.ts";
import type { WorkerRole } from "./messages.ts";

const MODULES: Partial<Record<WorkerRole, ProtocolEngine<any>>> = {
  smtp: smtpEngine,
  pop3: pop3Engine,
  transport: transportEngine,
};

export function engineModule(role: WorkerRole): ProtocolEngine<Listener | SmtpConnector> | null {
  return MODULES[role] ?? null;
}

export function isBuilt(role: WorkerRole): boolean {
  return role in MODULES;
}

export function listenersOf(
  mb: Metabase,
  _workerIndex: number,
  engine: string,
): (Listener | SmtpConnector)[] {
  switch (engine) {
    case "smtp":
      return mb.smtp.enabled ? mb.smtp.connectors : [];
    case "pop3":
    case "imap":
    case "nntp":
    case "http":
      return mb[engine].enabled ? mb[engine].listeners : [];
    default:
      return [];
  }
}
