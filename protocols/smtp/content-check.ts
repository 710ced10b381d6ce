// The rules message content must pass, one reply per rule, shared by DATA and BDAT (the bulk
// scanner in data-scanner.ts applies them line by line, in this order of precedence):
// - a line longer than limits.dataLineBytes (CRLF included) is refused (RFC 5321 §4.5.3.1.6);
// - line endings are CRLF only: a bare CR or bare LF is refused (RFC 5321 §2.3.8), which also
//   closes the SMTP-smuggling door for whoever relays the message on;
// - Received: headers in the header section are counted to catch mail loops (RFC 5321 §6.3);
// - the message may not exceed the connector's size limit (RFC 1870 §6.2).
import { type Reply, reply } from "./reply.ts";

/** The header name counted for loops, lower case, colon included. */
export const RECEIVED = new TextEncoder().encode("received:");

/** RFC 5321 §4.5.3.1.6: 500 for a text line that is too long. */
export function lineTooLongReply(limit: number): Reply {
  return reply(500, "5.5.2", `Message line longer than ${limit} bytes`);
}

/** RFC 5321 §2.3.8: CR and LF only as the CRLF pair. */
export function bareLineEndReply(): Reply {
  return reply(
    550,
    "5.6.0",
    "Message contains a bare CR or LF (RFC 5321 §2.3.8); lines must end with CRLF",
  );
}

/** RFC 5321 §6.3: too many Received: headers means a loop. */
export function loopReply(hops: number): Reply {
  return reply(554, "5.4.6", `Too many hops (${hops}): mail loop?`);
}

/** RFC 1870 §6.2 / RFC 5321 §4.5.3.1.10: 552 for a message over the fixed limit. */
export function tooBigReply(limit: number): Reply {
  return reply(552, "5.3.4", `Message size exceeds fixed limit of ${limit} bytes`);
}

/** Extends a case-insensitive match of RECEIVED over bytes[from, to): the new matched count. */
export function matchReceived(
  bytes: Uint8Array,
  from: number,
  to: number,
  matched: number,
): number {
  for (let i = from; i < to && matched < RECEIVED.length; i++) {
    const b = bytes[i]!;
    const folded = b >= 0x41 && b <= 0x5a ? b + 0x20 : b;
    if (folded !== RECEIVED[matched]) return -1;
    matched++;
  }
  return matched;
}
