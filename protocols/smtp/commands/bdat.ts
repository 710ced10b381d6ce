// BDAT (RFC 3030 CHUNKING): the message in chunks of a declared size, no dot-stuffing. The
// declared bytes are always read, even when the chunk is refused (RFC 3030 §2), and streamed
// through a second LineReader so the same content checks as DATA apply line by line.
import { type LineEvent, LineReader } from "../../wire/mod.ts";
import type { BodySink } from "../body-sink.ts";
import type { SmtpCommand } from "../parser.ts";
import { type Reply, reply } from "../reply.ts";
import type { SmtpSession, Transaction } from "../session.ts";
import { finishMessage, startBody } from "./deliver.ts";

const CRLF = new Uint8Array([0x0d, 0x0a]);

export interface BdatChunk {
  size: number;
  last: boolean;
  /** Null when the chunk is read only to be discarded. */
  sink: BodySink | null;
  /** The reply for a discarded chunk. */
  refusal: Reply | null;
  /** The transaction's line splitter: a line may straddle chunks. */
  lines: LineReader | null;
}

export function bdatCommand(
  s: SmtpSession,
  cmd: Extract<SmtpCommand, { verb: "BDAT" }>,
): void | Promise<void> {
  const chunk: BdatChunk = {
    size: cmd.size,
    last: cmd.last,
    sink: null,
    refusal: null,
    lines: null,
  };
  const tx = s.tx;
  if (!tx) chunk.refusal = reply(503, "5.5.1", "Need MAIL command first");
  else if (tx.recipients.length === 0) chunk.refusal = reply(554, "5.5.1", "No valid recipients");
  if (!tx || chunk.refusal) return begin(s, chunk);
  if (tx.sink) return begin(s, attach(s, tx, chunk));
  return startBody(s, tx).then((refused) => {
    if (refused) {
      s.resetTransaction();
      chunk.refusal = refused;
      return begin(s, chunk);
    }
    return begin(s, attach(s, tx, chunk));
  });
}

function attach(s: SmtpSession, tx: Transaction, chunk: BdatChunk): BdatChunk {
  tx.usedBdat = true;
  tx.bdatLines ??= new LineReader({ maxLineBytes: s.config.limits.dataLineBytes, mode: "crlf" });
  chunk.sink = tx.sink;
  chunk.lines = tx.bdatLines;
  return chunk;
}

function begin(s: SmtpSession, chunk: BdatChunk): void | Promise<void> {
  s.enterBdat(chunk);
  if (chunk.size === 0) return chunkDone(s, chunk);
}

export function bdatEvent(s: SmtpSession, chunk: BdatChunk, ev: LineEvent): void | Promise<void> {
  if (ev.kind !== "raw") return;
  const done = ev.remaining === 0;
  if (!chunk.sink || !chunk.lines || chunk.sink.failure) {
    return done ? chunkDone(s, chunk) : undefined;
  }
  chunk.lines.push(ev.data);
  const fed = feed(chunk.sink, chunk.lines);
  if (!done) return fed;
  return fed ? fed.then(() => chunkDone(s, chunk)) : chunkDone(s, chunk);
}

/** Moves complete lines into the sink; a promise while the sink's chunks are being appended. */
function feed(sink: BodySink, lines: LineReader): void | Promise<void> {
  for (;;) {
    const ev = lines.next();
    if (!ev) return;
    if (ev.kind === "overflow") sink.lineTooLong();
    else if (ev.kind === "line") sink.writeLine(ev.line, ev.bareLf);
    if (sink.wantsFlush) return sink.flush().then(() => feed(sink, lines));
  }
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
  // A message that does not end in CRLF gets one, as DATA would have it.
  if (chunk.lines && chunk.lines.buffered > 0) {
    chunk.lines.push(CRLF);
    await feed(sink, chunk.lines);
  }
  await finishMessage(s);
}
