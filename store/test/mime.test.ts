// MIME structure and envelope parsing, streamed in small chunks.
import { expect, test } from "bun:test";
import { MimeParser, parseAddressList } from "../mime.ts";

function parse(text: string, chunk = 7) {
  const bytes = new TextEncoder().encode(text);
  const p = new MimeParser();
  for (let i = 0; i < bytes.length; i += chunk) p.push(bytes.subarray(i, i + chunk));
  return { ...p.finish(), bytes };
}
const slice = (b: Uint8Array, s: number, e: number) => new TextDecoder().decode(b.subarray(s, e));

test("a plain message: envelope, offsets, lines", () => {
  const msg = 'From: "Doe, Jane" <jane@x.test>\r\nTo: a@b.test, "B" <b@b.test>\r\n' +
    "Subject: =?utf-8?q?caf=C3=A9?=\r\nMessage-ID: <1@x>\r\n\r\nline1\r\nline2\r\n";
  const r = parse(msg);
  expect(r.envelope.from).toEqual([{ name: "Doe, Jane", mailbox: "jane", host: "x.test" }]);
  expect(r.envelope.sender).toEqual(r.envelope.from);
  expect(r.envelope.to).toHaveLength(2);
  expect(r.envelope.messageId).toBe("<1@x>");
  expect(r.structure).toMatchObject({ type: "TEXT", subtype: "PLAIN", lines: 2 });
  expect(slice(r.bytes, r.structure.bodyStart, r.structure.end)).toBe("line1\r\nline2\r\n");
  expect(r.headerBytes).toBe(msg.indexOf("\r\n\r\n") + 4);
});

test("nested multipart with an attached message", () => {
  const msg = [
    "Subject: outer",
    'Content-Type: multipart/mixed; boundary="outer"',
    "",
    "preamble",
    "--outer",
    "Content-Type: multipart/alternative; boundary=inner",
    "",
    "--inner",
    "Content-Type: text/plain; charset=utf-8",
    "",
    "plain text",
    "--inner",
    "Content-Type: text/html",
    "",
    "<p>html</p>",
    "--inner--",
    "--outer",
    "Content-Type: message/rfc822",
    "",
    "Subject: inner message",
    "From: x@y.test",
    "",
    "inner body",
    "--outer",
    "Content-Type: application/octet-stream; name=a.bin",
    "Content-Transfer-Encoding: base64",
    'Content-Disposition: attachment; filename="a.bin"',
    "",
    "AAAA",
    "--outer--",
    "epilogue",
    "",
  ].join("\r\n");
  const r = parse(msg, 5);
  const s = r.structure;
  expect(s.type).toBe("MULTIPART");
  expect(s.children.map((c) => `${c.type}/${c.subtype}`)).toEqual([
    "MULTIPART/ALTERNATIVE",
    "MESSAGE/RFC822",
    "APPLICATION/OCTET-STREAM",
  ]);
  const alt = s.children[0]!;
  expect(alt.children.map((c) => c.subtype)).toEqual(["PLAIN", "HTML"]);
  expect(slice(r.bytes, alt.children[0]!.bodyStart, alt.children[0]!.end)).toBe("plain text");
  expect(slice(r.bytes, alt.children[1]!.bodyStart, alt.children[1]!.end)).toBe("<p>html</p>");
  const att = s.children[2]!;
  expect(att.encoding).toBe("BASE64");
  expect(att.disposition).toEqual({ type: "ATTACHMENT", params: { filename: "a.bin" } });
  expect(slice(r.bytes, att.bodyStart, att.end)).toBe("AAAA");
  const rfc = s.children[1]!;
  expect(rfc.message!.envelope.subject).toBe("inner message");
  expect(slice(r.bytes, rfc.message!.part.bodyStart, rfc.message!.part.end)).toBe("inner body");
});

test("address lists: groups, comments, bare addresses", () => {
  expect(parseAddressList("undisclosed-recipients:;")).toEqual([
    { name: null, mailbox: "undisclosed-recipients", host: null },
    { name: null, mailbox: null, host: null },
  ]);
  expect(parseAddressList("a@b.test (Alice)")).toEqual([
    { name: "Alice", mailbox: "a", host: "b.test" },
  ]);
});
