// Tests of the 8-bit → 7-bit MIME downgrade (RFC 6152 §3): invariants of the output, exact
// round trips through quoted-printable, MIME structure kept, refusals, chunking, a seeded fuzz.
import { describe, expect, test } from "bun:test";
import {
  DowngradeRefused,
  planSevenBit,
  QpEncoder,
  type SevenBitLimits,
  type SevenBitPlan,
  toSevenBit,
} from "./seven-bit.ts";
import {
  collect,
  leaves,
  parseMime,
  pieces,
  prng,
  qpDecode,
  randomMessage,
  sevenBitProblem,
} from "./testing/mime-check.ts";

const LIMITS: SevenBitLimits = { lineBytes: 4096, mimeDepth: 20 };
const latin1 = { decode: (b: Uint8Array) => Buffer.from(b).toString("latin1") };
const bytes = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));
const text = (b: Uint8Array) => latin1.decode(b);

/** Plan and convert `data` cut at `cuts`; the output must be exactly as long as planned. */
async function downgrade(
  data: Uint8Array,
  cuts: number[] = [],
  limits = LIMITS,
): Promise<{ plan: SevenBitPlan; out: Uint8Array }> {
  const plan = await planSevenBit(pieces(data, cuts), limits);
  const out = await collect(toSevenBit(pieces(data, cuts), plan, limits));
  expect(out.length).toBe(plan.outputBytes);
  return { plan, out };
}

function qp(data: string): string {
  let out = "";
  const enc = new QpEncoder({ put: (b) => void (out += String.fromCharCode(b)) });
  const lines = data.split("\r\n");
  lines.forEach((l, i) => {
    if (i > 0) enc.hardBreak();
    enc.content(bytes(l));
  });
  enc.finish();
  return out;
}

const MIXED = [
  "From: a@example.test",
  "MIME-Version: 1.0",
  'Content-Type: multipart/mixed; boundary="outer"',
  "",
  "This is a multi-part message.",
  "--outer",
  "Content-Type: text/plain; charset=utf-8",
  "Content-Transfer-Encoding: 8bit",
  "",
  "Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln",
  "second line  ",
  "--outer",
  "Content-Type: application/octet-stream",
  "Content-Transfer-Encoding: base64",
  "",
  "AAECAwQFBgcICQ==",
  "--outer",
  "Content-Type: text/plain",
  "Content-Transfer-Encoding: 7bit",
  "",
  "plain ascii",
  "--outer--",
  "epilogue",
  "",
].join("\r\n");

describe("quoted-printable encoder (RFC 2045 §6.7)", () => {
  test("=XX for 8-bit, '=' and controls; trailing whitespace encoded; CRLF kept", () => {
    expect(qp("a=b\xe9\x00")).toBe("a=3Db=E9=00");
    expect(qp("end \r\ntab\t\r\nmid dle")).toBe("end=20\r\ntab=09\r\nmid dle");
    expect(qp("bare\rcr")).toBe("bare=0Dcr");
  });

  test("soft breaks keep lines within 76 octets; no line starts with '-'", () => {
    const long = "x".repeat(200) + "--boundary" + "\xff".repeat(40);
    const out = qp(long);
    for (const line of out.split("\r\n")) {
      expect(line.length).toBeLessThanOrEqual(76);
      expect(line.startsWith("-")).toBe(false);
    }
    expect(text(qpDecode(bytes(out)))).toBe(long);
    expect(qp("-dash")).toBe("=2Ddash");
  });
});

