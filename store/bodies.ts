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

/**
 * Stream `prefix` then the body, in chunks of at most `core.chunkBytes`. The body is pinned
 * while the stream is open, so its pages are not reused under the reader even if the message
 * is expunged meanwhile; breaking out of the loop unpins it.
 */
export async function* streamBody(
  core: Core,
  bodyId: number,
  prefix: Uint8Array | null,
  start = 0,
  length = Infinity,
): AsyncGenerator<Uint8Array> {
  const body = getBody(core, bodyId);
  if (!body) throw new Error(`body ${bodyId} is missing`);
  core.space.pin(bodyId);
  try {
    let skip = start;
    let left = length;
    if (prefix && prefix.length > 0) {
      if (skip < prefix.length) {
        const piece = prefix.subarray(skip, skip + Math.min(left, prefix.length - skip));
        left -= piece.length;
        yield piece.slice();
        skip = 0;
      } else skip -= prefix.length;
    }
    for (const [pos, n] of core.file.ranges(body.extents, body.size, core.chunkBytes)) {
      if (left <= 0) return;
      if (skip >= n) {
        skip -= n;
        continue;
      }
      const want = Math.min(n - skip, left);
      const chunk = core.file.readAbs(pos + skip, want);
      skip = 0;
      left -= want;
      yield chunk;
    }
  } finally {
    core.space.unpin(bodyId);
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
