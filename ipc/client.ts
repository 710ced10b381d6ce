// The engine side of a binding: a StoreClient whose calls, streams and subscriptions travel
// through the binding's rings and the shared heap, with the same semantics as
// createDirectStoreClient. Everything pending rejects with "unavailable" the moment the binding
// dies (store worker gone, or closed); nothing ever waits forever.
import { type LeaseMark, leaseMarkOf, type StoreClient } from "./store-client.ts";
import {
  type CallName,
  type CallReq,
  type CallRes,
  StoreError,
  type StoreTopics,
  type StreamItem,
  type StreamName,
  type StreamReq,
} from "./store-api.ts";
import {
  type BindingDescriptor,
  bindingState,
  type BindingView,
  CALL,
  CANCEL,
  CHUNK,
  closeBinding,
  CLOSED_BY_CLIENT,
  CLOSED_BY_SERVER,
  CREDIT,
  END,
  ERROR,
  EVENT,
  isBindingDescriptor,
  ITEMS,
  LAST_CHUNK,
  OPEN,
  RESULT,
  RETRACTED,
  STREAM_OPEN,
  SUBSCRIBE,
  UNSUBSCRIBE,
  viewBinding,
} from "./binding.ts";
import { CLIENT_SIDE, ownerOf, SERVER_SIDE, SharedHeap } from "./heap.ts";
import { decodeBytes, decodeInline, decodeLeased, decodeValue } from "./codec.ts";
import { ReceivedNames, SentNames } from "./compact.ts";
import { ringDoorbell } from "./doorbell.ts";
import { type Endpoint, type Pump, pumpFor } from "./pump.ts";
import { errorFromWire } from "./errors.ts";
import { RingOutbox } from "./outbox.ts";
import { INLINE } from "./ring.ts";

export type AttachedStoreClient = StoreClient & {
  /** Closes the binding: pending calls reject, the store releases this peer's locks. */
  close(): void;
  /** True once closed or once the binding died. */
  readonly closed: boolean;
};

/** Worker side: a StoreClient over the client descriptor the supervisor posted. */
export function attachStoreClient(desc: BindingDescriptor): AttachedStoreClient {
  if (!isBindingDescriptor(desc) || desc.side !== "client") {
    throw new TypeError("attachStoreClient needs the client descriptor of a binding");
  }
  return new RingStoreClient(desc);
}

interface Pending {
  resolve(value: unknown): void;
  reject(err: unknown): void;
  /** callLeased: the result's bytes stay in its block until the caller releases it. */
  lease?: LeaseMark | null;
  /** The deadline clock's tick when the wait began (see #sweep). */
  born: number;
}

/** Ticks of the deadline clock per call timeout: a call fails between 7/8 and 8/8 of
 * ipc.callTimeoutMs late, and no call reads the time. */
const TIMEOUT_TICKS = 8;

class RingStoreClient implements AttachedStoreClient, Endpoint {
  readonly #heap: SharedHeap;
  readonly #view: BindingView;
  readonly #peerBell: Int32Array;
  readonly #pump: Pump;
  readonly #own: number; // owner word of blocks this side allocates
  readonly #theirs: number; // owner word of blocks the server allocates
  readonly #window: number;
  readonly #pending = new Map<number, Pending>();
  readonly #streams = new Map<number, ClientStream>();
  readonly #listeners = new Map<string, Set<(event: never) => void>>();
  /** Topics the server knows we want; differs from #listeners' keys until synced. */
  readonly #subscribed = new Set<string>();
  readonly #outbox: RingOutbox;
  /** Names (methods, keys) defined so far on each direction of this binding. */
  readonly #sent = new SentNames();
  readonly #received = new ReceivedNames();
  #nextId = 1;
  #dead: StoreError | null = null;
  readonly #timeoutMs: number;
  /** The deadline clock: advanced by the sweeper, which runs only while something waits. */
  #tick = 0;
  #sweeper: ReturnType<typeof setInterval> | null = null;

  constructor(desc: BindingDescriptor) {
    this.#heap = new SharedHeap(desc.heap, desc.selfTag);
    this.#view = viewBinding(desc.binding, desc.ringSlots);
    this.#peerBell = new Int32Array(desc.peerBell);
    this.#own = ownerOf(desc.bindingId, CLIENT_SIDE);
    this.#outbox = new RingOutbox(this.#view.requests, this.#peerBell, this.#heap, this.#own);
    this.#theirs = ownerOf(desc.bindingId, SERVER_SIDE);
    this.#window = desc.streamWindow;
    this.#timeoutMs = desc.callTimeoutMs;
    this.#pump = pumpFor(`${desc.managerId}:${desc.selfTag}`, desc.selfBell);
    this.#pump.add(this);
  }

  get closed(): boolean {
    return this.#dead !== null;
  }

