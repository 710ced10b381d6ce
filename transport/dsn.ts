// Owns: rendering delivery status notifications (RFC 3464 multipart/report, RFC 6522) as a
// stream of bytes: a human-readable part, the machine-readable message/delivery-status part,
// and the original message (RET=FULL) or its header (RET=HDRS), streamed from the queue.
// Which DSNs are due (RFC 3461 NOTIFY) is decided by the runner; see `notifyAllows`.
import { rfc5322Date } from "../mailformat/mod.ts";

export { rfc5322Date };

export type DsnAction = "failed" | "delayed" | "relayed";

export interface DsnRecipient {
  address: string;
  /** RFC 3461 ORCPT as "addr-type;address" (decoded). */
  orcpt?: string | null;
  action: DsnAction;
  /** RFC 3463 status code. */
  status: string;
  /** The server's reply ("550 5.1.1 no such user") or our own explanation. */
  diagnostic?: string | null;
  /** True when `diagnostic` is an SMTP reply (Diagnostic-Code: smtp; …). */
  diagnosticFromServer?: boolean;
  /** "mx.example.com[192.0.2.1]:25" or a bare host name. */
  remoteMta?: string | null;
  lastAttemptAt?: number | null;
  willRetryUntil?: number | null;
}

export interface DsnReport {
  /** Our host name (Reporting-MTA, From:, Message-ID). */
  reportingMta: string;
  /** The original sender, who receives this report. */
  to: string;
  envid?: string | null;
  arrivalDate: number;
  now: number;
  recipients: DsnRecipient[];
  /** The returned content; null returns nothing (e.g. the body is gone). */
  original: { kind: "FULL" | "HDRS"; eightBit: boolean; bytes: AsyncIterable<Uint8Array> } | null;
}

/** RFC 3461 §4.1: which DSNs a recipient asked for; absent NOTIFY means FAILURE and DELAY. */
export function notifyAllows(
  notify: string[] | null | undefined,
  kind: "FAILURE" | "DELAY" | "SUCCESS",
): boolean {
  if (!notify || notify.length === 0) return kind !== "SUCCESS";
  const upper = notify.map((n) => n.toUpperCase());
  if (upper.includes("NEVER")) return false;
  return upper.includes(kind);
}

const enc = new TextEncoder();

export async function* renderDsn(report: DsnReport): AsyncGenerator<Uint8Array> {
  const boundary = `=_posthorn_${randomToken(16)}`;
  const worst = report.recipients.some((r) => r.action === "failed")
    ? "failed"
    : report.recipients.some((r) => r.action === "delayed")
    ? "delayed"
    : "relayed";
  const subject = {
    failed: "Undelivered Mail Returned to Sender",
    delayed: "Delayed Mail (still being retried)",
    relayed: "Mail relayed to a server that sends no delivery reports",
  }[worst];
  const host = report.reportingMta;
  const head = [
    `From: Mail Delivery System <MAILER-DAEMON@${host}>`,
    `To: <${report.to}>`,
    `Subject: ${subject}`,
    `Date: ${rfc5322Date(report.now)}`,
    `Message-ID: <${report.now}.${randomToken(12)}@${host}>`,
    "Auto-Submitted: auto-replied", // RFC 3834 §5: automatic responders must not answer it
    "MIME-Version: 1.0",
    // RFC 3464 §2 / RFC 6522 §3: multipart/report with report-type=delivery-status.
    `Content-Type: multipart/report; report-type=delivery-status;\r\n boundary="${boundary}"`,
    "",
    "This is a MIME-encapsulated delivery status notification.",
    "",
  ];
  yield enc.encode(head.join("\r\n") + "\r\n");

  // Part 1: for people.
  const human: string[] = [`This is the mail system at ${host}.`, ""];
  if (worst === "failed") {
    human.push("Your message could not be delivered to one or more recipients.");
    human.push("It has been returned below; no further attempts will be made.");
  } else if (worst === "delayed") {
    human.push("Your message has not been delivered yet to one or more recipients.");
    human.push("Nothing needs to be done: delivery will be retried.");
  } else {
    human.push("Your message was relayed to a server that does not send delivery reports;");
    human.push("you will not be told whether it reached the recipient.");
  }
  human.push("");
  for (const r of report.recipients) {
    human.push(`<${r.address}>: ${r.action}${r.diagnostic ? `: ${clean(r.diagnostic)}` : ""}`);
    if (r.willRetryUntil) human.push(`  will retry until ${rfc5322Date(r.willRetryUntil)}`);
  }
  yield enc.encode(
    `--${boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n` +
      human.join("\r\n") + "\r\n\r\n",
  );

  // Part 2: for machines (RFC 3464 §2.2 per-message fields, §2.3 per-recipient fields).
  const status: string[] = [`Reporting-MTA: dns; ${host}`];
  if (report.envid) status.push(field("Original-Envelope-Id", clean(report.envid))); // §2.2.1
  status.push(`Arrival-Date: ${rfc5322Date(report.arrivalDate)}`); // §2.2.5
  for (const r of report.recipients) {
    status.push("");
    if (r.orcpt) {
      const semi = r.orcpt.indexOf(";");
      if (semi > 0) {
        status.push(
          field(
            "Original-Recipient",
            `${r.orcpt.slice(0, semi).trim()}; ${clean(r.orcpt.slice(semi + 1))}`,
          ),
        ); // §2.3.1
      }
    }
    status.push(field("Final-Recipient", `rfc822; ${clean(r.address)}`)); // §2.3.2
    status.push(`Action: ${r.action}`); // §2.3.3
    status.push(`Status: ${r.status}`); // §2.3.4
    if (r.remoteMta) status.push(`Remote-MTA: dns; ${mtaName(r.remoteMta)}`); // §2.3.5
    if (r.diagnostic) {
      const type = r.diagnosticFromServer ? "smtp" : "x-posthorn"; // §2.3.6
      status.push(field("Diagnostic-Code", `${type}; ${clean(r.diagnostic)}`));
    }
    if (r.lastAttemptAt) status.push(`Last-Attempt-Date: ${rfc5322Date(r.lastAttemptAt)}`); // §2.3.7
    if (r.willRetryUntil) status.push(`Will-Retry-Until: ${rfc5322Date(r.willRetryUntil)}`); // §2.3.9
  }
  yield enc.encode(
    `--${boundary}\r\nContent-Type: message/delivery-status\r\n\r\n` + status.join("\r\n") +
      "\r\n\r\n",
  );

  // Part 3: what was sent (RFC 3462 §2 text/rfc822-headers for RET=HDRS).
  if (report.original) {
    const type = report.original.kind === "FULL" ? "message/rfc822" : "text/rfc822-headers";
    const cte = report.original.eightBit ? "Content-Transfer-Encoding: 8bit\r\n" : "";
    yield enc.encode(`--${boundary}\r\nContent-Type: ${type}\r\n${cte}\r\n`);
    let last: Uint8Array = new Uint8Array(0);
    for await (const chunk of report.original.bytes) {
      if (chunk.length === 0) continue;
      last = chunk.subarray(Math.max(0, chunk.length - 2));
      yield chunk;
    }
    const endsWithCrlf = last.length === 2 && last[0] === 0x0d && last[1] === 0x0a;
    yield enc.encode(`${endsWithCrlf ? "" : "\r\n"}--${boundary}--\r\n`);
  } else {
    yield enc.encode(`--${boundary}--\r\n`);
  }
}

