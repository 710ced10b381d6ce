// The one reading of a message's author that the SMTP engine's From: check and the transport's
// DKIM key choice share (RFC 5322 §3.4, §3.6.2, §3.6.6).
import { describe, expect, test } from "bun:test";
import { addrSpecDomain, addrSpecText, authorMailboxes } from "./addresses.ts";

const bytes = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));
const authors = (head: string) => authorMailboxes(bytes(head))?.map(addrSpecText) ?? null;

describe("authorMailboxes", () => {
  test("every mailbox of the list, angle or bare, in order; quotes and comments name nobody", () => {
    expect(authors("From: bob@other.test, <alice@ours.test>\r\n\r\n")).toEqual([
      "bob@other.test",
      "alice@ours.test",
    ]);
    expect(authors('From: "ceo@bank.test" <Alice@Ours.TEST> (x@evil.test)\r\n\r\n')).toEqual([
      "alice@ours.test",
    ]);
    expect(authors("From: team: a@x.test, B <b@y.test>;, c@z.test\r\n\r\n")).toEqual([
      "a@x.test",
      "b@y.test",
      "c@z.test",
    ]);
  });

  test("the topmost Resent-From: of a resent message; none; a header that does not end", () => {
    expect(authors("Resent-From: me@x.test\r\nResent-From: old@y.test\r\nFrom: o@z.test\r\n\r\n"))
      .toEqual(["me@x.test"]);
    expect(authors("Subject: s\r\n\r\nFrom: body@x.test\r\n")).toEqual([]);
    expect(authors("From: a@x.test\r\nX: y")).toBeNull();
    expect(authorMailboxes(bytes("From: a@x.test\r\n"), true)?.map(addrSpecText)).toEqual([
      "a@x.test",
    ]);
  });

  test("addrSpecDomain: lower case, trailing dot dropped, IDN as an A-label", () => {
    const first = (h: string) => addrSpecDomain(authorMailboxes(bytes(h), true)![0]!);
    expect(first("From: j@Example.COM.\r\n")).toBe("example.com");
    expect(first("From: j@B\xc3\xbccher.test\r\n")).toBe("xn--bcher-kva.test");
  });
});
