// The two faces of the store contract: `StoreClient`, what an engine holds, and `StoreService`,
// what store/ implements. `createDirectStoreClient` joins them in one thread (CLI, unit tests,
// embedding); the ring transport in this folder joins them across workers.
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

export interface StoreClient {
  call<M extends CallName>(method: M, req: CallReq<M>): Promise<CallRes<M>>;
  /** A stream of bounded items (byte chunks, or batches of records); breaking out of the loop
   * cancels it. */
  stream<M extends StreamName>(method: M, req: StreamReq<M>): AsyncIterable<StreamItem<M>>;
  /** Push notifications from the store; returns the unsubscribe function. */
  subscribe<T extends keyof StoreTopics>(
    topic: T,
    listener: (event: StoreTopics[T]) => void,
  ): () => void;
}

/**
 * A call's result that may hold zero-copy views into the transport's shared memory: its
 * Uint8Array fields are valid only until `release()`, which must be called exactly when they
 * are no longer needed (copied out, or abandoned), on every path, errors included. Calling it
 * again is harmless. Over a transport without shared memory (the direct client, a test
 * double) the bytes are ordinary ones and `release` does nothing.
 */
export interface Leased<T> {
  value: T;
  release(): void;
}

/**
 * The request mark `callLeased` sets: a symbol key, so JSON (the codec) never sends it and any
 * proxy that hands the request object on unchanged keeps it. A transport that can lease sets
 * `release` on the mark before the result settles.
 */
export const LEASE_MARK: unique symbol = Symbol("ipc.lease");
export interface LeaseMark {
  release: (() => void) | null;
}

/**
 * `store.call` whose result's bytes are lent rather than copied where the transport allows
 * (the ring client: views into the heap block, one copy fewer per message read).
 */
export async function callLeased<M extends CallName>(
  store: StoreClient,
  method: M,
  req: CallReq<M>,
): Promise<Leased<CallRes<M>>> {
  const mark: LeaseMark = { release: null };
  const value = await store.call(method, { ...req, [LEASE_MARK]: mark });
  return { value, release: mark.release ?? noRelease };
}

/** The lease mark a request carries, if any (for transports). */
export function leaseMarkOf(req: unknown): LeaseMark | null {
  if (typeof req !== "object" || req === null) return null;
  const mark = (req as { [LEASE_MARK]?: unknown })[LEASE_MARK];
  return typeof mark === "object" && mark !== null ? mark as LeaseMark : null;
}

function noRelease(): void {}

/** Who is calling: the transport names each peer (worker binding) uniquely. */
export interface CallContext {
  peer: string;
}

/**
 * Across the ring transport (ipc/server.ts), Uint8Array arguments a handler receives are
 * zero-copy views into the shared heap, valid until the handler's result settles: copy any
 * bytes kept after that (e.g. buffered past the returned promise).
 */
export type CallHandlers = {
  [M in CallName]: (req: CallReq<M>, ctx: CallContext) => Promise<CallRes<M>> | CallRes<M>;
};
export type StreamHandlers = {
  [M in StreamName]: (req: StreamReq<M>, ctx: CallContext) => AsyncIterable<StreamItem<M>>;
};

export type Publisher = <T extends keyof StoreTopics>(topic: T, event: StoreTopics[T]) => void;

/** What store/ implements and a transport serves. */
export interface StoreService {
  calls: CallHandlers;
  streams: StreamHandlers;
  /** A peer went away (worker died, binding closed): release its locks, abort its uploads. */
  peerGone(peer: string): void;
  /** The transport hands the service a way to push events to every subscriber. */
  setPublisher(publish: Publisher): void;
}

/** An in-thread client over a service: same semantics as the ring, no copies across threads. */
export function createDirectStoreClient(
  service: StoreService,
  peer = "direct",
): StoreClient & { close(): void } {
  const listeners = new Map<string, Set<(ev: unknown) => void>>();
  service.setPublisher((topic, event) => {
    for (const l of listeners.get(topic) ?? []) {
      try {
        l(event);
      } catch { /* a subscriber's bug must not break the publisher */ }
    }
  });
  const ctx: CallContext = { peer };
  let closed = false;
  return {
    async call(method, req) {
      if (closed) throw new StoreError("unavailable", "store client closed");
      const handler = service.calls[method] as (r: typeof req, c: CallContext) => unknown;
      return await handler(req, ctx) as never;
    },
    stream(method, req) {
      if (closed) throw new StoreError("unavailable", "store client closed");
      const handler = service.streams[method] as (
        r: typeof req,
        c: CallContext,
      ) => AsyncIterable<never>;
      return handler(req, ctx);
    },
    subscribe(topic, listener) {
      let set = listeners.get(topic);
      if (!set) listeners.set(topic, set = new Set());
      set.add(listener as (ev: unknown) => void);
      return () => set.delete(listener as (ev: unknown) => void);
    },
    close() {
      if (closed) return;
      closed = true;
      service.peerGone(peer);
    },
  };
}
