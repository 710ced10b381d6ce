// The command parser: every command's syntax, the error replies, and random bytes never throw.
import { describe, expect, test } from "bun:test";
import { parsePath } from "../../protocols/smtp/address.ts";
import { decodeXtext, mailParams, parseParams, rcptParams } from "../../protocols/smtp/params.ts";
import { type ParseResult, parseSmtpCommand } from "../../protocols/smtp/parser.ts";
import { formatReply } from "../../protocols/smtp/reply.ts";

const errorOf = (r: ParseResult) => {
  if (r.verb !== "ERROR") throw new Error(`expected an error, got ${r.verb}`);
  return `${r.reply.code} ${r.reply.enhanced}`;
};

describe("parseSmtpCommand", () => {
  test("EHLO and HELO keep the first word, case-insensitive verb", () => {
    expect(parseSmtpCommand("ehlo client.example.org")).toEqual({
      verb: "EHLO",
      domain: "client.example.org",
    });
    expect(parseSmtpCommand("HELO [192.0.2.1]")).toEqual({ verb: "HELO", domain: "[192.0.2.1]" });
    expect(errorOf(parseSmtpCommand("EHLO"))).toBe("501 5.5.4");
  });

  test("MAIL FROM with parameters, null path and lenient space after the colon", () => {
    const r = parseSmtpCommand("MAIL FROM:<Alice@Example.COM> SIZE=1000 BODY=8BITMIME");
    expect(r).toEqual({
      verb: "MAIL",
      address: "Alice@example.com",
      utf8: false,
      params: [{ key: "SIZE", value: "1000" }, { key: "BODY", value: "8BITMIME" }],
    });
    expect(parseSmtpCommand("mail from: <>")).toMatchObject({ verb: "MAIL", address: "" });
    expect(errorOf(parseSmtpCommand("MAIL FROM:alice@example.com"))).toBe("501 5.1.7");
    expect(errorOf(parseSmtpCommand("MAIL TO:<a@b.c>"))).toBe("501 5.5.4");
    expect(errorOf(parseSmtpCommand("MAIL FROM:<a@b.c>SIZE=1"))).toBe("501 5.5.4");
    expect(errorOf(parseSmtpCommand("MAIL FROM:<a@b.c> SIZE=1 SIZE=2"))).toBe("501 5.5.4");
  });

  test("RCPT TO: source routes ignored, <Postmaster> alone allowed, null path refused", () => {
    expect(parseSmtpCommand("RCPT TO:<@relay.example,@b.example:bob@example.com>")).toMatchObject({
      verb: "RCPT",
      address: "bob@example.com",
    });
    expect(parseSmtpCommand("RCPT TO:<postMaster>")).toMatchObject({ address: "postmaster" });
    expect(errorOf(parseSmtpCommand("RCPT TO:<>"))).toBe("501 5.1.3");
    expect(errorOf(parseSmtpCommand("RCPT TO:<bob>"))).toBe("501 5.1.3");
  });

  test("UTF-8 addresses are flagged; invalid UTF-8 and control characters refused", () => {
    expect(parseSmtpCommand("RCPT TO:<jörg@bücher.example>")).toMatchObject({
      address: "jörg@bücher.example",
      utf8: true,
    });
    expect(errorOf(parseSmtpCommand(new Uint8Array([0x4e, 0x4f, 0xff, 0x50])))).toBe("500 5.5.2");
    expect(errorOf(parseSmtpCommand("NOOP\0"))).toBe("500 5.5.2");
    expect(errorOf(parseSmtpCommand("NOOP\rx"))).toBe("500 5.5.2");
  });

  test("commands without arguments refuse them", () => {
    for (const verb of ["DATA", "RSET", "QUIT", "STARTTLS"]) {
      expect(parseSmtpCommand(verb)).toEqual({ verb } as ParseResult);
      expect(errorOf(parseSmtpCommand(`${verb} now`))).toBe("501 5.5.4");
    }
  });

  test("AUTH and BDAT", () => {
    expect(parseSmtpCommand("AUTH plain AHVzZXIAcGFzcw==")).toEqual({
      verb: "AUTH",
      mechanism: "PLAIN",
      initialResponse: "AHVzZXIAcGFzcw==",
    });
    expect(parseSmtpCommand("AUTH LOGIN")).toMatchObject({ initialResponse: null });
    expect(errorOf(parseSmtpCommand("AUTH"))).toBe("501 5.5.4");
    expect(parseSmtpCommand("BDAT 1000 LAST")).toEqual({ verb: "BDAT", size: 1000, last: true });
    expect(parseSmtpCommand("BDAT 0")).toEqual({ verb: "BDAT", size: 0, last: false });
    expect(errorOf(parseSmtpCommand("BDAT -1"))).toBe("501 5.5.4");
    expect(errorOf(parseSmtpCommand("BDAT 10 FIRST"))).toBe("501 5.5.4");
    expect(errorOf(parseSmtpCommand("BDAT 9999999999999999"))).toBe("501 5.5.4");
  });

  test("unknown commands get 500 5.5.2", () => {
    expect(errorOf(parseSmtpCommand("GET / HTTP/1.1"))).toBe("500 5.5.2");
    expect(errorOf(parseSmtpCommand(""))).toBe("500 5.5.2");
  });

  test("random bytes never throw and always give a command or an error reply", () => {
    let seed = 12345;
    const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    const prefixes = [
      "MAIL FROM:<",
      "RCPT TO:<",
      "EHLO ",
      "AUTH ",
      "BDAT ",
      "",
      "MAIL FROM:<a@b> ",
    ];
    for (let i = 0; i < 20000; i++) {
      const len = Math.floor(rand() * 80);
      const bytes = new Uint8Array(len);
      // Mostly printable ASCII with a sprinkling of anything, so the grammar is exercised.
      for (let j = 0; j < len; j++) {
        bytes[j] = rand() < 0.9 ? 32 + Math.floor(rand() * 95) : Math.floor(rand() * 256);
      }
      const prefix = Buffer.from(prefixes[i % prefixes.length]!);
      const line = new Uint8Array(Buffer.concat([prefix, bytes]));
      const r = parseSmtpCommand(line);
      if (r.verb === "ERROR") {
        expect(r.reply.code).toBeGreaterThanOrEqual(500);
        expect(formatReply(r.reply)).toMatch(/^5\d\d 5\.\d\.\d+ [^\r\n]*\r\n$/);
      } else expect(typeof r.verb).toBe("string");
    }
  });
});

