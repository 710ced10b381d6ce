// DATA (RFC 5321 §4.1.1.4): the message as lines ending in CRLF, dot-stuffed (§4.5.2), ended by
// a line holding a single dot. The session hands each network read to the sink whole; its
// DataScanner finds CRLF.CRLF (the only end: "\n.\n" or "\r.\r" is content, SMTP smuggling),
// removes the stuffing and refuses bare CR/LF with 550 5.6.0 instead of storing or relaying it.
import type { LineEvent } from "../../wire/mod.ts";
import { reply } from "../reply.ts";
import type { SmtpSession } from "../session.ts";
import { finishMessage, startBody } from "./deliver.ts";

const NOTHING = new Uint8Array(0);

export function dataCommand(s: SmtpSession): void | Promise<void> {
  const tx = s.tx;
  if (!tx) return s.send(reply(503, "5.5.1", "Need MAIL command first"));
  if (tx.usedBdat) return s.send(reply(503, "5.5.1", "DATA not allowed after BDAT")); // RFC 3030 §3
  // RFC 5321 §3.3: DATA without an accepted recipient.
  if (tx.recipients.length === 0) return s.send(reply(554, "5.5.1", "No valid recipients"));
  return startBody(s, tx).then((refused) => {
    if (refused) return s.send(refused);
    s.enterData();
    s.send(reply(354, null, "End data with <CR><LF>.<CR><LF>"));
  });
}

/** One read of message content (the session's reader is in raw mode during DATA). */
export function dataEvent(s: SmtpSession, ev: LineEvent): void | Promise<void> {
  if (ev.kind !== "raw") return;
  const sink = s.tx?.sink;
  if (!sink) {
    s.endData(NOTHING); // the transaction is gone: whatever comes next is commands
    return;
  }
  const end = sink.writeData(ev.data);
  if (end >= 0) {
    s.endData(ev.data.subarray(end)); // what follows the final dot is commands (RFC 2920 §3.1)
    return finishMessage(s);
  }
  if (sink.wantsFlush) return sink.flush();
}
