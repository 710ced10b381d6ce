// The store's face to the engines: every call and stream of ipc/store-api.ts, validated and
// mapped onto the modules of this folder. Any unexpected failure becomes StoreError
// ("internal") with a log line; nothing thrown here can take the store worker down.
import {
  type CallName,
  FOLDER_MESSAGES_BATCH,
  type FolderInfo,
  READ_MANY_MAX_IDS,
  StoreError,
  type UserId,
} from "../ipc/store-api.ts";
import type { CallHandlers, StoreService, StreamHandlers } from "../ipc/store-client.ts";
import { isAbsolute } from "node:path";
import { accountInfo, userByAddress, userById } from "./accounts.ts";
import { parseAddress } from "./addresses.ts";
import type { Authenticator } from "./auth.ts";
import { readWhole, streamBody, streamLayout } from "./bodies.ts";
import type { Committer } from "./commit.ts";
import type { Core } from "./core.ts";
import { commitDelivery } from "./delivery.ts";
import { accessibleFolder, getAcl, rightsFor, setAcl } from "./acl.ts";
import { fileUpload } from "./append.ts";
import {
  folderById,
  folderInfo,
  type FolderRow,
  insertFolder,
  listFolders,
  requireFolder,
  validateName,
} from "./folders.ts";
import { bodyMeta, findArticle, groupRow, listGroups, overview, visibleGroup } from "./news.ts";
import type { Locks } from "./locks.ts";
import {
  copyMessages,
  deleteFolderContents,
  expunge,
  listMessages,
  messageById,
  messageForRead,
  normalizeFlags,
  search,
  setFlags,
} from "./messages.ts";
import {
  queueBody,
  queueDefer,
  queueDelayNotified,
  queueDue,
  queueList,
  queueRemove,
  queueReport,
  queueRetry,
  queueSettle,
} from "./queue.ts";
import { isLocalDomain, ownsAddress, resolveRecipient } from "./resolve.ts";
import { importProgress } from "./migrate.ts";
import type { Uploads } from "./uploads.ts";

export interface ServiceParts {
  core: Core;
  uploads: Uploads;
  committer: Committer;
  locks: Locks;
  auth: Authenticator;
}

function id(v: unknown, what: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new StoreError("invalid", `bad ${what}`);
  return n;
}

function uidList(v: unknown): number[] {
  if (!Array.isArray(v) || v.length > 1_000_000) throw new StoreError("invalid", "bad uid list");
  return v.map((u) => id(u, "uid"));
}

function requireUser(core: Core, userId: UserId) {
  const u = userById(core, id(userId, "userId"));
  if (!u) throw new StoreError("not_found", `no user ${userId}`);
  return u;
}

