// Folders: per-user mail folders (INBOX, special-use roles, subscriptions) and the public
// folder tree (owner NULL) that IMAP and NNTP share. Each folder carries its UIDVALIDITY,
// UIDNEXT and HIGHESTMODSEQ (RFC 3501 §2.3.1.1, RFC 7162 §3.1).
import { type FolderId, type FolderInfo, StoreError, type UserId } from "../ipc/store-api.ts";
import type { Core } from "./core.ts";
import { getMeta, setMeta } from "./space.ts";

export interface FolderRow {
  id: number;
  owner_id: number | null;
  name: string;
  special_use: FolderInfo["specialUse"];
  uid_validity: number;
  uid_next: number;
  highest_modseq: number;
  address: string | null;
  newsgroup: string | null;
  article_next: number;
}

const COLS =
  "id, owner_id, name, special_use, uid_validity, uid_next, highest_modseq, address, newsgroup, article_next";

export const DEFAULT_FOLDERS: [string, FolderInfo["specialUse"]][] = [
  ["INBOX", null],
  ["Drafts", "\\Drafts"],
  ["Sent", "\\Sent"],
  ["Trash", "\\Trash"],
  ["Junk", "\\Junk"],
];
const SPECIAL_USES = new Set(["\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive"]);

/** INBOX is case-insensitive (RFC 3501 §5.1); other names are kept as given. */
export function canonicalName(name: string): string {
  if (typeof name !== "string") throw new StoreError("invalid", "folder name must be a string");
  const n = name.normalize("NFC");
  if (n.toUpperCase() === "INBOX") return "INBOX";
  if (n.toUpperCase().startsWith("INBOX/")) return "INBOX" + n.slice(5);
  return n;
}

export function validateName(name: string): string {
  const n = canonicalName(name);
  if (n.length === 0 || n.length > 255) throw new StoreError("invalid", "folder name length");
  if (n.startsWith("/") || n.endsWith("/") || n.includes("//")) {
    throw new StoreError("invalid", `bad folder name "${n}"`);
  }
  // deno-lint-ignore no-control-regex
  if (/[\x00-\x1f\x7f*%]/.test(n)) {
    throw new StoreError("invalid", "folder name has control or wildcard characters");
  }
  return n;
}

/** A new UIDVALIDITY: the time in seconds, strictly increasing (RFC 3501 §2.3.1.1). */
function nextUidValidity(core: Core): number {
  const last = Number(getMeta(core.db, "uidvalidity_last") ?? 0);
  const v = Math.max(Math.floor(Date.now() / 1000), last + 1) % 0xffffffff || 1;
  setMeta(core.db, "uidvalidity_last", v);
  return v;
}

export function folderById(core: Core, id: FolderId): FolderRow | null {
  return core.db.query(`SELECT ${COLS} FROM folders WHERE id = ?`).get(id) as FolderRow | null;
}

export function folderByName(core: Core, userId: UserId | null, name: string): FolderRow | null {
  return core.db.query(`SELECT ${COLS} FROM folders WHERE ifnull(owner_id, 0) = ? AND name = ?`)
    .get(userId ?? 0, canonicalName(name)) as FolderRow | null;
}

export function requireFolder(core: Core, userId: UserId | null, name: string): FolderRow {
  const f = folderByName(core, userId, name);
  if (!f) throw new StoreError("not_found", `no folder "${name}"`);
  return f;
}

/** A folder of this user (or a public one the caller may use: checked by the caller). */
export function ownedFolder(core: Core, userId: UserId, folderId: FolderId): FolderRow {
  const f = folderById(core, folderId);
  if (!f || f.owner_id !== userId) throw new StoreError("not_found", `no folder ${folderId}`);
  return f;
}

/** Inside a transaction. */
export function insertFolder(
  core: Core,
  userId: UserId | null,
  name: string,
  specialUse: FolderInfo["specialUse"] = null,
  extra: { address?: string | null; newsgroup?: string | null } = {},
): FolderRow {
  const n = validateName(name);
  if (specialUse !== null && !SPECIAL_USES.has(specialUse)) {
    throw new StoreError("invalid", `unknown special-use ${specialUse}`);
  }
  if (folderByName(core, userId, n)) throw new StoreError("exists", `folder "${n}" exists`);
  core.db.query(
    "INSERT INTO folders(owner_id, name, special_use, uid_validity, address, newsgroup, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
  ).run(
    userId,
    n,
    specialUse,
    nextUidValidity(core),
    extra.address ?? null,
    extra.newsgroup ?? null,
    Date.now(),
  );
  if (userId !== null) {
    core.db.query("INSERT OR IGNORE INTO subscriptions(user_id, name) VALUES (?, ?)").run(
      userId,
      n,
    );
  }
  return folderByName(core, userId, n)!;
}

export function folderInfo(core: Core, f: FolderRow, viewer: UserId | null): FolderInfo {
  const counts = core.db.query(
    "SELECT count(*) AS n, ifnull(sum(instr(' ' || flags || ' ', ' \\Seen ') = 0), 0) AS unseen FROM messages WHERE folder_id = ?",
  ).get(f.id) as { n: number; unseen: number };
  const sub = viewer === null ? null : core.db.query(
    "SELECT 1 FROM subscriptions WHERE user_id = ? AND name = ?",
  ).get(viewer, f.owner_id === null ? publicName(f.name) : f.name);
  return {
    folderId: f.id,
    name: f.owner_id === null ? publicName(f.name) : f.name,
    specialUse: f.special_use,
    uidValidity: f.uid_validity,
    uidNext: f.uid_next,
    highestModseq: f.highest_modseq,
    messages: counts.n,
    unseen: counts.unseen,
    subscribed: sub !== null,
  };
}

/** Public folders appear to IMAP under this namespace prefix (RFC 2342). */
export const PUBLIC_PREFIX = "Public/";
export function publicName(name: string): string {
  return PUBLIC_PREFIX + name;
}

export function listFolders(core: Core, userId: UserId): FolderInfo[] {
  const rows = core.db.query(`SELECT ${COLS} FROM folders WHERE owner_id = ? ORDER BY name`)
    .all(userId) as FolderRow[];
  return rows.map((f) => folderInfo(core, f, userId));
}

/** Bump and return the folder's next modseq (inside a transaction). */
export function nextModseq(core: Core, folderId: FolderId): number {
  const r = core.db.query(
    "UPDATE folders SET highest_modseq = highest_modseq + 1 WHERE id = ? RETURNING highest_modseq",
  ).get(folderId) as { highest_modseq: number } | null;
  if (!r) throw new StoreError("not_found", `no folder ${folderId}`);
  return r.highest_modseq;
}
