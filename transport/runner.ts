// Owns: the queue runner. It looks for due entries (on a timer, on the store's "queue" topic,
// after each delivery), groups them per next hop, delivers each hop's transactions over up to
// smtp.queue.connectionsPerHop connections, at most smtp.queue.concurrency connections in all,
// and records every outcome in the store: done,
// deferred with back-off, or failed with a DSN to the sender (RFC 3461/3464) delivered through
// the store with the null reverse-path. Each transaction is recorded as soon as its final
// reply arrives, before the next one starts, and each DSN is committed together with the
// entries it reports on (`queue.report`), so a crash re-sends at most the transaction in
// flight and never repeats a report. Entries the store recorded as failed at receipt
// (`failedStatus`: a local recipient over quota when its message was accepted for others) are
// never attempted: they go straight to the same bounce path.
import type { QueueEntry, QueueSettlement } from "../ipc/store-api.ts";
import { StoreError } from "../ipc/store-api.ts";
import type { StoreClient } from "../ipc/store-client.ts";
import type { Logger } from "../log/mod.ts";
import type { Metabase } from "../metabase/schema.ts";
import { delayNoticeDue, expired, giveUpAt, nextAttemptAt } from "./backoff.ts";
import { type DsnAction, type DsnRecipient, headerOnly, notifyAllows, renderDsn } from "./dsn.ts";
import {
  dnsResolver,
  type MxResolver,
  type PasswordReader,
  planRoute,
  readPasswordFile,
} from "./routing.ts";
import {
  clientSettings,
  type OutboundMessage,
  type RecipientOutcome,
  SessionError,
  SmtpClient,
} from "./smtp-client.ts";
import { type DkimKey, loadDkimKeys } from "./dkim.ts";

export interface RunnerOptions {
  store: StoreClient;
  config: () => Metabase;
  log: Logger;
  /** DNS for MX lookups; default node:dns with the metabase's timeout and tries. */
  dns?: (mb: Metabase) => MxResolver;
  readPassword?: PasswordReader;
  /** The clock (ms since epoch); tests move it to cross lifetimes and delay thresholds. */
  now?: () => number;
  /** Port for MX and address hosts (tests); default 25. */
  smtpPort?: number;
  /** Where relative paths of the metabase start (DKIM key files); default the working dir. */
  dataDir?: string;
}

type Outcome = Omit<RecipientOutcome, "address">;

/** The work key of entries that are only bounced; a NUL can never start a domain name. */
const BOUNCE_ONLY = "\0bounce";

export class QueueRunner {
  private readonly store: StoreClient;
  private readonly config: () => Metabase;
  private readonly log: Logger;
  private readonly dns: (mb: Metabase) => MxResolver;
  private readonly readPassword: PasswordReader;
  private readonly now: () => number;
  private readonly smtpPort: number;
  private readonly dataDir: string;
  private readonly inFlight = new Set<number>();
  /** Connections (delivery tasks) running per next hop: smtp.queue.connectionsPerHop. */
  private readonly hopTasks = new Map<string, number>();
  /** Per recipient domain: when DNS first and last said it does not exist (NXDOMAIN). */
  private readonly nxdomain = new Map<string, { since: number; last: number }>();
  private readonly active = new Set<Promise<void>>();
  private readonly abort = new AbortController();
  private timer: ReturnType<typeof setTimeout> | null = null;
  private wakeAt = Infinity;
  private cycling = false;
  private again = false;
  private stopped = false;

  constructor(opts: RunnerOptions) {
    this.store = opts.store;
    this.config = opts.config;
    this.log = opts.log;
    this.dns = opts.dns ?? dnsResolver;
    this.readPassword = opts.readPassword ?? readPasswordFile;
    this.now = opts.now ?? Date.now;
    this.smtpPort = opts.smtpPort ?? 25;
    this.dataDir = opts.dataDir ?? process.cwd();
  }

  start(): void {
    this.kick();
  }

  /** Look at the queue now (new mail, `queue retry`, a finished delivery). */
  kick(): void {
    if (this.stopped) return;
    if (this.cycling) {
      this.again = true;
      return;
    }
    void this.cycle();
  }