export function createService(p: ServiceParts): StoreService {
  const { core, uploads, committer, locks, auth } = p;

  /** Append to an upload; a failed append releases the upload (its pages) before throwing. */
  const appendOrAbort = (uploadId: number, peer: string, chunk: Uint8Array): void => {
    try {
      uploads.append(uploadId, peer, chunk);
    } catch (err) {
      uploads.discard(uploadId, peer); // a failed page write may have aborted it already
      throw err;
    }
  };

  const calls: CallHandlers = {
    "auth.verify": (r) => auth.verify(r.username, r.password, r.remoteIp),
    "account.get": (r) => {
      const a = parseAddress(r.address);
      const u = a ? userByAddress(core, a.address) : null;
      return u ? accountInfo(core, u) : null;
    },
    "account.ownsAddress": (r) => ownsAddress(core, id(r.userId, "userId"), r.address),
    "recipient.resolve": (r) => resolveRecipient(core, r.address),
    "domain.isLocal": (r) => isLocalDomain(core, r.domain),

    "body.begin": (r, ctx) => {
      const uploadId = uploads.begin(ctx.peer, r?.sizeHint ?? 0);
      if (r?.chunk !== undefined) appendOrAbort(uploadId, ctx.peer, r.chunk);
      return { uploadId };
    },
    "body.append": (r, ctx) => ({
      size: uploads.append(id(r.uploadId, "uploadId"), ctx.peer, r.chunk),
    }),
    "body.abort": (r, ctx) => {
      uploads.abort(id(r.uploadId, "uploadId"), ctx.peer);
      return null;
    },
    "delivery.commit": (r, ctx) => {
      if (r.chunk !== undefined) {
        appendOrAbort(id(r.uploadId, "uploadId"), ctx.peer, r.chunk);
        const { chunk: _, ...rest } = r;
        return commitDelivery(core, uploads, committer, rest, ctx.peer);
      }
      return commitDelivery(core, uploads, committer, r, ctx.peer);
    },
    "delivery.commitWhole": async (r, ctx) => {
      if (!(r.body instanceof Uint8Array)) throw new StoreError("invalid", "body must be bytes");
      // A chunk or so: a reload that lowers ipc.chunkBytes under a session that measured
      // against the old value must not turn a valid message into a permanent refusal.
      if (r.body.length > 4 * core.chunkBytes) {
        throw new StoreError("invalid", "body is far larger than one chunk: use an upload");
      }
      const { body, ...rest } = r;
      const uploadId = uploads.begin(ctx.peer, body.length);
      appendOrAbort(uploadId, ctx.peer, body);
      try {
        return await commitDelivery(core, uploads, committer, { ...rest, uploadId }, ctx.peer);
      } catch (err) {
        uploads.discard(uploadId, ctx.peer); // refused before the committer took it
        throw err;
      }
    },

    "folder.list": (r) => {
      requireUser(core, r.userId);
      return listFolders(core, r.userId);
    },
    "folder.status": (r) =>
      folderInfo(core, requireFolder(core, requireUser(core, r.userId).id, r.name), r.userId),
    "folder.create": (r) => {
      const u = requireUser(core, r.userId);
      return core.tx.run(() => {
        // RFC 3501 §6.3.3: create missing superiors as well.
        const name = validateName(r.name);
        const parts = name.split("/");
        for (let i = 1; i < parts.length; i++) {
          const parent = parts.slice(0, i).join("/");
          try {
            insertFolder(core, u.id, parent);
          } catch (err) {
            if (!(err instanceof StoreError && err.code === "exists")) throw err;
          }
        }
        return folderInfo(core, insertFolder(core, u.id, name, r.specialUse ?? null), u.id);
      });
    },
    "folder.delete": (r) => {
      const u = requireUser(core, r.userId);
      const f = requireFolder(core, u.id, r.name);
      if (f.name === "INBOX") throw new StoreError("invalid", "INBOX cannot be deleted");
      core.tx.run(() => {
        deleteFolderContents(core, f);
        core.db.query("DELETE FROM folders WHERE id = ?").run(f.id);
        core.db.query("DELETE FROM acl WHERE folder_id = ?").run(f.id);
        core.tx.afterCommit(() =>
          core.publish("mailbox", {
            folderId: f.id,
            userId: u.id,
            kind: "folder",
            uids: [],
            modseq: f.highest_modseq,
          })
        );
      });
      return null;
    },
    "folder.rename": (r) => {
      const u = requireUser(core, r.userId);
      const from = requireFolder(core, u.id, r.from);
      const to = validateName(r.to);
      core.tx.run(() => {
        if (from.name === "INBOX") {
          // RFC 3501 §6.3.5: renaming INBOX moves its messages; INBOX stays, empty.
          const dest = insertFolder(core, u.id, to);
          const uids = listMessages(core, from.id).map((m) => m.uid);
          if (uids.length > 0) copyMessages(core, from, uids, dest, true);
          return;
        }
        if (requireFolderOrNull(core, u.id, to)) throw new StoreError("exists", `"${to}" exists`);
        // Children move with their parent, and keep their UIDVALIDITY (same folder rows).
        const kids = core.db.query(
          "SELECT id, name FROM folders WHERE owner_id = ? AND (name = ? OR name LIKE ? ESCAPE '\\')",
        ).all(u.id, from.name, likePrefix(from.name + "/")) as { id: number; name: string }[];
        for (const k of kids) {
          const name = to + k.name.slice(from.name.length);
          core.db.query("UPDATE folders SET name = ? WHERE id = ?").run(name, k.id);
          core.db.query("UPDATE subscriptions SET name = ? WHERE user_id = ? AND name = ?").run(
            name,
            u.id,
            k.name,
          );
        }
      });
      return null;
    },
    "folder.subscribe": (r) => {
      const u = requireUser(core, r.userId);
      const name = validateName(r.name);
      core.tx.run(() =>
        r.subscribed
          ? core.db.query("INSERT OR IGNORE INTO subscriptions(user_id, name) VALUES (?, ?)").run(
            u.id,
            name,
          )
          : core.db.query("DELETE FROM subscriptions WHERE user_id = ? AND name = ?").run(
            u.id,
            name,
          )
      );
      return null;
    },

    "mailbox.lock": (r, ctx) => {
      const u = requireUser(core, r.userId);
      const f = requireFolder(core, u.id, r.folder ?? "INBOX");
      const lockId = locks.acquire(u.id, f.id, ctx.peer, r.owner);
      try {
        return { lockId, folder: folderInfo(core, f, u.id) };
      } catch (err) {
        locks.release(lockId);
        throw err;
      }
    },
    "mailbox.unlock": (r, ctx) => {
      if ("lockId" in r) locks.release(String(r.lockId));
      else locks.releaseOwner(ctx.peer, String(r.owner));
      return null;
    },
    "mailbox.expunge": (r) => {
      const f = accessibleFolder(core, id(r.userId, "userId"), id(r.folderId, "folderId"), "e");
      return expunge(core, f, uidList(r.uids));
    },

    "message.list": (r) => {
      const f = accessibleFolder(core, id(r.userId, "userId"), id(r.folderId, "folderId"), "r");
      return listMessages(core, f.id, Number(r.sinceUid ?? 0));
    },
    "message.setFlags": (r) => {
      const f = accessibleFolder(core, id(r.userId, "userId"), id(r.folderId, "folderId"), "r");
      // RFC 4314 §4: \Seen needs "s", \Deleted "t", anything else "w".
      for (const fl of r.flags ?? []) {
        const need = /^\\seen$/i.test(fl) ? "s" : /^\\deleted$/i.test(fl) ? "t" : "w";
        accessibleFolder(core, r.userId, f.id, need);
      }
      if (!["add", "remove", "replace"].includes(r.mode)) {
        throw new StoreError("invalid", "mode must be add, remove or replace");
      }
      if (!Array.isArray(r.flags)) throw new StoreError("invalid", "flags must be a list");
      return setFlags(core, f, uidList(r.uids), r.mode, r.flags, r.unchangedSince);
    },
    "message.copy": (r) => {
      const userId = id(r.userId, "userId");
      const from = accessibleFolder(
        core,
        userId,
        id(r.fromFolderId, "fromFolderId"),
        r.move ? "re" : "r",
      );
      const to = requireFolder(core, userId, r.toFolder);
      return copyMessages(core, from, uidList(r.uids), to, Boolean(r.move));
    },
    "message.search": async (r) => {
      const userId = id(r.userId, "userId");
      const folderId = id(r.folderId, "folderId");
      // Bodies delivered but not indexed yet are found too: the folder's pending ones first
      // (in slices, the store serving others in between).
      await core.indexer.indexFolder(accessibleFolder(core, userId, folderId, "r").id);
      return search(core, accessibleFolder(core, userId, folderId, "r"), String(r.text ?? ""));
    },
    "message.readMany": (r) => {
      if (!Array.isArray(r.messageIds) || r.messageIds.length > READ_MANY_MAX_IDS) {
        throw new StoreError("invalid", `messageIds: at most ${READ_MANY_MAX_IDS} ids`);
      }
      const ids = r.messageIds.map((m) => id(m, "messageId"));
      // One read transaction for the whole batch; nothing else runs until it ends (no await).
      return core.db.transaction(() => ids.map((messageId) => readOne(r.userId, messageId)))();
    },
    "message.meta": async (r) => {
      const m = readableMessage(r.userId, r.messageId);
      const meta = await bodyMeta(core, m.body_id);
      return {
        envelope: meta.envelope,
        structure: meta.structure,
        prefixBytes: m.prefix ? m.prefix.length : 0,
        headerBytes: meta.headerBytes,
        lines: meta.lines,
      };
    },
    "message.append": async (r, ctx) => {
      const f = accessibleFolder(core, id(r.userId, "userId"), id(r.folderId, "folderId"), "i");
      const [filed] = await fileUpload(
        core,
        uploads,
        committer,
        ctx.peer,
        id(r.uploadId, "uploadId"),
        [f.id],
        {
          flags: r.flags ? normalizeFlags(r.flags) : [],
          internalDate: r.internalDate,
        },
      );
      return { uidValidity: filed!.uidValidity, uid: filed!.uid, messageId: filed!.messageId };
    },

    "public.list": (r) => {
      const viewer = r.userId === null ? null : requireUser(core, r.userId).id;
      const rows = core.db.query("SELECT * FROM folders WHERE owner_id IS NULL ORDER BY name")
        .all() as FolderRow[];
      return rows.filter((f) => rightsFor(core, viewer, f).includes("l"))
        .map((f) => folderInfo(core, f, viewer));
    },
    "acl.get": (r) =>
      getAcl(core, accessibleFolder(core, id(r.userId, "userId"), r.folderId, "a").id),
    "acl.set": (r) => {
      const f = accessibleFolder(core, id(r.userId, "userId"), r.folderId, "a");
      setAcl(core, f.id, r.identifier, r.rights);
      return null;
    },
    "acl.myRights": (r) => {
      const f = folderById(core, id(r.folderId, "folderId"));
      if (!f) throw new StoreError("not_found", `no folder ${r.folderId}`);
      return rightsFor(core, r.userId === null ? null : Number(r.userId), f);
    },
    "folder.shared": (r) => {
      const u = requireUser(core, r.userId);
      const rows = core.db.query(
        `SELECT f.*, o.address AS owner FROM acl a JOIN folders f ON f.id = a.folder_id
         JOIN users o ON o.id = f.owner_id
         WHERE a.identifier IN (?, 'anyone') AND f.owner_id != ? ORDER BY o.address, f.name`,
      ).all(u.address, u.id) as (FolderRow & { owner: string })[];
      return rows.filter((f) => rightsFor(core, u.id, f).includes("l"))
        .map((f) => ({ ...folderInfo(core, f, u.id), owner: f.owner }));
    },

    "news.groups": (r) => listGroups(core, r.userId === null ? null : Number(r.userId)),
    "news.overview": async (r) => {
      const f = visibleGroup(core, r.userId === null ? null : Number(r.userId), r.group);
      if (!f) throw new StoreError("not_found", `no newsgroup ${r.group}`);
      const from = Math.max(0, Number(r.from) || 0);
      const to = Math.min(Number(r.to) || 0, from + 100_000);
      return await overview(core, f, from, to);
    },
    "news.article": (r) => findArticle(core, r.userId === null ? null : Number(r.userId), r),
    "news.post": async (r, ctx) => {
      const viewer = r.userId === null ? null : Number(r.userId);
      const targets: FolderRow[] = [];
      for (const g of Array.isArray(r.newsgroups) ? r.newsgroups.slice(0, 100) : []) {
        const f = groupRow(core, g);
        if (f && rightsFor(core, viewer, f).includes("p") && !targets.includes(f)) targets.push(f);
      }
      if (targets.length === 0) {
        uploads.abort(id(r.uploadId, "uploadId"), ctx.peer);
        throw new StoreError("denied", "no listed newsgroup accepts postings");
      }
      const filed = await fileUpload(
        core,
        uploads,
        committer,
        ctx.peer,
        id(r.uploadId, "uploadId"),
        targets.map((f) => f.id),
      );
      return {
        posted: filed.map((x) => {
          const f = targets.find((t) => t.id === x.folderId)!;
          const m = messageById(core, x.messageId)!;
          return { group: f.newsgroup!, article: m.article! };
        }),
      };
    },

    "queue.due": (r) => queueDue(core, r.now, r.limit),
    "queue.done": (r) => {
      queueRemove(core, id(r.queueId, "queueId"), "done");
      return null;
    },
    "queue.defer": (r) => {
      queueDefer(core, id(r.queueId, "queueId"), r.error, r.nextAttemptAt);
      return null;
    },
    "queue.fail": (r) => {
      queueRemove(core, id(r.queueId, "queueId"), "failed", r.error);
      return null;
    },
    "queue.list": () => queueList(core),
    "queue.delayNotified": (r) => {
      queueDelayNotified(core, id(r.queueId, "queueId"));
      return null;
    },
    "queue.settle": (r) => queueSettle(core, committer, r),
    "queue.report": (r, ctx) => queueReport(core, uploads, committer, r, ctx.peer),
    "queue.retry": (r) => {
      const ids = queueRetry(core, r);
      for (const queueId of ids) core.publish("queue", { queueId });
      return { count: ids.length };
    },
    "queue.delete": (r) => {
      queueRemove(core, id(r.queueId, "queueId"), "deleted");
      return null;
    },

    "store.stats": () => {
      const q = (sql: string) => (core.db.query(sql).get() as { n: number }).n;
      return {
        messages: q("SELECT count(*) AS n FROM messages"),
        bodies: q("SELECT count(*) AS n FROM bodies"),
        pageFileBytes: core.file.sizeBytes(),
        freePages: q("SELECT ifnull(sum(count), 0) AS n FROM free_extents"),
        indexPending: core.indexer.pending(),
      };
    },
  };

  /** A message the caller may read: own folder, or "r" granted by ACL (public, delegate). */
  function readableMessage(userId: UserId | null, messageId: number) {
    const m = messageById(core, id(messageId, "messageId"));
    const f = m ? folderById(core, m.folder_id) : null;
    if (!m || !f || !rightsFor(core, userId === null ? null : Number(userId), f).includes("r")) {
      throw new StoreError("not_found", `no message ${messageId}`);
    }
    return m;
  }

  /** message.read: one query for message, folder owner and body in the common case. */
  function readableBody(userId: UserId | null, messageId: number) {
    const m = messageForRead(core, messageId);
    // Someone else's folder (public, delegate): the ACL decides, and says not_found if absent.
    if (!m || m.owner_id === null || m.owner_id !== Number(userId)) {
      readableMessage(userId, messageId);
    }
    if (!m || m.extents === null || m.body_size === null) {
      throw new Error(`body of message ${messageId} is missing`);
    }
    const body = {
      id: m.body_id,
      size: m.body_size,
      extents: JSON.parse(m.extents),
      inline: m.inline,
    };
    return { body, prefix: m.prefix };
  }

  /** One answer of message.readMany: the whole message, or why not (never throws). */
  function readOne(userId: UserId | null, messageId: number) {
    try {
      const { body, prefix } = readableBody(userId, messageId);
      if ((prefix ? prefix.length : 0) + body.size > core.chunkBytes) {
        return { code: "invalid" as const, message: `message ${messageId} is too big: stream it` };
      }
      return { bytes: readWhole(core, body, prefix) };
    } catch (err) {
      const e = toStoreError(core, "message.readMany", err);
      return { code: e.code, message: e.message };
    }
  }

  const streams: StreamHandlers = {
    "message.read": (r) => {
      const messageId = id(r.messageId, "messageId");
      const offset = r.offset === undefined ? 0 : id(r.offset, "offset");
      const length = r.length === undefined ? Infinity : id(r.length, "length");
      return streamLayout(core, () => readableBody(r.userId, messageId), offset, length);
    },
    "queue.read": (r) => streamBody(core, queueBody(core, id(r.queueId, "queueId")), null),
    "store.import": (r) => {
      if (r.format !== "mbox" && r.format !== "maildir") {
        throw new StoreError("invalid", "format: mbox or maildir");
      }
      // The store worker's working directory is not the command line's.
      if (typeof r.path !== "string" || !isAbsolute(r.path)) {
        throw new StoreError("invalid", "path: an absolute path");
      }
      const folder = typeof r.folder === "string" ? r.folder : undefined;
      return importProgress({ core, uploads, committer }, r.format, r.path, String(r.user), folder);
    },
    "folder.messages": (r) => {
      const userId = id(r.userId, "userId");
      const folderId = id(r.folderId, "folderId");
      let since = Number(r.sinceUid ?? 0);
      return (async function* () {
        // One short read per batch, not one long one: a listing the consumer reads slowly
        // must not hold a read transaction (and the WAL) open. Messages delivered meanwhile
        // after the last uid listed appear; expunged ones vanish, as between two IMAP polls.
        for (;;) {
          const f = accessibleFolder(core, userId, folderId, "r"); // a revoked right ends it
          const batch = listMessages(core, f.id, since, FOLDER_MESSAGES_BATCH);
          if (batch.length === 0) return;
          // Read before the yield: a direct (in-thread) consumer owns the array once it has it.
          const full = batch.length === FOLDER_MESSAGES_BATCH;
          since = batch[batch.length - 1]!.uid;
          yield batch;
          if (!full) return;
        }
      })();
    },
  };

  return {
    calls: guardCalls(core, calls),
    streams: guardStreams(core, streams),
    peerGone(peer) {
      const l = locks.releasePeer(peer);
      const u = uploads.abortPeer(peer);
      if (l + u > 0) core.log.info("store.peer_gone", { peer, locks: l, uploads: u });
    },
    setPublisher(publish) {
      core.setPublisher(publish);
    },
  };
}

