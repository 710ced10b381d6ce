// Unit tests of the transport's pure parts: reply parsing, dot-stuffing, back-off arithmetic,
// xtext and routing order.
import { describe, expect, test } from "bun:test";
import { Metabase, type MetabaseInput } from "../metabase/schema.ts";
import { delayNoticeDue, expired, nextAttemptAt, retryDelaySeconds } from "./backoff.ts";
import { DotStuffer } from "./dot-stuff.ts";
import { headerOnly, notifyAllows, renderDsn, rfc5322Date } from "./dsn.ts";
import { formatReply, ReplyError, ReplyParser } from "./reply.ts";
import { byPreference, type MxRecord, planRoute } from "./routing.ts";
import { xtextDecode, xtextEncode } from "./xtext.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

describe("reply parser", () => {
  test("multi-line replies, split anywhere, with enhanced codes", () => {
    const p = new ReplyParser(512, 10);
    const wire =
      "250-mx.test hello\r\n250-PIPELINING\r\n250 SIZE 100\r\n550 5.1.1 no such user\r\n";
    const replies = [];
    for (let i = 0; i < wire.length; i += 3) {
      replies.push(...p.push(enc.encode(wire.slice(i, i + 3))));
    }
    expect(replies).toEqual([
      { code: 250, enhanced: null, lines: ["mx.test hello", "PIPELINING", "SIZE 100"] },
      { code: 550, enhanced: "5.1.1", lines: ["no such user"] },
    ]);
    expect(formatReply(replies[1]!)).toBe("550 5.1.1 no such user");
    expect(p.hasPartial()).toBe(false);
  });

  test("a bare code is a reply; an enhanced code of the wrong class is text", () => {
    const p = new ReplyParser(512, 10);
    expect(p.push(enc.encode("250\r\n451 5.0.0 odd\r\n"))).toEqual([
      { code: 250, enhanced: null, lines: [""] },
      { code: 451, enhanced: null, lines: ["5.0.0 odd"] },
    ]);
  });

  test("malformed, mixed-code, too long and too many lines are errors", () => {
    expect(() => new ReplyParser(512, 10).push(enc.encode("hello\r\n"))).toThrow(ReplyError);
    expect(() => new ReplyParser(512, 10).push(enc.encode("25 x\r\n"))).toThrow(ReplyError);
    expect(() => new ReplyParser(512, 10).push(enc.encode("250-a\r\n251 b\r\n"))).toThrow(
      /code changed/,
    );
    expect(() => new ReplyParser(512, 10).push(enc.encode("250 " + "x".repeat(600)))).toThrow(
      /too long/,
    );
    expect(() => new ReplyParser(512, 3).push(enc.encode("250-a\r\n250-b\r\n250-c\r\n"))).toThrow(
      /too many/,
    );
  });
});

describe("dot-stuffing", () => {
  const stuff = (chunks: string[]) => {
    const s = new DotStuffer();
    return chunks.map((c) => dec.decode(s.push(enc.encode(c)))).join("") + dec.decode(s.finish());
  };

  test("dots at line starts are doubled, across chunk boundaries", () => {
    expect(stuff([".a\r\n", ".", ".b\r", "\n.\r\n"])).toBe("..a\r\n...b\r\n..\r\n.\r\n");
    expect(stuff(["x\r", "\n", ".y"])).toBe("x\r\n..y\r\n.\r\n");
  });

  test("bare LF and bare CR become CRLF (no smuggled end of data)", () => {
    expect(stuff(["a\n.\nb"])).toBe("a\r\n..\r\nb\r\n.\r\n");
    expect(stuff(["a\r.\rb\r"])).toBe("a\r\n..\r\nb\r\n.\r\n");
  });

  test("an empty body is just the terminator", () => {
    expect(stuff([])).toBe(".\r\n");
    expect(stuff(["ends\r\n"])).toBe("ends\r\n.\r\n");
  });
});

