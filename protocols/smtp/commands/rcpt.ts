// RCPT TO (RFC 5321 §4.1.1.3) and the categorizer's verdict on each recipient: local and
// public folders are accepted, unknown local users refused now (never bounced later), remote
// domains only for clients that may relay.
import type { Recipient } from "../../../ipc/store-api.ts";
import { rcptParams } from "../params.ts";
import type { SmtpCommand } from "../parser.ts";
import { reply } from "../reply.ts";
import type { SmtpSession } from "../session.ts";
import { replyForStoreError } from "../store-replies.ts";

export async function rcpt(
  s: SmtpSession,
  cmd: Extract<SmtpCommand, { verb: "RCPT" }>,
): Promise<void> {
  const tx = s.tx;
  if (!tx) return s.send(reply(503, "5.5.1", "Need MAIL command first"));
  if (tx.usedBdat) return s.send(reply(503, "5.5.1", "RCPT not allowed after BDAT"));
  if (s.connector.role === "submission" && !s.account) {
    return s.send(reply(530, "5.7.0", "Authentication required"));
  }
  if (!s.esmtp && cmd.params.length > 0) {
    return s.send(reply(555, "5.5.4", "RCPT parameters need EHLO"));
  }
  if (cmd.utf8 && !tx.params.smtputf8) {
    return s.send(reply(553, "5.6.7", "Non-ASCII address requires SMTPUTF8")); // RFC 6531 §3.5
  }
  // RFC 5321 §4.5.3.1.10: 452 for too many recipients; the client sends the rest later.
  if (tx.recipients.length >= s.connector.maxRecipients) {
    return s.send(reply(452, "4.5.3", "Too many recipients"));
  }
  const params = rcptParams(cmd.params);
  if ("code" in params) return s.send(params);

  // RFC 5321 §4.1.1.3: <Postmaster> alone means this server's postmaster.
  const address = cmd.address === "postmaster"
    ? `postmaster@${s.config.domains[0]?.name ?? s.hostname}`
    : cmd.address;
  let verdict: Recipient;
  try {
    verdict = await s.store.call("recipient.resolve", { address });
  } catch (err) {
    s.log.warn("smtp.resolve_failed", { conn: s.conn.id, address, error: err as Error });
    return s.send(replyForStoreError(err));
  }
  switch (verdict.kind) {
    case "local":
    case "public":
      break;
    case "remote":
      if (!s.mayRelay()) return s.send(reply(554, "5.7.1", "Relay access denied"));
      break;
    case "unknown":
      return s.send(reply(550, "5.1.1", "No such user here"));
  }
  if (!tx.recipients.some((r) => r.address === verdict.address)) {
    tx.recipients.push({
      address: verdict.address,
      original: address,
      notify: params.notify,
      orcpt: params.orcpt,
    });
  }
  s.send(reply(250, "2.1.5", "Recipient ok"));
}
