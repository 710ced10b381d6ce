// BDAT (RFC 3030 CHUNKING): the message in chunks of a declared size, no dot-stuffing. The
// declared bytes are always read, even when the chunk is refused (RFC 3030 §2), and go through
// the sink's DataScanner so the same content checks as DATA apply (a line may straddle chunks).
import type { LineEvent } from "../../wire/mod.ts";
import type { BodySink } from "../body-sink.ts";
import type { SmtpCommand } from "../parser.ts";
import { type Reply, reply } from "../reply.ts";
import type { SmtpSession, Transaction } from "../session.ts";
import { finishMessage, startBody } from "./deliver.ts";

export interface BdatChunk {
  size: number;
  last: boolean;
  /** Null when the chunk is read only to be discarded. */
  sink: BodySink | null;
  /** The reply for a discarded chunk. */
  refusal: Reply | null;
}

export function bdatCommand(
  s: SmtpSession,
  cmd: Extract<SmtpCommand, { verb: "BDAT" }>,
): void | Promise<void> {
  const chunk: BdatChunk = { size: cmd.size, last: cmd.last, sink: null, refusal: null };
  const tx = s.tx;
  if (!tx) chunk.refusal = reply(503, "5.5.1", "Need MAIL command first");
  else if (tx.recipients.length === 0) chunk.refusal = reply(554, "5.5.1", "No valid recipients");
  if (!tx || chunk.refusal) return begin(s, chunk);
  if (tx.sink) return begin(s, attach(tx, chunk));
  return startBody(s, tx).then((refused) => {
    if (refused) {
      s.resetTransaction();
      chunk.refusal = refused;
      return begin(s, chunk);
    }
    return begin(s, attach(tx, chunk));
  });
}

function attach(tx: Transaction, chunk: BdatChunk): BdatChunk {
  tx.usedBdat = true;
  chunk.sink = tx.sink;
  return chunk;
}

function begin(s: SmtpSession, chunk: BdatChunk): void | Promise<void> {
  s.enterBdat(chunk);
  if (chunk.size === 0) return chunkDone(s, chunk);
}

export function bdatEvent(s: SmtpSession, chunk: BdatChunk, ev: LineEvent): void | Promise<void> {
  if (ev.kind !== "raw") return;
  const done = ev.remaining === 0;
  const sink = chunk.sink;
  if (sink && !sink.failure) {
    sink.writeBdat(ev.data);
    if (sink.wantsFlush) {
      const flushed = sink.flush();
      return done ? flushed.then(() => chunkDone(s, chunk)) : flushed;
    }
  }
  return done ? chunkDone(s, chunk) : undefined;
}

async function chunkDone(s: SmtpSession, chunk: BdatChunk): Promise<void> {
  s.backToCommands();
  if (chunk.refusal) return s.send(chunk.refusal);
  const sink = chunk.sink!;
  if (sink.failure) {
    // RFC 3030 §3: a failed chunk fails the transaction; later chunks get 503.
    s.resetTransaction();
    s.send(sink.failure);
    return s.afterTransaction();
  }
  if (!chunk.last) return s.send(reply(250, "2.0.0", `${chunk.size} octets received`));
  sink.endBdat(); // a message that does not end in CRLF gets one, as DATA would have it
  await finishMessage(s);
}
