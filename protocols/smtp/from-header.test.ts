// The author addresses a submission is checked against (RFC 5322 §3.6.2, §3.6.6).
import { describe, expect, test } from "bun:test";
import { authorAddresses } from "./from-header.ts";

const head = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));

describe("authorAddresses", () => {
  test("From: in its common shapes", () => {
    const cases: [string, string[]][] = [
      ["From: alice@example.com", ["alice@example.com"]],
      ['From: "Bob @ Work" <Bob@Example.COM>', ["bob@example.com"]],
      ["From: Alice <a@x.test>, Carol <c@y.test>", ["a@x.test", "c@y.test"]],
      ["From: a@x.test (Alice at work)", ["a@x.test"]],
      ["From: team: a@x.test, b@x.test;", ["a@x.test", "b@x.test"]],
      ["From: =?utf-8?q?J=C3=B6rg?=\r\n <joerg@x.test>", ["joerg@x.test"]],
      ["Subject: none", []],
    ];
    for (const [field, want] of cases) {
      expect(authorAddresses(head(`Received: x\r\n${field}\r\n\r\nbody From: z@z.test\r\n`)))
        .toEqual(want);
    }
  });

  test("a resent message is judged by its topmost Resent-From:", () => {
    const h =
      "Resent-From: me@mine.test\r\nResent-From: older@x.test\r\nFrom: orig@else.test\r\n\r\n";
    expect(authorAddresses(head(h))).toEqual(["me@mine.test"]);
  });

  test("a header section not ending within the bytes is unknown; a header-only message is whole", () => {
    expect(authorAddresses(head("From: a@x.test\r\nX: " + "y".repeat(100)))).toBeNull();
    expect(authorAddresses(head("From: a@x.test\r\n"), true)).toEqual(["a@x.test"]);
  });
});
