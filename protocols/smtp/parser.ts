// The SMTP command parser: one command line (without its CRLF) in, a typed command or a syntax
// error carrying its RFC reply out. Pure and total: no socket, no state, never throws, so it can
// be fuzzed with random bytes. Line framing and length limits live in the session's LineReader.
import { parsePath } from "./address.ts";
import { type EsmtpParam, parseParams } from "./params.ts";
import { type Reply, reply } from "./reply.ts";

export type SmtpCommand =
  | { verb: "EHLO" | "HELO"; domain: string }
  | { verb: "MAIL"; address: string; utf8: boolean; params: EsmtpParam[] }
  | { verb: "RCPT"; address: string; utf8: boolean; params: EsmtpParam[] }
  | { verb: "DATA" | "RSET" | "QUIT" | "STARTTLS" }
  | { verb: "NOOP" | "HELP"; argument: string }
  | { verb: "VRFY" | "EXPN"; argument: string }
  | { verb: "AUTH"; mechanism: string; initialResponse: string | null }
  | { verb: "BDAT"; size: number; last: boolean };

export interface SmtpSyntaxError {
  verb: "ERROR";
  /** The command word as sent (upper-cased, may be ""), for logs. */
  attempted: string;
  reply: Reply;
}

export type ParseResult = SmtpCommand | SmtpSyntaxError;

const utf8 = new TextDecoder("utf-8", { fatal: true });

function fail(attempted: string, code: number, enhanced: string, text: string): SmtpSyntaxError {
  return { verb: "ERROR", attempted, reply: reply(code, enhanced, text) };
}

/** Decodes and parses one command line. */
export function parseSmtpCommand(line: Uint8Array | string): ParseResult {
  let text: string;
  if (typeof line === "string") text = line;
  else {
    try {
      text = utf8.decode(line);
    } catch {
      // RFC 5321 §2.4 commands are ASCII; RFC 6531 allows UTF-8, but never malformed UTF-8.
      return fail("", 500, "5.5.2", "Syntax error: invalid UTF-8 in command");
    }
  }
  if (/[\x00-\x1f\x7f]/.test(text)) {
    return fail("", 500, "5.5.2", "Syntax error: control character in command");
  }
  const space = text.indexOf(" ");
  const word = (space < 0 ? text : text.slice(0, space)).toUpperCase();
  // Leniency: extra spaces around arguments are tolerated (RFC 5321 §4.1.1 asks for one SP).
  const args = space < 0 ? "" : text.slice(space + 1).trim();
  const noArgs = (verb: "DATA" | "RSET" | "QUIT" | "STARTTLS"): ParseResult =>
    args === "" ? { verb } : fail(verb, 501, "5.5.4", `Syntax: ${verb} takes no parameters`);

  switch (word) {
    case "EHLO":
    case "HELO": {
      // RFC 5321 §4.1.1.1: a domain or an address literal. Only the first word is kept.
      const domain = args.split(" ")[0]!;
      if (domain === "" || domain.length > 255) {
        return fail(word, 501, "5.5.4", `Syntax: ${word} hostname`);
      }
      return { verb: word, domain };
    }
    case "MAIL":
    case "RCPT": {
      const prefix = word === "MAIL" ? "FROM:" : "TO:";
      if (args.slice(0, prefix.length).toUpperCase() !== prefix) {
        return fail(word, 501, "5.5.4", `Syntax: ${word} ${prefix}<address>`);
      }
      const path = parsePath(args.slice(prefix.length).trimStart(), {
        allowNull: word === "MAIL",
        allowBarePostmaster: word === "RCPT",
      });
      // RFC 3463 §3.2: X.1.7 bad sender address syntax, X.1.3 bad destination syntax.
      if (!path.ok) {
        return fail(word, 501, word === "MAIL" ? "5.1.7" : "5.1.3", `Bad address: ${path.reason}`);
      }
      if (path.rest !== "" && !path.rest.startsWith(" ")) {
        return fail(word, 501, "5.5.4", "Syntax: parameters must follow the address after a space");
      }
      const params = parseParams(path.rest);
      if (!Array.isArray(params)) return { verb: "ERROR", attempted: word, reply: params };
      return { verb: word, address: path.address, utf8: path.utf8, params };
    }
    case "DATA":
    case "RSET":
    case "QUIT":
    case "STARTTLS":
      return noArgs(word);
    case "NOOP":
    case "HELP":
      return { verb: word, argument: args };
    case "VRFY":
    case "EXPN":
      if (args === "") return fail(word, 501, "5.5.4", `Syntax: ${word} address`);
      return { verb: word, argument: args };
    case "AUTH": {
      // RFC 4954 §4: AUTH mechanism [initial-response]
      const parts = args.split(" ").filter((p) => p !== "");
      const mechanism = (parts[0] ?? "").toUpperCase();
      if (!/^[A-Z0-9_-]{1,20}$/.test(mechanism) || parts.length > 2) {
        return fail(word, 501, "5.5.4", "Syntax: AUTH mechanism [initial-response]");
      }
      return { verb: "AUTH", mechanism, initialResponse: parts[1] ?? null };
    }
    case "BDAT": {
      // RFC 3030 §2: BDAT chunk-size [SP end-marker]
      const parts = args.split(" ").filter((p) => p !== "");
      const size = parts[0] ?? "";
      const last = parts[1]?.toUpperCase();
      if (!/^\d{1,15}$/.test(size) || parts.length > 2 || (last !== undefined && last !== "LAST")) {
        return fail(word, 501, "5.5.4", "Syntax: BDAT size [LAST]");
      }
      return { verb: "BDAT", size: Number(size), last: last === "LAST" };
    }
    default:
      return fail(word.slice(0, 20), 500, "5.5.2", "Syntax error, command unrecognized");
  }
}
