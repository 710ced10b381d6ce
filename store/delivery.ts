// delivery.commit: one body, many recipients. Local recipients get a message row each (the
// body is stored once, reference-counted, or shared with an identical body already stored);
// remote ones get a queue row with next hop = their domain, in the same transaction. A local
// recipient that fails while others succeed (over quota, removed since RCPT) gets a queue row
// marked failed, also in that transaction, which the transport turns into a bounce: the SMTP
// client hears one 250 for the message, so no failure may be left only in a log. The promise
// resolves only after the group commit made it durable.
import { type CallReq, type CallRes, StoreError, type StoreErrorCode } from "../ipc/store-api.ts";
import { addRef, findBody, insertBody } from "./bodies.ts";
import type { Committer } from "./commit.ts";
import type { Core } from "./core.ts";
import { folderById, folderByName } from "./folders.ts";
import { headerEnd, messageIdOf, parseHeaders } from "./headers.ts";
import { queueForIndex } from "./fts.ts";
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
  /**
   * More work for the same transaction, after the delivery (queue.report settles the queue
   * entries a DSN reports on): if it throws, the delivery is rolled back with it.
   */
  alongside?: () => void,
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
      const res = applyDelivery(core, req, up, prefix, sha256, used, messageIdHeader);
      alongside?.();
      sharedBody = res.sharedBody;
      core.tx.afterCommit(() => core.space.giveBack(sharedBody ? up.extents : spare));
      return res.result;
    },
    () => core.space.giveBack(up.extents),
    up.wrotePages,
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
  // Failed recipients, by index in result.failed, for the bounce entries below.
  const failures: { r: Req["recipients"][number]; at: number; code: StoreErrorCode }[] = [];
  const fail = (r: Req["recipients"][number], code: StoreErrorCode, reason: string) => {
    result.failed.push({ address: r.address, code, reason });
    failures.push({ r, at: result.failed.length - 1, code });
  };
  for (const r of req.recipients) {
    const x = expand(core, r.address);
    if (x.recipient.kind === "unknown") {
      fail(r, "not_found", "no such user here");
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
      fail(r, quota ? "quota" : "internal", memberFailures[0] ?? "no deliverable member");
    } else delivered.set(r.address, r.address);
  }
  const refs = locals.length + remotes.length;
  if (refs === 0) {
    // Every recipient failed: the SMTP reply carries the error, so there is nothing to bounce.
    core.tx.afterCommit(() => {});
    return { result, sharedBody: true };
  }
  const sender = String(req.sender ?? "");
  // RFC 5321 §6.1: a failure after acceptance is reported to the reverse-path, unless it is
  // null (§4.5.5): a message from <> is never bounced.
  const bounces = sender === "" ? [] : failures;
  // Single-instance storage: an identical body already stored is shared, not stored again.
  const existing = findBody(core, sha256, up.size);
  let bodyId: number;
  if (existing) {
    bodyId = existing.id;
    addRef(core, bodyId, refs + bounces.length);
  } else {
    bodyId = insertBody(core, up.size, sha256, used, refs + bounces.length, up.inlineBytes());
    queueForIndex(core, bodyId);
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
    const queueId = insertQueueEntry(core, req, bodyId, now, q.address, q.r, null, null);
    queuedIds.push(queueId);
    if (q.r.address.toLowerCase() === q.address || !firstMessage.has(q.r.address)) {
      result.queued.push({ address: q.r.address, queueId });
    }
  }
  for (const b of bounces) {
    const failure = result.failed[b.at]!;
    const queueId = insertQueueEntry(
      core,
      req,
      bodyId,
      now,
      b.r.address,
      b.r,
      bounceStatus(b.code),
      failure.reason,
    );
    failure.bounceQueueId = queueId;
    queuedIds.push(queueId);
  }
  for (const [address, messageId] of firstMessage) result.delivered.push({ address, messageId });
  core.tx.afterCommit(() => {
    for (const queueId of queuedIds) core.publish("queue", { queueId });
  });
  return { result, sharedBody: existing !== null };
}

/** One queue row holding a body reference: a remote recipient, or a failure to bounce. */
function insertQueueEntry(
  core: Core,
  req: Req,
  bodyId: number,
  now: number,
  recipient: string,
  r: Req["recipients"][number],
  failedStatus: string | null,
  reason: string | null,
): number {
  const row = core.db.query(
    `INSERT INTO queue(body_id, sender, recipient, next_hop, next_attempt_at, created_at,
       last_error, dsn_notify, orcpt, envid, ret, body_type, smtputf8, failed_status)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  ).run(
    bodyId,
    String(req.sender ?? ""),
    recipient,
    recipient.slice(recipient.lastIndexOf("@") + 1).toLowerCase(),
    now,
    now,
    reason,
    Array.isArray(r.dsnNotify) && r.dsnNotify.length > 0 ? r.dsnNotify.join(",") : null,
    r.orcpt ?? null,
    req.envid ?? null,
    req.ret ?? null,
    req.bodyType ?? null,
    req.smtputf8 ? 1 : 0,
    failedStatus,
  );
  return Number(row.lastInsertRowid);
}

/** The RFC 3463 status a recipient that failed at commit is bounced with. */
function bounceStatus(code: StoreErrorCode): string {
  switch (code) {
    case "quota":
      return "5.2.2"; // RFC 3463 §3.3 X.2.2: mailbox full
    case "not_found":
      return "5.1.1"; // RFC 3463 §3.2 X.1.1: bad destination mailbox address
    default:
      return "5.2.0"; // RFC 3463 §3.3 X.2.0: other or undefined mailbox status
  }
}