describe("back-off", () => {
  test("doubles from the base and stops at the cap", () => {
    expect([0, 1, 2, 3, 4, 5, 6].map((n) => retryDelaySeconds(n, 60, 3600))).toEqual([
      60,
      120,
      240,
      480,
      960,
      1920,
      3600,
    ]);
    expect(retryDelaySeconds(5000, 60, 3600)).toBe(3600);
    expect(retryDelaySeconds(-3, 60, 3600)).toBe(60);
  });

  test("the metabase drives next attempt, lifetime and delay notice", () => {
    const mb = Metabase.parse({
      smtp: {
        queue: {
          retryBaseSeconds: 10,
          retryMaxSeconds: 100,
          lifetimeHours: 2,
          delayNoticeHours: 1,
        },
      },
    });
    expect(nextAttemptAt(1000, 2, mb)).toBe(1000 + 40_000);
    expect(nextAttemptAt(1000, 9, mb)).toBe(1000 + 100_000);
    expect(expired(0, 2 * 3_600_000 - 1, mb)).toBe(false);
    expect(expired(0, 2 * 3_600_000, mb)).toBe(true);
    expect(delayNoticeDue(0, 3_600_000, mb)).toBe(true);
    expect(delayNoticeDue(0, 3_599_999, mb)).toBe(false);
  });
});

describe("xtext", () => {
  test("round trip; + = space and non-ASCII are hex-encoded", () => {
    expect(xtextEncode("a+b=c d")).toBe("a+2Bb+3Dc+20d");
    expect(xtextEncode("é")).toBe("+C3+A9");
    for (const s of ["plain", "a+b=c d", "josé@x"]) expect(xtextDecode(xtextEncode(s))).toBe(s);
  });
});

describe("routing", () => {
  const mb = (input: MetabaseInput) => Metabase.parse(input);
  const dns = (records: MxRecord[] | string) => ({
    calls: [] as string[],
    resolveMx(domain: string) {
      this.calls.push(domain);
      if (typeof records === "string") {
        return Promise.reject(Object.assign(new Error(records), { code: records }));
      }
      return Promise.resolve(records);
    },
  });

  test("a static route for the domain beats '*', which beats the smarthost and DNS", async () => {
    const config = mb({
      smtp: {
        routes: [
          { domain: "*", host: "catchall.test", port: 2525 },
          { domain: "Example.TEST", host: "exact.test", port: 2526, tls: "required" },
        ],
        smarthost: { host: "smart.test" },
      },
    });
    const d = dns([{ exchange: "mx.test", priority: 1 }]);
    const a = await planRoute("example.test", config, d);
    expect(a.ok && a.candidates.map((c) => [c.source, c.host, c.port, c.tls])).toEqual([
      ["route", "exact.test", 2526, "required"],
    ]);
    const b = await planRoute("other.test", config, d);
    expect(b.ok && b.candidates[0]!.host).toBe("catchall.test");
    expect(d.calls).toEqual([]);
  });

  test("the smarthost with credentials from its password file", async () => {
    const config = mb({
      smtp: { smarthost: { host: "smart.test", username: "u", passwordFile: "/secret" } },
    });
    const plan = await planRoute("x.test", config, dns([]), async (f) => `pw-from-${f}`);
    expect(plan.ok && plan.candidates[0]).toMatchObject({
      source: "smarthost",
      host: "smart.test",
      port: 587,
      tls: "required",
      auth: { username: "u", password: "pw-from-/secret" },
    });
    const unreadable = await planRoute(
      "x.test",
      config,
      dns([]),
      () => Promise.reject(new Error("EACCES")),
    );
    expect(unreadable.ok).toBe(false);
    expect(!unreadable.ok && unreadable.temporary).toBe(true);
  });

  test("MX hosts in preference order, equal preferences shuffled", async () => {
    const plan = await planRoute(
      "x.test",
      mb({}),
      dns([
        { exchange: "c.test", priority: 30 },
        { exchange: "a.test.", priority: 10 },
        { exchange: "b.test", priority: 20 },
      ]),
    );
    expect(plan.ok && plan.candidates.map((c) => [c.source, c.host, c.port])).toEqual([
      ["mx", "a.test", 25],
      ["mx", "b.test", 25],
      ["mx", "c.test", 25],
    ]);
    const equal = [{ exchange: "p", priority: 5 }, { exchange: "q", priority: 5 }, {
      exchange: "z",
      priority: 9,
    }];
    expect(byPreference(equal, () => 0.5).at(-1)!.exchange).toBe("z");
    let i = 0;
    const flip = () => [0.9, 0.1, 0.5][i++]!;
    expect(byPreference(equal, flip).map((r) => r.exchange)).toEqual(["q", "p", "z"]);
  });

  test("no MX: the domain's own address; null MX: permanent; lookup failure: temporary", async () => {
    const none = await planRoute("x.test", mb({}), dns("ENODATA"));
    expect(none.ok && none.candidates.map((c) => [c.source, c.host])).toEqual([[
      "address",
      "x.test",
    ]]);
    const nullMx = await planRoute("x.test", mb({}), dns([{ exchange: "", priority: 0 }]));
    expect(nullMx).toMatchObject({ ok: false, temporary: false, status: "5.1.10" });
    for (const code of ["ENOTFOUND", "ETIMEOUT", "ESERVFAIL"]) {
      const r = await planRoute("x.test", mb({}), dns(code));
      expect(r).toMatchObject({ ok: false, temporary: true });
    }
    const literal = await planRoute("[127.0.0.1]", mb({}), dns("ENOTFOUND"), undefined, 2525);
    expect(literal.ok && literal.candidates[0]).toMatchObject({ host: "127.0.0.1", port: 2525 });
  });
});

