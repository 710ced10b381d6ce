// Accounts: users (argon2id hashes via Bun.password), aliases and distribution lists. Used by
// the CLI and admin API directly and by auth/resolve through the service.
import { type AccountInfo, StoreError, type UserId } from "../ipc/store-api.ts";
import { requireAddress } from "./addresses.ts";
import type { Core } from "./core.ts";
import { DEFAULT_FOLDERS, insertFolder } from "./folders.ts";
import { deleteFolderContents } from "./messages.ts";
import type { FolderRow } from "./folders.ts";

export interface UserRow {
  id: number;
  address: string;
  local: string;
  domain: string;
  display_name: string;
  password_hash: string;
  disabled: number;
  quota_bytes: number | null;
  quota_messages: number | null;
  used_bytes: number;
  used_messages: number;
}

export interface UserOptions {
  displayName?: string;
  quotaBytes?: number | null;
  quotaMessages?: number | null;
  disabled?: boolean;
}

export function userByAddress(core: Core, address: string): UserRow | null {
  return core.db.query("SELECT * FROM users WHERE address = ?").get(address) as UserRow | null;
}

export function userById(core: Core, id: UserId): UserRow | null {
  return core.db.query("SELECT * FROM users WHERE id = ?").get(id) as UserRow | null;
}

export function accountInfo(core: Core, u: UserRow): AccountInfo {
  return {
    userId: u.id,
    address: u.address,
    displayName: u.display_name,
    quotaBytes: u.quota_bytes ?? core.opts.quotaBytes,
    quotaMessages: u.quota_messages ?? core.opts.quotaMessages,
    usedBytes: u.used_bytes,
    usedMessages: u.used_messages,
  };
}

export function hashPassword(core: Core, password: string): Promise<string> {
  if (typeof password !== "string" || password.length === 0 || password.length > 1024) {
    throw new StoreError("invalid", "password must be 1 to 1024 characters");
  }
  return Bun.password.hash(password, { algorithm: "argon2id", ...core.opts.argon2 });
}

export async function addUser(
  core: Core,
  address: string,
  password: string,
  opts: UserOptions = {},
): Promise<AccountInfo> {
  const a = requireAddress(address);
  if (a.local.includes("+")) throw new StoreError("invalid", "'+' is kept for plus-addressing");
  const hash = await hashPassword(core, password);
  return core.tx.run(() => {
    if (userByAddress(core, a.address)) {
      throw new StoreError("exists", `user ${a.address} exists`);
    }
    const r = core.db.query(
      `INSERT INTO users(address, local, domain, display_name, password_hash, disabled, quota_bytes, quota_messages, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      a.address,
      a.local,
      a.domain,
      opts.displayName ?? "",
      hash,
      opts.disabled ? 1 : 0,
      opts.quotaBytes ?? null,
      opts.quotaMessages ?? null,
      Date.now(),
    );
    const id = Number(r.lastInsertRowid);
    for (const [name, use] of DEFAULT_FOLDERS) insertFolder(core, id, name, use);
    return accountInfo(core, userById(core, id)!);
  });
}

export async function setPassword(core: Core, address: string, password: string): Promise<void> {
  const a = requireAddress(address);
  const hash = await hashPassword(core, password);
  const r = core.tx.run(() =>
    core.db.query("UPDATE users SET password_hash = ? WHERE address = ?").run(hash, a.address)
  );
  if (r.changes === 0) throw new StoreError("not_found", `no user ${a.address}`);
}

export function updateUser(core: Core, address: string, opts: UserOptions): AccountInfo {
  const a = requireAddress(address);
  return core.tx.run(() => {
    const u = userByAddress(core, a.address);
    if (!u) throw new StoreError("not_found", `no user ${a.address}`);
    core.db.query(
      "UPDATE users SET display_name = ?, quota_bytes = ?, quota_messages = ?, disabled = ? WHERE id = ?",
    ).run(
      opts.displayName ?? u.display_name,
      opts.quotaBytes === undefined ? u.quota_bytes : opts.quotaBytes,
      opts.quotaMessages === undefined ? u.quota_messages : opts.quotaMessages,
      opts.disabled === undefined ? u.disabled : opts.disabled ? 1 : 0,
      u.id,
    );
    return accountInfo(core, userById(core, u.id)!);
  });
}

/** Delete a user with every folder and message (bodies lose their references). */
export function removeUser(core: Core, address: string): void {
  const a = requireAddress(address);
  core.tx.run(() => {
    const u = userByAddress(core, a.address);
    if (!u) throw new StoreError("not_found", `no user ${a.address}`);
    const folders = core.db.query("SELECT * FROM folders WHERE owner_id = ?").all(
      u.id,
    ) as FolderRow[];
    for (const f of folders) {
      deleteFolderContents(core, f);
      core.db.query("DELETE FROM acl WHERE folder_id = ?").run(f.id);
    }
    core.db.query("DELETE FROM folders WHERE owner_id = ?").run(u.id);
    core.db.query("DELETE FROM subscriptions WHERE user_id = ?").run(u.id);
    core.db.query("DELETE FROM acl WHERE identifier = ?").run(u.address);
    core.db.query("DELETE FROM users WHERE id = ?").run(u.id);
  });
}

export function listUsers(core: Core): AccountInfo[] {
  return (core.db.query("SELECT * FROM users ORDER BY domain, local").all() as UserRow[])
    .map((u) => accountInfo(core, u));
}

// ---------------------------------------------------------------- aliases and lists

export interface AliasEntry {
  address: string;
  kind: "alias" | "list";
  targets: string[];
}

/** An alias forwards to one or more addresses (local or remote). */
export function addAlias(
  core: Core,
  address: string,
  target: string,
  kind: "alias" | "list" = "alias",
): void {
  const a = requireAddress(address);
  const t = requireAddress(target);
  if (a.address === t.address) throw new StoreError("invalid", "an alias cannot point at itself");
  core.tx.run(() => {
    if (userByAddress(core, a.address)) {
      throw new StoreError("exists", `${a.address} is a mailbox`);
    }
    const other = core.db.query("SELECT kind FROM aliases WHERE address = ? LIMIT 1").get(
      a.address,
    ) as { kind: string } | null;
    if (other && other.kind !== kind) {
      throw new StoreError("exists", `${a.address} is already a ${other.kind}`);
    }
    core.db.query("INSERT OR IGNORE INTO aliases(address, target, kind) VALUES (?, ?, ?)").run(
      a.address,
      t.address,
      kind,
    );
  });
}

/** Remove one target, or the whole alias/list when `target` is omitted. */
export function removeAlias(core: Core, address: string, target?: string): void {
  const a = requireAddress(address);
  const r = core.tx.run(() =>
    target === undefined
      ? core.db.query("DELETE FROM aliases WHERE address = ?").run(a.address)
      : core.db.query("DELETE FROM aliases WHERE address = ? AND target = ?").run(
        a.address,
        requireAddress(target).address,
      )
  );
  if (r.changes === 0) throw new StoreError("not_found", `no alias ${a.address}`);
}

export function listAliases(core: Core): AliasEntry[] {
  const rows = core.db.query("SELECT address, target, kind FROM aliases ORDER BY address, target")
    .all() as { address: string; target: string; kind: "alias" | "list" }[];
  const out = new Map<string, AliasEntry>();
  for (const r of rows) {
    let e = out.get(r.address);
    if (!e) out.set(r.address, e = { address: r.address, kind: r.kind, targets: [] });
    e.targets.push(r.target);
  }
  return [...out.values()];
}
