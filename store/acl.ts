// Access control (RFC 4314): the owner of a folder holds every right; others get the union of
// the rights granted to their address, to "anyone" (every authenticated user) and, without a
// login, to "anonymous". Public folders have no owner: only grants apply.
import { type FolderId, StoreError, type UserId } from "../ipc/store-api.ts";
import { userById } from "./accounts.ts";
import type { Core } from "./core.ts";
import { folderById, type FolderRow } from "./folders.ts";

export const ALL_RIGHTS = "lrswipkxtea";

export function normalizeRights(rights: string): string {
  const set = new Set(String(rights));
  for (const c of set) {
    if (!ALL_RIGHTS.includes(c)) throw new StoreError("invalid", `unknown right "${c}"`);
  }
  return [...ALL_RIGHTS].filter((c) => set.has(c)).join("");
}

export function rightsFor(core: Core, userId: UserId | null, f: FolderRow): string {
  if (userId !== null && f.owner_id === userId) return ALL_RIGHTS;
  const ids = userId === null ? ["anonymous"] : ["anyone"];
  if (userId !== null) {
    const u = userById(core, userId);
    if (u) ids.push(u.address);
  }
  const rows = core.db.query(
    "SELECT rights FROM acl WHERE folder_id = ? AND identifier IN (SELECT value FROM json_each(?))",
  ).all(f.id, JSON.stringify(ids)) as { rights: string }[];
  return normalizeRights(rows.map((r) => r.rights).join(""));
}

/** The folder if the caller holds `right` on it; not_found if they may not even see it. */
export function accessibleFolder(
  core: Core,
  userId: UserId | null,
  folderId: FolderId,
  right: string,
): FolderRow {
  const f = folderById(core, Number(folderId));
  if (!f) throw new StoreError("not_found", `no folder ${folderId}`);
  const rights = rightsFor(core, userId === null ? null : Number(userId), f);
  if (!rights.includes("l") && !rights.includes("r")) {
    throw new StoreError("not_found", `no folder ${folderId}`);
  }
  for (const c of right) {
    if (!rights.includes(c)) throw new StoreError("denied", `right "${c}" is not granted`);
  }
  return f;
}

export function setAcl(core: Core, folderId: FolderId, identifier: string, rights: string): void {
  const id = String(identifier).trim().toLowerCase();
  if (!id || id.length > 320) throw new StoreError("invalid", "bad identifier");
  const r = normalizeRights(rights);
  core.tx.run(() => {
    if (r === "") {
      core.db.query("DELETE FROM acl WHERE folder_id = ? AND identifier = ?").run(folderId, id);
    } else {
      core.db.query(
        "INSERT INTO acl(folder_id, identifier, rights) VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET rights = excluded.rights",
      ).run(folderId, id, r);
    }
  });
}

export function getAcl(core: Core, folderId: FolderId): { identifier: string; rights: string }[] {
  return core.db.query(
    "SELECT identifier, rights FROM acl WHERE folder_id = ? ORDER BY identifier",
  ).all(folderId) as { identifier: string; rights: string }[];
}
