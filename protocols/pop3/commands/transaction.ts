// TRANSACTION state (RFC 1939 §5, §6): STAT, LIST, UIDL, DELE, RSET, NOOP, RETR/TOP (see
// retrieve.ts), CAPA, and QUIT, which enters UPDATE and commits the deletions.
import type { MessageSummary } from "../../../ipc/store-api.ts";
import { capa } from "./authorization.ts";
import { retrieve } from "./retrieve.ts";
import type { Maildrop } from "../maildrop.ts";
import { parseLineCount, parseMessageNumber, type Pop3Command } from "../parser.ts";
import { code, CRLF, err, ok } from "../replies.ts";
import type { Outcome, Pop3Session } from "../session.ts";

export function handleTransaction(s: Pop3Session, cmd: Pop3Command): Outcome {
  const drop = s.maildrop!;
  switch (cmd.verb) {
    case "STAT": {
      if (cmd.args.length > 0) return s.reply(err("STAT takes no arguments"));
      const { count, size } = drop.stat();
      return s.reply(ok(`${count} ${size}`)); // RFC 1939 §5: "+OK nn mm"
    }
    case "LIST":
      return listing(s, drop, cmd, (m) => String(m.size));
    case "UIDL":
      return listing(s, drop, cmd, (m) => m.uniqueId); // RFC 1939 §7
    case "DELE": {
      const n = messageArg(s, drop, cmd.args, 1);
      if (n === null) return;
      drop.markDeleted(n);
      return s.reply(ok(`Message ${n} deleted`));
    }
    case "RSET": {
      drop.reset();
      const { count, size } = drop.stat();
      return s.reply(ok(`Maildrop has ${count} messages (${size} octets)`));
    }
    case "NOOP":
      return s.reply(ok(""));
    case "RETR": {
      const n = messageArg(s, drop, cmd.args, 1);
      if (n === null) return;
      return retrieve(s, drop, n, null);
    }
    case "TOP": {
      if (cmd.args.length !== 2) return s.reply(err("TOP needs a message number and a line count"));
      const lines = parseLineCount(cmd.args[1]);
      if (lines === null) return s.reply(err("Invalid line count"));
      const n = messageArg(s, drop, cmd.args.slice(0, 1), 1);
      if (n === null) return;
      return retrieve(s, drop, n, lines);
    }
    case "CAPA":
      return capa(s);
    case "QUIT":
      return update(s, drop);
    case "USER":
    case "PASS":
    case "AUTH":
    case "STLS":
    case "APOP":
      return s.reply(err(`${cmd.verb} is not valid after logging in`));
    default:
      return s.reply(err(`Unknown command ${cmd.verb}`));
  }
}

/** Validates a message-number argument; replies -ERR and returns null when it is unusable. */
function messageArg(s: Pop3Session, drop: Maildrop, args: string[], count: number): number | null {
  if (args.length !== count) {
    s.reply(err("Expected a message number"));
    return null;
  }
  const n = parseMessageNumber(args[0]);
  if (n === null) {
    s.reply(err("Invalid message number"));
    return null;
  }
  const found = drop.get(n);
  if (found.kind === "missing") {
    s.reply(err(`No such message ${n}`));
    return null;
  }
  if (found.kind === "deleted") {
    s.reply(err(`Message ${n} is deleted`)); // RFC 1939 §5: marked messages are not listed
    return null;
  }
  return n;
}

/** LIST and UIDL: one message, or all live ones as a multi-line reply. */
function listing(
  s: Pop3Session,
  drop: Maildrop,
  cmd: Pop3Command,
  value: (m: MessageSummary) => string,
): void {
  if (cmd.args.length > 1) return s.reply(err(`${cmd.verb} takes at most one argument`));
  if (cmd.args.length === 1) {
    const n = messageArg(s, drop, cmd.args, 1);
    if (n === null) return;
    const found = drop.get(n);
    if (found.kind === "ok") s.reply(ok(`${n} ${value(found.message)}`));
    return;
  }
  const lines: string[] = [];
  for (const [n, m] of drop.live()) lines.push(`${n} ${value(m)}${CRLF}`);
  const { count, size } = drop.stat();
  s.reply(`+OK ${count} messages (${size} octets)${CRLF}${lines.join("")}.${CRLF}`);
}

/** RFC 1939 §6: QUIT from TRANSACTION removes the marked messages, then releases the lock. */
async function update(s: Pop3Session, drop: Maildrop): Promise<void> {
  s.state = "update";
  const uids = drop.deletedUids();
  let failed = false;
  if (uids.length > 0) {
    try {
      const res = await s.deps.store.call("mailbox.expunge", {
        userId: s.account!.userId,
        folderId: drop.folder.folderId,
        uids,
      });
      failed = res.expunged.length !== uids.length;
      s.log.info("maildrop.expunged", {
        conn: s.conn.id,
        user: s.account!.address,
        asked: uids.length,
        expunged: res.expunged.length,
      });
    } catch (e) {
      s.log.warn("maildrop.expunge_failed", { conn: s.conn.id, error: e as Error });
      failed = true;
    }
  }
  await s.releaseLock(drop.lockId);
  const left = drop.stat().count;
  if (failed) s.reply(err(`${code.sysTemp} Some deleted messages were not removed`));
  else s.reply(ok(`Posthorn POP3 server signing off (${left} messages left)`));
  s.conn.close();
}
