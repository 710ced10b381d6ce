// The store side of bindings: serves a StoreService to every bound engine worker. One hub per
// service fans published events out to each binding that subscribed to the topic. Handlers
// run on this thread's event loop (they may await an fsync); the pump only moves entries.
import type { CallContext, StoreService } from "./store-client.ts";
import { StoreError, type StoreTopics } from "./store-api.ts";
import {
  type BindingDescriptor,
  bindingState,
  type BindingView,
  CALL,
  CANCEL,
  CHUNK,
  closeBinding,
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
  STREAM_OPEN,
  SUBSCRIBE,
  UNSUBSCRIBE,
  viewBinding,
} from "./binding.ts";
import { CLIENT_SIDE, ownerOf, SERVER_SIDE, SharedHeap } from "./heap.ts";
import { decodeInline, decodeLeased, decodeValue, encodeBytes } from "./codec.ts";
import { errorToWire } from "./errors.ts";
import { ReceivedNames, SentNames } from "./compact.ts";
import { ringDoorbell } from "./doorbell.ts";
import { type Endpoint, type Pump, pumpFor } from "./pump.ts";
import { RingOutbox } from "./outbox.ts";
import { INLINE } from "./ring.ts";

export interface ServedBindingHandle {
  /** Closes this binding: the client's pending calls reject, peerGone(peer) runs. */
  close(): void;
  readonly peer: string;
}

/** Store-worker side: serve `service` on one binding. Call once per binding (engine worker). */
export function serveStore(desc: BindingDescriptor, service: StoreService): ServedBindingHandle {
  if (!isBindingDescriptor(desc) || desc.side !== "server") {
    throw new TypeError("serveStore needs the server descriptor of a binding");
  }
  const hub = hubFor(service);
  const binding = new ServedBinding(desc, service, hub);
  return { close: () => binding.close(), peer: desc.peer };
}

/** Events dropped because a subscriber stopped reading (its ring and backlog were full). */
export function droppedEvents(service: StoreService): number {
  return hubs.get(service)?.dropped ?? 0;
}

const hubs = new WeakMap<StoreService, Hub>();

function hubFor(service: StoreService): Hub {
  let hub = hubs.get(service);
  if (!hub) hubs.set(service, hub = new Hub(service));
  return hub;
}

class Hub {
  readonly bindings = new Set<ServedBinding>();
  dropped = 0;

  constructor(service: StoreService) {
    service.setPublisher((topic, event) => this.publish(topic, event));
  }

  publish<T extends keyof StoreTopics>(topic: T, event: StoreTopics[T]): void {
    for (const b of this.bindings) if (b.topics.has(topic)) b.sendEvent(topic, event);
  }
}

interface ServedStream {
  credit: number;
  cancelled: boolean;
  wake: (() => void) | null;
}

/** Longest pause between attempts to place a finished call's result in a full heap. */
const RESULT_PAUSE_MAX_MS = 50;
/** How long a stream chunk waits for heap space before the stream fails with "busy". */
const CHUNK_ALLOC_TRIES = 200;
const CHUNK_ALLOC_PAUSE_MS = 5;

const nothing = () => {};

class ServedBinding implements Endpoint {
  readonly topics = new Set<string>();
  readonly #service: StoreService;
  readonly #hub: Hub;
  readonly #heap: SharedHeap;
  readonly #view: BindingView;
  readonly #peerBell: Int32Array;
  readonly #pump: Pump;
  readonly #own: number;
  readonly #theirs: number;
  readonly #ctx: CallContext;
  readonly #chunkBytes: number;
  readonly #window: number;
  readonly #slots: number;
  readonly #backlog: RingOutbox;
  readonly #streams = new Map<number, ServedStream>();
  /** Names (methods, keys) defined so far on each direction of this binding. */
  readonly #sent = new SentNames();
  readonly #received = new ReceivedNames();
  #closed = false;
  /** Inside a drain, blocks to free are batched under one heap lock. */
  #draining = false;
  readonly #toFree: number[] = [];

