// Checks on the message content as it streams by, one line at a time (after dot-unstuffing):
// line endings must be CRLF (RFC 5321 §2.3.8: bare CR and bare LF are refused, which also
// closes the SMTP-smuggling door for whoever relays the message on), and the Received: headers
// are counted to catch mail loops (RFC 5321 §6.3).
import { type Reply, reply } from "./reply.ts";

const CR = 0x0d;
const RECEIVED = new TextEncoder().encode("received:");

export class ContentCheck {
  #inHeaders = true;
  #hops = 0;
  failure: Reply | null = null;

  constructor(private readonly maxHops: number) {}

  get hops(): number {
    return this.#hops;
  }

  /** One content line without its CRLF; `bareLf` when it contained an LF not after a CR. */
  line(line: Uint8Array, bareLf: boolean): void {
    if (this.failure) return;
    if (bareLf || line.indexOf(CR) >= 0) {
      // RFC 5321 §2.3.8: CR and LF only as the CRLF pair.
      this.failure = reply(
        550,
        "5.6.0",
        "Message contains a bare CR or LF (RFC 5321 §2.3.8); lines must end with CRLF",
      );
      return;
    }
    if (!this.#inHeaders) return;
    if (line.length === 0) {
      this.#inHeaders = false; // the blank line ends the header section (RFC 5322 §2.1)
      return;
    }
    if (line.length >= RECEIVED.length && startsWithFold(line, RECEIVED)) {
      this.#hops++;
      // Our own Received: comes on top, so the client's count may reach maxHops - 1.
      if (this.#hops >= this.maxHops) {
        this.failure = reply(554, "5.4.6", `Too many hops (${this.#hops}): mail loop?`);
      }
    }
  }
}

/** Case-insensitive ASCII prefix test; `lower` is lower-case. */
function startsWithFold(bytes: Uint8Array, lower: Uint8Array): boolean {
  for (let i = 0; i < lower.length; i++) {
    const b = bytes[i]!;
    const folded = b >= 0x41 && b <= 0x5a ? b + 0x20 : b;
    if (folded !== lower[i]) return false;
  }
  return true;
}