  /** Deliveries in progress are dropped mid-way (their entries stay due and are retried). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.abort.abort();
    await Promise.allSettled([...this.active]);
  }

  /** Settles when no delivery is running (tests). */
  async idle(): Promise<void> {
    while (this.active.size > 0 || this.cycling) {
      await Promise.allSettled([...this.active]);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  private async cycle(): Promise<void> {
    this.cycling = true;
    try {
      do {
        this.again = false;
        const q = this.config().smtp.queue;
        if (this.active.size >= q.concurrency) break;
        let due: QueueEntry[];
        try {
          due = await this.store.call("queue.due", { now: this.now(), limit: q.batchSize });
        } catch (err) {
          this.log.warn("queue_due_failed", { err });
          break; // the timer retries; never spin against a failing store
        }
        const byHop = new Map<string, QueueEntry[]>();
        for (const e of due) {
          if (this.inFlight.has(e.queueId)) continue;
          const hop = e.failedStatus ? BOUNCE_ONLY : hopOf(e);
          let list = byHop.get(hop);
          if (!list) byHop.set(hop, list = []);
          list.push(e);
        }
        for (const [hop, entries] of byHop) {
          if (this.stopped) break;
          const { concurrency, connectionsPerHop } = this.config().smtp.queue;
          const slots = Math.min(
            concurrency - this.active.size,
            hop === BOUNCE_ONLY ? 1 : connectionsPerHop - (this.hopTasks.get(hop) ?? 0),
          );
          if (slots <= 0) continue;
          // Whole messages dealt round-robin over the connections this hop may have: all the
          // transactions of one message go over one connection, so its failures make one DSN.
          const messages = transactions(entries, Number.MAX_SAFE_INTEGER);
          const lanes = Array.from(
            { length: Math.min(slots, messages.length) },
            () => [] as QueueEntry[],
          );
          messages.forEach((m, i) => lanes[i % lanes.length]!.push(...m));
          for (const lane of lanes) this.launch(hop, lane);
        }
      } while (this.again && !this.stopped);
    } finally {
      this.cycling = false;
      this.arm();
    }
  }

  private launch(hop: string, entries: QueueEntry[]): void {
    for (const e of entries) this.inFlight.add(e.queueId);
    this.hopTasks.set(hop, (this.hopTasks.get(hop) ?? 0) + 1);
    let healthy = true;
    const work = hop === BOUNCE_ONLY ? this.bounceOnly(entries) : this.deliverHop(hop, entries);
    const task: Promise<void> = work
      .catch((err) => {
        healthy = false;
        this.log.error("hop_failed", { hop, err });
      })
      .finally(() => {
        for (const e of entries) this.inFlight.delete(e.queueId);
        const left = (this.hopTasks.get(hop) ?? 1) - 1;
        if (left > 0) this.hopTasks.set(hop, left);
        else this.hopTasks.delete(hop);
        this.active.delete(task);
        // A free slot: take more work, unless the store is failing (then the timer will).
        if (healthy) this.kick();
      });
    this.active.add(task);
  }

  /** The poll timer, brought forward to the earliest retry this runner scheduled. */
  private arm(): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    const poll = this.config().smtp.queue.pollSeconds * 1000;
    const delay = Math.max(0, Math.min(poll, this.wakeAt - this.now()));
    this.timer = setTimeout(() => {
      this.timer = null;
      this.wakeAt = Infinity;
      this.kick();
    }, delay);
  }

  /** Entries that failed at receipt: their outcome is known, only the DSN remains to be sent. */
  private async bounceOnly(entries: QueueEntry[]): Promise<void> {
    const results = new Map<number, Outcome>();
    for (const e of entries) {
      results.set(e.queueId, {
        kind: "permanent",
        status: e.failedStatus ?? "5.0.0",
        diagnostic: e.lastError ?? "delivery failed",
        remoteMta: null,
        fromServer: false,
        relayedWithoutDsn: false,
      });
    }
    await this.record(entries, results);
  }

  /** The DKIM keys, their files read (cached until they change); an unreadable one is left
   * out and logged, and its mail goes unsigned. */
  #dkimKeys(mb: Metabase): DkimKey[] {
    return loadDkimKeys(mb, this.dataDir, (domain, file, err) => {
      this.log.error("dkim.key_unreadable", { domain, file, error: err });
    });
  }