describe("8-bit to 7-bit downgrade", () => {
  test("a message that is all 7-bit passes through unchanged", async () => {
    const msg = bytes("Subject: plain\r\n\r\nJust ASCII.\r\n");
    const { plan, out } = await downgrade(msg);
    expect(plan.convert).toBe(false);
    expect(out).toEqual(msg);
  });

  test("a plain 8-bit message gets quoted-printable and MIME-Version", async () => {
    const body = "Caf\xc3\xa9 = cr\xc3\xa8me \r\n.dot\r\n";
    const msg = bytes(`Subject: x\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${body}`);
    const { plan, out } = await downgrade(msg);
    expect(plan.convert).toBe(true);
    expect(plan.encodedParts).toBe(1);
    expect(sevenBitProblem(out)).toBeNull();
    const node = parseMime(out);
    expect(node.fields).toContainEqual(["mime-version", "1.0"]);
    expect(node.cte).toBe("quoted-printable");
    expect(text(qpDecode(node.body))).toBe(body);
  });

  test("multipart: 8bit part re-encoded, base64 and 7bit parts and boundaries untouched", async () => {
    const { out } = await downgrade(bytes(MIXED));
    expect(sevenBitProblem(out)).toBeNull();
    const orig = parseMime(bytes(MIXED));
    const conv = parseMime(out);
    expect(conv.children.length).toBe(3);
    expect(text(conv.preamble!)).toBe("This is a multi-part message.");
    expect(text(conv.epilogue!)).toBe("epilogue\r\n");
    expect(conv.children[0]!.cte).toBe("quoted-printable");
    expect(conv.children[0]!.fields.filter(([k]) => k === "content-transfer-encoding").length)
      .toBe(1);
    expect(qpDecode(conv.children[0]!.body)).toEqual(orig.children[0]!.body);
    expect(conv.children[1]!.body).toEqual(orig.children[1]!.body);
    expect(conv.children[2]!.body).toEqual(orig.children[2]!.body);
    // Everything from the second part on is byte for byte the same.
    const tail = (s: string) => s.slice(s.indexOf("--outer\r\nContent-Type: application"));
    expect(tail(text(out))).toBe(tail(MIXED));
  });

  test("nested multipart inside message/rfc822; the composite 8bit label becomes 7bit", async () => {
    const msg = [
      "MIME-Version: 1.0",
      "Content-Type: multipart/mixed; boundary=a",
      "",
      "--a",
      "Content-Type: message/rfc822",
      "Content-Transfer-Encoding: 8bit",
      "",
      "Subject: inner",
      'Content-Type: multipart/alternative; boundary="b"',
      "",
      "--b",
      "",
      "inner \xe9t\xe9",
      "--b",
      "Content-Type: text/html",
      "",
      "<p>ascii</p>",
      "--b--",
      "--a--",
      "",
    ].join("\r\n");
    const { out, plan } = await downgrade(bytes(msg));
    expect(plan.encodedParts).toBe(1);
    expect(sevenBitProblem(out)).toBeNull();
    const top = parseMime(out);
    const rfc822 = top.children[0]!;
    expect(rfc822.contentType).toBe("message/rfc822");
    expect(rfc822.cte).toBe("7bit"); // RFC 2046 §5.2.1: never quoted-printable
    const inner = rfc822.embedded!;
    expect(inner.contentType).toBe("multipart/alternative");
    expect(inner.children[0]!.cte).toBe("quoted-printable");
    expect(text(qpDecode(inner.children[0]!.body))).toBe("inner \xe9t\xe9");
    expect(text(inner.children[1]!.body)).toBe("<p>ascii</p>");
    expect(inner.fields.some(([k]) => k === "mime-version")).toBe(false); // a body part here
  });

  test("bare LF line breaks: the encoding uses CRLF, the content survives", async () => {
    const { out } = await downgrade(bytes("Subject: x\n\nline \xe9\nnext\n"));
    expect(sevenBitProblem(out)).toBeNull();
    // The header's own line breaks stay as they are (the DATA writer makes every one CRLF).
    expect(text(out)).toContain("\nline =E9\r\nnext\r\n");
  });

  test("8-bit header fields are refused with 5.6.3, at any depth", async () => {
    const top = bytes("Subject: Gr\xfc\xdfe\r\n\r\nbody \xe9\r\n");
    const err = await planSevenBit(pieces(top, []), LIMITS).catch((e) => e);
    expect(err).toBeInstanceOf(DowngradeRefused);
    expect((err as DowngradeRefused).status).toBe("5.6.3");
    expect((err as Error).message).toContain("subject");
    const nested = bytes(MIXED.replace("Content-Type: text/plain\r\n", "X-Name: J\xf6rg\r\n"));
    expect(await planSevenBit(pieces(nested, []), LIMITS).catch((e) => e)).toBeInstanceOf(
      DowngradeRefused,
    );
  });

  test("8-bit octets in a base64 part or a too deep composite are refused", async () => {
    const b64 = bytes(MIXED.replace("AAECAwQFBgcICQ==", "AAEC\xffAwQF"));
    expect(await planSevenBit(pieces(b64, []), LIMITS).catch((e) => e)).toBeInstanceOf(
      DowngradeRefused,
    );
    const deep = bytes(
      "Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n" +
        "Content-Type: multipart/mixed; boundary=y\r\n\r\n--y\r\n\r\n\xe9\r\n--y--\r\n--x--\r\n",
    );
    const shallow = { lineBytes: 4096, mimeDepth: 1 };
    expect(await planSevenBit(pieces(deep, []), shallow).catch((e) => e)).toBeInstanceOf(
      DowngradeRefused,
    );
    const { out } = await downgrade(deep, [], { lineBytes: 4096, mimeDepth: 2 });
    expect(sevenBitProblem(out)).toBeNull();
  });

  test("preamble and epilogue: 8-bit octets become '?', no structure changes", async () => {
    const msg = MIXED.replace("This is a multi-part message.", "Ceci est un message \xe0 parties.")
      .replace("epilogue", "\xe9pilogue");
    const { out } = await downgrade(bytes(msg));
    const conv = parseMime(out);
    expect(text(conv.preamble!)).toBe("Ceci est un message ? parties.");
    expect(text(conv.epilogue!)).toBe("?pilogue\r\n");
    expect(conv.children.length).toBe(3);
  });

  test("lines longer than the line cap are converted in pieces; header lines are not", async () => {
    const limits = { lineBytes: 512, mimeDepth: 5 };
    const long = "\xe9".repeat(3000) + " " + "a".repeat(2000);
    const msg = bytes(`Subject: long\r\n\r\n${long}\r\nshort\r\n`);
    const { out } = await downgrade(msg, [100, 700, 701, 4000], limits);
    expect(sevenBitProblem(out)).toBeNull();
    expect(text(qpDecode(parseMime(out).body))).toBe(long + "\r\nshort\r\n");
    const longHeader = bytes(`X-Long: ${"h".repeat(600)}\r\n\r\n\xe9\r\n`);
    expect(await planSevenBit(pieces(longHeader, []), limits).catch((e) => e)).toBeInstanceOf(
      DowngradeRefused,
    );
  });

  test("a 7-bit text part with a line over 998 octets is re-encoded too", async () => {
    const msg = bytes(`Subject: x\r\n\r\n${"y".repeat(1500)}\r\n\xe9\r\n`);
    const { out } = await downgrade(msg);
    expect(sevenBitProblem(out)).toBeNull();
  });

  test("the same output whatever the chunking: every single cut, and random cuts", async () => {
    const msg = bytes(MIXED);
    const { out: whole } = await downgrade(msg);
    for (let cut = 1; cut < msg.length; cut++) {
      const { out } = await downgrade(msg, [cut]);
      expect(out).toEqual(whole);
    }
    const rand = prng(7);
    for (let i = 0; i < 50; i++) {
      const cuts = Array.from({ length: 8 }, () => Math.floor(rand() * msg.length)).sort((a, b) =>
        a - b
      );
      expect(await downgrade(msg, cuts).then((r) => r.out)).toEqual(whole);
    }
  });
});

