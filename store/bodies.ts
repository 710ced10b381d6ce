// Bodies: the bytes of a message stored once (single-instance storage), shared by every
// message and queue entry that references them, freed with the last reference. A small body
// lives inline in its row (`inline`, no pages: committed by the WAL alone); any other in the
// page file, which readers stream chunk by chunk straight from its pages.
import type { Core } from "./core.ts";
import type { Extent } from "./extents.ts";
import { dropFromIndex } from "./fts.ts";

export interface BodyRow {
  id: number;
  size: number;
  sha256: string;
  refcount: number;
  extents: Extent[];
  /** The body's bytes when stored inline (then `extents` is empty); null: in the page file. */
  inline: Uint8Array | null;
}

interface RawBody {
  id: number;
  size: number;
  sha256: string;
  refcount: number;
  extents: string;
  inline: Uint8Array | null;
}

const BODY_COLS = "id, size, sha256, refcount, extents, inline";

function decode(r: RawBody): BodyRow {
  return { ...r, extents: JSON.parse(r.extents) as Extent[] };
}

export function getBody(core: Core, id: number): BodyRow | null {
  const r = core.db.query(`SELECT ${BODY_COLS} FROM bodies WHERE id = ?`)
    .get(id) as RawBody | null;
  return r ? decode(r) : null;
}

/** An existing body with the same content (dedupe across deliveries). */
export function findBody(core: Core, sha256: string, size: number): BodyRow | null {
  const r = core.db.query(
    `SELECT ${BODY_COLS} FROM bodies WHERE sha256 = ? AND size = ? AND refcount > 0 LIMIT 1`,
  ).get(sha256, size) as RawBody | null;
  return r ? decode(r) : null;
}

/**
 * Inside a transaction: a new body, either over pages that were reserved and written, or
 * `inline` (its bytes in the row, no pages).
 */
export function insertBody(
  core: Core,
  size: number,
  sha256: string,
  extents: Extent[],
  refcount: number,
  inline: Uint8Array | null = null,
): number {
  if (inline && (inline.length !== size || extents.length > 0)) {
    throw new Error("an inline body has exactly its size in bytes and no pages");
  }
  if (!inline) core.space.commitUsed(extents);
  const r = core.db.query(
    "INSERT INTO bodies(size, sha256, refcount, extents, inline, created_at) VALUES (?, ?, ?, ?, ?, ?)",
  ).run(size, sha256, refcount, JSON.stringify(extents), inline, Date.now());
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
  dropFromIndex(core, id);
  // An inline body goes with its row: nothing in the page file to free.
  if (b.extents.length > 0) core.space.release(id, b.extents);
}

/** What a reader needs of a body: its id (for the pin), size and pages or inline bytes. */
export type BodyLayout = Pick<BodyRow, "id" | "size" | "extents"> & {
  inline?: Uint8Array | null;
};

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
  return streamLayout(
    core,
    () => {
      const body = getBody(core, bodyId);
      if (!body) throw new Error(`body ${bodyId} is missing`);
      return { body, prefix };
    },
    start,
    length,
  );
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
    const total = (prefix ? prefix.length : 0) + body.size;
    let at = Math.min(start, total);
    const end = Math.min(total, at + length);
    while (at < end) {
      const n = Math.min(core.chunkBytes, end - at);
      yield chunkAt(core, body, prefix, at, n);
      at += n;
    }
  } finally {
    core.space.unpin(body.id);
  }
}

/** `prefix + body` whole in one buffer (message.readMany: small messages only). */
export function readWhole(core: Core, body: BodyLayout, prefix: Uint8Array | null): Uint8Array {
  return chunkAt(core, body, prefix, 0, (prefix ? prefix.length : 0) + body.size);
}

/** The first `max` bytes of a body (all of it if shorter), for the full-text index. */
export function readBodyStart(core: Core, body: BodyLayout, max: number): Uint8Array {
  return chunkAt(core, body, null, 0, Math.min(body.size, max));
}

/**
 * Bytes `[at, at + n)` of `prefix + body` as one fresh buffer: the prefix copied in, the body
 * read from its pages straight into it. Chunks are cut by `core.chunkBytes` only, never by the
 * prefix or an extent, so a small message is one chunk and one pread (one ring entry).
 */
function chunkAt(
  core: Core,
  body: BodyLayout,
  prefix: Uint8Array | null,
  at: number,
  n: number,
): Uint8Array {
  const prefixBytes = prefix ? prefix.length : 0;
  const chunk = new Uint8Array(n);
  let filled = 0;
  if (at < prefixBytes) {
    filled = Math.min(n, prefixBytes - at);
    chunk.set(prefix!.subarray(at, at + filled));
  }
  if (filled < n) {
    const from = at + filled - prefixBytes;
    if (body.inline) {
      // An inline body: straight from the row, no pread.
      if (from + n - filled > body.inline.length) throw new Error("inline body is too short");
      chunk.set(body.inline.subarray(from, from + n - filled), filled);
    } else core.file.readBody(body.extents, from, chunk, filled, n - filled);
  }
  return chunk;
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
