// Messages in folders: insert (delivery, APPEND, copy), list, flags with modseq (RFC 7162),
// copy/move (RFC 6851), expunge, full-text search, and per-user quota accounting.
import {
  type FolderId,
  type MessageId,
  type MessageSummary,
  StoreError,
  type UserId,
} from "../ipc/store-api.ts";
import { addRef, dropRef } from "./bodies.ts";
import type { Core } from "./core.ts";
import { folderById, type FolderRow, nextModseq, requireFolder } from "./folders.ts";

export interface MessageRow {
  id: number;
  folder_id: number;
  uid: number;
  body_id: number;
  prefix: Uint8Array | null;
  size: number;
  flags: string;
  internal_date: number;
  modseq: number;
  article: number | null;
  message_id: string | null;
  origin: string | null;
}

const SYSTEM_FLAGS = new Map(
  ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"].map((f) => [f.toLowerCase(), f]),
);

/** RFC 3501 §2.3.2: system flags are case-insensitive; keywords are atoms. */
export function normalizeFlags(flags: readonly string[]): string[] {
  const out = new Set<string>();
  for (const raw of flags) {
    if (typeof raw !== "string") throw new StoreError("invalid", "flags must be strings");
    if (raw.startsWith("\\")) {
      const sys = SYSTEM_FLAGS.get(raw.toLowerCase());
      if (raw.toLowerCase() === "\\recent") continue; // session-only, never stored
      if (!sys) throw new StoreError("invalid", `unknown system flag ${raw}`);
      out.add(sys);
    } else {
      // deno-lint-ignore no-control-regex
      if (!/^[^\x00-\x20\x7f(){%*"\\\]]{1,100}$/.test(raw)) {
        throw new StoreError("invalid", `bad keyword ${JSON.stringify(raw)}`);
      }
      out.add(raw);
    }
  }
  return [...out].sort();
}

function flagList(s: string): string[] {
  return s === "" ? [] : s.split(" ");
}

/**
 * POP3 UIDL (RFC 1939 §7): printable, ≤70 chars, never reused since message ids are not. A
 * restore from backup re-issues message ids handed out after the backup, so it bumps the epoch:
 * clients then see new UIDLs (and download once more) rather than skipping new mail.
 */
export function uniqueIdOf(messageId: number, epoch = 0): string {
  const id = messageId.toString(36).toUpperCase();
  return epoch === 0 ? `P${id}` : `P${epoch.toString(36).toUpperCase()}-${id}`;
}

export function summary(r: MessageRow, epoch = 0): MessageSummary {
  return {
    messageId: r.id,
    uid: r.uid,
    size: r.size,
    flags: flagList(r.flags),
    internalDate: r.internal_date,
    modseq: r.modseq,
    uniqueId: uniqueIdOf(r.id, epoch),
  };
}

const COLS =
  "id, folder_id, uid, body_id, prefix, size, flags, internal_date, modseq, article, message_id, origin";

export function messageById(core: Core, id: MessageId): MessageRow | null {
  return core.db.query(`SELECT ${COLS} FROM messages WHERE id = ?`).get(id) as MessageRow | null;
}

/** What `message.read` needs, in one query: the message, its folder's owner, its body. */
export interface ReadableRow {
  folder_id: number;
  body_id: number;
  prefix: Uint8Array | null;
  /** Null for a public folder, or a folder that is gone. */
  owner_id: number | null;
  body_size: number | null;
  /** The body's extents as stored (JSON); null if the body row is missing. */
  extents: string | null;
  /** The body's bytes when stored inline; null if it is in the page file (or missing). */
  inline: Uint8Array | null;
}

export function messageForRead(core: Core, id: MessageId): ReadableRow | null {
  // Correlated subqueries: each a primary-key lookup (measured several times faster here than
  // the equivalent JOIN, which bun:sqlite's SQLite plans less well).
  return core.db.query(
    `SELECT folder_id, body_id, prefix,
       (SELECT owner_id FROM folders WHERE id = m.folder_id) AS owner_id,
       (SELECT size FROM bodies WHERE id = m.body_id) AS body_size,
       (SELECT extents FROM bodies WHERE id = m.body_id) AS extents,
       (SELECT inline FROM bodies WHERE id = m.body_id) AS inline
     FROM messages m WHERE id = ?`,
  ).get(id) as ReadableRow | null;
}

export function messagesByUid(core: Core, folderId: FolderId, uids: number[]): MessageRow[] {
  return core.db.query(
    `SELECT ${COLS} FROM messages WHERE folder_id = ? AND uid IN (SELECT value FROM json_each(?)) ORDER BY uid`,
  ).all(folderId, JSON.stringify(uids.map(Number))) as MessageRow[];
}

/** A folder's messages after `sinceUid`, in uid order; at most `limit` of them (-1: all). */
export function listMessages(
  core: Core,
  folderId: FolderId,
  sinceUid = 0,
  limit = -1,
): MessageSummary[] {
  return (core.db.query(
    `SELECT ${COLS} FROM messages WHERE folder_id = ? AND uid > ? ORDER BY uid LIMIT ?`,
  ).all(folderId, sinceUid, limit) as MessageRow[]).map((r) => summary(r, core.uidlEpoch));
}

/** A user's usage and effective limits (their own quota, else the store's default). */
export function quotaState(core: Core, userId: UserId): {
  usedBytes: number;
  usedMessages: number;
  maxBytes: number | null;
  maxMessages: number | null;
} | null {
  const u = core.db.query(
    "SELECT quota_bytes, quota_messages, used_bytes, used_messages FROM users WHERE id = ?",
  ).get(userId) as {
    quota_bytes: number | null;
    quota_messages: number | null;
    used_bytes: number;
    used_messages: number;
  } | null;
  if (!u) return null;
  return {
    usedBytes: u.used_bytes,
    usedMessages: u.used_messages,
    maxBytes: u.quota_bytes ?? core.opts.quotaBytes,
    maxMessages: u.quota_messages ?? core.opts.quotaMessages,
  };
}

/** Throws quota if the user cannot take `bytes` more in `messages` more messages. */
export function checkQuota(core: Core, userId: UserId, bytes: number, messages: number): void {
  const q = quotaState(core, userId);
  if (!q) throw new StoreError("not_found", `no user ${userId}`);
  if (q.maxBytes !== null && q.usedBytes + bytes > q.maxBytes) {
    throw new StoreError("quota", "mailbox is over its storage quota");
  }
  if (q.maxMessages !== null && q.usedMessages + messages > q.maxMessages) {
    throw new StoreError("quota", "mailbox is over its message-count quota");
  }
}

function account(core: Core, folder: FolderRow, bytes: number, messages: number): void {
  if (folder.owner_id === null) return;
  core.db.query(
    "UPDATE users SET used_bytes = used_bytes + ?, used_messages = used_messages + ? WHERE id = ?",
  ).run(bytes, messages, folder.owner_id);
}

export interface NewMessage {
  bodyId: number;
  bodySize: number;
  prefix: Uint8Array | null;
  flags: string[];
  internalDate: number;
  messageIdHeader: string | null;
  origin?: string | null;
}

/** Inside a transaction; the caller holds (or has just added) the body reference. */
export function insertMessage(
  core: Core,
  folderId: FolderId,
  m: NewMessage,
): { messageId: MessageId; uid: number; modseq: number } {
  const f = core.db.query(
    `UPDATE folders SET uid_next = uid_next + 1, highest_modseq = highest_modseq + 1,
       article_next = article_next + (newsgroup IS NOT NULL)
     WHERE id = ? RETURNING uid_next - 1 AS uid, highest_modseq AS modseq,
       CASE WHEN newsgroup IS NOT NULL THEN article_next - 1 END AS article, owner_id`,
  ).get(folderId) as { uid: number; modseq: number; article: number | null; owner_id: number };
  if (!f) throw new StoreError("not_found", `no folder ${folderId}`);
  const size = (m.prefix?.length ?? 0) + m.bodySize;
  const r = core.db.query(
    `INSERT INTO messages(folder_id, uid, body_id, prefix, size, flags, internal_date, modseq, article, message_id, origin)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  ).run(
    folderId,
    f.uid,
    m.bodyId,
    m.prefix && m.prefix.length > 0 ? m.prefix : null,
    size,
    normalizeFlags(m.flags).join(" "),
    Math.floor(m.internalDate),
    f.modseq,
    f.article,
    m.messageIdHeader,
    m.origin ?? null,
  );
  if (f.owner_id !== null) {
    core.db.query(
      "UPDATE users SET used_bytes = used_bytes + ?, used_messages = used_messages + 1 WHERE id = ?",
    ).run(size, f.owner_id);
  }
  const uid = f.uid, modseq = f.modseq;
  core.tx.afterCommit(() =>
    core.publish("mailbox", {
      folderId,
      userId: f.owner_id,
      kind: "exists",
      uids: [uid],
      modseq,
    })
  );
  return { messageId: Number(r.lastInsertRowid), uid, modseq };
}

/** Inside a transaction: remove messages; `keepBodies` when a move hands the reference on. */
function deleteRows(core: Core, folder: FolderRow, rows: MessageRow[], keepBodies: boolean) {
  let bytes = 0;
  for (const r of rows) {
    core.db.query("DELETE FROM messages WHERE id = ?").run(r.id);
    if (!keepBodies) dropRef(core, r.body_id);
    bytes += r.size;
  }
  account(core, folder, -bytes, -rows.length);
}

export function expunge(
  core: Core,
  folder: FolderRow,
  uids: number[],
): { expunged: number[]; modseq: number } {
  return core.tx.run(() => {
    const rows = messagesByUid(core, folder.id, uids);
    if (rows.length === 0) return { expunged: [], modseq: folder.highest_modseq };
    deleteRows(core, folder, rows, false);
    const modseq = nextModseq(core, folder.id);
    const expunged = rows.map((r) => r.uid);
    core.tx.afterCommit(() =>
      core.publish("mailbox", {
        folderId: folder.id,
        userId: folder.owner_id,
        kind: "expunge",
        uids: expunged,
        modseq,
      })
    );
    return { expunged, modseq };
  });
}

/** Every message of a folder, then the folder (folder.delete, user removal). */
export function deleteFolderContents(core: Core, folder: FolderRow): void {
  const rows = core.db.query(`SELECT ${COLS} FROM messages WHERE folder_id = ?`)
    .all(folder.id) as MessageRow[];
  deleteRows(core, folder, rows, false);
}

export function setFlags(
  core: Core,
  folder: FolderRow,
  uids: number[],
  mode: "add" | "remove" | "replace",
  flags: string[],
  unchangedSince?: number,
): { modseq: number; updated: number[]; failed: number[] } {
  const wanted = normalizeFlags(flags);
  return core.tx.run(() => {
    const rows = messagesByUid(core, folder.id, uids);
    const updated: number[] = [], failed: number[] = [];
    const changes: [MessageRow, string][] = [];
    for (const r of rows) {
      // RFC 7162 §3.2: UNCHANGEDSINCE fails messages modified after the given modseq.
      if (unchangedSince !== undefined && r.modseq > unchangedSince) {
        failed.push(r.uid);
        continue;
      }
      const cur = new Set(flagList(r.flags));
      if (mode === "replace") cur.clear();
      for (const f of wanted) mode === "remove" ? cur.delete(f) : cur.add(f);
      const next = [...cur].sort().join(" ");
      if (next !== r.flags) changes.push([r, next]);
      else updated.push(r.uid);
    }
    let modseq = folder.highest_modseq;
    if (changes.length > 0) {
      modseq = nextModseq(core, folder.id);
      for (const [r, next] of changes) {
        core.db.query("UPDATE messages SET flags = ?, modseq = ? WHERE id = ?").run(
          next,
          modseq,
          r.id,
        );
        updated.push(r.uid);
      }
      const changed = changes.map(([r]) => r.uid);
      core.tx.afterCommit(() =>
        core.publish("mailbox", {
          folderId: folder.id,
          userId: folder.owner_id,
          kind: "flags",
          uids: changed,
          modseq,
        })
      );
    }
    updated.sort((a, b) => a - b);
    return { modseq, updated, failed };
  });
}

/** COPY / MOVE (RFC 3501 §6.4.7, RFC 6851): bodies are shared, never copied. */
export function copyMessages(
  core: Core,
  from: FolderRow,
  uids: number[],
  to: FolderRow,
  move: boolean,
): { uidValidity: number; mapping: [number, number][] } {
  return core.tx.run(() => {
    const rows = messagesByUid(core, from.id, uids);
    const sameOwner = from.owner_id === to.owner_id;
    if (to.owner_id !== null && !(move && sameOwner)) {
      checkQuota(core, to.owner_id, rows.reduce((n, r) => n + r.size, 0), rows.length);
    }
    const mapping: [number, number][] = [];
    for (const r of rows) {
      addRef(core, r.body_id, 1);
      const prefix = r.prefix ? new Uint8Array(r.prefix) : null;
      const ins = insertMessage(core, to.id, {
        bodyId: r.body_id,
        bodySize: r.size - (prefix?.length ?? 0),
        prefix,
        flags: flagList(r.flags),
        internalDate: r.internal_date,
        messageIdHeader: r.message_id,
        origin: r.origin,
      });
      mapping.push([r.uid, ins.uid]);
    }
    if (move && rows.length > 0) {
      expunge(core, from, rows.map((r) => r.uid));
    }
    const dest = folderById(core, to.id)!;
    return { uidValidity: dest.uid_validity, mapping };
  });
}

/**
 * Full-text search (FTS5) within a folder: every word must appear. The caller indexes the
 * folder's pending bodies first (FullTextIndexer.indexFolder) so that nothing is missed.
 */
export function search(core: Core, folder: FolderRow, text: string): number[] {
  const words = String(text).match(/[\p{L}\p{N}_]+/gu) ?? [];
  if (words.length === 0) return [];
  const query = words.slice(0, 32).map((w) => `"${w}"`).join(" AND ");
  return (core.db.query(
    `SELECT m.uid FROM messages m JOIN body_fts f ON f.rowid = m.body_id
     WHERE m.folder_id = ? AND body_fts MATCH ? ORDER BY m.uid`,
  ).all(folder.id, query) as { uid: number }[]).map((r) => r.uid);
}

export function folderForUser(core: Core, userId: UserId, name: string): FolderRow {
  return requireFolder(core, userId, name);
}
