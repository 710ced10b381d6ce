// The categorizer's lookup (RFC 5321 §3.3 RCPT): what an address means here. Order: mailbox,
// alias or distribution list (expanded recursively, loops cut), plus-address (user+tag →
// user), public folder posting address, the domain's catch-all; an address on a domain that
// is not ours is remote. `resolveRecipient` adds the quota room an engine checks at RCPT.
// postmaster@ a local domain that no user, alias or folder holds goes to the metabase's
// server.postmaster, else the catch-all, else the domain's first user (RFC 5321 §4.5.1).
// `ownsAddress` answers which addresses an authenticated user may send as (RFC 6409 §6.1).
import type { Recipient } from "../ipc/store-api.ts";
import { parseAddress } from "./addresses.ts";
import type { Core } from "./core.ts";
import { quotaState } from "./messages.ts";

const MAX_DEPTH = 8;
const MAX_MEMBERS = 10_000;

export interface Expansion {
  recipient: Recipient;
  userIds: number[];
  publicFolderIds: number[];
  remote: string[];
}

type Via = "mailbox" | "alias" | "plus" | "catchall" | "list";

export function isLocalDomain(core: Core, domain: string): boolean {
  return core.domains.has(String(domain).toLowerCase().replace(/\.$/, ""));
}

export function expand(core: Core, input: string): Expansion {
  let raw = String(input).trim();
  if (raw.startsWith("<") && raw.endsWith(">")) raw = raw.slice(1, -1);
  // RFC 5321 §4.1.1.3 / §4.5.1: "postmaster" without a domain must be accepted; it means the
  // first (primary) local domain's postmaster, or the configured one when we have no domain.
  if (raw.toLowerCase() === "postmaster") {
    const primary = core.domains.keys().next().value;
    raw = primary !== undefined ? `postmaster@${primary}` : (core.opts.postmaster ?? raw);
  }
  const a = parseAddress(raw);
  const none = (address: string): Expansion => ({
    recipient: { kind: "unknown", address },
    userIds: [],
    publicFolderIds: [],
    remote: [],
  });
  if (!a) return none(raw);
  if (!isLocalDomain(core, a.domain)) {
    return {
      recipient: { kind: "remote", address: a.address, domain: a.domain },
      userIds: [],
      publicFolderIds: [],
      remote: [a.address],
    };
  }
  const users = new Set<number>(), folders = new Set<number>(), remote = new Set<string>();
  const seen = new Set<string>();
  let topVia: Via | null = null;

  const visit = (address: string, depth: number): Via | null => {
    if (depth > MAX_DEPTH || seen.has(address) || seen.size > MAX_MEMBERS) return null;
    seen.add(address);
    const p = parseAddress(address);
    if (!p) return null;
    if (!isLocalDomain(core, p.domain)) {
      remote.add(p.address);
      return "alias";
    }
    const u = core.db.query("SELECT id FROM users WHERE address = ?").get(p.address) as
      | { id: number }
      | null;
    if (u) {
      users.add(u.id);
      return "mailbox";
    }
    const targets = core.db.query("SELECT target, kind FROM aliases WHERE address = ?")
      .all(p.address) as { target: string; kind: "alias" | "list" }[];
    if (targets.length > 0) {
      let any = false;
      for (const t of targets) if (visit(t.target, depth + 1)) any = true;
      return any || targets[0]!.kind === "list" ? targets[0]!.kind : null;
    }
    const plus = p.local.indexOf("+");
    if (plus > 0) {
      const base = `${p.local.slice(0, plus)}@${p.domain}`;
      if (visit(base, depth + 1)) return "plus";
    }
    const pf = core.db.query("SELECT id FROM folders WHERE owner_id IS NULL AND address = ?")
      .get(p.address) as { id: number } | null;
    if (pf) {
      folders.add(pf.id);
      return "mailbox";
    }
    if (p.local === "postmaster" && core.opts.postmaster) {
      // RFC 5321 §4.5.1: nobody holds postmaster@ here, so the configured postmaster does.
      if (visit(core.opts.postmaster, depth + 1)) return "alias";
    }
    const catchAll = core.domains.get(p.domain)?.catchAll;
    if (catchAll && depth === 0) {
      const c = parseAddress(catchAll);
      if (c && c.address !== p.address && visit(c.address, depth + 1)) return "catchall";
    }
    if (p.local === "postmaster") {
      // RFC 5321 §4.5.1 (MUST accept postmaster) with no postmaster configured and no
      // catch-all: the domain's first enabled user in creation order, most likely its admin.
      const first = firstUserOf(core, p.domain);
      if (first && visit(first, depth + 1)) return "alias";
    }
    return null;
  };

  topVia = visit(a.address, 0);
  if (!topVia) return none(a.address);
  const userIds = [...users], publicFolderIds = [...folders], remoteList = [...remote];
  let recipient: Recipient;
  if (userIds.length === 0 && remoteList.length === 0 && publicFolderIds.length === 1) {
    recipient = { kind: "public", address: a.address, folderId: publicFolderIds[0]! };
  } else {
    recipient = { kind: "local", address: a.address, userIds, via: topVia };
    if (remoteList.length > 0) recipient.forward = remoteList;
  }
  return { recipient, userIds, publicFolderIds, remote: remoteList };
}

