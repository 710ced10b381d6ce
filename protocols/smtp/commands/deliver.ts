// The two ends of a message body shared by DATA and BDAT: opening the upload with our Received:
// header as its first chunk, and committing it to the recipients once the end arrived. The 250
// goes out only after delivery.commit resolved, i.e. after the store's fsync (nothing is lost).
import { BodySink } from "../body-sink.ts";
import { receivedHeader } from "../received.ts";
import { type Reply, reply } from "../reply.ts";
import type { SmtpSession, Transaction } from "../session.ts";
import { replyForStoreCode, replyForStoreError } from "../store-replies.ts";
import { authorAddresses } from "../from-header.ts";

const encoder = new TextEncoder();

/** Opens the upload for `tx`; a reply when the store refused. */
export async function startBody(s: SmtpSession, tx: Transaction): Promise<Reply | null> {
  const sink = new BodySink(s.store, {
    maxMessageBytes: s.connector.maxMessageBytes,
    chunkBytes: s.config.ipc.chunkBytes,
    maxHops: s.config.smtp.maxHops,
    dataLineBytes: s.config.limits.dataLineBytes,
    keepHead: checksAuthor(s),
  }, s.log);
  const header = receivedHeader({
    heloName: s.helo ?? "unknown",
    remoteAddress: s.conn.remoteAddress,
    hostname: s.hostname,
    esmtp: s.esmtp,
    tls: s.conn.secure,
    tlsInfo: s.conn.tlsInfo?.() ?? null,
    authenticatedAs: s.account?.address ?? null,
    smtputf8: tx.params.smtputf8,
    id: tx.id,
    recipient: tx.recipients.length === 1 ? tx.recipients[0]!.original : null,
    date: new Date(),
  });
  const refused = await sink.begin(tx.params.size, encoder.encode(header));
  if (refused) return refused;
  tx.sink = sink;
  return null;
}

/** The end of the message: commit, then the one reply for the whole transaction. */
export async function finishMessage(s: SmtpSession): Promise<void> {
  const tx = s.tx;
  const sink = tx?.sink;
  if (!tx || !sink) return;
  await sink.finish();
  if (sink.failure) {
    s.log.info("smtp.message_refused", { conn: s.conn.id, tx: tx.id, size: sink.size });
    s.resetTransaction();
    s.send(sink.failure);
    return s.afterTransaction();
  }
  if (checksAuthor(s)) {
    const refused = await checkAuthor(s, sink.head());
    if (refused) {
      sink.fail(refused);
      s.resetTransaction();
      s.send(refused);
      return s.afterTransaction();
    }
  }
  let result: Reply;
  try {
    const res = await sink.commit({
      sender: tx.sender,
      recipients: tx.recipients.map((r) => ({
        address: r.address,
        ...(r.notify ? { dsnNotify: r.notify } : {}),
        ...(r.orcpt ? { orcpt: r.orcpt } : {}),
      })),
      // RFC 5321 §4.4: the final delivery adds Return-Path with the reverse-path.
      localPrefix: encoder.encode(`Return-Path: <${tx.sender}>\r\n`),
      ...(tx.params.envid !== null ? { envid: tx.params.envid } : {}),
      ...(tx.params.ret !== null ? { ret: tx.params.ret } : {}),
      ...(tx.params.body !== null ? { bodyType: tx.params.body } : {}),
      smtputf8: tx.params.smtputf8,
    });
    const ok = res.delivered.length + res.queued.length;
    s.log.info("smtp.accepted", {
      conn: s.conn.id,
      tx: tx.id,
      from: tx.sender,
      size: sink.size,
      delivered: res.delivered.map((d) => d.messageId),
      queued: res.queued.map((q) => q.queueId),
      failed: res.failed,
    });
    if (ok > 0) {
      // SMTP has one reply per message: recipients that failed alone were queued by the store
      // in the same transaction for a DSN to the sender (bounceQueueId), which the transport
      // sends; a null sender gets none (RFC 5321 §4.5.5).
      for (const f of res.failed) {
        s.log.warn("smtp.recipient_failed", {
          conn: s.conn.id,
          tx: tx.id,
          to: f.address,
          code: f.code,
          reason: f.reason,
          bounce: f.bounceQueueId ?? null,
        });
      }
      const ids = [
        ...res.delivered.map((d) => `m${d.messageId}`),
        ...res.queued.map((q) => `q${q.queueId}`),
      ];
      const shown = ids.slice(0, 4).join(",") + (ids.length > 4 ? ",…" : "");
      result = reply(250, "2.0.0", `Ok: queued as ${tx.id} (${shown})`);
    } else {
      const first = res.failed[0];
      result = first
        ? replyForStoreCode(first.code, first.reason)
        : reply(554, "5.5.1", "No valid recipients");
    }
  } catch (err) {
    s.log.warn("smtp.commit_failed", { conn: s.conn.id, tx: tx.id, error: err as Error });
    result = replyForStoreError(err);
    await sink.abort();
  }
  s.tx = null; // committed or aborted: nothing to release
  s.send(result);
  s.afterTransaction();
}

function checksAuthor(s: SmtpSession): boolean {
  return s.account !== null && s.connector.fromMustMatch;
}

/**
 * An authenticated client's message must name the account as its author, as MAIL FROM must
 * (RFC 6409 §8): outbound mail is DKIM-signed for its From: domain. A message with no From:
 * at all passes (RFC 6409 §8.1.5: an MSA may add one; receivers judge it). A reply when not.
 */
async function checkAuthor(
  s: SmtpSession,
  head: { bytes: Uint8Array; whole: boolean } | null,
): Promise<Reply | null> {
  const account = s.account!;
  const addresses = head ? authorAddresses(head.bytes, head.whole) : [];
  // A header section longer than the first chunk would hide its From: from the check.
  if (addresses === null) {
    return reply(550, "5.7.1", "Message header too long to check its From: address");
  }
  for (const address of addresses) {
    let owned: boolean;
    try {
      owned = await s.store.call("account.ownsAddress", { userId: account.userId, address });
    } catch (err) {
      s.log.warn("smtp.owner_check_failed", { conn: s.conn.id, address, error: err as Error });
      return replyForStoreError(err);
    }
    if (!owned) {
      s.log.warn("smtp.author_refused", {
        conn: s.conn.id,
        ip: s.conn.remoteAddress,
        account: account.address,
        author: address,
      });
      return reply(550, "5.7.1", `From: address ${address} is not owned by ${account.address}`);
    }
  }
  return null;
}
