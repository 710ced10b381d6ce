// The SMTP queue: one row per remote recipient, holding a reference on the single-instance
// body. The transport worker polls `due`, then settles each transaction's entries in one
// store transaction (`queueSettle`), and sends every DSN with `queueReport`: the report and
// the entries it reports on change together or not at all, so a crash never repeats a report.
// A row with a failed_status is a local recipient that failed at delivery.commit: it is only
// bounced.
import {
  type CallReq,
  type CallRes,
  type QueueEntry,
  type QueueSettlement,
  StoreError,
} from "../ipc/store-api.ts";
import { dropRef, getBody } from "./bodies.ts";
import type { Committer } from "./commit.ts";
import type { Core } from "./core.ts";
import { commitDelivery } from "./delivery.ts";
import type { Uploads } from "./uploads.ts";

/** Most entries settled by one call (as many as `queue.due` returns at most). */
const MAX_SETTLEMENTS = 10_000;
/** Longest last_error kept. */
const MAX_ERROR_CHARS = 2000;

interface QueueRow {
  id: number;
  body_id: number;
  sender: string;
  recipient: string;
  next_hop: string;
  attempts: number;
  next_attempt_at: number;
  created_at: number;
  last_error: string | null;
  dsn_notify: string | null;
  orcpt: string | null;
  envid: string | null;
  ret: "FULL" | "HDRS" | null;
  body_type: "7BIT" | "8BITMIME" | null;
  smtputf8: number;
  delay_notified: number;
  failed_status: string | null;
  size: number;
}

const SELECT = `SELECT q.*, b.size AS size FROM queue q JOIN bodies b ON b.id = q.body_id`;

function entry(r: QueueRow): QueueEntry {
  return {
    queueId: r.id,
    sender: r.sender,
    recipient: r.recipient,
    nextHop: r.next_hop,
    attempts: r.attempts,
    nextAttemptAt: r.next_attempt_at,
    createdAt: r.created_at,
    lastError: r.last_error,
    size: r.size,
    dsnNotify: r.dsn_notify ? r.dsn_notify.split(",") : null,
    dsnRet: r.ret,
    envid: r.envid,
    orcpt: r.orcpt,
    bodyId: r.body_id,
    bodyType: r.body_type,
    smtputf8: r.smtputf8 === 1,
    delayNotified: r.delay_notified === 1,
    failedStatus: r.failed_status ?? null,
  };
}

export function queueDue(core: Core, now: number, limit: number): QueueEntry[] {
  const n = Math.max(1, Math.min(Number(limit) || 100, 10_000));
  return (core.db.query(
    `${SELECT} WHERE q.next_attempt_at <= ? ORDER BY q.next_attempt_at, q.id LIMIT ?`,
  ).all(Number(now), n) as QueueRow[]).map(entry);
}

export function queueList(core: Core): QueueEntry[] {
  return (core.db.query(`${SELECT} ORDER BY q.id LIMIT 100000`).all() as QueueRow[]).map(entry);
}

export function queueBody(core: Core, queueId: number): number {
  const r = core.db.query("SELECT body_id FROM queue WHERE id = ?").get(queueId) as
    | { body_id: number }
    | null;
  if (!r || !getBody(core, r.body_id)) {
    throw new StoreError("not_found", `no queue entry ${queueId}`);
  }
  return r.body_id;
}

/** Remove an entry and release its body reference (done, failed or deleted). */
export function queueRemove(core: Core, queueId: number, why: string, error?: string): void {
  core.tx.run(() => {
    const r = core.db.query("DELETE FROM queue WHERE id = ? RETURNING body_id").get(queueId) as
      | { body_id: number }
      | null;
    if (!r) throw new StoreError("not_found", `no queue entry ${queueId}`);
    dropRef(core, r.body_id);
  });
  if (why !== "done") core.log.info(`queue.${why}`, { queueId, error });
}

export function queueDefer(
  core: Core,
  queueId: number,
  error: string,
  nextAttemptAt: number,
): void {
  const r = core.tx.run(() =>
    core.db.query(
      "UPDATE queue SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? WHERE id = ?",
    ).run(String(error).slice(0, 2000), Number(nextAttemptAt), queueId)
  );
  if (r.changes === 0) throw new StoreError("not_found", `no queue entry ${queueId}`);
}

export function queueDelayNotified(core: Core, queueId: number): void {
  const r = core.tx.run(() =>
    core.db.query("UPDATE queue SET delay_notified = 1 WHERE id = ?").run(queueId)
  );
  if (r.changes === 0) throw new StoreError("not_found", `no queue entry ${queueId}`);
}

export function queueRetry(core: Core, req: { queueId: number } | { all: true }): number[] {
  return core.tx.run(() => {
    const now = Date.now();
    const rows = ("all" in req && req.all
      ? core.db.query("UPDATE queue SET next_attempt_at = ? RETURNING id").all(now)
      : core.db.query("UPDATE queue SET next_attempt_at = ? WHERE id = ? RETURNING id").all(
        now,
        (req as { queueId: number }).queueId,
      )) as { id: number }[];
    return rows.map((r) =>
      r.id
    );
  });
}

