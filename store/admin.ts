// Administration of shared things: public folders (the tree IMAP and NNTP share), newsgroups
// and access control lists. Used by the CLI and the admin API directly.
import { type FolderInfo, StoreError } from "../ipc/store-api.ts";
import { setAcl } from "./acl.ts";
import { parseAddress } from "./addresses.ts";
import type { Core } from "./core.ts";
import { folderByName, folderInfo, insertFolder } from "./folders.ts";
import { deleteFolderContents } from "./messages.ts";

export interface PublicFolderOptions {
  /** A posting address: mail to it lands in the folder. */
  address?: string | null;
  /** Serve it over NNTP under this group name ("comp.lang.typescript"). */
  newsgroup?: string | null;
  /** Rights for every logged-in user and for anonymous access (RFC 4314 letters). */
  anyone?: string;
  anonymous?: string;
}

export class Admin {
  constructor(private core: Core) {}

  createPublicFolder(name: string, opts: PublicFolderOptions = {}): FolderInfo {
    const core = this.core;
    const address = opts.address ? parseAddress(opts.address)?.address : null;
    if (opts.address && !address) throw new StoreError("invalid", "bad posting address");
    const group = opts.newsgroup ? String(opts.newsgroup).toLowerCase() : null;
    // RFC 3977 §3.1.4: wildmat-safe group names.
    if (group && !/^[a-z0-9+_-]+(\.[a-z0-9+_-]+)*$/.test(group)) {
      throw new StoreError("invalid", `bad newsgroup name ${group}`);
    }
    const f = core.tx.run(() => {
      const row = insertFolder(core, null, name, null, { address, newsgroup: group });
      if (opts.anyone) setAcl(core, row.id, "anyone", opts.anyone);
      if (opts.anonymous) setAcl(core, row.id, "anonymous", opts.anonymous);
      return row;
    });
    return folderInfo(core, f, null);
  }

  removePublicFolder(name: string): void {
    const core = this.core;
    core.tx.run(() => {
      const f = folderByName(core, null, name);
      if (!f) throw new StoreError("not_found", `no public folder ${name}`);
      deleteFolderContents(core, f);
      core.db.query("DELETE FROM acl WHERE folder_id = ?").run(f.id);
      core.db.query("DELETE FROM folders WHERE id = ?").run(f.id);
    });
  }

  listPublicFolders(): (FolderInfo & { newsgroup: string | null; address: string | null })[] {
    const rows = this.core.db.query(
      "SELECT * FROM folders WHERE owner_id IS NULL ORDER BY name",
    ).all() as Parameters<typeof folderInfo>[1][];
    return rows.map((f) => ({
      ...folderInfo(this.core, f, null),
      newsgroup: f.newsgroup,
      address: f.address,
    }));
  }

  /** Grant (or with "" revoke) rights on a public folder, or on "user@domain/Folder". */
  setAcl(folder: string, identifier: string, rights: string): void {
    const f = this.resolveFolder(folder);
    setAcl(this.core, f.id, identifier, rights);
  }

  private resolveFolder(spec: string) {
    const pub = folderByName(this.core, null, spec);
    if (pub) return pub;
    const slash = spec.indexOf("/");
    const owner = slash > 0 ? parseAddress(spec.slice(0, slash)) : null;
    if (owner) {
      const u = this.core.db.query("SELECT id FROM users WHERE address = ?").get(owner.address) as
        | { id: number }
        | null;
      const f = u ? folderByName(this.core, u.id, spec.slice(slash + 1)) : null;
      if (f) return f;
    }
    throw new StoreError("not_found", `no folder ${spec}`);
  }
}