describe("review fixes", () => {
  test("a second read that differs from the scanned one fails the conversion", async () => {
    const msg = bytes(MIXED);
    const plan = await planSevenBit(pieces(msg, []), LIMITS);
    // The store stream ends early: the converted message must not end as if whole.
    const short = msg.subarray(0, msg.length - 20);
    expect(await collect(toSevenBit(pieces(short, [50]), plan, LIMITS)).catch((e) => e))
      .toBeInstanceOf(Error);
    const longer = bytes(MIXED + "more epilogue\r\n");
    expect(await collect(toSevenBit(pieces(longer, [50]), plan, LIMITS)).catch((e) => e))
      .toBeInstanceOf(Error);
    // A message that goes through unconverted is checked the same way.
    const plain = bytes("Subject: plain\r\n\r\nJust ASCII.\r\n");
    const same = await planSevenBit(pieces(plain, []), LIMITS);
    expect(same.convert).toBe(false);
    expect(
      await collect(toSevenBit(pieces(plain.subarray(0, 10), []), same, LIMITS)).catch((e) => e),
    ).toBeInstanceOf(Error);
  });

  test("a multipart whose delimiter never comes: 8-bit text there is refused, not turned to '?'", async () => {
    const top = bytes("Content-Type: multipart/mixed; boundary=x\r\n\r\nHall\xf6chen\r\n");
    expect(await planSevenBit(pieces(top, []), LIMITS).catch((e) => e)).toBeInstanceOf(
      DowngradeRefused,
    );
    // The same in a nested multipart that the enclosing delimiter ends before any of its own.
    const nested = bytes(
      "Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n" +
        "Content-Type: multipart/alternative; boundary=wrong\r\n\r\n--right\r\n\r\nt\xe9xt\r\n" +
        "--a--\r\n",
    );
    expect(await planSevenBit(pieces(nested, []), LIMITS).catch((e) => e)).toBeInstanceOf(
      DowngradeRefused,
    );
    // A real preamble (a delimiter follows) still has its 8-bit octets made "?".
    const fine = bytes(
      "Content-Type: multipart/mixed; boundary=x\r\n\r\nPr\xe9amble\r\n--x\r\n\r\n\xe9\r\n--x--\r\n",
    );
    const { out } = await downgrade(fine);
    expect(text(parseMime(out).preamble!)).toBe("Pr?amble");
  });

  test("a refusal for nesting past the limit says so", async () => {
    const deep = bytes(
      "Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n" +
        "Content-Type: multipart/mixed; boundary=y\r\n\r\n--y\r\n\r\n\xe9\r\n--y--\r\n--x--\r\n",
    );
    const err = await planSevenBit(pieces(deep, []), { lineBytes: 4096, mimeDepth: 1 }).catch((
      e,
    ) => e);
    expect(err).toBeInstanceOf(DowngradeRefused);
    expect((err as Error).message).toContain("nesting");
  });

  test("the plan counts the DKIM signatures the conversion breaks", async () => {
    const signed = bytes(
      "DKIM-Signature: v=1; a=rsa-sha256; d=here.test; s=s1;\r\n\tbh=x; b=y\r\n" +
        "dkim-signature: v=1; d=other.test\r\nSubject: x\r\n\r\ncaf\xe9\r\n",
    );
    expect((await downgrade(signed)).plan.dkimSignatures).toBe(2);
    const unsigned = bytes("Subject: x\r\n\r\ncaf\xe9\r\n");
    expect((await downgrade(unsigned)).plan.dkimSignatures).toBe(0);
  });
});