describe("DSN parts", () => {
  async function collect(it: AsyncIterable<Uint8Array>): Promise<string> {
    const parts: Uint8Array[] = [];
    for await (const c of it) parts.push(c);
    return dec.decode(Buffer.concat(parts));
  }
  async function* chunks(s: string, n: number) {
    const b = enc.encode(s);
    for (let i = 0; i < b.length; i += n) yield b.slice(i, i + n);
  }

  test("headerOnly stops at the blank line, even split across chunks, and stops reading", async () => {
    const msg = "A: 1\r\nB: 2\r\n\r\nbody\r\n";
    for (const n of [1, 2, 3, 5, 100]) {
      expect(await collect(headerOnly(chunks(msg, n), 1024))).toBe("A: 1\r\nB: 2\r\n\r\n");
    }
    let pulled = 0;
    const counting = async function* () {
      for await (const c of chunks(msg + "x".repeat(5000), 4)) {
        pulled++;
        yield c;
      }
    };
    await collect(headerOnly(counting(), 1024));
    expect(pulled).toBeLessThan(10);
    // No blank line within the limit: whole lines only.
    expect(await collect(headerOnly(chunks("A: 1\r\nB: 22222222\r\n", 3), 12))).toBe("A: 1\r\n");
  });

  test("a hostile diagnostic cannot break the report; long fields are folded", async () => {
    const text = await collect(renderDsn({
      reportingMta: "mta.test",
      to: "a@b.test",
      arrivalDate: 0,
      now: 0,
      recipients: [{
        address: "x@y.test",
        action: "failed",
        status: "5.0.0",
        diagnostic: "550 bad\r\n\r\n--fake-boundary\r\nAction: delivered " + "w ".repeat(60) +
          "z".repeat(5000),
        diagnosticFromServer: true,
      }],
      original: null,
    }));
    const status = text.split("Content-Type: message/delivery-status\r\n\r\n")[1]!;
    const block = status.split("\r\n\r\n")[1]!;
    expect(block).not.toContain("\r\n--");
    expect(block.match(/^Action:/gm)!.length).toBe(1);
    for (const line of block.split("\r\n")) expect(line.length).toBeLessThanOrEqual(78);
    expect(rfc5322Date(Date.UTC(2026, 10, 22, 3, 4, 5))).toBe("Sun, 22 Nov 2026 03:04:05 +0000");
    expect(notifyAllows(undefined, "FAILURE")).toBe(true);
    expect(notifyAllows(undefined, "SUCCESS")).toBe(false);
    expect(notifyAllows(["NEVER"], "FAILURE")).toBe(false);
    expect(notifyAllows(["DELAY"], "FAILURE")).toBe(false);
  });
});