function requireFolderOrNull(core: Core, userId: number, name: string) {
  try {
    return requireFolder(core, userId, name);
  } catch {
    return null;
  }
}

function likePrefix(s: string): string {
  return s.replace(/[\\%_]/g, (c) => "\\" + c) + "%";
}

function toStoreError(core: Core, method: string, err: unknown): StoreError {
  if (err instanceof StoreError) return err;
  const code = (err as { code?: string })?.code;
  if (code === "SQLITE_BUSY") return new StoreError("busy", "the store is busy, try again");
  if (code === "SQLITE_CONSTRAINT_UNIQUE") return new StoreError("exists", "already exists");
  core.log.error("store.call_failed", { method, err: err as Error });
  return new StoreError("internal", `store failure in ${method}`);
}

function guardCalls(core: Core, calls: CallHandlers): CallHandlers {
  const out: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(calls)) {
    out[name] = async (req: unknown, ctx: unknown) => {
      if (core.closed) throw new StoreError("unavailable", "store is closed");
      if (req === null || typeof req !== "object") {
        throw new StoreError("invalid", `${name}: request must be an object`);
      }
      try {
        return await (fn as (r: unknown, c: unknown) => unknown)(req, ctx);
      } catch (err) {
        throw toStoreError(core, name as CallName, err);
      }
    };
  }
  return out as CallHandlers;
}

function guardStreams(core: Core, streams: StreamHandlers): StreamHandlers {
  const out: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(streams)) {
    out[name] = (req: unknown, ctx: unknown) => {
      // Errors surface on the first `next()`, as they would across the ring.
      return (async function* () {
        if (core.closed) throw new StoreError("unavailable", "store is closed");
        let it: AsyncIterable<unknown>;
        try {
          it = (fn as (r: unknown, c: unknown) => AsyncIterable<unknown>)(req, ctx);
        } catch (err) {
          throw toStoreError(core, name, err);
        }
        try {
          yield* it;
        } catch (err) {
          throw toStoreError(core, name, err);
        }
      })();
    };
  }
  return out as StreamHandlers;
}

export type { FolderInfo };
