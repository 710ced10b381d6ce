// The crash test's own checks, proven on made-up mailboxes: a lost, duplicated, corrupted or
// wrongly stored message is reported, a correct mailbox is not; dot-stuffing round-trips.
import { describe, expect, test } from "bun:test";
import { checkMailbox } from "./check.ts";
import { dotStuff, makeMessage, Rng, type SentMessage, splitStored, USERS } from "./messages.ts";
import { unstuff } from "./pop3-read.ts";

const enc = new TextEncoder();
const U = USERS[0];

/** What the server stores: its trace headers, then the client's bytes. */
function stored(m: SentMessage): Uint8Array {
  const prefix = enc.encode(
    `Return-Path: <${m.sender}>\r\nReceived: from client (127.0.0.1)\r\n\tby localhost (Posthorn) ` +
      `with ESMTP id x; Sun, 22 Nov 2026 04:00:00 +0000\r\n`,
  );
  const out = new Uint8Array(prefix.length + m.canonical.length);
  out.set(prefix);
  out.set(m.canonical, prefix.length);
  return out;
}

function messagesFor(user: string, n: number, seed = 7): SentMessage[] {
  const rng = new Rng(seed);
  const out: SentMessage[] = [];
  for (let i = 0; out.length < n; i++) {
    const m = makeMessage(rng, `t.${i}`);
    if (m.recipients.includes(user)) out.push(m);
  }
  return out;
}

describe("crash test checks", () => {
  test("a complete, exact mailbox has no problems", () => {
    const ms = messagesFor(U, 5);
    ms.forEach((m, i) => (m.outcome = i < 3 ? "acked" : "in-flight"));
    expect(checkMailbox(U, "t", ms.slice(0, 4).map(stored), ms)).toEqual([]);
  });

  test("a lost acknowledged message is reported", () => {
    const ms = messagesFor(U, 3);
    for (const m of ms) m.outcome = "acked";
    const problems = checkMailbox(U, "t", [stored(ms[0]!), stored(ms[2]!)], ms);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain(ms[1]!.messageId);
    expect(problems[0]).toContain("present 0 times");
  });

  test("a duplicate, a corrupted byte and a stray message are reported", () => {
    const ms = messagesFor(U, 3);
    for (const m of ms) m.outcome = "acked";
    const bad = stored(ms[1]!);
    bad[bad.length - 10] = bad[bad.length - 10]! ^ 0x01;
    const stray = stored(messagesFor(U, 1, 99)[0]!);
    const problems = checkMailbox(U, "t", [
      stored(ms[0]!),
      stored(ms[0]!),
      bad,
      stored(ms[2]!),
      stray,
    ], ms);
    expect(problems.some((p) => p.includes(ms[0]!.messageId) && p.includes("present 2 times")))
      .toBe(true);
    expect(problems.some((p) => p.includes(ms[1]!.messageId) && p.includes("CORRUPTED"))).toBe(
      true,
    );
    expect(problems.some((p) => p.includes("not a message sent to this user"))).toBe(true);
  });

  test("an unsent, refused or bare-LF message must be absent", () => {
    const rng = new Rng(3);
    const probe = makeMessage(rng, "probe", { bareLf: true });
    probe.recipients = [U];
    probe.outcome = "in-flight";
    const [cut, refused] = messagesFor(U, 2, 5);
    cut!.outcome = "unsent";
    refused!.outcome = "refused";
    refused!.reply = "451 4.3.0 try later\r\n";
    const problems = checkMailbox(U, "t", [stored(probe), stored(cut!), stored(refused!)], [
      probe,
      cut!,
      refused!,
    ]);
    expect(problems).toHaveLength(3);
  });

  test("a missing trace header or a wrong Return-Path is reported", () => {
    const [m] = messagesFor(U, 1);
    m!.outcome = "acked";
    expect(checkMailbox(U, "t", [m!.canonical], [m!])[0]).toContain("trace headers");
  });

  test("dot-stuffing round-trips; a dot after a bare LF is left alone", () => {
    const rng = new Rng(11);
    for (let i = 0; i < 20; i++) {
      const m = makeMessage(rng, `d.${i}`);
      const wire = dotStuff(m.canonical);
      expect(new TextDecoder("latin1").decode(wire.subarray(-5))).toBe("\r\n.\r\n");
      const body = wire.subarray(0, wire.length - 3); // what POP3 sends before its ".\r\n"
      expect(unstuff(Buffer.from(body))).toEqual(m.canonical);
    }
    const probe = makeMessage(rng, "p", { bareLf: true });
    expect(new TextDecoder("latin1").decode(dotStuff(probe.canonical))).toContain("\n.\nsmuggled");
  });

  test("splitStored finds the client's message under folded trace headers", () => {
    const [m] = messagesFor(U, 1);
    const copy = splitStored(stored(m!));
    expect(copy.prefixNames).toEqual(["Return-Path", "Received"]);
    expect(copy.returnPath).toBe(`<${m!.sender}>`);
    expect(copy.messageId).toBe(m!.messageId);
    expect(copy.rest).toEqual(m!.canonical);
  });
});
