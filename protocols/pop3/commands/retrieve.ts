// RETR and TOP (RFC 1939 §5, §7): the message streamed from the store chunk by chunk, dot-
// stuffed on the fly, written only as fast as the peer reads (conn.drained()), so a 20 MB
// message never sits in memory. The +OK goes out only once the first chunk has arrived, so a
// store failure before that is still a clean -ERR; one after it can only end the connection.
// A small message the session read ahead (pipelined RETR or TOP, see prefetch.ts) is already
// whole in memory: its reply is written at once, with no wait, so a run of them leaves in one
// write.
import type { MessageSummary } from "../../../ipc/store-api.ts";
import { DotStuffer, TopLimiter } from "../dot-stuff.ts";
import type { Maildrop } from "../maildrop.ts";
import type { PrefetchedRead } from "../prefetch.ts";
import { storeFailure } from "../replies.ts";
import type { Outcome, Pop3Session } from "../session.ts";

const TOP_OK = "+OK Top of message follows\r\n";

export function retrieve(
  s: Pop3Session,
  drop: Maildrop,
  n: number,
  topLines: number | null,
): Outcome {
  const found = drop.get(n);
  if (found.kind !== "ok") return; // checked by the caller
  const message: MessageSummary = found.message;
  const ahead = s.takePrefetched(message.messageId);
  if (!ahead) return stream(s, message, topLines);
  if (ahead.settled) return sendWhole(s, message, ahead, topLines);
  return ahead.whenSettled().then(() => sendWhole(s, message, ahead, topLines));
}

/** RETR or TOP of a message read ahead: all of it is here (or its failure), so no +OK can
 * dangle. */
function sendWhole(
  s: Pop3Session,
  message: MessageSummary,
  read: PrefetchedRead,
  topLines: number | null,
): void {
  if (s.closed) return read.cancel();
  if (read.error !== null) {
    s.log.warn("retr.store_failed", {
      conn: s.conn.id,
      uid: message.uid,
      error: read.error as Error,
    });
    return s.reply(storeFailure(read.error, "Reading the message"));
  }
  // RFC 1939 §5: the octet count is the message's size before byte-stuffing. The status
  // line, the stuffed message and the terminator are written back to back: the connection
  // copies them into one output buffer (one syscall), straight from the ipc heap when the
  // read was leased, and the message's bytes are released as soon as they are copied.
  try {
    s.reply(topLines === null ? `+OK ${message.size} octets\r\n` : TOP_OK);
    const stuffer = new DotStuffer();
    const top = topLines === null ? null : new TopLimiter(topLines);
    for (const chunk of read.chunks) {
      const out = stuffer.stuff(top ? top.take(chunk) : chunk);
      s.conn.write(out);
      s.wrote(out.length);
      if (top?.done) break;
    }
    const end = stuffer.finish();
    s.conn.write(end);
    s.wrote(end.length);
  } finally {
    read.release();
  }
  if (topLines === null && read.bytes !== message.size) {
    s.log.warn("retr.size_mismatch", {
      conn: s.conn.id,
      uid: message.uid,
      listed: message.size,
      sent: read.bytes,
    });
  }
}

async function stream(
  s: Pop3Session,
  message: MessageSummary,
  topLines: number | null,
): Promise<void> {
  let iterator: AsyncIterator<Uint8Array>;
  let first: IteratorResult<Uint8Array>;
  try {
    iterator = s.deps.store.stream("message.read", {
      userId: s.account!.userId,
      messageId: message.messageId,
    })[Symbol.asyncIterator]();
    first = await iterator.next();
  } catch (e) {
    s.log.warn("retr.store_failed", { conn: s.conn.id, uid: message.uid, error: e as Error });
    return s.reply(storeFailure(e, "Reading the message"));
  }
  const stop = () => {
    iterator.return?.().catch(() => {});
  };
  if (s.closed) return stop();
  // RFC 1939 §5: the octet count is the message's size before byte-stuffing.
  s.reply(topLines === null ? `+OK ${message.size} octets\r\n` : TOP_OK);
  const stuffer = new DotStuffer();
  const top = topLines === null ? null : new TopLimiter(topLines);
  let read = 0;
  try {
    for (let r = first; !r.done; r = await iterator.next()) {
      read += r.value.length;
      const part = top ? top.take(r.value) : r.value;
      const out = stuffer.stuff(part);
      if (out.length > 0) {
        s.conn.write(out);
        s.wrote(out.length);
        await s.conn.drained();
      }
      if (s.closed) return stop();
      if (top?.done) {
        stop();
        break;
      }
    }
  } catch (e) {
    // Half a message has gone out: only closing tells the client it is incomplete.
    s.log.error("retr.stream_failed", { conn: s.conn.id, uid: message.uid, error: e as Error });
    stop();
    s.conn.close();
    return;
  }
  s.conn.write(stuffer.finish());
  if (top === null && read !== message.size) {
    s.log.warn("retr.size_mismatch", {
      conn: s.conn.id,
      uid: message.uid,
      listed: message.size,
      sent: read,
    });
  }
}