  /**
   * How long DNS has said `hop` does not exist, this answer included (0: it did not say so
   * now). An answer is forgotten once no lookup has repeated it for longer than a retry
   * interval and the grace together, so the map holds only domains still being tried.
   */
  #nxdomainLasted(hop: string, nxdomain: boolean, mb: Metabase): number {
    const now = this.now();
    const q = mb.smtp.queue;
    const stale = q.unknownDomainMinutes * 60_000 + q.retryMaxSeconds * 1000 +
      q.pollSeconds * 1000;
    for (const [domain, seen] of this.nxdomain) {
      if (now - seen.last > stale) this.nxdomain.delete(domain);
    }
    if (!nxdomain) {
      this.nxdomain.delete(hop);
      return 0;
    }
    const seen = this.nxdomain.get(hop) ?? { since: now, last: now };
    seen.last = now;
    this.nxdomain.set(hop, seen);
    return now - seen.since;
  }

  private async deliverHop(hop: string, entries: QueueEntry[]): Promise<void> {
    const mb = this.config();
    const log = this.log.child("hop");
    const plan = await planRoute(hop, mb, this.dns(mb), this.readPassword, this.smtpPort);
    const nxdomainFor = this.#nxdomainLasted(hop, !plan.ok && plan.unknownDomain === true, mb);
    if (!plan.ok) {
      log.info("route_failed", { hop, error: plan.error });
      const results = new Map<number, Outcome>();
      const now = this.now();
      const grace = mb.smtp.queue.unknownDomainMinutes * 60_000;
      for (const e of entries) {
        // RFC 5321 §5.1 / RFC 3463 §3.2: a domain that does not exist is a permanent failure
        // (5.1.2), once it has said so for longer than a resolver outage would last (and the
        // message has waited that long): old mail is not bounced by a resolver's first NXDOMAIN.
        const unknown = plan.unknownDomain === true && nxdomainFor >= grace &&
          now - e.createdAt >= grace;
        results.set(e.queueId, {
          kind: plan.temporary && !unknown ? "temporary" : "permanent",
          status: unknown ? "5.1.2" : plan.status,
          diagnostic: unknown ? `${plan.error}: the domain ${hop} does not exist` : plan.error,
          remoteMta: null,
          fromServer: false,
          relayedWithoutDsn: false,
        });
      }
      await this.record(entries, results);
      return;
    }
    let pending = transactions(entries, mb.smtp.queue.recipientsPerTransaction);
    let lastError: SessionError | null = null;
    // RFC 5321 §5.1: try each host in turn before giving up for now.
    for (const candidate of plan.candidates) {
      if (pending.length === 0 || this.abort.signal.aborted) break;
      let client: SmtpClient;
      try {
        client = await SmtpClient.connect(
          candidate,
          clientSettings(mb, this.log.child("smtp"), this.abort.signal, this.#dkimKeys(mb)),
        );
      } catch (err) {
        lastError = err instanceof SessionError
          ? err
          : new SessionError(String(err), true, "4.4.1", null, false);
        log.info("host_failed", {
          hop,
          host: candidate.host,
          port: candidate.port,
          error: lastError.message,
        });
        continue;
      }
      while (pending.length > 0) {
        const tx = pending[0]!;
        const outcomes = await client.send(this.message(tx));
        if (!client.usable) {
          // The session broke mid-way: this transaction goes to the next host.
          const first = outcomes[0];
          lastError = new SessionError(
            first?.diagnostic ?? "connection lost",
            true,
            first?.status ?? "4.4.2",
            client.remote,
            false,
          );
          break;
        }
        pending = pending.slice(1);
        const txResults = new Map<number, Outcome>();
        tx.forEach((e) => {
          const o = outcomes.find((x) => x.address === e.recipient);
          if (o) txResults.set(e.queueId, o);
        });
        // Record this transaction before the next one starts: a crash from here on re-sends
        // at most the transaction in flight (the duplicate window RFC 1047 describes), never
        // what the server already took. One record at a time per hop, so the store sees at
        // most smtp.queue.concurrency of them at once. If it cannot record, stop sending more.
        try {
          await this.record(tx, txResults);
        } catch (err) {
          await client.quit();
          throw err;
        }
      }
      await client.quit();
    }
    if (pending.length === 0) return;
    const results = new Map<number, Outcome>();
    for (const tx of pending) {
      for (const e of tx) {
        results.set(e.queueId, {
          kind: "temporary",
          status: lastError?.status ?? "4.4.1",
          diagnostic: lastError?.message ?? "no host could be reached",
          remoteMta: lastError?.remoteMta ?? null,
          fromServer: lastError?.fromServer ?? false,
          relayedWithoutDsn: false,
        });
      }
    }
    await this.record(pending.flat(), results);
  }

  private message(tx: QueueEntry[]): OutboundMessage {
    const first = tx[0]!;
    return {
      sender: first.sender,
      recipients: tx.map((e) => ({ address: e.recipient, notify: e.dsnNotify, orcpt: e.orcpt })),
      size: first.size,
      envid: first.envid,
      ret: first.dsnRet,
      bodyType: first.bodyType,
      smtputf8: first.smtputf8,
      body: () => this.store.stream("queue.read", { queueId: first.queueId }),
    };
  }

  /**
   * Turn outcomes into queue records and DSNs: each DSN is committed with the entries it
   * reports on (`queue.report`), everything else in one `queue.settle`. Throws when the store
   * could not record (the entries stay due, for the poll timer).
   */
  private async record(entries: QueueEntry[], results: Map<number, Outcome>): Promise<void> {
    const mb = this.config();
    const now = this.now();
    const reports = { failed: new DsnBatch(), delayed: new DsnBatch(), relayed: new DsnBatch() };
    const settle = new Map<number, QueueSettlement>();
    const defer = (e: QueueEntry, error: string) => {
      const at = nextAttemptAt(now, e.attempts, mb);
      settle.set(e.queueId, { queueId: e.queueId, outcome: "deferred", error, nextAttemptAt: at });
      this.wakeAt = Math.min(this.wakeAt, at);
    };
    for (const e of entries) {
      const o = results.get(e.queueId);
      if (!o) continue;
      const rcpt = (action: DsnAction, status: string): DsnRecipient => ({
        address: e.recipient,
        orcpt: e.orcpt,
        action,
        status,
        diagnostic: o.diagnostic,
        diagnosticFromServer: o.fromServer,
        remoteMta: o.remoteMta,
        lastAttemptAt: now,
        willRetryUntil: action === "delayed" ? giveUpAt(e.createdAt, mb) : null,
      });
      if (o.kind === "sent") {
        this.log.info("delivered", {
          queueId: e.queueId,
          to: e.recipient,
          remote: o.remoteMta,
          reply: o.diagnostic,
        });
        settle.set(e.queueId, { queueId: e.queueId, outcome: "done" });
        // RFC 3461 §5.2.2.4 (relayed): the next server cannot report success for us.
        if (o.relayedWithoutDsn && e.sender !== "") {
          reports.relayed.add(e, rcpt("relayed", "2.0.0"));
        }
        continue;
      }
      if (this.abort.signal.aborted) continue; // shutting down: leave it due, untouched
      const permanent = o.kind === "permanent";
      const tooOld = !permanent && expired(e.createdAt, now, mb);
      if (permanent || tooOld) {
        // RFC 3463 §3.5: X.4.7 "delivery time expired".
        const status = permanent ? o.status : "5.4.7";
        const error = tooOld
          ? `queue lifetime exceeded; last error: ${o.diagnostic}`
          : o.diagnostic;
        this.log.warn("failed", { queueId: e.queueId, to: e.recipient, error });
        settle.set(e.queueId, { queueId: e.queueId, outcome: "failed", error });
        // Never bounce a bounce (RFC 5321 §6.1, §4.5.5); respect NOTIFY (RFC 3461 §4.1).
        if (e.sender !== "" && notifyAllows(e.dsnNotify, "FAILURE")) {
          reports.failed.add(e, {
            ...rcpt("failed", status),
            diagnostic: error,
            diagnosticFromServer: o.fromServer && !tooOld,
          });
        }
        continue;
      }
      this.log.info("deferred", { queueId: e.queueId, to: e.recipient, error: o.diagnostic });
      defer(e, o.diagnostic);
      if (
        e.sender !== "" && !e.delayNotified && delayNoticeDue(e.createdAt, now, mb) &&
        notifyAllows(e.dsnNotify, "DELAY")
      ) reports.delayed.add(e, rcpt("delayed", o.status.replace(/^5/, "4")));
    }

    // Bounces first, while every body is still queued to be returned. A report settles its
    // entries in the same store transaction; one the store cannot take changes nothing, and
    // its entries fall back: a failure is deferred (so no failure goes unreported), a delay
    // is deferred without its notice (sent on a later attempt), a relayed success is done.
    for (const kind of ["failed", "delayed", "relayed"] as const) {
      for (const group of reports[kind].groups()) {
        const own = group.entries.map((e) => settle.get(e.queueId)!);
        if (await this.sendReport(group.entries, group.recipients, kind, own, mb)) {
          for (const e of group.entries) settle.delete(e.queueId);
        } else if (kind === "failed") {
          group.entries.forEach((e, i) => defer(e, errorOf(own[i]!)));
        }
      }
    }
    if (settle.size === 0) return;
    try {
      await this.store.call("queue.settle", { entries: [...settle.values()] });
    } catch (err) {
      // Entries the store could not update are still due: leave them to the poll timer rather
      // than looping on them at once.
      this.log.error("queue_update_failed", { method: "queue.settle", err });
      throw new Error(`${settle.size} queue updates failed`);
    }
  }

  /**
   * Render a DSN and commit it into the store for the sender together with `settle`, the new
   * state of the entries it reports on; false when the store took neither.
   */
  private async sendReport(
    entries: QueueEntry[],
    recipients: DsnRecipient[],
    kind: DsnAction,
    settle: QueueSettlement[],
    mb: Metabase,
  ): Promise<boolean> {
    const first = entries[0]!;
    const ret = kind === "failed" ? (first.dsnRet ?? "FULL") : "HDRS";
    const body = () => bodyGoneAware(this.store.stream("queue.read", { queueId: first.queueId }));
    const original = (withBody: boolean) =>
      withBody
        ? {
          kind: ret,
          eightBit: first.bodyType === "8BITMIME" || first.smtputf8 === true,
          bytes: ret === "FULL" ? body() : headerOnly(body(), mb.smtp.queue.bounceHeadersMaxBytes),
        }
        : null;
    for (const withBody of [true, false]) {
      try {
        const report = {
          reportingMta: mb.server.hostname,
          to: first.sender,
          envid: first.envid,
          arrivalDate: first.createdAt,
          now: this.now(),
          recipients,
          original: original(withBody),
        };
        await this.commitReport(report.to, renderDsn(report), settle);
        this.log.info("dsn_sent", {
          kind,
          to: first.sender,
          recipients: recipients.map((r) => r.address),
        });
        return true;
      } catch (err) {
        // The body vanished from the queue: report without it rather than not at all.
        if (withBody && err instanceof BodyGone) continue;
        this.log.error("dsn_failed", { kind, to: first.sender, err });
        return false;
      }
    }
    return false;
  }

  private async commitReport(
    to: string,
    bytes: AsyncIterable<Uint8Array>,
    entries: QueueSettlement[],
  ): Promise<void> {
    const { uploadId } = await this.store.call("body.begin", {});
    try {
      for await (const chunk of bytes) await this.store.call("body.append", { uploadId, chunk });
      // The null reverse-path (RFC 5321 §4.5.5): a DSN is never answered by another DSN.
      const res = await this.store.call("queue.report", {
        uploadId,
        to,
        // RFC 5321 §4.4: final delivery records the (null) reverse-path.
        localPrefix: new TextEncoder().encode("Return-Path: <>\r\n"),
        entries,
      });
      for (const f of res.failed) {
        this.log.warn("dsn_undeliverable", { to: f.address, reason: f.reason });
      }
    } catch (err) {
      await this.store.call("body.abort", { uploadId }).catch(() => {});
      throw err;
    }
  }
}

