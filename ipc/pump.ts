// The per-thread consumer loop. Every endpoint (client or served binding) living in this thread
// is polled here: drain every ready entry of every ring, stay hot for a short while after work
// (polling between event-loop turns, so handlers, sockets and timers keep running), then park
// on the thread's doorbell with Atomics.waitAsync: the event loop is never blocked.
import { cancelPark, park, prepareToPark } from "./doorbell.ts";

export interface Endpoint {
  /** Drains inbound rings and flushes outbound backlogs; returns the work done. */
  poll(): number;
  /** True while this endpoint must keep the thread alive (calls pending, serving). */
  keepAlive(): boolean;
}

/** How long a consumer stays hot after its last work before parking (µs). Waking a parked
 * thread costs ~45 µs here, so a hot consumer is what makes back-to-back requests cheap. */
export const SPIN_MICROS = 100;

const MIN_SPIN_MICROS = 4;
/** A park shorter than this (wake-up latency included) means the thread is in a busy spell. */
const SHORT_PARK_MICROS = 200;

const pumps = new Map<string, Pump>();

/** The pump of the thread owning `bell` (one per doorbell key). */
export function pumpFor(key: string, bell: SharedArrayBuffer): Pump {
  let p = pumps.get(key);
  if (!p) pumps.set(key, p = new Pump(key, new Int32Array(bell)));
  return p;
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

export class Pump {
  readonly #key: string;
  readonly #bell: Int32Array;
  readonly #endpoints = new Set<Endpoint>();
  #running = false;
  #keepAlive: ReturnType<typeof setInterval> | null = null;

  constructor(key: string, bell: Int32Array) {
    this.#key = key;
    this.#bell = bell;
  }

  add(ep: Endpoint): void {
    this.#endpoints.add(ep);
    this.wake();
  }

  remove(ep: Endpoint): void {
    this.#endpoints.delete(ep);
  }

  /** Make sure the loop runs (after new outstanding work, e.g. a call). */
  wake(): void {
    this.#holdThread();
    if (this.#running) return;
    this.#running = true;
    void this.#run();
  }

  #pollAll(): number {
    let n = 0;
    for (const ep of this.#endpoints) {
      try {
        n += ep.poll();
      } catch (err) {
        // An endpoint's bug must not stop the loop every other binding of this thread uses.
        console.error("ipc: endpoint poll failed", err);
      }
    }
    return n;
  }

  #holdThread(): void {
    let alive = false;
    for (const ep of this.#endpoints) {
      if (ep.keepAlive()) {
        alive = true;
        break;
      }
    }
    // A pending waitAsync does not keep a thread alive; a timer does.
    if (alive && this.#keepAlive === null) this.#keepAlive = setInterval(() => {}, 1 << 30);
    else if (!alive && this.#keepAlive !== null) {
      clearInterval(this.#keepAlive);
      this.#keepAlive = null;
    }
  }

  /** Current spin budget (µs), adapted: spins that end in work and parks that end soon grow
   * it, long parks shrink it, so an idle or oversubscribed thread does not spin for nothing. */
  #spin = SPIN_MICROS;

  async #run(): Promise<void> {
    try {
      let hotUntil = performance.now() + this.#spin / 1000;
      let spinning = false; // polled at least once without finding work
      while (this.#endpoints.size > 0) {
        if (this.#pollAll() > 0) {
          if (spinning) this.#spin = Math.min(SPIN_MICROS, this.#spin * 2);
          spinning = false;
          hotUntil = performance.now() + this.#spin / 1000;
          this.#holdThread();
          await nextTurn();
          continue;
        }
        if (performance.now() < hotUntil) {
          spinning = true;
          await nextTurn();
          continue;
        }
        this.#holdThread();
        const seq = prepareToPark(this.#bell);
        if (this.#pollAll() > 0) {
          cancelPark(this.#bell);
          hotUntil = performance.now() + this.#spin / 1000;
          await nextTurn();
          continue;
        }
        spinning = false;
        const parkedAt = performance.now();
        await park(this.#bell, seq);
        const now = performance.now();
        // The park's length says whether spinning longer would have paid. A short one (work
        // came right after we gave up) cost the producer a notify syscall and us a ~45 µs
        // wake-up that a longer spin would have saved; a long one was real idleness, where
        // spinning only burns a core. Judging by the spin alone (shrink whenever it ended in a
        // park) settles at the median gap, so about every other gap cost a wake-up.
        if ((now - parkedAt) * 1000 < SHORT_PARK_MICROS) {
          this.#spin = Math.min(SPIN_MICROS, this.#spin * 2);
        } else this.#spin = Math.max(MIN_SPIN_MICROS, this.#spin / 2);
        hotUntil = now + this.#spin / 1000;
      }
    } finally {
      this.#running = false;
      this.#holdThread();
      if (this.#endpoints.size === 0) pumps.delete(this.#key);
    }
  }
}
