// STARTTLS (RFC 3207): upgrade the connection, then start the session over.
import { reply } from "../reply.ts";
import type { SmtpSession } from "../session.ts";

export function starttls(s: SmtpSession): void | Promise<void> {
  if (s.connector.tls !== "starttls") return s.send(reply(502, "5.5.1", "STARTTLS not available"));
  // RFC 3207 §4.2: STARTTLS is not offered, nor accepted, inside TLS.
  if (s.conn.secure) return s.send(reply(503, "5.5.1", "TLS already active"));
  s.send(reply(220, "2.0.0", "Ready to start TLS"));
  return s.upgradeTls();
}
