// The Received: trace header this server prepends to every message it accepts (RFC 5321 §4.4,
// RFC 5322 §3.6.7), with the protocol keyword of RFC 3848 / RFC 6531 §3.7.3 saying whether TLS
// and AUTH were used.
import { rfc5322Date } from "../../mailformat/mod.ts";

export interface ReceivedInfo {
  heloName: string;
  remoteAddress: string;
  hostname: string;
  esmtp: boolean;
  tls: boolean;
  /** What TLS was negotiated, when known (RFC 8314 §4.3 asks for it in the trace). */
  tlsInfo?: { version: string; cipher: string } | null;
  authenticatedAs: string | null;
  smtputf8: boolean;
  id: string;
  /** The one recipient, when there is exactly one (a "for" clause would leak Bcc otherwise). */
  recipient: string | null;
  date: Date;
}

/** RFC 3848 §2 with RFC 6531 §3.7.3: SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA, UTF8SMTP… */
export function withProtocol(
  i: Pick<ReceivedInfo, "esmtp" | "tls" | "authenticatedAs" | "smtputf8">,
): string {
  if (!i.esmtp) return "SMTP";
  const base = i.smtputf8 ? "UTF8SMTP" : "ESMTP";
  return base + (i.tls ? "S" : "") + (i.authenticatedAs ? "A" : "");
}

/** Only characters that cannot break out of the header's syntax (no parentheses, no CRLF). */
function safe(text: string, max: number): string {
  return text.replace(/[^A-Za-z0-9.\-_:[\]@+]/g, "_").slice(0, max);
}

/** An IP as a domain literal (RFC 5321 §4.1.3). */
function literal(ip: string): string {
  const v4 = ip.startsWith("::ffff:") && ip.includes(".") ? ip.slice(7) : ip;
  return v4.includes(":") ? `[IPv6:${v4}]` : `[${v4}]`;
}

/** The header, folded (RFC 5322 §2.2.3) and ending in CRLF. */
export function receivedHeader(i: ReceivedInfo): string {
  const lines = [
    `Received: from ${safe(i.heloName, 255)} (${literal(i.remoteAddress)})`,
    `by ${safe(i.hostname, 255)} (Posthorn) with ${withProtocol(i)} id ${safe(i.id, 64)}`,
  ];
  const comments: string[] = [];
  if (i.tls) {
    comments.push(
      i.tlsInfo
        ? `(using ${safe(i.tlsInfo.version, 32)} with cipher ${safe(i.tlsInfo.cipher, 64)})`
        : "(using TLS)",
    );
  }
  if (i.authenticatedAs) comments.push(`(authenticated as ${safe(i.authenticatedAs, 255)})`);
  if (comments.length > 0) lines.push(comments.join(" "));
  // The date follows the last clause after ";" (RFC 5322 §3.6.7).
  if (i.recipient) lines.push(`for <${i.recipient}>; ${rfc5322Date(i.date)}`);
  else lines[lines.length - 1] += `; ${rfc5322Date(i.date)}`;
  return lines.join("\r\n\t") + "\r\n";
}