/**
 * The header section of a message, the blank line included, from its byte stream (RET=HDRS).
 * At most maxBytes: a longer header is cut after its last whole line. Stops reading (and so
 * cancels the store stream) as soon as the header ends.
 */
export async function* headerOnly(
  bytes: AsyncIterable<Uint8Array>,
  maxBytes: number,
): AsyncGenerator<Uint8Array> {
  const buf = new Uint8Array(maxBytes);
  let n = 0;
  for await (const chunk of bytes) {
    const take = Math.min(chunk.length, maxBytes - n);
    buf.set(chunk.subarray(0, take), n);
    const from = Math.max(0, n - 3);
    n += take;
    const end = findHeaderEnd(buf, from, n);
    if (end >= 0) {
      yield buf.slice(0, end);
      return;
    }
    if (n >= maxBytes) break;
  }
  // No blank line within maxBytes (or a message without a body): whole lines only.
  const lastLf = buf.subarray(0, n).lastIndexOf(0x0a);
  if (lastLf >= 0) yield buf.slice(0, lastLf + 1);
}

function findHeaderEnd(buf: Uint8Array, from: number, to: number): number {
  for (let i = from; i < to; i++) {
    if (buf[i] !== 0x0a) continue;
    if (buf[i + 1] === 0x0a && i + 1 < to) return i + 2;
    if (buf[i + 1] === 0x0d && buf[i + 2] === 0x0a && i + 2 < to) return i + 3;
  }
  return -1;
}

/** "name: value", folded at spaces so no line passes 78 characters (RFC 5322 §2.2.3). */
function field(name: string, value: string): string {
  // A word longer than a line is cut: this is diagnostic text, the 998-byte limit matters more.
  const words = value.split(" ").flatMap((w) => w.match(/.{1,70}/g) ?? [""]);
  const lines: string[] = [];
  let line = `${name}:`;
  for (const w of words) {
    if (line.length + 1 + w.length > 78 && line.length > name.length + 1) {
      lines.push(line);
      line = " " + w;
    } else line += " " + w;
  }
  lines.push(line);
  return lines.join("\r\n");
}

/** One printable line: no CR, LF or other controls can break the report's structure. */
function clean(text: string): string {
  const line = text.replace(/[\x00-\x1f\x7f]+/g, " ").replace(/ +/g, " ").trim();
  return line.length > 2000 ? line.slice(0, 2000) + "..." : line;
}

function mtaName(remote: string): string {
  return remote.replace(/\[.*$/, "").replace(/:\d+$/, "");
}

function randomToken(bytes: number): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(bytes))).toString("hex");
}
