// The SMTP queue: one row per remote recipient, holding a reference on the single-instance
// body. The transport worker polls `due`, then reports done / defer / fail. A row with a
// failed_status is a local recipient that failed at delivery.commit: it is only bounced.
import { type QueueEntry, StoreError } from "../ipc/store-api.ts";
import { dropRef, getBody } from "./bodies.ts";
import type { Core } from "./core.ts";

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
