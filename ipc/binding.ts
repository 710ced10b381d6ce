// A binding: one pair of rings between two workers (requests client → server, responses and
// notifications server → client) plus a state word, in one SharedArrayBuffer. The descriptor
// is what the queue manager posts to each side: plain data and SharedArrayBuffers, so it
// survives structured clone.
import { Ring, ringBytes } from "./ring.ts";
import type { Side } from "./heap.ts";

// State word values. Anything but OPEN is final for the binding.
export const OPEN = 0;
export const CLOSED_BY_CLIENT = 1;
export const CLOSED_BY_SERVER = 2;
export const DEAD = 3; // the manager tore it down: one side's worker is gone

const STATE = 0;
const HEADER_BYTES = 256;

export interface BindingDescriptor {
  kind: "posthorn.ipc.binding";
  side: "server" | "client";
  bindingId: number;
  /** The CallContext.peer the server passes to handlers: unique per binding, never reused. */
  peer: string;
  /** Worker ids as the supervisor named them. */
  selfWorker: string;
  peerWorker: string;
  /** This worker incarnation's tag (heap lock holder id) and doorbell key. */
  selfTag: number;
  managerId: string;
  heap: SharedArrayBuffer;
  binding: SharedArrayBuffer;
  selfBell: SharedArrayBuffer;
  peerBell: SharedArrayBuffer;
  ringSlots: number;
  chunkBytes: number;
  streamWindow: number;
  /** Client side: how long a call may wait for its answer (ms). */
  callTimeoutMs: number;
}

export function createBindingBuffer(ringSlots: number): SharedArrayBuffer {
  return new SharedArrayBuffer(HEADER_BYTES + 2 * ringBytes(ringSlots));
}

export interface BindingView {
  state: Int32Array;
  requests: Ring;
  responses: Ring;
}

export function viewBinding(buffer: SharedArrayBuffer, ringSlots: number): BindingView {
  return {
    state: new Int32Array(buffer, 0, HEADER_BYTES / 4),
    requests: new Ring(buffer, HEADER_BYTES, ringSlots),
    responses: new Ring(buffer, HEADER_BYTES + ringBytes(ringSlots), ringSlots),
  };
}

export function bindingState(view: BindingView): number {
  return Atomics.load(view.state, STATE);
}

/** Moves OPEN → `to`; false if the binding was already closed or dead. */
export function closeBinding(view: BindingView, to: number): boolean {
  return Atomics.compareExchange(view.state, STATE, OPEN, to) === OPEN;
}

/** Forces DEAD whatever the state (manager only). */
export function killBinding(view: BindingView): void {
  Atomics.store(view.state, STATE, DEAD);
}

export function sideOf(desc: BindingDescriptor): Side {
  return desc.side === "server" ? 0 : 1;
}

export function isBindingDescriptor(x: unknown): x is BindingDescriptor {
  return typeof x === "object" && x !== null &&
    (x as { kind?: unknown }).kind === "posthorn.ipc.binding";
}

// Ring entry kinds. Client → server:
export const CALL = 1; // payload: [method, req]
export const STREAM_OPEN = 2; // payload: [method, req]; the window is the first credit
export const CREDIT = 3; // length: chunks the consumer may receive more
export const CANCEL = 4; // the consumer broke out of its loop
export const SUBSCRIBE = 5; // payload: topic
export const UNSUBSCRIBE = 6; // payload: topic
// A CALL its caller gave up on (ipc.callTimeoutMs) before it left the outbox: the server reads
// it (it may define names later entries cite) but never runs it.
export const RETRACTED = 7;
// Server → client:
export const RESULT = 16; // payload: the result
export const ERROR = 17; // payload: { code, message }, or no block and length = code index
export const CHUNK = 18; // block: raw bytes, length = byte count
export const END = 19; // the stream is complete
export const EVENT = 20; // payload: [topic, event]
export const LAST_CHUNK = 21; // a CHUNK that is also the END: a small body in one entry
export const ITEMS = 22; // a stream item that is a value (a batch of records), not raw bytes
