// SASL helpers shared by SMTP AUTH, POP3 AUTH, IMAP AUTHENTICATE: strict base64 and the PLAIN
// and LOGIN mechanisms' messages. Pure functions; every failure is a `SaslError` with a reason
// a protocol engine can put in its reply.

export class SaslError extends Error {
  constructor(
    readonly reason: "bad_base64" | "malformed" | "too_long" | "cancelled",
    message: string,
  ) {
    super(message);
    this.name = "SaslError";
  }
}

/** RFC 4616 §2: each of authzid, authcid and passwd is at most 255 octets of UTF-8. */
const MAX_FIELD_BYTES = 255;

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Decodes a base64 client response (RFC 4648 §4, padding required as RFC 4954 §4 and
 * RFC 5034 §4 expect). "=" alone is the empty response (RFC 4954 §4, RFC 5034 §4); "*" is the
 * client cancelling the exchange.
 */
export function decodeSaslResponse(text: string): Uint8Array {
  const t = text.trim();
  if (t === "*") throw new SaslError("cancelled", "authentication cancelled by the client");
  if (t === "=") return new Uint8Array(0);
  if (!BASE64.test(t)) throw new SaslError("bad_base64", "invalid base64 in the SASL response");
  return new Uint8Array(Buffer.from(t, "base64"));
}

export function encodeBase64(data: string | Uint8Array): string {
  return Buffer.from(typeof data === "string" ? new TextEncoder().encode(data) : data).toString(
    "base64",
  );
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

function decodeUtf8(bytes: Uint8Array, what: string): string {
  if (bytes.length > MAX_FIELD_BYTES) {
    throw new SaslError("too_long", `${what} is longer than ${MAX_FIELD_BYTES} bytes`);
  }
  try {
    return utf8.decode(bytes);
  } catch {
    throw new SaslError("malformed", `${what} is not valid UTF-8`);
  }
}

export interface PlainCredentials {
  /** The identity to act as; "" when the client asks for its own (the usual case). */
  authzid: string;
  authcid: string;
  password: string;
}

/** RFC 4616 §2: message = [authzid] UTF8NUL authcid UTF8NUL passwd. */
export function decodePlain(message: Uint8Array): PlainCredentials {
  const first = message.indexOf(0);
  const second = first < 0 ? -1 : message.indexOf(0, first + 1);
  if (first < 0 || second < 0 || message.indexOf(0, second + 1) >= 0) {
    throw new SaslError("malformed", "PLAIN needs authzid NUL authcid NUL password");
  }
  const authzid = decodeUtf8(message.subarray(0, first), "authorization identity");
  const authcid = decodeUtf8(message.subarray(first + 1, second), "user name");
  const password = decodeUtf8(message.subarray(second + 1), "password");
  if (authcid === "") throw new SaslError("malformed", "PLAIN user name is empty");
  if (password === "") throw new SaslError("malformed", "PLAIN password is empty");
  return { authzid, authcid, password };
}

/** AUTH PLAIN from its base64 form (the initial response or the reply to an empty challenge). */
export function decodePlainBase64(text: string): PlainCredentials {
  return decodePlain(decodeSaslResponse(text));
}

/**
 * LOGIN (draft-murchison-sasl-login): the server asks "Username:" then "Password:", both
 * base64-encoded, and the client answers each with a base64 string.
 */
export const LOGIN_PROMPTS = {
  username: encodeBase64("Username:"),
  password: encodeBase64("Password:"),
} as const;

export function decodeLoginField(text: string, what: "user name" | "password"): string {
  const value = decodeUtf8(decodeSaslResponse(text), what);
  if (value === "") throw new SaslError("malformed", `LOGIN ${what} is empty`);
  if (value.includes("\0")) throw new SaslError("malformed", `LOGIN ${what} contains NUL`);
  return value;
}
