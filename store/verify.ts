// `posthorn store verify`: every extent inside the file, no page both free and used (or used
// twice, or neither), reference counts equal to the references, every body's sha256 right,
// per-user usage right, SQLite's own integrity check. An inline body (bytes in its row) must
// hold no pages and exactly its size in bytes, and is hashed from the row. Safe while the server runs: metadata is
// read in one snapshot, and a freeze lease keeps freed pages from being reused while bodies
// are hashed.
import type { Core } from "./core.ts";
import { type Extent, ExtentSet } from "./extents.ts";
import { getMeta } from "./space.ts";

export interface VerifyReport {
  ok: boolean;
  problems: string[];
  bodies: number;
  messages: number;
  pages: number;
}

const MAX_PROBLEMS = 1000;

export async function verifyStore(core: Core): Promise<VerifyReport> {
  const problems: string[] = [];
  const problem = (p: string) => {
    if (problems.length < MAX_PROBLEMS) problems.push(p);
  };
  return await core.space.withFreeze(async () => {
    // One consistent snapshot of the metadata (a read transaction in another process; in the
    // owning process nothing else runs during this synchronous block).
    const snap = core.db.transaction(() => ({
      integrity: core.db.query("PRAGMA quick_check").all() as { quick_check: string }[],
      pages: Number(getMeta(core.db, "pages") ?? 0),
      free: core.db.query("SELECT start, count FROM free_extents ORDER BY start").all() as {
        start: number;
        count: number;
      }[],
      bodies: core.db.query(
        `SELECT b.id, b.size, b.sha256, b.refcount, b.extents, length(b.inline) AS inline_len,
           (SELECT count(*) FROM messages m WHERE m.body_id = b.id) +
           (SELECT count(*) FROM queue q WHERE q.body_id = b.id) AS refs
         FROM bodies b ORDER BY b.id`,
      ).all() as {
        id: number;
        size: number;
        sha256: string;
        refcount: number;
        extents: string;
        /** Null: the body is in the page file. */
        inline_len: number | null;
        refs: number;
      }[],
      orphans: core.db.query(
        `SELECT 'message ' || id AS what FROM messages WHERE body_id NOT IN (SELECT id FROM bodies)
         UNION ALL SELECT 'queue entry ' || id FROM queue WHERE body_id NOT IN (SELECT id FROM bodies)
         UNION ALL SELECT 'message ' || id || ' (no folder)' FROM messages WHERE folder_id NOT IN (SELECT id FROM folders)
         UNION ALL SELECT 'message ' || m.id || ' (uid ≥ uidnext)' FROM messages m JOIN folders f ON f.id = m.folder_id WHERE m.uid >= f.uid_next`,
      ).all() as { what: string }[],
      usage: core.db.query(
        `SELECT u.address, u.used_bytes, u.used_messages,
           (SELECT ifnull(sum(m.size), 0) FROM messages m JOIN folders f ON f.id = m.folder_id WHERE f.owner_id = u.id) AS bytes,
           (SELECT count(*) FROM messages m JOIN folders f ON f.id = m.folder_id WHERE f.owner_id = u.id) AS n
         FROM users u`,
      ).all() as {
        address: string;
        used_bytes: number;
        used_messages: number;
        bytes: number;
        n: number;
      }[],
      messages: (core.db.query("SELECT count(*) AS n FROM messages").get() as { n: number }).n,
    }))();

    for (const r of snap.integrity) {
      if (r.quick_check !== "ok") problem(`sqlite: ${r.quick_check}`);
    }
    for (const o of snap.orphans) problem(`${o.what} references a missing row`);
    for (const u of snap.usage) {
      if (u.used_bytes !== u.bytes || u.used_messages !== u.n) {
        problem(
          `user ${u.address}: usage says ${u.used_messages} messages/${u.used_bytes} bytes, holds ${u.n}/${u.bytes}`,
        );
      }
    }

    const pb = core.pageBytes;
    const free = new ExtentSet();
    for (const f of snap.free) {
      if (f.count <= 0 || f.start < 0 || f.start + f.count > snap.pages) {
        problem(`free run ${f.start}+${f.count} lies outside the file (${snap.pages} pages)`);
        continue;
      }
      try {
        free.add([f.start, f.count]);
      } catch {
        problem(`free runs overlap at page ${f.start}`);
      }
    }
    const used = new ExtentSet();
    const fileBytes = core.file.sizeBytes();
    const hashable: { id: number; size: number; sha256: string; extents: Extent[] }[] = [];
    // Inline bodies are hashed from their rows afterwards (not loaded all at once here).
    const inline: { id: number; sha256: string }[] = [];
    for (const b of snap.bodies) {
      if (b.refcount !== b.refs) {
        problem(`body ${b.id}: refcount ${b.refcount} but ${b.refs} references`);
      }
      let extents: Extent[];
      try {
        extents = JSON.parse(b.extents) as Extent[];
      } catch {
        problem(`body ${b.id}: unreadable extent list`);
        continue;
      }
      if (b.inline_len !== null) {
        if (extents.length > 0) problem(`body ${b.id}: inline but also holds pages`);
        if (b.inline_len !== b.size) {
          problem(`body ${b.id}: ${b.inline_len} inline bytes for ${b.size} bytes`);
        } else inline.push({ id: b.id, sha256: b.sha256 });
        continue;
      }
      let pages = 0, inside = true;
      for (const e of extents) {
        pages += e[1];
        if (e[0] < 0 || e[1] <= 0 || e[0] + e[1] > snap.pages) {
          problem(`body ${b.id}: extent ${e[0]}+${e[1]} lies outside the file`);
          inside = false;
          continue;
        }
        if (free.overlaps(e)) problem(`body ${b.id}: pages ${e[0]}+${e[1]} are also free`);
        try {
          used.add(e);
        } catch {
          problem(`body ${b.id}: pages ${e[0]}+${e[1]} are used by another body too`);
        }
      }
      if (pages !== Math.ceil(b.size / pb)) {
        problem(`body ${b.id}: ${pages} pages for ${b.size} bytes`);
        inside = false;
      }
      const last = extents[extents.length - 1];
      if (last && (last[0] + last[1] - 1) * pb + (b.size - (pages - 1) * pb) > fileBytes) {
        problem(`body ${b.id}: ends beyond the end of the page file`);
        inside = false;
      }
      if (inside) hashable.push({ id: b.id, size: b.size, sha256: b.sha256, extents });
    }
    const accounted = free.pages() + used.pages();
    if (accounted !== snap.pages) {
      problem(`${snap.pages - accounted} of ${snap.pages} pages are neither free nor used`);
    }

    let n = 0;
    for (const b of hashable) {
      const h = new Bun.CryptoHasher("sha256");
      try {
        for (const [pos, len] of core.file.ranges(b.extents, b.size, 1 << 20)) {
          h.update(core.file.readAbs(pos, len));
        }
        if (h.digest("hex") !== b.sha256) problem(`body ${b.id}: sha256 mismatch`);
      } catch (err) {
        problem(`body ${b.id}: unreadable (${(err as Error).message})`);
      }
      if (++n % 64 === 0) await new Promise((r) => setTimeout(r, 0)); // keep serving
    }
    const inlineRow = core.db.query("SELECT inline FROM bodies WHERE id = ?");
    for (const b of inline) {
      const row = inlineRow.get(b.id) as { inline: Uint8Array | null } | null;
      // Gone since the snapshot (its last reference deleted meanwhile): nothing left to check.
      if (row?.inline) {
        const digest = new Bun.CryptoHasher("sha256").update(row.inline).digest("hex");
        if (digest !== b.sha256) problem(`body ${b.id}: sha256 mismatch (inline)`);
      }
      if (++n % 256 === 0) await new Promise((r) => setTimeout(r, 0)); // keep serving
    }
    return {
      ok: problems.length === 0,
      problems,
      bodies: snap.bodies.length,
      messages: snap.messages,
      pages: snap.pages,
    };
  });
}
