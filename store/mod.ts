// The store room's entry: `openStore` gives the supervisor a `StoreService` to serve over ipc/
// and gives the CLI the admin operations (users, aliases, verify, backup, compact, import,
// export). Every SQL statement and page-file access lives in this folder, behind these methods.
import type { AccountInfo, StoreErrorCode } from "../ipc/store-api.ts";
import { StoreError } from "../ipc/store-api.ts";
import type { StoreService } from "../ipc/store-client.ts";
import {
  addAlias,
  addUser,
  type AliasEntry,
  listAliases,
  listUsers,
  removeAlias,
  removeUser,
  setPassword,
  updateUser,
  type UserOptions,
} from "./accounts.ts";
import { Authenticator } from "./auth.ts";
import { Committer } from "./commit.ts";
import { Core, type DomainConfig, type StoreOptions } from "./core.ts";
import { Locks } from "./locks.ts";
import { backup, type BackupManifest, compact, restore } from "./maintenance.ts";
import { createService } from "./service.ts";
import { domainsWithoutPostmaster } from "./resolve.ts";
import { Uploads } from "./uploads.ts";
import { type VerifyReport, verifyStore } from "./verify.ts";
import {
  exportMaildir,
  exportMbox,
  importMaildir,
  importMbox,
  type MoveReport,
} from "./migrate.ts";
import { Admin } from "./admin.ts";
import type { Logger } from "../log/mod.ts";
import type { Metabase } from "../metabase/schema.ts";

export type {
  AliasEntry,
  BackupManifest,
  DomainConfig,
  MoveReport,
  StoreOptions,
  UserOptions,
  VerifyReport,
};

export interface Store {
  /** Serve this over ipc/ (or `createDirectStoreClient(store.service)` in one thread). */
  service: StoreService;
  /** Hot reload of the metabase's `domains`. */
  setDomains(domains: DomainConfig[]): void;
  /** Hot reload of every live store setting (see Core.reconfigure). */
  reconfigure(opts: StoreOptions): void;
  /** Local domains whose postmaster@ resolves to nobody (logged as store.no_postmaster). */
  domainsWithoutPostmaster(): string[];
  /** Whether this handle owns the directory (false: the CLI beside a running server). */
  readonly owner: boolean;
  /** Wait for pending commits, abort uploads in flight, close files. */
  close(): Promise<void>;

  addUser(address: string, password: string, opts?: UserOptions): Promise<AccountInfo>;
  setPassword(address: string, password: string): Promise<void>;
  updateUser(address: string, opts: UserOptions): AccountInfo;
  removeUser(address: string): void;
  listUsers(): AccountInfo[];
  /** An alias forwards to each of its targets; a list delivers to each member. */
  addAlias(address: string, target: string): void;
  addListMember(list: string, member: string): void;
  removeAlias(address: string, target?: string): void;
  listAliases(): AliasEntry[];
  /** Public folders, newsgroups and ACLs (see admin.ts). */
  admin: Admin;

  verify(): Promise<VerifyReport>;
  compact(): { before: number; after: number };
  backup(dir: string): Promise<BackupManifest>;

  importMbox(path: string, user: string, folder?: string): Promise<MoveReport>;
  importMaildir(path: string, user: string, folder?: string): Promise<MoveReport>;
  exportMbox(path: string, user: string, folder?: string): Promise<MoveReport>;
  exportMaildir(path: string, user: string, folder?: string): Promise<MoveReport>;
}

export function openStore(opts: StoreOptions): Store {
  let core: Core;
  try {
    core = new Core(opts);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (err instanceof StoreError) throw err;
    throw new StoreError(
      code === "in_use" ? "in_use" : "internal" as StoreErrorCode,
      (err as Error).message,
    );
  }
  const uploads = new Uploads(core);
  const committer = new Committer(core);
  const locks = new Locks();
  const auth = new Authenticator(core);
  const service = createService({ core, uploads, committer, locks, auth });
  const admin = new Admin(core);
  core.log.info("store.opened", {
    dir: opts.dir,
    owner: core.owner,
    durability: opts.durability,
    pageBytes: core.pageBytes,
    pages: core.space.committedPages(),
  });
  // The server (not the CLI beside it) warns when a domain's postmaster@ would be refused.
  const server = (opts.mode ?? "exclusive") === "exclusive";
  if (server) warnWithoutPostmaster(core);
  const ctx = { core, uploads, committer };
  return {
    service,
    owner: core.owner,
    setDomains: (d) => core.setDomains(d),
    reconfigure: (o) => {
      core.reconfigure(o);
      if (server) warnWithoutPostmaster(core);
    },
    domainsWithoutPostmaster: () => domainsWithoutPostmaster(core),
    async close() {
      if (core.closed) return;
      await committer.idle();
      uploads.abortAll();
      core.close();
      core.log.info("store.closed", {});
    },
    addUser: (a, p, o) => addUser(core, a, p, o),
    setPassword: (a, p) => setPassword(core, a, p),
    updateUser: (a, o) => updateUser(core, a, o),
    removeUser: (a) => removeUser(core, a),
    listUsers: () => listUsers(core),
    addAlias: (a, t) => addAlias(core, a, t, "alias"),
    addListMember: (l, m) => addAlias(core, l, m, "list"),
    removeAlias: (a, t) => removeAlias(core, a, t),
    listAliases: () => listAliases(core),
    admin,
    verify: () => verifyStore(core),
    compact: () => compact(core, uploads.count),
    backup: (dir) => backup(core, dir),
    importMbox: (p, u, f) => importMbox(ctx, p, u, f),
    importMaildir: (p, u, f) => importMaildir(ctx, p, u, f),
    exportMbox: (p, u, f) => exportMbox(core, p, u, f),
    exportMaildir: (p, u, f) => exportMaildir(core, p, u, f),
  };
}

/** RFC 5321 §4.5.1: mail to postmaster@ every local domain MUST be accepted; say when not. */
function warnWithoutPostmaster(core: Core): void {
  const domains = domainsWithoutPostmaster(core);
  if (domains.length === 0) return;
  core.log.warn("store.no_postmaster", {
    domains,
    hint: "set server.postmaster, or add a user or alias postmaster@ each of these domains",
  });
}

/** `posthorn restore DIR`: replace a store (not in use) by a backup. Verify it afterwards. */
export function restoreStore(backupDir: string, storeDir: string): BackupManifest {
  return restore(backupDir, storeDir);
}

/** The store's options as the metabase sets them (server and CLI open it the same way). */
export function storeOptionsFromMetabase(
  mb: Metabase,
  dir: string,
  log: Logger,
  mode: StoreOptions["mode"] = "exclusive",
): StoreOptions {
  return {
    dir,
    durability: mb.store.durability,
    groupCommitMs: mb.store.groupCommitMs,
    pageBytes: mb.store.pageBytes,
    quotaBytes: mb.store.quotaBytes,
    quotaMessages: mb.store.quotaMessages,
    domains: mb.domains,
    postmaster: mb.server.postmaster,
    auth: mb.auth,
    log,
    chunkBytes: mb.ipc.chunkBytes,
    maxUploads: mb.store.maxUploads,
    indexBytes: mb.store.indexBytes,
    indexBacklog: mb.store.indexBacklog,
    maxImportMessageBytes: mb.store.maxImportMessageBytes,
    maxPrefixBytes: mb.store.maxPrefixBytes,
    inlineBytes: mb.store.inlineBytes,
    mode,
  };
}
