// The small commands: RSET, NOOP, HELP, VRFY, EXPN, QUIT (RFC 5321 §4.1.1.5–§4.1.1.10).
import { reply } from "../reply.ts";
import type { SmtpSession } from "../session.ts";

export function rset(s: SmtpSession): void {
  s.resetTransaction();
  s.send(reply(250, "2.0.0", "Ok"));
}

export function noop(s: SmtpSession): void {
  s.send(reply(250, "2.0.0", "Ok"));
}

export function help(s: SmtpSession): void {
  s.send(reply(214, "2.0.0", [
    "Commands: EHLO HELO MAIL RCPT DATA BDAT AUTH STARTTLS RSET NOOP VRFY QUIT",
    "See RFC 5321",
  ]));
}

/** RFC 5321 §3.5.3: 252 says "cannot verify, but will try"; addresses are not disclosed. */
export function vrfy(s: SmtpSession): void {
  s.send(reply(252, "2.5.2", "Cannot VRFY user, but will accept message and attempt delivery"));
}

/** Mailing list expansion is not disclosed (RFC 5321 §7.3). */
export function expn(s: SmtpSession): void {
  s.send(reply(502, "5.5.1", "EXPN is not available"));
}

export function quit(s: SmtpSession): void {
  s.send(reply(221, "2.0.0", "Bye"));
  s.close();
}