/** Checked settlements: known outcomes, safe ids, each entry once. */
function checkSettlements(v: unknown): QueueSettlement[] {
  if (!Array.isArray(v) || v.length === 0 || v.length > MAX_SETTLEMENTS) {
    throw new StoreError("invalid", `entries must list 1 to ${MAX_SETTLEMENTS} settlements`);
  }
  const seen = new Set<number>();
  return v.map((x: Partial<Record<string, unknown>> | null) => {
    const queueId = Number(x?.queueId);
    if (!Number.isSafeInteger(queueId) || queueId < 0) {
      throw new StoreError("invalid", "bad queueId");
    }
    if (seen.has(queueId)) throw new StoreError("invalid", `queue entry ${queueId} listed twice`);
    seen.add(queueId);
    const error = String(x?.error ?? "").slice(0, MAX_ERROR_CHARS);
    switch (x?.outcome) {
      case "done":
        return { queueId, outcome: "done" };
      case "failed":
        return { queueId, outcome: "failed", error };
      case "deferred": {
        const nextAttemptAt = Number(x.nextAttemptAt);
        if (!Number.isFinite(nextAttemptAt)) throw new StoreError("invalid", "bad nextAttemptAt");
        return { queueId, outcome: "deferred", error, nextAttemptAt };
      }
      default:
        throw new StoreError("invalid", "outcome must be done, failed or deferred");
    }
  });
}

/**
 * Apply settlements inside the caller's transaction; returns the ids updated (entries gone
 * meanwhile are skipped). For a report (`sender` set), every entry must be that sender's, and
 * a deferred entry is also marked delay-notified, unless it already was (then it is skipped:
 * the one delay notice it may get was sent).
 */
function applySettlements(
  core: Core,
  entries: QueueSettlement[],
  report: { sender: string } | null,
): number[] {
  const settled: number[] = [];
  const failed: { queueId: number; error: string }[] = [];
  const ownedBy = (queueId: number, sender: string) => {
    if (report && sender !== report.sender) {
      // Throwing rolls back the whole call: a report never reaches the wrong sender.
      throw new StoreError("invalid", `queue entry ${queueId} is not from ${report.sender}`);
    }
  };
  for (const s of entries) {
    if (s.outcome === "deferred") {
      const r = core.db.query(
        `UPDATE queue SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?${
          report ? ", delay_notified = 1" : ""
        } WHERE id = ?${report ? " AND delay_notified = 0" : ""} RETURNING sender`,
      ).get(s.error, s.nextAttemptAt, s.queueId) as { sender: string } | null;
      if (!r) continue;
      ownedBy(s.queueId, r.sender);
    } else {
      const r = core.db.query("DELETE FROM queue WHERE id = ? RETURNING body_id, sender").get(
        s.queueId,
      ) as { body_id: number; sender: string } | null;
      if (!r) continue;
      ownedBy(s.queueId, r.sender);
      dropRef(core, r.body_id);
      if (s.outcome === "failed") failed.push({ queueId: s.queueId, error: s.error });
    }
    settled.push(s.queueId);
  }
  core.tx.afterCommit(() => {
    for (const f of failed) core.log.info("queue.failed", f);
  });
  return settled;
}

/** queue.settle: the outcomes of one SMTP transaction, in one (group-committed) transaction. */
export async function queueSettle(
  core: Core,
  committer: Committer,
  req: CallReq<"queue.settle">,
): Promise<CallRes<"queue.settle">> {
  const entries = checkSettlements(req.entries);
  const settled = await committer.submit(
    () => applySettlements(core, entries, null),
    () => {},
    false, // queue rows only: nothing in the page file
  );
  return { settled };
}

/**
 * queue.report: commit the DSN upload to the entries' sender through the delivery path (null
 * reverse-path, RFC 5321 §4.5.5) and settle the entries in the same savepoint of the same
 * group commit. Nothing applied on failure: neither the report nor any entry change.
 */
export async function queueReport(
  core: Core,
  uploads: Uploads,
  committer: Committer,
  req: CallReq<"queue.report">,
  peer: string,
): Promise<CallRes<"queue.report">> {
  const to = req.to;
  // RFC 5321 §6.1: a report goes to the reverse-path; a null one is never reported to.
  if (typeof to !== "string" || to === "") {
    throw new StoreError("invalid", "a report needs the (non-null) sender to report to");
  }
  const entries = checkSettlements(req.entries);
  let settled: number[] = [];
  const res = await commitDelivery(
    core,
    uploads,
    committer,
    {
      uploadId: Number(req.uploadId),
      sender: "",
      recipients: [{ address: to }],
      localPrefix: req.localPrefix,
    },
    peer,
    () => {
      settled = applySettlements(core, entries, { sender: to });
      // Every entry was settled already (by an earlier report): this one would be a repeat.
      if (settled.length === 0) {
        throw new StoreError("not_found", "no queue entry left to report on");
      }
    },
  );
  return { ...res, settled };
}