  #release(handle: number): void {
    if (this.#draining) this.#toFree.push(handle);
    else this.#heap.free(handle, this.#own);
  }

  constructor(desc: BindingDescriptor, service: StoreService, hub: Hub) {
    this.#service = service;
    this.#hub = hub;
    this.#heap = new SharedHeap(desc.heap, desc.selfTag);
    this.#view = viewBinding(desc.binding, desc.ringSlots);
    this.#peerBell = new Int32Array(desc.peerBell);
    this.#own = ownerOf(desc.bindingId, SERVER_SIDE);
    this.#backlog = new RingOutbox(this.#view.responses, this.#peerBell, this.#heap, this.#own);
    this.#theirs = ownerOf(desc.bindingId, CLIENT_SIDE);
    this.#ctx = { peer: desc.peer };
    this.#chunkBytes = desc.chunkBytes;
    this.#window = desc.streamWindow;
    this.#slots = desc.ringSlots;
    this.#pump = pumpFor(`${desc.managerId}:${desc.selfTag}`, desc.selfBell);
    hub.bindings.add(this);
    this.#pump.add(this);
  }

  close(): void {
    if (this.#closed) return;
    closeBinding(this.#view, CLOSED_BY_SERVER);
    ringDoorbell(this.#peerBell);
    this.#teardown();
  }

  keepAlive(): boolean {
    return !this.#closed;
  }

  poll(): number {
    if (this.#closed) return 0;
    if (bindingState(this.#view) !== OPEN) {
      this.#teardown();
      return 1;
    }
    if (this.#backlog.length > 0) this.#backlog.flush();
    let n = 0;
    // Replies the client has not taken bound how much more we accept: past a ring's worth, its
    // requests wait in its own ring (backpressure reaches the engine, memory stays bounded).
    if (this.#backlog.length < this.#slots) {
      this.#draining = true;
      try {
        n = this.#view.requests.drain(this.#visit);
      } finally {
        this.#draining = false;
        this.#heap.freeMany(this.#toFree, this.#own);
        this.#toFree.length = 0;
      }
    }
    if (this.#view.requests.takeSpaceWanted()) ringDoorbell(this.#peerBell);
    return n;
  }

  #visit = (kind: number, id: number, handle: number, length: number, at: number): void => {
    if (handle > 0 && !this.#heap.transfer(handle, this.#theirs, this.#own)) return;
    let payload: unknown;
    let leased = false;
    try {
      if (handle === 0) payload = null;
      else if (handle === INLINE) {
        payload = decodeInline(this.#view.requests, at, length, this.#received);
      } else if (kind === CALL) {
        ({ value: payload, leased } = decodeLeased(this.#heap, handle, length, this.#received));
      } else payload = decodeValue(this.#heap, handle, length, this.#received);
    } catch (err) {
      if (kind === CALL || kind === STREAM_OPEN) this.#sendError(id, err);
      leased = false;
      return;
    } finally {
      if (handle > 0 && !leased) this.#release(handle);
    }
    switch (kind) {
      case CALL:
        this.#call(id, payload, leased ? handle : 0);
        break;
      case STREAM_OPEN:
        void this.#stream(id, payload);
        break;
      case CREDIT: {
        const s = this.#streams.get(id);
        if (s) {
          s.credit += length;
          this.#wakeStream(s);
        }
        break;
      }
      case CANCEL: {
        const s = this.#streams.get(id);
        if (s) {
          s.cancelled = true;
          this.#wakeStream(s);
        }
        break;
      }
      case SUBSCRIBE:
        if (typeof payload === "string") this.topics.add(payload);
        break;
      case UNSUBSCRIBE:
        if (typeof payload === "string") this.topics.delete(payload);
        break;
    }
  };

  /**
   * Runs a call handler. Its Uint8Array arguments are views into the request's heap block
   * (`leasedBlock`, zero-copy), which stays allocated until the handler settles.
   */
  #call(id: number, payload: unknown, leasedBlock: number): void {
    const release = leasedBlock === 0 ? nothing : () => this.#release(leasedBlock);
    const [method, req] = Array.isArray(payload) ? payload : [];
    const handler = typeof method === "string"
      ? (this.#service.calls as Record<string, unknown>)[method]
      : undefined;
    if (typeof handler !== "function") {
      release();
      this.#sendError(id, new StoreError("invalid", `unknown store method ${String(method)}`));
      return;
    }
    let result: unknown;
    try {
      result = handler(req, this.#ctx);
    } catch (err) {
      release();
      this.#sendError(id, err);
      return;
    }
    if (result && typeof (result as Promise<unknown>).then === "function") {
      (result as Promise<unknown>).then(
        // The result may hold views into the leased block: release only once it is encoded.
        (value) => this.#sendResult(id, value, release),
        (err) => {
          release();
          this.#sendError(id, err);
        },
      );
    } else this.#sendResult(id, result, release);
  }

  async #stream(id: number, payload: unknown): Promise<void> {
    const [method, req] = Array.isArray(payload) ? payload : [];
    const handler = typeof method === "string"
      ? (this.#service.streams as Record<string, unknown>)[method]
      : undefined;
    if (typeof handler !== "function") {
      this.#sendError(id, new StoreError("invalid", `unknown store stream ${String(method)}`));
      return;
    }
    const s: ServedStream = { credit: this.#window, cancelled: false, wake: null };
    this.#streams.set(id, s);
    // The newest chunk is held back until the producer says whether another follows, so the
    // last one goes out as LAST_CHUNK: a small message is one ring entry, not CHUNK + END.
    let held = 0;
    let heldBytes = 0;
    const sendHeld = () => {
      if (held === 0) return;
      this.#send(CHUNK, id, held, heldBytes);
      held = 0;
    };
    try {
      const iterable = handler(req, this.#ctx) as AsyncIterable<unknown>;
      pieces: for await (const piece of iterable) {
        if (!(piece instanceof Uint8Array)) {
          // A batch of records: one entry, sent at once (never held: it may define names,
          // which must reach the client before anything sent after them cites them).
          while (s.credit <= 0 && !s.cancelled) {
            sendHeld();
            await new Promise<void>((r) => s.wake = r);
          }
          if (s.cancelled) break pieces;
          sendHeld();
          if (!await this.#sendItems(id, piece, s)) break pieces;
          s.credit--;
          continue;
        }
        for (let off = 0; off < piece.byteLength;) {
          while (s.credit <= 0 && !s.cancelled) {
            sendHeld(); // the consumer returns credit only for chunks it has received
            await new Promise<void>((r) => s.wake = r);
          }
          if (s.cancelled) break pieces; // leaving the loop calls the producer's return()
          const n = Math.min(this.#chunkBytes, piece.byteLength - off);
          const bytes = piece.subarray(off, off + n);
          // Heap space is almost always there: only a full heap takes the waiting path.
          let handle = encodeBytes(this.#heap, this.#own, bytes);
          if (handle === 0) handle = await this.#chunkBlock(bytes, s);
          if (s.cancelled) {
            if (handle !== 0) this.#heap.free(handle, this.#own);
            break pieces;
          }
          s.credit--;
          sendHeld();
          held = handle;
          heldBytes = n;
          off += n;
        }
      }
      if (s.cancelled) return;
      if (held !== 0) this.#send(LAST_CHUNK, id, held, heldBytes);
      else this.#send(END, id, 0, 0);
      held = 0;
    } catch (err) {
      if (!s.cancelled) {
        sendHeld(); // the chunks before the failure, then the error (as before)
        this.#sendError(id, err);
      }
    } finally {
      if (held !== 0) this.#heap.free(held, this.#own);
      this.#streams.delete(id);
    }
  }

  /** Sends one stream item that is a value; waits (briefly, bounded) for heap space, then
   * fails "busy". False if the stream was cancelled or the binding closed meanwhile. */
  async #sendItems(id: number, items: unknown, s: ServedStream): Promise<boolean> {
    for (let i = 0;; i++) {
      if (s.cancelled || this.#closed) return false;
      try {
        this.#backlog.sendValue(ITEMS, id, items, this.#sent);
        return true;
      } catch (err) {
        const busy = err instanceof StoreError && err.code === "busy";
        if (!busy || i >= CHUNK_ALLOC_TRIES) throw err;
      }
      await new Promise((r) => setTimeout(r, CHUNK_ALLOC_PAUSE_MS));
    }
  }

  /** A heap block holding `bytes`; waits (briefly, bounded) for space, then fails "busy". */
  async #chunkBlock(bytes: Uint8Array, s: ServedStream): Promise<number> {
    for (let i = 0; i < CHUNK_ALLOC_TRIES && !s.cancelled; i++) {
      const handle = encodeBytes(this.#heap, this.#own, bytes);
      if (handle !== 0) return handle;
      await new Promise((r) => setTimeout(r, CHUNK_ALLOC_PAUSE_MS));
    }
    if (s.cancelled) return 0;
    throw new StoreError("busy", "IPC heap full while streaming: try again later");
  }

  #wakeStream(s: ServedStream): void {
    const w = s.wake;
    s.wake = null;
    w?.();
  }

  sendEvent(topic: string, event: unknown): void {
    if (this.#closed) return;
    // A subscriber that stopped reading loses events rather than growing our memory.
    if (this.#backlog.length >= this.#slots * 4) {
      this.#hub.dropped++;
      return;
    }
    try {
      this.#backlog.sendValue(EVENT, 0, [topic, event], this.#sent);
    } catch {
      this.#hub.dropped++;
    }
  }

  /**
   * The handler has run: its effects (a delivery committed and fsynced, messages expunged)
   * are done. A full heap must not turn that into an error reply, or the client would retry
   * work that already happened (a duplicate delivery). So the result waits for heap space,
   * with a pause that grows, for as long as the binding lives; other calls finishing free it.
   * `done` runs once the result is encoded (or will never be).
   */
  #sendResult(id: number, value: unknown, done: () => void, pause = 0): void {
    if (this.#closed) return done();
    try {
      this.#backlog.sendValue(RESULT, id, value, this.#sent);
    } catch (err) {
      if (err instanceof StoreError && err.code === "busy") {
        const next = Math.min(Math.max(1, pause * 2), RESULT_PAUSE_MAX_MS);
        setTimeout(() => this.#sendResult(id, value, done, next), next);
        return;
      }
      this.#sendError(id, err); // not encodable at all: say so
    }
    done();
  }

  #sendError(id: number, err: unknown): void {
    if (this.#closed) return;
    const enc = errorToWire(this.#heap, this.#own, err);
    this.#send(ERROR, id, enc.handle, enc.length);
  }

  #send(kind: number, id: number, handle: number, length: number): void {
    if (this.#closed) {
      if (handle !== 0) this.#heap.free(handle, this.#own);
      return;
    }
    this.#backlog.send(kind, id, handle, length);
  }

  #teardown(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const s of this.#streams.values()) {
      s.cancelled = true;
      this.#wakeStream(s);
    }
    this.#backlog.discard((e) => e.handle > 0 && this.#heap.free(e.handle, this.#own));
    for (const e of this.#view.responses.unconsumed()) {
      if (e.handle > 0) this.#heap.free(e.handle, this.#own);
    }
    this.#hub.bindings.delete(this);
    this.#pump.remove(this);
    try {
      this.#service.peerGone(this.#ctx.peer);
    } catch (err) {
      console.error("ipc: peerGone failed", err);
    }
  }
}
