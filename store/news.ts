// Newsgroups are public folders with a `newsgroup` name; each message filed there gets the
// group's next article number (RFC 3977 §6.1: numbers only increase, never reused).
import type { NewsGroup, OverviewEntry, UserId } from "../ipc/store-api.ts";
import { rightsFor } from "./acl.ts";
import { streamBody } from "./bodies.ts";
import type { Core } from "./core.ts";
import { folderById, type FolderRow } from "./folders.ts";
import { decodeWords } from "./headers.ts";
import type { MessageRow } from "./messages.ts";
import { parseBody, type ParsedBody } from "./mime.ts";

export function groupRow(core: Core, name: string): FolderRow | null {
  return core.db.query("SELECT * FROM folders WHERE newsgroup = ?").get(
    String(name).toLowerCase(),
  ) as
    | FolderRow
    | null;
}

export function visibleGroup(core: Core, userId: UserId | null, name: string): FolderRow | null {
  const f = groupRow(core, name);
  return f && rightsFor(core, userId, f).includes("r") ? f : null;
}

export function listGroups(core: Core, userId: UserId | null): NewsGroup[] {
  const rows = core.db.query(
    "SELECT * FROM folders WHERE newsgroup IS NOT NULL ORDER BY newsgroup",
  ).all() as FolderRow[];
  const out: NewsGroup[] = [];
  for (const f of rows) {
    const rights = rightsFor(core, userId, f);
    if (!rights.includes("r")) continue;
    const s = core.db.query(
      "SELECT min(article) AS low, max(article) AS high, count(*) AS n FROM messages WHERE folder_id = ?",
    ).get(f.id) as { low: number | null; high: number | null; n: number };
    // RFC 3977 §6.1.1.2: an empty group reports high = low - 1.
    const low = s.low ?? f.article_next;
    out.push({
      name: f.newsgroup!,
      folderId: f.id,
      low,
      high: s.high ?? low - 1,
      count: s.n,
      postingAllowed: rights.includes("p"),
    });
  }
  return out;
}

/** Envelope and structure of a body: parsed once, then cached on the row. */
export async function bodyMeta(core: Core, bodyId: number): Promise<ParsedBody> {
  const cached = core.db.query("SELECT structure FROM bodies WHERE id = ?").get(bodyId) as
    | { structure: string | null }
    | null;
  if (cached?.structure) return JSON.parse(cached.structure) as ParsedBody;
  const parsed = await parseBody(streamBody(core, bodyId, null));
  try {
    core.tx.run(() =>
      core.db.query("UPDATE bodies SET structure = ? WHERE id = ?").run(
        JSON.stringify(parsed),
        bodyId,
      )
    );
  } catch { /* a read-only moment (another writer): parse again next time */ }
  return parsed;
}

const clean = (s: string | null) => (s ?? "").replace(/[\t\r\n]+/g, " ");

export async function overview(
  core: Core,
  f: FolderRow,
  from: number,
  to: number,
): Promise<OverviewEntry[]> {
  const rows = core.db.query(
    "SELECT * FROM messages WHERE folder_id = ? AND article BETWEEN ? AND ? ORDER BY article LIMIT 100000",
  ).all(f.id, from, to) as MessageRow[];
  const out: OverviewEntry[] = [];
  for (const m of rows) {
    const meta = await bodyMeta(core, m.body_id);
    const e = meta.envelope;
    const author = e.from[0];
    out.push({
      article: m.article!,
      messageId: m.id,
      subject: clean(e.subject),
      from: author
        ? clean(
          author.name
            ? `${decodeWords(author.name)} <${author.mailbox}@${author.host}>`
            : `${author.mailbox}@${author.host}`,
        )
        : "",
      date: clean(e.date),
      msgid: clean(e.messageId),
      references: clean(e.references),
      bytes: m.size,
      lines: meta.structure.lines,
    });
  }
  return out;
}

export function findArticle(
  core: Core,
  userId: UserId | null,
  req: { group?: string; article?: number; msgid?: string },
): { messageId: number; group: string; article: number } | null {
  if (req.msgid) {
    const rows = core.db.query(
      "SELECT m.id, m.article, f.id AS folder FROM messages m JOIN folders f ON f.id = m.folder_id WHERE m.message_id = ? AND f.newsgroup IS NOT NULL",
    ).all(String(req.msgid)) as { id: number; article: number; folder: number }[];
    for (const r of rows) {
      const f = folderById(core, r.folder)!;
      if (rightsFor(core, userId, f).includes("r")) {
        return { messageId: r.id, group: f.newsgroup!, article: r.article };
      }
    }
    return null;
  }
  if (!req.group || req.article === undefined) return null;
  const f = visibleGroup(core, userId, req.group);
  if (!f) return null;
  const r = core.db.query("SELECT id FROM messages WHERE folder_id = ? AND article = ?").get(
    f.id,
    Number(req.article),
  ) as { id: number } | null;
  return r ? { messageId: r.id, group: f.newsgroup!, article: Number(req.article) } : null;
}
