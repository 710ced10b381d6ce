// delivery.commit: one body, many recipients. Local recipients get a message row each (the
// body is stored once, reference-counted, or shared with an identical body already stored);
// remote ones get a queue row with next hop = their domain, in the same transaction. The
// promise resolves only after the group commit made it durable.
import { type CallReq, type CallRes, StoreError } from "../ipc/store-api.ts";
import { addRef, findBody, insertBody } from "./bodies.ts";
import type { Committer } from "./commit.ts";
import type { Core } from "./core.ts";
import { folderById, folderByName } from "./folders.ts";
import { headerEnd, indexText, messageIdOf, parseHeaders } from "./headers.ts";
import { checkQuota, insertMessage } from "./messages.ts";
import { expand } from "./resolve.ts";
import type { Upload, Uploads } from "./uploads.ts";

type Req = CallReq<"delivery.commit">;
type Res = CallRes<"delivery.commit">;

export async function commitDelivery(
  core: Core,
  uploads: Uploads,
  committer: Committer,
  req: Req,
  peer: string,
): Promise<Res> {
  if (!Array.isArray(req.recipients) || req.recipients.length === 0) {
    throw new StoreError("invalid", "no recipients");
  }
  const prefix = req.localPrefix && req.localPrefix.length > 0 ? req.localPrefix : null;
  if (prefix && prefix.length > core.maxPrefixBytes) {
    throw new StoreError("invalid", `local prefix over ${core.maxPrefixBytes} bytes`);
  }
  const up = uploads.take(req.uploadId, peer);
  const sha256 = up.hasher.digest("hex");
  const head = up.headBytes();
  const headers = headerEnd(head) >= 0 ? parseHeaders(head.subarray(0, headerEnd(head))) : [];
  const messageIdHeader = messageIdOf(headers);
  const { used, spare } = up.split(core.pageBytes);
  let sharedBody = false;
  return await committer.submit(
    () => {
      const res = applyDelivery(core, req, up, prefix, sha256, used, messageIdHeader, head);
      sharedBody = res.sharedBody;
      core.tx.afterCommit(() => core.space.giveBack(sharedBody ? up.extents : spare));
      return res.result;
    },
    () => core.space.giveBack(up.extents),
  );
}

function applyDelivery(
  core: Core,
  req: Req,
  up: Upload,
  prefix: Uint8Array | null,
  sha256: string,
  used: [number, number][],
  messageIdHeader: string | null,
  head: Uint8Array,
): { result: Res; sharedBody: boolean } {
  const now = Date.now();
  const result: Res = { delivered: [], queued: [], failed: [] };
  const size = (prefix?.length ?? 0) + up.size;
  // First decide every recipient's fate, then store the body once for all of them.
  type Local = { address: string; folderId: number; userId: number | null };
  const locals: Local[] = [];
  const remotes: { address: string; domain: string; r: Req["recipients"][number] }[] = [];
  const seenFolders = new Map<number, string>(); // one copy per folder, even via two aliases
  const delivered = new Map<string, string>(); // address → the local key that took it
  for (const r of req.recipients) {
    const x = expand(core, r.address);
    if (x.recipient.kind === "unknown") {
      result.failed.push({ address: r.address, code: "not_found", reason: "no such user here" });
      continue;
    }
    const memberFailures: string[] = [];
    let any = false;
    for (const userId of x.userIds) {
      let folder = r.folder ? folderByName(core, userId, r.folder) : null;
      folder ??= folderByName(core, userId, "INBOX");
      if (!folder) {
        memberFailures.push("no INBOX");
        continue;
      }
      if (seenFolders.has(folder.id)) {
        any = true;
        continue;
      }
      try {
        checkQuota(core, userId, size, 1);
      } catch (err) {
        memberFailures.push((err as Error).message);
        continue;
      }
      seenFolders.set(folder.id, r.address);
      locals.push({ address: r.address, folderId: folder.id, userId });
      any = true;
    }
    for (const folderId of x.publicFolderIds) {
      if (!folderById(core, folderId) || seenFolders.has(folderId)) continue;
      seenFolders.set(folderId, r.address);
      locals.push({ address: r.address, folderId, userId: null });
      any = true;
    }
    for (const address of x.remote) {
      remotes.push({ address, domain: address.slice(address.lastIndexOf("@") + 1), r });
      any = true;
    }
    if (!any) {
      const quota = memberFailures.some((m) => m.includes("quota"));
      result.failed.push({
        address: r.address,
        code: quota ? "quota" : "internal",
        reason: memberFailures[0] ?? "no deliverable member",
      });
    } else delivered.set(r.address, r.address);
  }
  const refs = locals.length + remotes.length;
  if (refs === 0) {
    core.tx.afterCommit(() => {});
    return { result, sharedBody: true };
  }
  // Single-instance storage: an identical body already stored is shared, not stored again.
  const existing = findBody(core, sha256, up.size);
  let bodyId: number;
  if (existing) {
    bodyId = existing.id;
    addRef(core, bodyId, refs);
  } else {
    bodyId = insertBody(core, up.size, sha256, used, refs);
    if (core.indexBytes > 0) {
      const t = indexText(head);
      core.db.query("INSERT INTO body_fts(rowid, headers, text) VALUES (?, ?, ?)").run(
        bodyId,
        t.headers,
        t.text,
      );
    }
  }
  const firstMessage = new Map<string, number>();
  for (const l of locals) {
    const ins = insertMessage(core, l.folderId, {
      bodyId,
      bodySize: up.size,
      prefix,
      flags: [],
      internalDate: now,
      messageIdHeader,
    });
    if (!firstMessage.has(l.address)) firstMessage.set(l.address, ins.messageId);
  }
  const queuedIds: number[] = [];
  for (const q of remotes) {
    const r = core.db.query(
      `INSERT INTO queue(body_id, sender, recipient, next_hop, next_attempt_at, created_at,
         dsn_notify, orcpt, envid, ret, body_type, smtputf8)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      bodyId,
      String(req.sender ?? ""),
      q.address,
      q.domain,
      now,
      now,
      q.r.dsnNotify ? q.r.dsnNotify.join(",") : null,
      q.r.orcpt ?? null,
      req.envid ?? null,
      req.ret ?? null,
      req.bodyType ?? null,
      req.smtputf8 ? 1 : 0,
    );
    const queueId = Number(r.lastInsertRowid);
    queuedIds.push(queueId);
    if (q.r.address.toLowerCase() === q.address || !firstMessage.has(q.r.address)) {
      result.queued.push({ address: q.r.address, queueId });
    }
  }
  for (const [address, messageId] of firstMessage) result.delivered.push({ address, messageId });
  core.tx.afterCommit(() => {
    for (const queueId of queuedIds) core.publish("queue", { queueId });
  });
  return { result, sharedBody: existing !== null };
}
