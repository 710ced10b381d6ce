// One place in a pool: a worker thread, its generation, and its restart back-off. The slot
// turns the Worker API's quirks into plain events: a worker that throws with no listener dies
// silently and an unhandled rejection closes it with code 0, so every close the supervisor did
// not ask for is treated as a crash, whatever its code.
import type { BoundInfo, FromWorker, ToWorker, WorkerRole } from "./messages.ts";

export type SlotState = "starting" | "running" | "stopping" | "stopped" | "waiting";

export interface SlotEvents {
  onMessage(slot: WorkerSlot, msg: FromWorker): void;
  /** The worker went away without being asked to. */
  onCrash(slot: WorkerSlot, why: string): void;
}

// In the compiled binary every module lives under /$bunfs/root/ and import.meta.url names the
// binary, so a worker is found by its path from the build root (compile.sh lists each one);
// from source, beside this file.
const COMPILED = import.meta.url.includes("/$bunfs/");
const ENTRY: Record<"store" | "engine", string | URL> = COMPILED
  ? { store: "./supervisor/store-worker.ts", engine: "./supervisor/engine-worker.ts" }
  : {
    store: new URL("./store-worker.ts", import.meta.url),
    engine: new URL("./engine-worker.ts", import.meta.url),
  };

export class WorkerSlot {
  worker: Worker | null = null;
  generation = 0;
  state: SlotState = "stopped";
  startedAt = 0;
  backoffMs = 0;
  restarts = 0;
  listeners: BoundInfo[] = [];
  lastError: string | null = null;
  restartTimer: ReturnType<typeof setTimeout> | null = null;
  #started: PromiseWithResolvers<BoundInfo[]> | null = null;
  #stopped: PromiseWithResolvers<void> | null = null;

  constructor(
    readonly role: WorkerRole,
    readonly index: number,
    private readonly events: SlotEvents,
  ) {}

  get id(): string {
    return `${this.role}-${this.index}-g${this.generation}`;
  }

  /** Spawns the worker and sends init; resolves with its listeners once it says "started". */
  spawn(
    init: (slot: WorkerSlot) => ToWorker,
    beforeInit?: (slot: WorkerSlot) => void,
  ): Promise<BoundInfo[]> {
    this.generation++;
    this.state = "starting";
    this.startedAt = Date.now();
    this.lastError = null;
    const worker = new Worker(
      ENTRY[this.role === "store" ? "store" : "engine"],
      { smol: true } as WorkerOptions,
    );
    this.worker = worker;
    this.#started = Promise.withResolvers();
    const started = this.#started;
    worker.addEventListener("message", (ev: MessageEvent<FromWorker>) => {
      if (this.worker !== worker) return;
      const msg = ev.data;
      if (msg.type === "started") {
        this.state = "running";
        this.listeners = msg.listeners;
        started.resolve(msg.listeners);
      } else if (msg.type === "listeners") {
        this.listeners = msg.listeners;
      } else if (msg.type === "failed") {
        this.lastError = msg.error;
        started.reject(new Error(msg.error));
      } else if (msg.type === "stopped") {
        this.#stopped?.resolve();
      }
      this.events.onMessage(this, msg);
    });
    worker.addEventListener("error", (ev: ErrorEvent) => {
      if (this.worker !== worker) return;
      this.lastError = ev.message || String(ev.error ?? "worker error");
      ev.preventDefault?.();
    });
    worker.addEventListener("close", () => {
      if (this.worker !== worker) return;
      this.worker = null;
      const expected = this.state === "stopping" || this.state === "stopped";
      this.#stopped?.resolve();
      if (!expected) {
        this.state = "waiting";
        const why = this.lastError ?? "worker exited unexpectedly";
        started.reject(new Error(why));
        this.events.onCrash(this, why);
      }
    });
    // Messages are handled in order: whatever beforeInit posts (the store binding) is in place
    // before the engine starts and makes its first call.
    beforeInit?.(this);
    worker.postMessage(init(this));
    return started.promise;
  }

  post(msg: ToWorker): void {
    this.worker?.postMessage(msg);
  }

  /** Asks the worker to stop; terminates it if it has not within the deadline. */
  async stop(graceMs: number): Promise<void> {
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    const worker = this.worker;
    this.state = "stopping";
    if (worker) {
      this.#stopped = Promise.withResolvers();
      worker.postMessage({ type: "stop", graceMs } satisfies ToWorker);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const deadline = new Promise<void>((r) => (timer = setTimeout(r, graceMs + 2000)));
      await Promise.race([this.#stopped.promise, deadline]);
      clearTimeout(timer); // a pending timer would keep the process alive after shutdown
      worker.terminate();
    }
    this.worker = null;
    this.state = "stopped";
  }

  /** Back-off doubles on each crash, resets after a healthy minute. */
  nextBackoff(minMs: number, maxMs: number): number {
    if (Date.now() - this.startedAt > 60_000) this.backoffMs = 0;
    this.backoffMs = this.backoffMs === 0 ? minMs : Math.min(this.backoffMs * 2, maxMs);
    return this.backoffMs;
  }
}
