// The supervisor: the main thread of a running server. It starts the store worker and each
// engine's pool, binds their ipc/ queues through the central queue manager, restarts crashed
// workers with back-off while the rest keep serving, follows metabase edits, writes the event
// log and the status file, and shuts everything down in order.
import { mkdirSync } from "node:fs";
import { attachStoreClient, QueueManager, StoreError } from "../ipc/mod.ts";
import { eventLogSink, type Logger, type LogRecord, makeLogger } from "../log/mod.ts";
import {
  ENGINES,
  loadMetabase,
  type LoadResult,
  type Metabase,
  MetabaseError,
  type MetabasePaths,
  type MetabaseWatcher,
  resolvePaths,
  watchMetabase,
} from "../metabase/mod.ts";
import type { TlsMaterial } from "../protocols/engine.ts";
import { ensureSelfSignedCertificate } from "../protocols/wire/certificate.ts";
import { isBuilt, listenersOf } from "./engines.ts";
import type { BoundInfo, FromWorker, ToWorker, WorkerRole } from "./messages.ts";
import { acquireRunLock, type ListenerStatus, releaseRunLock, writeStatus } from "./status.ts";
import { StoreProxy } from "./store-proxy.ts";
import { type ControlReply, ControlServer } from "./control.ts";
import { CertificateWatch, readCertificatePair } from "./certificate-watch.ts";
import { WorkerSlot } from "./worker-slot.ts";

export interface SupervisorOptions {
  metabaseFile: string;
  /** Honour test-only control messages (crash a worker on request). */
  testHooks?: boolean;
  /** Override the metabase's stderr logging (tests keep stderr quiet). */
  stderr?: "pretty" | "json" | "off";
  /** Extra sink for every record (tests assert on events). */
  onLog?: (r: LogRecord) => void;
}

export class Supervisor {
  readonly log: Logger;
  /** A store client for the main thread (health, admin); bound like any engine worker. */
  readonly store = new StoreProxy();
  metabase: Metabase;
  paths: MetabasePaths;
  #sink: ReturnType<typeof eventLogSink>;
  #tls: TlsMaterial | null = null;
  #qm: QueueManager;
  #storeSlot: WorkerSlot;
  #pools = new Map<WorkerRole, WorkerSlot[]>();
  #watcher: MetabaseWatcher | null = null;
  #health: ReturnType<typeof setInterval> | null = null;
  #watchdog: ReturnType<typeof setInterval> | null = null;
  #control: ControlServer | null = null;
  #certWatch: CertificateWatch | null = null;
  /** Whether the last reload read the certificate files (a renewal may be caught mid-write). */
  #tlsLoaded = true;
  #storeMisses = 0;
  #stopping = false;
  #storeUp: Promise<void> = Promise.resolve();
  /** Ports the kernel chose for listeners configured with port 0, so a whole pool shares one. */
  #pins = new Map<string, number>();
  #startedAt = Date.now();
  #loadedText: string;

