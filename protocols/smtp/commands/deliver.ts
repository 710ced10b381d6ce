// The two ends of a message body shared by DATA and BDAT: opening the upload with our Received:
// header as its first chunk, and committing it to the recipients once the end arrived. The 250
// goes out only after delivery.commit resolved, i.e. after the store's fsync (nothing is lost).
import { BodySink } from "../body-sink.ts";
import { receivedHeader } from "../received.ts";
import { type Reply, reply } from "../reply.ts";
import type { SmtpSession, Transaction } from "../session.ts";
import { replyForStoreCode, replyForStoreError } from "../store-replies.ts";

const encoder = new TextEncoder();

/** Opens the upload for `tx`; a reply when the store refused. */
export async function startBody(s: SmtpSession, tx: Transaction): Promise<Reply | null> {
  const sink = new BodySink(s.store, {
    maxMessageBytes: s.connector.maxMessageBytes,
    chunkBytes: s.config.ipc.chunkBytes,
    maxHops: s.config.smtp.maxHops,
    dataLineBytes: s.config.limits.dataLineBytes,
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
