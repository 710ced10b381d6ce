// One doorbell per worker thread: every ring that thread consumes rings the same bell, so one
// thread serving many bindings parks on a single word. A producer notifies only when the
// consumer has raised its "waiting" flag (a notify per push would be a syscall per push).

const SEQ = 0; // bumped on every ring that wakes the owner
const WAITING = 16; // the owner is about to park (or parked) on SEQ

export const DOORBELL_BYTES = 128;

export function createDoorbell(): SharedArrayBuffer {
  return new SharedArrayBuffer(DOORBELL_BYTES);
}

/** Producer side: wake the owner if, and only if, it said it is waiting. */
export function ringDoorbell(bell: Int32Array): void {
  if (Atomics.load(bell, WAITING) !== 0 && Atomics.compareExchange(bell, WAITING, 1, 0) === 1) {
    Atomics.add(bell, SEQ, 1);
    Atomics.notify(bell, SEQ);
  }
}

/** Wake the owner whatever it said (binding torn down: rare, must never be missed). */
export function forceDoorbell(bell: Int32Array): void {
  Atomics.store(bell, WAITING, 0);
  Atomics.add(bell, SEQ, 1);
  Atomics.notify(bell, SEQ);
}

/** Owner side: announce the park; returns the sequence to wait on. Re-check work after this. */
export function prepareToPark(bell: Int32Array): number {
  Atomics.store(bell, WAITING, 1);
  return Atomics.load(bell, SEQ);
}

export function cancelPark(bell: Int32Array): void {
  Atomics.store(bell, WAITING, 0);
}

/** Owner side: wait without blocking the event loop until the sequence moves. */
export async function park(bell: Int32Array, seq: number): Promise<void> {
  const w = Atomics.waitAsync(bell, SEQ, seq);
  if (w.async) await w.value;
  Atomics.store(bell, WAITING, 0);
}