  constructor(private readonly opts: SupervisorOptions) {
    const loaded = loadMetabase(opts.metabaseFile);
    if (!loaded.ok) throw new MetabaseError(opts.metabaseFile, loaded.issues);
    this.metabase = loaded.metabase;
    this.#loadedText = loaded.text;
    this.paths = resolvePaths(opts.metabaseFile, loaded.metabase);
    const lg = this.metabase.logging;
    this.#sink = eventLogSink({
      file: this.paths.logFile,
      stderr: opts.stderr ?? lg.stderr,
      level: lg.level,
    });
    const sink = (r: LogRecord) => {
      this.#sink(r);
      opts.onLog?.(r);
    };
    this.log = makeLogger("supervisor", sink, lg.level);
    this.#qm = new QueueManager(this.metabase.ipc);
    this.#storeSlot = new WorkerSlot("store", 0, this.#slotEvents);
  }

  /** Recent log records (the admin API and tests read them). */
  get recentLog(): LogRecord[] {
    return this.#sink.recent;
  }

  async start(): Promise<void> {
    const mb = this.metabase;
    mkdirSync(this.paths.dataDir, { recursive: true });
    mkdirSync(this.paths.runDir, { recursive: true });
    acquireRunLock(this.paths.runDir);
    this.log.info("supervisor.starting", { metabase: this.paths.file, pid: process.pid });
    this.#tls = await this.#loadTls(mb);
    this.#watchCertificates(mb);
    this.#probePorts(mb);
    await this.#startStore();
    for (const role of this.#roles(mb)) await this.#resizePool(role, this.#poolSize(mb, role));
    for (const engine of ENGINES) {
      for (const l of listenersOf(mb, 0, engine)) {
        if (l.state === "stopped") {
          // Source document 004: a listener stopped by hand must never stay stopped silently.
          this.log.warn("listener.stopped", {
            listener: l.name,
            engine,
            address: `${l.bind}:${l.port}`,
            hint: `posthorn listener start ${l.name}`,
          });
        } else if (!isBuilt(engine)) {
          this.log.warn("listener.engine_missing", {
            listener: l.name,
            engine,
            hint: "engine not in this build",
          });
        }
      }
    }
    this.#control = new ControlServer(
      this.paths.runDir,
      {
        import: (req, reply) => this.#import(req, reply),
        // Through the running store, so the transport hears of it at once (its "queue"
        // topic) instead of at its next poll.
        "queue.retry": (req) =>
          this.store.call(
            "queue.retry",
            req.all === true ? { all: true } : { queueId: Number(req.queueId) },
          ),
      },
      this.log,
    );
    this.#control.start();
    this.#writeStatus();
    // Compared with the text read at construction: an edit made while starting is applied.
    this.#watcher = watchMetabase(this.paths.file, this.#loadedText, (r) => void this.#apply(r));
    this.#health = setInterval(
      () => void this.#healthTick(),
      mb.supervisor.healthIntervalSeconds * 1000,
    );
    this.#health.unref?.();
    if (mb.supervisor.storeWatchdogSeconds > 0) {
      this.#watchdog = setInterval(
        () => void this.#watchdogTick(),
        mb.supervisor.storeWatchdogSeconds * 1000,
      );
      this.#watchdog.unref?.();
    }
    this.log.info("supervisor.ready", {
      listeners: this.listeners().filter((l) => l.boundPort).length,
    });
  }

  /** Re-reads the metabase now (SIGHUP). */
  reload(): Promise<boolean> {
    return this.#apply(loadMetabase(this.paths.file));
  }

  /** Every configured listener with its state and where it is bound. */
  listeners(): ListenerStatus[] {
    const out: ListenerStatus[] = [];
    for (const engine of ENGINES) {
      const slots = this.#pools.get(engine) ?? [];
      for (const l of listenersOf(this.metabase, 0, engine)) {
        const infos = slots.map((s) => s.listeners.find((b) => b.name === l.name)).filter((
          b,
        ): b is BoundInfo => !!b);
        const ok = infos.find((b) => b.boundPort !== null);
        out.push({
          engine,
          name: l.name,
          bind: l.bind,
          port: l.port,
          tls: l.tls,
          state: l.state,
          boundPort: ok?.boundPort ?? null,
          workers: infos.filter((b) => b.boundPort !== null).length,
          error: !isBuilt(engine)
            ? "engine not in this build"
            : ok
            ? null
            : infos[0]?.error ?? null,
        });
      }
    }
    return out;
  }

  /** Workers by role, for status and tests. */
  workers(): { id: string; role: WorkerRole; state: string; restarts: number }[] {
    const all = [this.#storeSlot, ...[...this.#pools.values()].flat()];
    return all.map((s) => ({ id: s.id, role: s.role, state: s.state, restarts: s.restarts }));
  }

  /** Test hook: make one worker throw as a real bug would, or hang as on a dead disk. */
  crashWorker(role: WorkerRole, index = 0, how: "throw" | "hang" = "throw"): void {
    const slot = role === "store" ? this.#storeSlot : this.#pools.get(role)?.[index];
    if (!slot) throw new Error(`no ${role} worker ${index}`);
    slot.post({ type: how === "throw" ? "test.crash" : "test.hang" });
  }

  /**
   * `posthorn import` while the server runs: the store worker, which owns the page file, reads
   * the mbox or Maildir itself and delivers in its usual commits; progress goes back to the
   * command line, and its hanging up stops the import between two messages.
   */
  async #import(req: Record<string, unknown>, reply: ControlReply): Promise<unknown> {
    const format = req.format === "mbox" || req.format === "maildir" ? req.format : null;
    if (!format || typeof req.path !== "string" || typeof req.user !== "string") {
      throw new StoreError("invalid", "import wants format mbox|maildir, path and user");
    }
    let last: unknown = null; // the store's last report is the total: the answer, not progress
    const progress = this.store.stream("store.import", {
      format,
      path: req.path,
      user: req.user,
      folder: typeof req.folder === "string" ? req.folder : undefined,
    });
    for await (const batch of progress) {
      for (const p of batch) {
        if (last !== null) reply.progress(last);
        last = p;
      }
      if (reply.gone) break; // leaving the loop cancels the import in the store
    }
    return last ?? { messages: 0, bytes: 0 };
  }

  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    const graceMs = this.metabase.supervisor.shutdownGraceSeconds * 1000;
    this.log.info("supervisor.stopping", { graceMs });
    this.#watcher?.close();
    this.#certWatch?.close();
    this.#control?.stop();
    if (this.#health) clearInterval(this.#health);
    if (this.#watchdog) clearInterval(this.#watchdog);
    // Engines first (they stop accepting and finish transactions), then the store.
    await Promise.all([...this.#pools.values()].flat().map((s) => s.stop(graceMs)));
    for (const slots of this.#pools.values()) for (const s of slots) this.#qm.workerGone(s.id);
    this.store.detach();
    await this.#storeSlot.stop(graceMs);
    this.#qm.workerGone(this.#storeSlot.id);
    this.log.info("store.stopped", {});
    this.#writeStatus(false);
    releaseRunLock(this.paths.runDir);
    this.log.info("supervisor.stopped", {
      uptimeSeconds: Math.round((Date.now() - this.#startedAt) / 1000),
    });
    this.#sink.flush(); // the process may exit before the next turn
  }

  /**
   * Engines bind with reusePort so a pool shares a port; the flip side is that a second server
   * doing the same (another Posthorn on another data dir) would silently take half the traffic.
   * So every port is first bound once without it: a port someone else holds fails loudly here.
   */
  #probePorts(mb: Metabase, ours: Set<string> = new Set()): void {
    const busy: string[] = [];
    for (const engine of ENGINES) {
      if (!mb[engine].enabled || !isBuilt(engine)) continue;
      for (const l of listenersOf(mb, 0, engine)) {
        if (l.state !== "started" || l.port === 0 || ours.has(`${l.bind}:${l.port}`)) continue;
        try {
          Bun.listen({ hostname: l.bind, port: l.port, socket: { data() {} } }).stop(true);
        } catch (err) {
          busy.push(
            `${l.name} (${l.bind}:${l.port}: ${
              (err as { code?: string }).code ?? (err as Error).message
            })`,
          );
        }
      }
    }
    if (busy.length) {
      this.log.error("listener.port_in_use", { listeners: busy });
      throw new Error(`port(s) already in use: ${busy.join(", ")}`);
    }
  }

  // ------------------------------------------------------------------ workers

  #slotEvents = {
    onMessage: (_slot: WorkerSlot, msg: FromWorker) => {
      if (msg.type === "log") {
        this.#sink(msg.record);
        this.opts.onLog?.(msg.record);
      } else if (msg.type === "listeners") {
        this.#pinPorts(msg.listeners);
        this.#writeStatus();
      }
    },
    onCrash: (slot: WorkerSlot, why: string) => {
      if (this.#stopping) return;
      slot.restarts++;
      this.#workerGone(slot);
      const delay = slot.nextBackoff(
        this.metabase.supervisor.restartMinMs,
        this.metabase.supervisor.restartMaxMs,
      );
      this.log.error("worker.crashed", {
        worker: slot.id,
        role: slot.role,
        reason: why,
        restartInMs: delay,
      });
      if (slot.role === "store") {
        this.log.error("store.stopped", { reason: why });
        this.store.detach();
      }
      slot.restartTimer = setTimeout(() => {
        slot.restartTimer = null;
        if (this.#stopping) return;
        const restart = slot.role === "store" ? this.#startStore() : this.#spawnEngine(slot);
        restart.catch((err) =>
          this.log.error("worker.restart_failed", { worker: slot.id, error: err })
        );
      }, delay);
    },
  };

  #init(role: WorkerRole) {
    return (slot: WorkerSlot): ToWorker => ({
      type: "init",
      role,
      workerId: slot.id,
      workerIndex: slot.index,
      metabase: this.#pinned(this.metabase),
      paths: this.paths,
      tls: this.#tls,
      testHooks: !!this.opts.testHooks,
    });
  }

  async #startStore(): Promise<void> {
    const up = (async () => {
      await this.#storeSlot.spawn(this.#init("store"));
      this.log.info("store.started", {
        dir: this.paths.storeDir,
        durability: this.metabase.store.durability,
      });
      // Every client binds again: the supervisor itself, then each running engine worker.
      this.#bindToStore(null);
      for (const slots of this.#pools.values()) {
        for (const s of slots) if (s.worker) this.#bindToStore(s);
      }
    })();
    this.#storeUp = up.catch(() => {});
    await up;
  }

  /** Connects a worker (or the supervisor, when slot is null) to the store worker. */
  #bindToStore(slot: WorkerSlot | null): void {
    if (!this.#storeSlot.worker || this.#storeSlot.state !== "running") return;
    const clientId = slot ? slot.id : "supervisor";
    const { server, client } = this.#qm.bind(this.#storeSlot.id, clientId);
    this.#storeSlot.post({ type: "serve", descriptor: server, peer: clientId });
    if (slot) slot.post({ type: "bind", descriptor: client });
    else this.store.attach(attachStoreClient(client as never));
  }

  async #spawnEngine(slot: WorkerSlot): Promise<void> {
    await this.#storeUp;
    const bound = await slot.spawn(this.#init(slot.role), (s) => this.#bindToStore(s));
    this.#pinPorts(bound);
    this.log.info("worker.started", {
      worker: slot.id,
      listeners: bound.map((b) => `${b.name}:${b.boundPort}`),
    });
    this.#writeStatus();
  }

  #roles(mb: Metabase): WorkerRole[] {
    const roles: WorkerRole[] = [];
    for (const e of ENGINES) if (mb[e].enabled && isBuilt(e)) roles.push(e);
    if (mb.smtp.enabled && isBuilt("transport")) roles.push("transport");
    return roles;
  }

  #poolSize(mb: Metabase, role: WorkerRole): number {
    if (role === "transport" || role === "store") return 1;
    return mb[role].enabled ? mb[role].poolSize : 0;
  }

  async #resizePool(role: WorkerRole, size: number): Promise<void> {
    const slots = this.#pools.get(role) ?? [];
    this.#pools.set(role, slots);
    const graceMs = this.metabase.supervisor.shutdownGraceSeconds * 1000;
    while (slots.length > size) {
      const s = slots.pop()!;
      await s.stop(graceMs);
      this.#workerGone(s);
    }
    // The first worker binds first so a port-0 listener is pinned before the rest join it.
    while (slots.length < size) {
      const s = new WorkerSlot(role, slots.length, this.#slotEvents);
      slots.push(s);
      // A worker that cannot start is reported and retried by its crash handler; the rest go on.
      await this.#spawnEngine(s).catch((err) =>
        this.log.error("worker.start_failed", { worker: s.id, error: err as Error })
      );
    }
  }

  /** Tears down a dead or stopped worker's bindings; the store forgets the served side. */
  #workerGone(slot: WorkerSlot): void {
    this.#qm.workerGone(slot.id);
    if (slot.role !== "store") this.#storeSlot.post({ type: "unserve", peer: slot.id });
  }

  #pinPorts(bound: BoundInfo[]): void {
    for (const b of bound) if (b.port === 0 && b.boundPort) this.#pins.set(b.name, b.boundPort);
  }

  /** The metabase as engine workers see it: port-0 listeners replaced by their pinned port. */
  #pinned(mb: Metabase): Metabase {
    if (this.#pins.size === 0) return mb;
    const copy = structuredClone(mb);
    const pin = (l: { name: string; port: number }) => {
      if (l.port === 0 && this.#pins.has(l.name)) l.port = this.#pins.get(l.name)!;
    };
    copy.smtp.connectors.forEach(pin);
    for (const e of ["pop3", "imap", "nntp", "http"] as const) copy[e].listeners.forEach(pin);
    return copy;
  }

  // ------------------------------------------------------------------ reload

  async #apply(r: LoadResult): Promise<boolean> {
    if (this.#stopping) return false;
    if (!r.ok) {
      this.log.error("metabase.rejected", {
        file: this.paths.file,
        issues: r.issues.map((i) => `${i.path || "(file)"}: ${i.message}`),
        hint: "the running configuration stays in force",
      });
      return false;
    }
    const next = r.metabase;
    const before = this.metabase;
    // Addresses a reload adds get the same probe as at start (ours are bound with reusePort).
    const ours = new Set(
      this.listeners().filter((l) => l.boundPort).map((l) => `${l.bind}:${l.port}`),
    );
    try {
      this.#probePorts(next, ours);
    } catch (err) {
      this.log.error("metabase.rejected", {
        file: this.paths.file,
        issues: [(err as Error).message],
        hint: "the running configuration stays in force",
      });
      return false;
    }
    // Most settings are read per session or per call and apply at once; these are fixed when
    // the server starts, and saying so beats a reload that silently changes nothing.
    const fixed = {
      "server.dataDir": [before.server.dataDir, next.server.dataDir],
      "store.dir": [before.store.dir, next.store.dir],
      "store.pageBytes": [before.store.pageBytes, next.store.pageBytes],
      "logging": [before.logging, next.logging],
      "ipc": [before.ipc, next.ipc],
      "supervisor.healthIntervalSeconds": [
        before.supervisor.healthIntervalSeconds,
        next.supervisor.healthIntervalSeconds,
      ],
    };
    const pending = Object.entries(fixed).filter(([, [a, b]]) =>
      JSON.stringify(a) !== JSON.stringify(b)
    )
      .map(([k]) => k);
    if (pending.length) {
      this.log.warn("metabase.restart_required", {
        settings: pending,
        hint: "these apply at the next start",
      });
    }
    this.metabase = {
      ...next,
      server: { ...next.server, dataDir: before.server.dataDir },
      store: { ...next.store, dir: before.store.dir },
    };
    try {
      this.#tls = await this.#loadTls(this.metabase);
      this.#tlsLoaded = true;
    } catch (err) {
      this.#tlsLoaded = false;
      this.log.error("tls.reload_failed", {
        error: err as Error,
        hint: "keeping the previous certificate",
      });
    }
    if (!this.#stopping) this.#watchCertificates(this.metabase);
    // Pins are dropped for listeners whose config changed, so they get a fresh port 0.
    for (const name of [...this.#pins.keys()]) {
      const was = findListener(before, name);
      const now = findListener(this.metabase, name);
      if (!now || JSON.stringify(was) !== JSON.stringify(now)) this.#pins.delete(name);
    }
    this.#storeSlot.post({ type: "reload", metabase: this.metabase, tls: this.#tls });
    const roles = new Set<WorkerRole>([...this.#pools.keys(), ...this.#roles(this.metabase)]);
    for (const role of roles) {
      const wanted = this.#roles(this.metabase).includes(role)
        ? this.#poolSize(this.metabase, role)
        : 0;
      for (const s of this.#pools.get(role) ?? []) {
        if (s.index < wanted) {
          s.post({ type: "reload", metabase: this.#pinned(this.metabase), tls: this.#tls });
        }
      }
      await this.#resizePool(role, wanted);
    }
    this.log.info("metabase.reloaded", { file: this.paths.file });
    // Listener replies arrive asynchronously; write the status once they have had a moment.
    setTimeout(() => this.#writeStatus(), 200).unref?.();
    return true;
  }

  /** Applies a renewed certificate by itself (tls.checkSeconds): the files are re-read, and
   * implicit-TLS listeners re-bound, as on SIGHUP. */
  #watchCertificates(mb: Metabase): void {
    const { certFile, keyFile } = resolvePaths(this.paths.file, mb);
    const intervalMs = mb.tls.checkSeconds * 1000;
    const w = this.#certWatch;
    // The same files watched as often: keep the watch, which knows the last pair applied (a
    // new one would take the files as they are now, even a pair that just failed to load).
    if (
      w && certFile && keyFile && w.intervalMs === intervalMs && w.files[0] === certFile &&
      w.files[1] === keyFile
    ) return;
    w?.close();
    this.#certWatch = null;
    if (!certFile || !keyFile || intervalMs <= 0) return;
    this.#certWatch = new CertificateWatch([certFile, keyFile], intervalMs, async () => {
      this.log.info("tls.files_changed", { certFile, keyFile });
      // Applied only if the pair loaded: else the watch tries again at its next check.
      return await this.reload() && this.#tlsLoaded;
    });
  }

  async #loadTls(mb: Metabase): Promise<TlsMaterial> {
    const paths = resolvePaths(this.paths.file, mb);
    if (paths.certFile && paths.keyFile) {
      return readCertificatePair(paths.certFile, paths.keyFile);
    }
    if (paths.certFile || paths.keyFile) {
      throw new Error("tls.certFile and tls.keyFile must be given together");
    }
    return await ensureSelfSignedCertificate(this.paths.tlsDir, mb.server.hostname);
  }

  // ------------------------------------------------------------------ health and status

  /**
   * A store that is alive but stuck (a hung fsync, a lock held forever) would leave every
   * session paused until its idle timeout; nothing would say why. It must answer a ping; after
   * two missed in a row it is terminated, and the crash path restarts it.
   */
  async #watchdogTick(): Promise<void> {
    const slot = this.#storeSlot;
    if (this.#stopping || slot.state !== "running" || !this.store.attached) return;
    const seconds = this.metabase.supervisor.storeWatchdogSeconds;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const answered = await Promise.race([
      this.store.call("store.stats", {}).then(() => true, () => true), // an error is an answer
      new Promise<false>((r) => (timer = setTimeout(() => r(false), seconds * 1000))),
    ]);
    clearTimeout(timer);
    if (answered) {
      this.#storeMisses = 0;
      return;
    }
    this.#storeMisses++;
    this.log.error("store.unresponsive", { seconds, misses: this.#storeMisses });
    if (this.#storeMisses >= 2 && slot.worker && !this.#stopping) {
      this.#storeMisses = 0;
      slot.lastError = `no answer to the watchdog for ${2 * seconds} s`;
      slot.worker.terminate(); // the close event goes down the crash path: restart with back-off
    }
  }

  async #healthTick(): Promise<void> {
    let stats: unknown = null;
    try {
      stats = await this.store.call("store.stats", {});
    } catch (err) {
      stats = { error: String((err as Error).message) };
    }
    const mem = process.memoryUsage();
    this.log.info("health", {
      uptimeSeconds: Math.round((Date.now() - this.#startedAt) / 1000),
      workers: this.workers().filter((w) => w.state === "running").length,
      rssMiB: Math.round(mem.rss / 1048576),
      ipc: this.#qm.stats(),
      store: stats,
    });
    this.#writeStatus();
  }

  #writeStatus(running = true): void {
    try {
      writeStatus(this.paths.runDir, {
        pid: process.pid,
        running,
        startedAt: new Date(this.#startedAt).toISOString(),
        updatedAt: new Date().toISOString(),
        listeners: this.listeners(),
        workers: this.workers(),
      });
    } catch (err) {
      this.log.warn("status.write_failed", { error: err as Error });
    }
  }
}

function findListener(mb: Metabase, name: string) {
  for (const e of ENGINES) {
    const l = listenersOf(mb, 0, e).find((x) => x.name === name);
    if (l) return l;
  }
  return undefined;
}
