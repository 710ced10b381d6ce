// DATA (RFC 5321 §4.1.1.4): the message as lines ending in CRLF, dot-stuffed (§4.5.2), ended by
// a line holding a single dot. Only CRLF.CRLF ends it: the LineReader in "crlf" mode never ends
// a line at a bare LF, so "\n.\n" or "\r.\r" is content (SMTP smuggling), and the content check
// refuses such a message with 550 5.6.0 instead of storing or relaying it.
import type { LineEvent } from "../../wire/mod.ts";
import { reply } from "../reply.ts";
import type { SmtpSession } from "../session.ts";
import { finishMessage, startBody } from "./deliver.ts";

const DOT = 0x2e;

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

export function dataEvent(s: SmtpSession, ev: LineEvent): void | Promise<void> {
  const sink = s.tx?.sink;
  if (!sink) {
    s.backToCommands();
    return;
  }
  if (ev.kind === "overflow") return sink.lineTooLong();
  if (ev.kind !== "line") return;
  const line = ev.line;
  if (line.length === 1 && line[0] === DOT) {
    s.backToCommands(); // what follows the final dot is commands again (RFC 2920 §3.1)
    return finishMessage(s);
  }
  // RFC 5321 §4.5.2: a leading dot was doubled by the client; remove one.
  sink.writeLine(line[0] === DOT ? line.subarray(1) : line, ev.bareLf);
  if (sink.wantsFlush) return sink.flush();
}
