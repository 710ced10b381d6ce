// MAIL FROM (RFC 5321 §4.1.1.2): opens a transaction, checking the sender's parameters and,
// on a submission connector, that the sender is the authenticated user (RFC 6409 §6.1).
import { mailParams } from "../params.ts";
import type { SmtpCommand } from "../parser.ts";
import { reply } from "../reply.ts";
import type { SmtpSession } from "../session.ts";

export function mail(s: SmtpSession, cmd: Extract<SmtpCommand, { verb: "MAIL" }>): void {
  if (!s.helo) return s.send(reply(503, "5.5.1", "Send EHLO or HELO first"));
  if (s.tx) return s.send(reply(503, "5.5.1", "Nested MAIL command"));
  if (s.connector.auth === "required" && !s.account) {
    // RFC 3207 §4 / RFC 4954 §6: 530 5.7.0 before the required STARTTLS or AUTH.
    const needTls = s.connector.tls === "starttls" && !s.conn.secure;
    return s.send(
      reply(
        530,
        "5.7.0",
        needTls ? "Must issue a STARTTLS command first" : "Authentication required",
      ),
    );
  }
  // RFC 5321 §4.1.1.11: parameters only after EHLO.
  if (!s.esmtp && cmd.params.length > 0) {
    return s.send(reply(555, "5.5.4", "MAIL parameters need EHLO"));
  }
  const params = mailParams(cmd.params);
  if ("code" in params) return s.send(params);
  // RFC 6531 §3.5: a non-ASCII address needs the SMTPUTF8 parameter.
  if (cmd.utf8 && !params.smtputf8) {
    return s.send(reply(553, "5.6.7", "Non-ASCII address requires SMTPUTF8"));
  }
  // RFC 1870 §6.1: refuse early when the declared size is over the limit.
  if (params.size !== null && params.size > s.connector.maxMessageBytes) {
    return s.send(
      reply(
        552,
        "5.3.4",
        `Message size exceeds fixed limit of ${s.connector.maxMessageBytes} bytes`,
      ),
    );
  }
  if (s.connector.role === "submission" && s.account) {
    if (cmd.address.toLowerCase() !== s.account.address.toLowerCase()) {
      return s.send(reply(553, "5.7.1", `Sender address not owned by ${s.account.address}`));
    }
  }
  s.tx = {
    id: s.nextTransactionId(),
    sender: cmd.address,
    params,
    recipients: [],
    sink: null,
    usedBdat: false,
    bdatLines: null,
  };
  s.send(reply(250, "2.1.0", "Sender ok"));
}