/** The address of the domain's first enabled user in creation order, or null. */
function firstUserOf(core: Core, domain: string): string | null {
  const u = core.db.query(
    "SELECT address FROM users WHERE domain = ? AND disabled = 0 ORDER BY created_at, id LIMIT 1",
  ).get(domain) as { address: string } | null;
  return u?.address ?? null;
}

/**
 * Local domains whose postmaster@ resolves to nobody: a server MUST accept mail for it
 * (RFC 5321 §4.5.1), so the store warns about these at start and after a reload.
 */
export function domainsWithoutPostmaster(core: Core): string[] {
  return [...core.domains.keys()].filter((d) =>
    expand(core, `postmaster@${d}`).recipient.kind === "unknown"
  );
}

/**
 * account.ownsAddress: may this account use `input` as its reverse-path (RFC 6409 §6.1)?
 * Yes for its own address, any plus-address of it (user+tag@), and any alias (or plus-address
 * of an alias) whose expansion reaches this account and nothing else. Never for a
 * distribution list (members do not own a list), an address only a catch-all or the implicit
 * postmaster rule maps to the user, another user's mailbox, or anything that forwards
 * elsewhere. A disabled or unknown account owns nothing.
 */
export function ownsAddress(core: Core, userId: number, input: string): boolean {
  const owner = core.db.query("SELECT address FROM users WHERE id = ? AND disabled = 0").get(
    userId,
  ) as { address: string } | null;
  const a = parseAddress(input);
  if (!owner || !a) return false;
  const seen = new Set<string>();
  let reachesOwner = false;
  // Walks the alias graph like `expand` (loops cut, bounded) and stops at the first address
  // that is not this account's: one foreign destination makes the whole address foreign.
  const foreign = (address: string, depth: number): boolean => {
    if (seen.has(address)) return false; // a loop or a repeat adds no destination
    if (depth > MAX_DEPTH || seen.size > MAX_MEMBERS) return true; // unproven: refuse
    seen.add(address);
    const p = parseAddress(address);
    if (!p) return false; // a dead target delivers nowhere (expand drops it too)
    if (p.address === owner.address) {
      reachesOwner = true;
      return false;
    }
    if (!isLocalDomain(core, p.domain)) return true;
    if (core.db.query("SELECT 1 FROM users WHERE address = ?").get(p.address)) return true;
    const targets = core.db.query("SELECT target, kind FROM aliases WHERE address = ?")
      .all(p.address) as { target: string; kind: "alias" | "list" }[];
    if (targets.length > 0) {
      if (targets.some((t) => t.kind === "list")) return true;
      return targets.some((t) => foreign(t.target, depth + 1));
    }
    const plus = p.local.indexOf("+");
    if (plus > 0) return foreign(`${p.local.slice(0, plus)}@${p.domain}`, depth + 1);
    // Held by nobody: a public folder's posting address is foreign, so is postmaster@ (the
    // postmaster rule may map it to someone else); anything else delivers nowhere.
    if (p.local === "postmaster") return true;
    return core.db.query("SELECT 1 FROM folders WHERE owner_id IS NULL AND address = ?")
      .get(p.address) !== null;
  };
  return !foreign(a.address, 0) && reachesOwner;
}

/**
 * recipient.resolve: the categorizer's verdict, plus `roomBytes` when quotas limit it, so the
 * SMTP engine can refuse a full mailbox at RCPT. The rule matches delivery.commit's
 * (checkQuota): a recipient is deliverable when any of its mailboxes can take the message,
 * and any copy that goes where no quota applies (public folder, forward) means no limit.
 */
export function resolveRecipient(core: Core, input: string): Recipient {
  const x = expand(core, input);
  const r = x.recipient;
  if (r.kind !== "local" || x.userIds.length === 0) return r;
  if (x.publicFolderIds.length > 0 || x.remote.length > 0) return r;
  let best = 0;
  for (const userId of x.userIds) {
    const room = roomOf(core, userId);
    if (room === null) return r;
    best = Math.max(best, room);
  }
  return { ...r, roomBytes: best };
}

/** Bytes one more message may have for this user; null when no quota limits it. */
function roomOf(core: Core, userId: number): number | null {
  const q = quotaState(core, userId);
  if (!q) return 0;
  if (q.maxMessages !== null && q.usedMessages + 1 > q.maxMessages) return 0;
  return q.maxBytes === null ? null : Math.max(0, q.maxBytes - q.usedBytes);
}
