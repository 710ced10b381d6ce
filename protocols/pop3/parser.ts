// POP3 command-line parsing (RFC 1939 §3, RFC 2449 §4): pure, no state, no socket. A line is a
// keyword of 3-4 letters, case-insensitive, then arguments separated by spaces.
import { latin1 } from "../wire/mod.ts";

export interface Pop3Command {
  /** Upper-cased keyword: "RETR". */
  verb: string;
  /** Space-separated arguments. */
  args: string[];
  /** Everything after the keyword and one space, verbatim (PASS may contain spaces). */
  rest: string;
}

export type ParseResult = { ok: true; command: Pop3Command } | { ok: false; error: string };

/** RFC 2449 §4: arguments may be up to 40 octets (RFC 1939), extended to 255. */
const MAX_ARG_BYTES = 255;

export function parseCommand(line: Uint8Array): ParseResult {
  const text = latin1(line);
  if (text.length === 0) return { ok: false, error: "Empty command" };
  if (/[\x00-\x08\x0a-\x1f\x7f]/.test(text)) {
    return { ok: false, error: "Control characters are not allowed in commands" };
  }
  const space = text.indexOf(" ");
  const keyword = space < 0 ? text : text.slice(0, space);
  // RFC 1939 §3: keywords are three or four characters long.
  if (!/^[A-Za-z]{3,4}$/.test(keyword)) return { ok: false, error: "Unknown command" };
  const rest = space < 0 ? "" : text.slice(space + 1);
  const args = rest.split(/[ \t]+/).filter((a) => a.length > 0);
  if (args.some((a) => a.length > MAX_ARG_BYTES)) {
    return { ok: false, error: `Argument longer than ${MAX_ARG_BYTES} octets` };
  }
  return { ok: true, command: { verb: keyword.toUpperCase(), args, rest } };
}

/** RFC 1939 §3/§5: a message-number is a positive decimal; null when malformed. */
export function parseMessageNumber(arg: string | undefined): number | null {
  if (arg === undefined || !/^[1-9][0-9]{0,8}$/.test(arg)) return null;
  return Number(arg);
}

/** TOP's line count: a non-negative decimal (RFC 1939 §7). */
export function parseLineCount(arg: string | undefined): number | null {
  if (arg === undefined || !/^[0-9]{1,9}$/.test(arg)) return null;
  return Number(arg);
}
