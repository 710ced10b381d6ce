// ESMTP parameters of MAIL and RCPT (RFC 5321 §4.1.2 esmtp-param) and the values of the
// extensions Posthorn advertises: SIZE (RFC 1870), BODY (RFC 6152), SMTPUTF8 (RFC 6531),
// AUTH= (RFC 4954 §5), RET/ENVID/NOTIFY/ORCPT (RFC 3461). Pure functions, no throws.
import { type Reply, reply } from "./reply.ts";

export interface EsmtpParam {
  /** Upper-cased keyword. */
  key: string;
  value: string | null;
}

const KEYWORD = /^[A-Za-z0-9][A-Za-z0-9-]*$/;
// esmtp-value = 1*(%d33-60 / %d62-126), widened to UTF-8 by RFC 6531 §3.3.
const VALUE = /^[\x21-\x3c\x3e-\x7e\u0080-\u{10FFFF}]+$/u;

/** Splits " KEY=VALUE KEY2" into parameters; a duplicate keyword is a syntax error. */
export function parseParams(text: string): EsmtpParam[] | Reply {
  const out: EsmtpParam[] = [];
  const seen = new Set<string>();
  for (const token of text.split(" ")) {
    if (token === "") continue;
    const eq = token.indexOf("=");
    const key = (eq < 0 ? token : token.slice(0, eq)).toUpperCase();
    const value = eq < 0 ? null : token.slice(eq + 1);
    if (!KEYWORD.test(key) || (value !== null && !VALUE.test(value))) {
      return reply(501, "5.5.4", `Syntax error in parameter "${token.slice(0, 40)}"`);
    }
    if (seen.has(key)) return reply(501, "5.5.4", `Duplicate parameter ${key}`);
    seen.add(key);
    out.push({ key, value });
  }
  return out;
}

/** RFC 3461 §4: xtext = *( xchar / "+" 2HEXCHAR ), decoded. Null when malformed. */
export function decodeXtext(text: string): string | null {
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x2b) {
      const hex = text.slice(i + 1, i + 3);
      if (!/^[0-9A-F]{2}$/.test(hex)) return null;
      out += String.fromCharCode(parseInt(hex, 16));
      i += 2;
    } else if (c < 33 || c > 126 || c === 0x3d) return null;
    else out += text[i];
  }
  return out;
}

export interface MailParams {
  size: number | null;
  body: "7BIT" | "8BITMIME" | null;
  smtputf8: boolean;
  ret: "FULL" | "HDRS" | null;
  envid: string | null;
}

const unknown = (key: string) => reply(555, "5.5.4", `Unsupported parameter ${key}`);
const bad = (key: string, why: string) => reply(501, "5.5.4", `Bad ${key} parameter: ${why}`);

/** Interprets MAIL FROM parameters; unknown ones get 555 (RFC 5321 §4.1.1.11). */
export function mailParams(params: EsmtpParam[]): MailParams | Reply {
  const out: MailParams = { size: null, body: null, smtputf8: false, ret: null, envid: null };
  for (const { key, value } of params) {
    switch (key) {
      case "SIZE": // RFC 1870 §3
        if (value === null || !/^\d{1,20}$/.test(value)) return bad(key, "expected a number");
        out.size = Number(value);
        break;
      case "BODY": { // RFC 6152 §2
        const v = value?.toUpperCase();
        if (v !== "7BIT" && v !== "8BITMIME") return bad(key, "expected 7BIT or 8BITMIME");
        out.body = v;
        break;
      }
      case "SMTPUTF8": // RFC 6531 §3.4: no value
        if (value !== null) return bad(key, "takes no value");
        out.smtputf8 = true;
        break;
      case "RET": { // RFC 3461 §4.3
        const v = value?.toUpperCase();
        if (v !== "FULL" && v !== "HDRS") return bad(key, "expected FULL or HDRS");
        out.ret = v;
        break;
      }
      case "ENVID": { // RFC 3461 §4.4: xtext, at most 100 characters
        const v = value === null ? null : decodeXtext(value);
        if (v === null || v.length > 100) return bad(key, "expected xtext of up to 100 characters");
        out.envid = v;
        break;
      }
      case "AUTH": // RFC 4954 §5: accepted; we trust only our own AUTH, so the value is ignored
        if (value === null) return bad(key, "expected a mailbox or <>");
        break;
      default:
        return unknown(key);
    }
  }
  return out;
}

export interface RcptParams {
  notify: string[] | null;
  /** "addr-type;address", xtext-decoded (RFC 3461 §4.2). */
  orcpt: string | null;
}

/** Interprets RCPT TO parameters (RFC 3461 §4.1, §4.2). */
export function rcptParams(params: EsmtpParam[]): RcptParams | Reply {
  const out: RcptParams = { notify: null, orcpt: null };
  for (const { key, value } of params) {
    switch (key) {
      case "NOTIFY": {
        // RFC 3461 §4.1: "NEVER" alone, or a comma list of SUCCESS, FAILURE, DELAY.
        const items = (value ?? "").toUpperCase().split(",");
        const valid = items.every((v) => v === "SUCCESS" || v === "FAILURE" || v === "DELAY") ||
          (items.length === 1 && items[0] === "NEVER");
        if (!valid || new Set(items).size !== items.length) {
          return bad(key, "expected NEVER or SUCCESS,FAILURE,DELAY");
        }
        out.notify = items;
        break;
      }
      case "ORCPT": {
        const semi = value?.indexOf(";") ?? -1;
        const type = semi > 0 ? value!.slice(0, semi) : "";
        const addr = semi > 0 ? decodeXtext(value!.slice(semi + 1)) : null;
        if (!/^[A-Za-z0-9][A-Za-z0-9-]*$/.test(type) || addr === null || addr === "") {
          return bad(key, "expected addr-type;xtext");
        }
        if (addr.length > 500) return bad(key, "too long");
        out.orcpt = `${type.toLowerCase()};${addr}`;
        break;
      }
      default:
        return unknown(key);
    }
  }
  return out;
}
