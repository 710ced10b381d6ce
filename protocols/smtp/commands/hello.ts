// HELO and EHLO (RFC 5321 §4.1.1.1): the client introduces itself; EHLO lists the extensions.
// Either one also resets the transaction (RFC 5321 §4.1.4).
import { plaintextAllowed } from "../../wire/mod.ts";
import { reply } from "../reply.ts";
import type { SmtpSession } from "../session.ts";

export function helo(s: SmtpSession, domain: string): void {
  s.resetTransaction();
  s.helo = domain;
  s.esmtp = false;
  // RFC 2034 §3: no enhanced status code on the HELO/EHLO reply.
  s.send(reply(250, null, s.hostname));
}

/** The extensions this session offers now (they depend on TLS and AUTH state). */
export function extensions(s: SmtpSession): string[] {
  const out = [
    "PIPELINING", // RFC 2920
    `SIZE ${s.connector.maxMessageBytes}`, // RFC 1870
    "8BITMIME", // RFC 6152
    "SMTPUTF8", // RFC 6531
    "ENHANCEDSTATUSCODES", // RFC 2034
    "CHUNKING", // RFC 3030
    "DSN", // RFC 3461
  ];
  // RFC 3207 §4.2: never offered again once TLS is in effect.
  if (s.connector.tls === "starttls" && !s.conn.secure) out.push("STARTTLS");
  if (authOffered(s)) out.push("AUTH PLAIN LOGIN"); // RFC 4954 §3
  return out;
}

/** AUTH is offered where the connector allows it and a password may travel on this link. */
export function authOffered(s: SmtpSession): boolean {
  return s.connector.auth !== "none" && s.account === null &&
    plaintextAllowed(s.conn, s.config.auth.plaintext);
}

export function ehlo(s: SmtpSession, domain: string): void {
  s.resetTransaction();
  s.helo = domain;
  s.esmtp = true;
  s.send(reply(250, null, [`${s.hostname} greets ${domain.slice(0, 64)}`, ...extensions(s)]));
}