/** The returned original could not be read because its queue entry or body is gone. */
class BodyGone extends Error {}

async function* bodyGoneAware(src: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  try {
    yield* src;
  } catch (err) {
    if (err instanceof StoreError && err.code === "not_found") throw new BodyGone(err.message);
    throw err;
  }
}

function errorOf(s: QueueSettlement): string {
  return s.outcome === "done" ? "" : s.error;
}

/** The next-hop domain: the entry's, else the recipient's domain. */
function hopOf(e: QueueEntry): string {
  if (e.nextHop) return e.nextHop.toLowerCase();
  const at = e.recipient.lastIndexOf("@");
  return e.recipient.slice(at + 1).toLowerCase();
}

/** Entries sharing one body, sender and MAIL parameters ride one transaction (≤ max RCPTs). */
function transactions(entries: QueueEntry[], max: number): QueueEntry[][] {
  const groups = new Map<string, QueueEntry[]>();
  for (const e of entries) {
    const key = e.bodyId == null
      ? `q${e.queueId}`
      : JSON.stringify([e.bodyId, e.sender, e.envid, e.dsnRet, e.bodyType, e.smtputf8]);
    let g = groups.get(key);
    if (!g) groups.set(key, g = []);
    g.push(e);
  }
  const out: QueueEntry[][] = [];
  for (const g of groups.values()) {
    for (let i = 0; i < g.length; i += max) out.push(g.slice(i, i + max));
  }
  return out;
}

/** DSN recipients grouped per original message, so one message gets one report. */
class DsnBatch {
  private readonly map = new Map<string, { entries: QueueEntry[]; recipients: DsnRecipient[] }>();
  add(e: QueueEntry, r: DsnRecipient): void {
    const key = e.bodyId == null ? `q${e.queueId}` : `${e.bodyId}\0${e.sender}`;
    let g = this.map.get(key);
    if (!g) this.map.set(key, g = { entries: [], recipients: [] });
    g.entries.push(e);
    g.recipients.push(r);
  }
  groups() {
    return this.map.values();
  }
}