describe("paths and parameters", () => {
  test("length limits of RFC 5321 §4.5.3.1", () => {
    expect(parsePath(`<${"a".repeat(64)}@example.com>`, opts).ok).toBe(true);
    expect(parsePath(`<${"a".repeat(65)}@example.com>`, opts).ok).toBe(false);
    const label = "b".repeat(63);
    expect(parsePath(`<a@${label}.${label}.${label}.${label}.com>`, opts).ok).toBe(false);
    expect(parsePath(`<${"a".repeat(60)}@${label}.${label}.${label}.com>`, opts).ok).toBe(false);
  });

  test("quoted local parts and address literals", () => {
    expect(parsePath('<"john doe"@example.com>', opts)).toMatchObject({
      ok: true,
      address: '"john doe"@example.com',
    });
    expect(parsePath("<root@[IPv6:::1]>", opts)).toMatchObject({
      ok: true,
      address: "root@[IPv6:::1]",
    });
    expect(parsePath("<a..b@example.com>", opts).ok).toBe(false);
    expect(parsePath("<a@-bad.example>", opts).ok).toBe(false);
  });

  test("xtext and DSN parameters (RFC 3461)", () => {
    expect(decodeXtext("a+2Bb+3Dc")).toBe("a+b=c");
    expect(decodeXtext("bad+zz")).toBeNull();
    const rcpt = rcptParams(
      parseParams(" NOTIFY=success,failure ORCPT=rfc822;bob+2Bx@example.com") as never,
    );
    expect(rcpt).toEqual({ notify: ["SUCCESS", "FAILURE"], orcpt: "rfc822;bob+x@example.com" });
    expect(rcptParams(parseParams("NOTIFY=NEVER,SUCCESS") as never)).toMatchObject({ code: 501 });
    const mail = mailParams(parseParams("RET=HDRS ENVID=QQ314159 SMTPUTF8") as never);
    expect(mail).toEqual({
      size: null,
      body: null,
      smtputf8: true,
      ret: "HDRS",
      envid: "QQ314159",
    });
    expect(mailParams(parseParams("FOO=1") as never)).toMatchObject({
      code: 555,
      enhanced: "5.5.4",
    });
  });
});

const opts = { allowNull: false, allowBarePostmaster: false };
