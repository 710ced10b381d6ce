// Bodies: the bytes of a message stored once in the page file (single-instance storage),
// shared by every message and queue entry that references them, freed with the last
// reference. Readers stream a body chunk by chunk straight from its pages.
import type { Core } from "./core.ts";
import type { Extent } from "./extents.ts";

export interface BodyRow {
  id: number;
  size: number;
  sha256: string;
  refcount: number;
  extents: Extent[];
}

interface RawBody {
  id: number;
  size: number;
  sha256: string;
  refcount: number;
  extents: string;
}

function decode(r: RawBody): BodyRow {
  return { ...r, extents: JSON.parse(r.extents) as Extent[] };
}

export function getBody(core: Core, id: number): BodyRow | null {
  const r = core.db.query("SELECT id, size, sha256, refcount, extents FROM bodies WHERE id = ?")
    .get(id) as RawBody | null;
  return r ? decode(r) : null;
}

/** An existing body with the same content (dedupe across deliveries). */
export function findBody(core: Core, sha256: string, size: number): BodyRow | null {
  const r = core.db.query(
    "SELECT id, size, sha256, refcount, extents FROM bodies WHERE sha256 = ? AND size = ? AND refcount > 0 LIMIT 1",
  ).get(sha256, size) as RawBody | null;
  return r ? decode(r) : null;
}

/** Inside a transaction: a new body over pages that were reserved and written. */
export function insertBody(
  core: Core,
  size: number,
  sha256: string,
  extents: Extent[],
  refcount: number,
): number {
  core.space.commitUsed(extents);
  const r = core.db.query(
    "INSERT INTO bodies(size, sha256, refcount, extents, created_at) VALUES (?, ?, ?, ?, ?)",
  ).run(size, sha256, refcount, JSON.stringify(extents), Date.now());
  return Number(r.lastInsertRowid);
}

export function addRef(core: Core, id: number, n: number): void {
  core.db.query("UPDATE bodies SET refcount = refcount + ? WHERE id = ?").run(n, id);
}

/** Inside a transaction: drop references; the last one frees the pages. */
export function dropRef(core: Core, id: number, n = 1): void {
  const b = getBody(core, id);
  if (!b) throw new Error(`body ${id} is missing`);
  if (b.refcount - n > 0) {
    core.db.query("UPDATE bodies SET refcount = refcount - ? WHERE id = ?").run(n, id);
    return;
  }
  core.db.query("DELETE FROM bodies WHERE id = ?").run(id);
  core.db.query("DELETE FROM body_fts WHERE rowid = ?").run(id);
  core.space.release(id, b.extents);
}

/** What a reader needs of a body: its id (for the pin), size and pages. */
export type BodyLayout = Pick<BodyRow, "id" | "size" | "extents">;

/**
 * Stream `prefix` then the body, in chunks of at most `core.chunkBytes`. The body is pinned
 * while the stream is open, so its pages are not reused under the reader even if the message
 * is expunged meanwhile; breaking out of the loop unpins it.
 */
export function streamBody(
  core: Core,
  bodyId: number,
  prefix: Uint8Array | null,
  start = 0,
  length = Infinity,
): AsyncGenerator<Uint8Array> {
  return streamLayout(core, () => {
    const body = getBody(core, bodyId);
    if (!body) throw new Error(`body ${bodyId} is missing`);
    return { body, prefix };
  }, start, length);
}

/**
 * The same, for a caller that looks the body up itself (one query for message and body).
 * `lookup` runs on the first `next()`, in the same synchronous step as the pin, so the body
 * cannot be freed between the two.
 */
export async function* streamLayout(
  core: Core,
  lookup: () => { body: BodyLayout; prefix: Uint8Array | null },
  start = 0,
  length = Infinity,
): AsyncGenerator<Uint8Array> {
  const { body, prefix } = lookup();
  core.space.pin(body.id);
  try {
    yield* chunks(core, body, prefix, start, length);
  } finally {
    core.space.unpin(body.id);
  }
}

/**
 * The chunks of `prefix + body` in `[start, start + length)`: each one buffer of up to
 * `core.chunkBytes`, the prefix copied in and the body read from its pages straight into it, so
 * a small message is one chunk and one pread (one ring entry for the ipc/ transport).
 */
function* chunks(
  core: Core,
  body: BodyLayout,
  prefix: Uint8Array | null,
  start: number,
  length: number,
): Generator<Uint8Array> {
  const prefixBytes = prefix ? prefix.length : 0;
  const total = prefixBytes + body.size;
  let at = Math.min(start, total);
  const end = Math.min(total, at + length);
  while (at < end) {
    const n = Math.min(core.chunkBytes, end - at);
    const chunk = new Uint8Array(n);
    let filled = 0;
    if (at < prefixBytes) {
      filled = Math.min(n, prefixBytes - at);
      chunk.set(prefix!.subarray(at, at + filled));
    }
    if (filled < n) {
      core.file.readBody(body.extents, at + filled - prefixBytes, chunk, filled, n - filled);
    }
    at += n;
    yield chunk;
  }
}

/** The whole body in memory: only for small bounded reads (header parsing, FTS). */
export async function readHead(core: Core, bodyId: number, max: number): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let n = 0;
  for await (const c of streamBody(core, bodyId, null, 0, max)) {
    parts.push(c);
    n += c.length;
  }
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