describe("seeded fuzz: random MIME trees with random 8-bit bodies", () => {
  test("7-bit output, exact size, decodes to the original leaves; refusals only when due", async () => {
    const seed = Number(process.env.SEVEN_BIT_SEED ?? 20260501);
    const rand = prng(seed);
    let refused = 0;
    let converted = 0;
    for (let round = 0; round < 300; round++) {
      const gen = randomMessage(rand);
      const cuts = Array.from({ length: 5 }, () => Math.floor(rand() * gen.bytes.length)).sort((
        a,
        b,
      ) => a - b);
      const where = `seed ${seed} round ${round}`;
      let result: { plan: SevenBitPlan; out: Uint8Array };
      try {
        result = await downgrade(gen.bytes, cuts);
      } catch (err) {
        if (!(err instanceof DowngradeRefused)) throw err;
        expect({ where, refused: true }).toEqual({ where, refused: gen.mustRefuse });
        refused++;
        continue;
      }
      expect({ where, refused: false }).toEqual({ where, refused: gen.mustRefuse });
      const { out, plan } = result;
      if (plan.convert) converted++;
      expect({ where, problem: sevenBitProblem(out) }).toEqual({ where, problem: null });
      expect(out.length).toBeLessThanOrEqual(gen.bytes.length * 4 + 1024);
      const got = leaves(parseMime(out));
      expect({ where, leaves: got.length }).toEqual({ where, leaves: gen.leafBodies.length });
      got.forEach((leaf, i) => {
        const decoded = leaf.cte === "quoted-printable" && gen.leafCtes[i] !== "quoted-printable"
          ? qpDecode(leaf.body)
          : leaf.body;
        expect({ where, leaf: i, same: Buffer.compare(decoded, gen.leafBodies[i]!) === 0 })
          .toEqual({ where, leaf: i, same: true });
      });
    }
    // The generator must actually exercise both outcomes.
    expect(refused).toBeGreaterThan(0);
    expect(converted).toBeGreaterThan(100);
  });
});
