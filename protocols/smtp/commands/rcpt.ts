// RCPT TO (RFC 5321 §4.1.1.3) and the categorizer's verdict on each recipient: local and
// public folders are accepted, unknown local users refused now (never bounced later), full
// mailboxes too (only a race with another delivery still reaches the bounce path), remote
// domains only for clients that may relay.
import type { Recipient } from "../../../ipc/store-api.ts";
import { rcptParams } from "../params.ts";
import type { SmtpCommand } from "../parser.ts";
import { type Reply, reply } from "../reply.ts";
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

  // RFC 5321 §4.1.1.3 / §4.5.1: <Postmaster> alone (the parser lower-cases it) means this
  // server's postmaster; the store knows who that is (metabase server.postmaster, or the
  // primary domain's postmaster@) and answers with the address it delivers to.
  const address = cmd.address;
  let verdict: Recipient;
  try {
    verdict = await s.store.call("recipient.resolve", { address });
  } catch (err) {
    s.log.warn("smtp.resolve_failed", { conn: s.conn.id, address, error: err as Error });
    return s.send(replyForStoreError(err));
  }
  switch (verdict.kind) {
    case "local": {
      const full = overQuota(verdict.roomBytes, tx.params.size);
      if (full) return s.send(full);
      break;
    }
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

/**
 * A full mailbox is refused per recipient at RCPT with the code the store's commit-time check
 * maps to (store-replies.ts): 552 5.2.2. RFC 3463 §3.3 calls X.2.2 a persistent transient
 * condition; RFC 5321 §4.5.3.1.10 asks clients to treat a 552 to RCPT as temporary (it was
 * RFC 821's "too many recipients" code), so a conforming sender retries this recipient later
 * while the status stays the one a bounce from the commit-time check carries.
 * RFC 1870 §6: a declared SIZE= larger than the room left is refused the same way.
 */
function overQuota(roomBytes: number | undefined, declaredSize: number | null): Reply | null {
  if (roomBytes === undefined) return null; // no quota limits this recipient
  if (roomBytes <= 0) return reply(552, "5.2.2", "Mailbox full");
  if (declaredSize !== null && declaredSize > roomBytes) {
    return reply(552, "5.2.2", "Mailbox full: message too large for the recipient's quota");
  }
  return null;
}
