// Owns: the retry schedule arithmetic: exponential back-off between attempts, capped, and the
// queue lifetime and delay-notice thresholds (metabase smtp.queue).
import type { Metabase } from "../metabase/schema.ts";

/** Seconds to wait after a failed attempt, given the attempts made before it (0 for the first). */
export function retryDelaySeconds(
  previousAttempts: number,
  baseSeconds: number,
  maxSeconds: number,
) {
  const n = Math.max(0, Math.floor(previousAttempts));
  // 2 ** n overflows to Infinity long before it matters; min() then yields the cap.
  return Math.min(maxSeconds, baseSeconds * 2 ** n);
}

/** When the next attempt is due (ms since epoch). */
export function nextAttemptAt(now: number, previousAttempts: number, mb: Metabase): number {
  const q = mb.smtp.queue;
  return now + retryDelaySeconds(previousAttempts, q.retryBaseSeconds, q.retryMaxSeconds) * 1000;
}

/** Past smtp.queue.lifetimeHours: stop retrying and bounce. */
export function expired(createdAt: number, now: number, mb: Metabase): boolean {
  return now - createdAt >= mb.smtp.queue.lifetimeHours * 3_600_000;
}

/** Past smtp.queue.delayNoticeHours: a delay notice is due (once). */
export function delayNoticeDue(createdAt: number, now: number, mb: Metabase): boolean {
  return now - createdAt >= mb.smtp.queue.delayNoticeHours * 3_600_000;
}

/** The moment the queue gives up on an entry (Will-Retry-Until in a delay DSN). */
export function giveUpAt(createdAt: number, mb: Metabase): number {
  return createdAt + mb.smtp.queue.lifetimeHours * 3_600_000;
}
