// The benchmark's messages, one definition for every server measured: the bytes a client gets
// from RETR. Posthorn stores them as SMTP delivery does (a Return-Path prefix added per local
// copy, then the body); Dovecot gets the same bytes as one maildir file.

/** What SMTP delivery prepends for local copies (protocols/smtp/commands/deliver.ts). */
export const RETURN_PATH = "Return-Path: <bench@example.org>\r\n";

/** Message `i` of exactly `size` bytes (Return-Path included), CRLF lines. */
export function message(size: number, i: number): Uint8Array {
  let s =
    `${RETURN_PATH}From: bench@example.org\r\nTo: user@example.com\r\nSubject: message ${i}\r\n\r\n`;
  const line = "The quick brown fox jumps over the lazy dog. 0123456789 abcdefghijklmnopq\r\n";
  while (s.length + line.length <= size - 2) s += line;
  s += "x".repeat(Math.max(0, size - 2 - s.length)) + "\r\n";
  return new TextEncoder().encode(s);
}

/** The same message split as delivery stores it: prefix and body. */
export function stored(size: number, i: number): { prefix: Uint8Array; body: Uint8Array } {
  const all = message(size, i);
  const n = RETURN_PATH.length;
  return { prefix: all.slice(0, n), body: all.slice(n) };
}
