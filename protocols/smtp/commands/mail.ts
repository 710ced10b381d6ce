// MAIL FROM (RFC 5321 §4.1.1.2): opens a transaction, checking the sender's parameters and,
// once the client has authenticated on any connector, that the authenticated user owns the
// sender address (RFC 6409 §6.1): an authenticated session may relay, so it must not forge.
import { type MailParams, mailParams } from "../params.ts";
import type { SmtpCommand } from "../parser.ts";
import { reply } from "../reply.ts";
import type { SmtpSession } from "../session.ts";
import { replyForStoreError } from "../store-replies.ts";

export function mail(
  s: SmtpSession,
  cmd: Extract<SmtpCommand, { verb: "MAIL" }>,
): void | Promise<void> {
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
  if (s.account && cmd.address !== "") return checkOwnSender(s, cmd.address, params);
  // The null reverse-path needs no owner. RFC 5321 §4.5.5: Message Disposition Notifications
  // (RFC 8098, read receipts) are "required ... to be sent with a null reverse-path", and it
  // is the user's mail client that writes them and submits them here, authenticated. <> names
  // nobody, so it forges nobody; the session stays tied to its account in the logs.
  open(s, cmd.address, params);
}

/** RFC 6409 §6.1: an authenticated sender may only use an address its account owns. */
async function checkOwnSender(
  s: SmtpSession,
  sender: string,
  params: MailParams,
): Promise<void> {
  const account = s.account!;
  let owned: boolean;
  try {
    owned = await s.store.call("account.ownsAddress", { userId: account.userId, address: sender });
  } catch (err) {
    s.log.warn("smtp.owner_check_failed", { conn: s.conn.id, sender, error: err as Error });
    return s.send(replyForStoreError(err));
  }
  if (!owned) {
    s.log.warn("smtp.sender_refused", {
      conn: s.conn.id,
      ip: s.conn.remoteAddress,
      account: account.address,
      sender,
    });
    return s.send(reply(553, "5.7.1", `Sender address not owned by ${account.address}`));
  }
  // The pump runs one command at a time, so nothing the client pipelined has run meanwhile.
  open(s, sender, params);
}

function open(
  s: SmtpSession,
  sender: string,
  params: MailParams,
): void {
  s.tx = {
    id: s.nextTransactionId(),
    sender,
    params,
    recipients: [],
    sink: null,
    usedBdat: false,
  };
  s.send(reply(250, "2.1.0", "Sender ok"));
}
