// What the crash test asserts about one mailbox read back after crashes: every acknowledged
// message present exactly once and byte-exact; any other message at most once and never
// corrupted; a message whose end was never sent, or that was refused, absent. Returns the
// problems as sentences (empty when all is well) so one failure report lists all of them.
import { type SentMessage, sha256, splitStored } from "./messages.ts";

const latin1 = new TextDecoder("latin1");

function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}

export function checkMailbox(
  user: string,
  source: string,
  stored: Uint8Array[],
  sent: SentMessage[],
): string[] {
  const problems: string[] = [];
  const mine = new Map<string, SentMessage>();
  for (const m of sent) if (m.recipients.includes(user)) mine.set(m.messageId, m);
  const seen = new Map<string, number>();
  stored.forEach((bytes, i) => {
    const copy = splitStored(bytes);
    const where = `${source} ${user} #${i + 1}`;
    const msg = copy.messageId ? mine.get(copy.messageId) : undefined;
    if (!msg) {
      problems.push(
        `${where}: not a message sent to this user (corrupted?), ${bytes.length} bytes, starts ${
          JSON.stringify(latin1.decode(bytes.subarray(0, 160)))
        }`,
      );
      return;
    }
    seen.set(msg.messageId, (seen.get(msg.messageId) ?? 0) + 1);
    // RFC 5321 §4.4: the delivering server adds Return-Path (the reverse-path) and Received.
    if (copy.prefixNames.join(",") !== "Return-Path,Received") {
      problems.push(`${where} ${msg.messageId}: trace headers ${copy.prefixNames.join(",")}`);
    }
    if (copy.returnPath !== `<${msg.sender}>`) {
      problems.push(`${where} ${msg.messageId}: Return-Path ${copy.returnPath}`);
    }
    if (sha256(copy.rest) !== msg.sha256) {
      const at = firstDifference(copy.rest, msg.canonical);
      problems.push(
        `${where} ${msg.messageId} (${msg.outcome}, ${msg.bdat ? "BDAT" : "DATA"}): CORRUPTED, ` +
          `stored ${copy.rest.length} bytes, sent ${msg.canonical.length}, first difference at ` +
          `byte ${at}: stored ${JSON.stringify(latin1.decode(copy.rest.subarray(at, at + 40)))} ` +
          `sent ${JSON.stringify(latin1.decode(msg.canonical.subarray(at, at + 40)))}`,
      );
    }
  });
  for (const msg of mine.values()) {
    const n = seen.get(msg.messageId) ?? 0;
    const what = `${source} ${user} ${msg.messageId} (${msg.outcome}${
      msg.bareLf ? ", bare LF" : ""
    })`;
    if (msg.bareLf && n > 0) problems.push(`${what}: a message with a bare LF was stored`);
    else if (msg.outcome === "acked" && n !== 1) {
      problems.push(`${what}: acknowledged with 250 but present ${n} times (expected 1)`);
    } else if (msg.outcome === "in-flight" && n > 1) {
      problems.push(`${what}: present ${n} times (at most once)`);
    } else if ((msg.outcome === "unsent" || msg.outcome === "refused") && n > 0) {
      problems.push(
        `${what}: present ${n} times but ${
          msg.outcome === "unsent" ? "its end was never sent" : `refused: ${msg.reply?.trim()}`
        }`,
      );
    }
  }
  return problems;
}
