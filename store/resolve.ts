// The categorizer's lookup (RFC 5321 §3.3 RCPT): what an address means here. Order: mailbox,
// alias or distribution list (expanded recursively, loops cut), plus-address (user+tag →
// user), public folder posting address, the domain's catch-all; an address on a domain that
// is not ours is remote. `resolveRecipient` adds the quota room an engine checks at RCPT.
import type { Recipient } from "../ipc/store-api.ts";
import { parseAddress } from "./addresses.ts";
import type { Core } from "./core.ts";

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
  // RFC 5321 §4.5.1: "postmaster" without a domain must be accepted.
  if (raw.toLowerCase() === "postmaster" && core.domains.size > 0) {
    raw = `postmaster@${core.domains.keys().next().value}`;
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
    const catchAll = core.domains.get(p.domain)?.catchAll;
    if (catchAll && depth === 0) {
      const c = parseAddress(catchAll);
      if (c && c.address !== p.address && visit(c.address, depth + 1)) return "catchall";
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
  const u = core.db.query(
    "SELECT quota_bytes, quota_messages, used_bytes, used_messages FROM users WHERE id = ?",
  ).get(userId) as {
    quota_bytes: number | null;
    quota_messages: number | null;
    used_bytes: number;
    used_messages: number;
  } | null;
  if (!u) return 0;
  const maxBytes = u.quota_bytes ?? core.opts.quotaBytes;
  const maxMessages = u.quota_messages ?? core.opts.quotaMessages;
  if (maxMessages !== null && u.used_messages + 1 > maxMessages) return 0;
  return maxBytes === null ? null : Math.max(0, maxBytes - u.used_bytes);
}