  call<M extends CallName>(method: M, req: CallReq<M>): Promise<CallRes<M>> {
    if (this.#dead) return Promise.reject(this.#dead);
    const id = this.#newId();
    try {
      this.#outbox.sendValue(CALL, id, [method, req], this.#sent);
    } catch (err) {
      return Promise.reject(err);
    }
    // A getter in `req` may have closed us while it was encoded: nobody would answer, and the
    // entry went out after the teardown freed what was unsent.
    if (this.#dead) {
      this.#freeUnsent();
      return Promise.reject(this.#dead);
    }
    const lease = leaseMarkOf(req);
    // The result cannot arrive before this executor runs: replies are read by the pump,
    // never synchronously inside sendValue.
    return new Promise<CallRes<M>>((resolve, reject) => {
      const born = this.#tick;
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject, lease, born });
      this.#pump.wake();
      this.armDeadlines();
    });
  }

  /** The deadline clock's tick now, for a wait that begins. */
  get tick(): number {
    return this.#tick;
  }

  /** Starts the sweeper if it is not running (a call or a stream wait began). */
  armDeadlines(): void {
    if (this.#sweeper !== null || this.#dead) return;
    this.#sweeper = setInterval(this.#sweep, Math.max(1, this.#timeoutMs / TIMEOUT_TICKS));
    // The pump holds the thread while calls are pending; this timer must not on its own.
    (this.#sweeper as { unref?: () => void }).unref?.();
  }

  /**
   * Fails every call (and stream wait) older than ipc.callTimeoutMs with "unavailable": a
   * handler that never settles costs its caller a temporary error, not a session hung for
   * good. An answer that comes later is read and dropped like any answer nobody waits for.
   */
  #sweep = (): void => {
    const expired = ++this.#tick - TIMEOUT_TICKS;
    const late = () =>
      new StoreError("unavailable", `the store did not answer within ${this.#timeoutMs} ms`);
    for (const [id, p] of this.#pending) {
      if (p.born > expired) break; // a Map keeps call order, so the rest are younger
      this.#pending.delete(id);
      // Still in the outbox (the ring was full): it will never run, so the caller may safely
      // do it again. One already in the ring may yet run: a retry may repeat it.
      p.reject(
        this.#outbox.retract(CALL, id, RETRACTED)
          ? new StoreError(
            "unavailable",
            `the store did not take the call within ${this.#timeoutMs} ms (it was not run)`,
          )
          : late(),
      );
    }
    for (const s of [...this.#streams.values()]) {
      if (s.waitingSince(expired)) {
        s.fail(late());
        // Never sent (the ring was full): retracted, so the store never starts it.
        if (this.#outbox.retract(STREAM_OPEN, s.id, RETRACTED)) this.#streams.delete(s.id);
        else this.cancel(s.id);
      }
    }
    if (this.#pending.size === 0 && this.#streams.size === 0) this.#stopSweeper();
  };

  #stopSweeper(): void {
    if (this.#sweeper !== null) clearInterval(this.#sweeper);
    this.#sweeper = null;
  }

  stream<M extends StreamName>(method: M, req: StreamReq<M>): AsyncIterable<StreamItem<M>> {
    if (this.#dead) throw this.#dead;
    return {
      [Symbol.asyncIterator]: () =>
        new ClientStream(this, method, req) as AsyncIterator<StreamItem<M>>,
    };
  }

  subscribe<T extends keyof StoreTopics>(
    topic: T,
    listener: (event: StoreTopics[T]) => void,
  ): () => void {
    let set = this.#listeners.get(topic);
    if (!set) this.#listeners.set(topic, set = new Set());
    const l = listener as (event: never) => void;
    set.add(l);
    this.#syncSubscriptions();
    return () => {
      set.delete(l);
      if (set.size === 0 && this.#listeners.get(topic) === set) this.#listeners.delete(topic);
      this.#syncSubscriptions();
    };
  }

  close(): void {
    if (this.#dead) return;
    closeBinding(this.#view, CLOSED_BY_CLIENT);
    ringDoorbell(this.#peerBell);
    this.#teardown(new StoreError("unavailable", "store client closed"));
  }

  // ------------------------------------------------------------ pump side

  keepAlive(): boolean {
    return this.#pending.size > 0 || this.#streams.size > 0;
  }

  poll(): number {
    if (this.#dead) return 0;
    const state = bindingState(this.#view);
    const n = this.#view.responses.drain(this.#visit);
    this.#heap.freeMany(this.#toFree, this.#own);
    this.#toFree.length = 0;
    if (this.#view.responses.takeSpaceWanted()) ringDoorbell(this.#peerBell);
    if (state !== OPEN) {
      this.#teardown(
        new StoreError(
          "unavailable",
          state === CLOSED_BY_SERVER ? "the store closed this binding" : "the store worker is gone",
        ),
      );
      return n + 1;
    }
    if (this.#outbox.length > 0) this.#outbox.flush();
    if (this.#subscriptionsDirty) this.#syncSubscriptions();
    return n;
  }

  /** Reads an entry's value from its slot or its block. */
  #decode(handle: number, length: number, at: number): unknown {
    return handle === INLINE
      ? decodeInline(this.#view.responses, at, length, this.#received)
      : decodeValue(this.#heap, handle, length, this.#received);
  }

  #visit = (kind: number, id: number, handle: number, length: number, at: number): void => {
    // The block is the server's until we take it; failing means the manager already freed it.
    if (handle > 0 && !this.#heap.transfer(handle, this.#theirs, this.#own)) return;
    try {
      switch (kind) {
        case RESULT: {
          const p = this.#pending.get(id);
          if (!p) {
            // Read anyway: names it defines are cited by later results (./compact.ts). A
            // damaged block nobody waits for must not stop the rest of this drain.
            try {
              if (handle !== 0) this.#decode(handle, length, at);
            } catch (err) {
              console.error("ipc: undecodable result for no pending call", err);
            }
            break;
          }
          this.#pending.delete(id);
          try {
            if (p.lease && handle > 0) {
              const { value, leased } = decodeLeased(this.#heap, handle, length, this.#received);
              if (leased) {
                p.lease.release = this.#leaseRelease(handle);
                handle = 0; // the caller's now: not freed with this drain's batch
              }
              p.resolve(value);
            } else p.resolve(this.#decode(handle, length, at));
          } catch (err) {
            p.reject(err);
          }
          break;
        }
        case ERROR: {
          const err = errorFromWire(this.#heap, handle, length);
          const p = this.#pending.get(id);
          if (p) {
            this.#pending.delete(id);
            p.reject(err);
          } else {
            this.#streams.get(id)?.fail(err);
            this.#streams.delete(id);
          }
          break;
        }
        case CHUNK: {
          const s = this.#streams.get(id);
          if (s) s.deliver(decodeBytes(this.#heap, handle, length));
          break;
        }
        case LAST_CHUNK: {
          const s = this.#streams.get(id);
          if (s) {
            this.#streams.delete(id);
            s.deliver(decodeBytes(this.#heap, handle, length));
            s.finish();
          }
          break;
        }
        case ITEMS: {
          // Read even when its stream is gone (the consumer left, the deadline failed it):
          // names it defines are cited by later entries (./compact.ts).
          let items: unknown;
          try {
            items = this.#decode(handle, length, at);
          } catch (err) {
            // An unreadable item ends its stream with the error (and tells the store to stop),
            // rather than escaping the drain and leaving the consumer waiting.
            const s = this.#streams.get(id);
            if (s) {
              s.fail(err);
              this.cancel(id);
            } else console.error("ipc: undecodable stream item for no stream", err);
            break;
          }
          this.#streams.get(id)?.deliver(items);
          break;
        }
        case END:
          this.#streams.get(id)?.finish();
          this.#streams.delete(id);
          break;
        case EVENT: {
          const [topic, event] = this.#decode(handle, length, at) as [string, unknown];
          for (const l of this.#listeners.get(topic) ?? []) {
            try {
              (l as (e: unknown) => void)(event);
            } catch { /* a subscriber's bug must not break the others */ }
          }
          break;
        }
      }
    } finally {
      if (handle > 0) this.#toFree.push(handle); // freed in one batch after the drain
    }
  };

  readonly #toFree: number[] = [];

  /** Frees a leased result block once; a block the binding's teardown freed is left alone. */
  #leaseRelease(handle: number): () => void {
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.#heap.free(handle, this.#own);
    };
  }

  // ------------------------------------------------------------ sending

  #newId(): number {
    const id = this.#nextId;
    this.#nextId = this.#nextId >= 0x7fffffff ? 1 : this.#nextId + 1;
    return id;
  }

  /** Queues an entry in order; a full ring keeps it in the outbox (backpressure, no spin). */
  send(kind: number, id: number, handle: number, length: number): void {
    this.#outbox.send(kind, id, handle, length);
  }

  newStreamId(): number {
    return this.#newId();
  }

  openStream(s: ClientStream, method: string, req: unknown): void {
    if (this.#dead) throw this.#dead;
    this.#outbox.sendValue(STREAM_OPEN, s.id, [method, req], this.#sent);
    if (this.#dead) { // closed by a getter in `req`, as in call()
      this.#freeUnsent();
      throw this.#dead;
    }
    this.#streams.set(s.id, s);
    this.#pump.wake();
    this.armDeadlines();
  }

  get window(): number {
    return this.#window;
  }

  credit(id: number, chunks: number): void {
    if (!this.#dead && this.#streams.has(id)) this.send(CREDIT, id, 0, chunks);
  }

  cancel(id: number): void {
    if (this.#streams.delete(id) && !this.#dead) this.send(CANCEL, id, 0, 0);
  }

  #subscriptionsDirty = false;

  #syncSubscriptions(): void {
    this.#subscriptionsDirty = false;
    if (this.#dead) return;
    const changes: [number, string][] = [];
    for (const topic of this.#listeners.keys()) {
      if (!this.#subscribed.has(topic)) changes.push([SUBSCRIBE, topic]);
    }
    for (const topic of this.#subscribed) {
      if (!this.#listeners.has(topic)) changes.push([UNSUBSCRIBE, topic]);
    }
    for (const [kind, topic] of changes) {
      try {
        this.#outbox.sendValue(kind, 0, topic);
        if (kind === SUBSCRIBE) this.#subscribed.add(topic);
        else this.#subscribed.delete(topic);
      } catch {
        this.#subscriptionsDirty = true; // heap full: retried on the next poll
      }
    }
  }

  #teardown(reason: StoreError): void {
    this.#dead = reason;
    this.#stopSweeper();
    for (const p of this.#pending.values()) p.reject(reason);
    this.#pending.clear();
    for (const s of this.#streams.values()) s.fail(reason);
    this.#streams.clear();
    this.#freeUnsent();
    this.#pump.remove(this);
  }

  /** Our blocks that never reached the server: free them (the server may be taking one at
   * this instant; the owner check lets exactly one of us have it). */
  #freeUnsent(): void {
    this.#outbox.discard((e) => e.handle > 0 && this.#heap.free(e.handle, this.#own));
    for (const e of this.#view.requests.unconsumed()) {
      if (e.handle > 0) this.#heap.free(e.handle, this.#own);
    }
  }
}

/** One `stream()` consumption: bounded by the credit window, cancelled by `return()`. Its
 * items are byte chunks or (ITEMS) decoded values. */
class ClientStream implements AsyncIterator<unknown> {
  readonly id: number;
  readonly #client: RingStoreClient;
  readonly #method: string;
  readonly #req: unknown;
  #opened = false;
  #done = false;
  #error: unknown = null;
  readonly #queue: unknown[] = [];
  #consumed = 0;
  #waiter: Pending | null = null;

  constructor(client: RingStoreClient, method: string, req: unknown) {
    this.#client = client;
    this.#method = method;
    this.#req = req;
    this.id = client.newStreamId();
  }

  next(): Promise<IteratorResult<unknown>> {
    if (!this.#opened) {
      this.#opened = true;
      try {
        this.#client.openStream(this, this.#method, this.#req);
      } catch (err) {
        this.#done = true;
        return Promise.reject(err);
      }
    }
    if (this.#queue.length > 0) return Promise.resolve(this.#take(this.#queue.shift()));
    if (this.#error) return Promise.reject(this.#error);
    if (this.#done) return Promise.resolve({ done: true, value: undefined });
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve: resolve as (v: unknown) => void, reject, born: this.#client.tick };
      this.#client.armDeadlines();
    });
  }

  /** Whether a next() has waited since tick `tick` or earlier. */
  waitingSince(tick: number): boolean {
    return this.#waiter !== null && this.#waiter.born <= tick;
  }

  return(): Promise<IteratorResult<unknown>> {
    if (!this.#done) {
      this.#done = true;
      this.#queue.length = 0;
      if (this.#opened) this.#client.cancel(this.id);
    }
    // A next() still waiting (cancelled from elsewhere) ends too, rather than hang forever.
    const w = this.#waiter;
    this.#waiter = null;
    w?.resolve({ done: true, value: undefined });
    return Promise.resolve({ done: true, value: undefined });
  }

  /** Gives credit back as the consumer takes chunks: half a window at a time. */
  #take(chunk: unknown): IteratorResult<unknown> {
    this.#consumed++;
    if (this.#consumed * 2 >= this.#client.window) {
      this.#client.credit(this.id, this.#consumed);
      this.#consumed = 0;
    }
    return { done: false, value: chunk };
  }

  deliver(chunk: unknown): void {
    if (this.#done) return;
    const w = this.#waiter;
    if (w) {
      this.#waiter = null;
      w.resolve(this.#take(chunk));
    } else this.#queue.push(chunk);
  }

  finish(): void {
    if (this.#done) return;
    this.#done = true;
    const w = this.#waiter;
    this.#waiter = null;
    w?.resolve({ done: true, value: undefined });
  }

  fail(err: unknown): void {
    if (this.#done && !this.#waiter) return;
    this.#done = true;
    this.#error = err;
    const w = this.#waiter;
    this.#waiter = null;
    w?.reject(err);
  }
}
