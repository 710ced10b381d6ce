// Moving mail in and out: mbox (mboxrd: ">From " quoting undone on import, redone on export)
// and Maildir (Maildir++ subfolders, flags in the file name). Whatever the store changes to
// serve a message (LF → CRLF for a message with no CR at all) is recorded in the message's
// `origin`, with the original From_ line and separator, so an export gives back the same bytes.
import * as fs from "node:fs";
import { basename, join } from "node:path";
import { StoreError } from "../ipc/store-api.ts";
import { asctime } from "../mailformat/mod.ts";
import { userByAddress } from "./accounts.ts";
import { requireAddress } from "./addresses.ts";
import { fileUpload } from "./append.ts";
import { streamBody } from "./bodies.ts";
import type { Committer } from "./commit.ts";
import type { Core } from "./core.ts";
import { folderByName, insertFolder } from "./folders.ts";
import type { MessageRow } from "./messages.ts";
import type { Uploads } from "./uploads.ts";

export interface MoveReport {
  messages: number;
  bytes: number;
}

export interface MoveContext {
  core: Core;
  uploads: Uploads;
  committer: Committer;
}

/** An import run by the server (store.import): told of each message stored, asked whether
 * to go on before the next one. */
export interface ImportWatch {
  stored(report: MoveReport): void;
  stopped(): boolean;
}

interface Origin {
  /** mbox: the From_ line with its line break; Maildir: the file name and subdir. */
  from?: string;
  sep?: string;
  file?: string;
  sub?: string;
  /** "lf": the original used bare LF and was stored with CRLF. */
  eol?: "lf";
}

const PEER = "import";
const latin1 = new TextDecoder("latin1");
const MAILDIR_FLAGS: [string, string][] = [
  ["D", "\\Draft"],
  ["F", "\\Flagged"],
  ["R", "\\Answered"],
  ["S", "\\Seen"],
  ["T", "\\Deleted"],
];

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Bare-LF text becomes CRLF (what IMAP and POP3 serve); anything with a CR is kept as is. */
function toStored(bytes: Uint8Array): { bytes: Uint8Array; eol?: "lf" } {
  if (bytes.includes(13) || !bytes.includes(10)) return { bytes };
  let n = 0;
  for (const b of bytes) if (b === 10) n++;
  const out = new Uint8Array(bytes.length + n);
  let o = 0;
  for (const b of bytes) {
    if (b === 10) out[o++] = 13;
    out[o++] = b;
  }
  return { bytes: out, eol: "lf" };
}

function targetUser(core: Core, user: string) {
  const u = userByAddress(core, requireAddress(user).address);
  if (!u) throw new StoreError("not_found", `no user ${user}`);
  return u;
}

function ensureFolder(core: Core, userId: number, name: string) {
  return folderByName(core, userId, name) ?? core.tx.run(() => insertFolder(core, userId, name));
}

async function store(
  ctx: MoveContext,
  folderId: number,
  bytes: Uint8Array,
  flags: string[],
  internalDate: number,
  origin: Origin,
): Promise<void> {
  const conv = toStored(bytes);
  if (conv.eol) origin.eol = conv.eol;
  const uploadId = ctx.uploads.begin(PEER, conv.bytes.length);
  for (let i = 0; i < conv.bytes.length; i += 1 << 20) {
    ctx.uploads.append(uploadId, PEER, conv.bytes.subarray(i, i + (1 << 20)));
  }
  await fileUpload(ctx.core, ctx.uploads, ctx.committer, PEER, uploadId, [folderId], {
    flags,
    internalDate,
    origin: JSON.stringify(origin),
  });
}

/** Lines of a file, each with its line break, read in bounded chunks. */
/** The file's lines, LF included; a line longer than `maxLine` is an error, not memory. */
async function* fileLines(path: string, maxLine: number): AsyncGenerator<Uint8Array> {
  let carry = new Uint8Array(0);
  for await (const chunk of fs.createReadStream(path, { highWaterMark: 1 << 20 })) {
    const data = carry.length ? concat([carry, chunk as Uint8Array]) : (chunk as Uint8Array);
    let start = 0;
    for (let i = data.indexOf(10); i >= 0; i = data.indexOf(10, i + 1)) {
      yield data.subarray(start, i + 1);
      start = i + 1;
    }
    carry = data.slice(start);
    if (carry.length > maxLine) throw tooBig(path, maxLine);
  }
  if (carry.length) yield carry;
}

function tooBig(what: string, limit: number): StoreError {
  return new StoreError(
    "invalid",
    `${what}: a message larger than store.maxImportMessageBytes (${limit} bytes)`,
  );
}

const isFromLine = (l: Uint8Array) =>
  l[0] === 70 && l[1] === 114 && l[2] === 111 && l[3] === 109 && l[4] === 32; // "From "
const isBlank = (l: Uint8Array) =>
  l.length === 1 ? l[0] === 10 : l.length === 2 && l[0] === 13 && l[1] === 10;

function fromLineDate(line: string): number {
  // "From sender Thu Jan  1 00:00:00 2024": the date is the rest after the sender.
  const rest = line.replace(/^From \S+\s+/, "").trim();
  const t = Date.parse(rest);
  return Number.isFinite(t) ? t : Date.now();
}

export async function importMbox(
  ctx: MoveContext,
  path: string,
  user: string,
  folder = "INBOX",
  watch?: ImportWatch,
): Promise<MoveReport> {
  const u = targetUser(ctx.core, user);
  const f = ensureFolder(ctx.core, u.id, folder);
  const report: MoveReport = { messages: 0, bytes: 0 };
  let fromLine: string | null = null;
  let lines: Uint8Array[] = [];
  let held = 0; // bytes of `lines`: bounded by the limit, as a message is held whole
  const limit = ctx.core.maxImportMessageBytes;
  let prevBlank = true; // a From_ line opens a message at the start or after a blank line
  const flush = async (sep: string) => {
    if (fromLine === null) return;
    const bytes = concat(lines);
    await store(ctx, f.id, bytes, [], fromLineDate(fromLine), { from: fromLine, sep });
    report.messages++;
    report.bytes += bytes.length;
    watch?.stored(report);
  };
  for await (const line of fileLines(path, limit)) {
    if (watch?.stopped()) return report;
    if (isFromLine(line) && prevBlank) {
      // The blank line before a From_ line separates messages; it is not part of either.
      let sep = "";
      if (fromLine !== null && lines.length > 0 && isBlank(lines[lines.length - 1]!)) {
        sep = latin1.decode(lines.pop()!);
      }
      await flush(sep);
      fromLine = latin1.decode(line);
      lines = [];
      held = 0;
      prevBlank = false;
      continue;
    }
    if (fromLine === null) {
      if (!isBlank(line)) throw new StoreError("invalid", `${path} is not an mbox file`);
      continue;
    }
    prevBlank = isBlank(line);
    // mboxrd: ">From ", ">>From " … lost one ">" when written; give it back.
    let l = line;
    let k = 0;
    while (l[k] === 62) k++;
    if (k > 0 && isFromLine(l.subarray(k))) l = l.subarray(1);
    held += l.length;
    if (held > limit) throw tooBig(`${path}, message ${report.messages + 1}`, limit);
    lines.push(l);
  }
  let sep = "";
  if (lines.length > 0 && isBlank(lines[lines.length - 1]!)) sep = latin1.decode(lines.pop()!);
  await flush(sep);
  return report;
}

/** How often a running store.import reports progress: well inside ipc.callTimeoutMs, so a
 * long import never looks like a stalled stream. */
const PROGRESS_MS = 2000;

/**
 * store.import: runs an import in the store worker and reports progress (messages and bytes
 * so far) at most every PROGRESS_MS, then the total. A consumer that stops reading ends the
 * import between two messages; what was stored stays.
 */
export async function* importProgress(
  ctx: MoveContext,
  format: "mbox" | "maildir",
  path: string,
  user: string,
  folder: string | undefined,
  progressMs = PROGRESS_MS,
): AsyncGenerator<MoveReport[]> {
  let stop = false;
  let latest: MoveReport | null = null;
  let lastSent = performance.now();
  let wake: (() => void) | null = null;
  const poke = () => {
    const w = wake;
    wake = null;
    w?.();
  };
  const watch: ImportWatch = {
    stored(report) {
      latest = { ...report };
      if (performance.now() - lastSent >= progressMs) poke();
    },
    stopped: () => stop,
  };
  let finished = false;
  let total: MoveReport | null = null;
  let failure: unknown = null;
  const run = (format === "mbox" ? importMbox : importMaildir)(ctx, path, user, folder, watch)
    .then((r) => void (total = r), (e) => void (failure = e))
    .finally(() => {
      finished = true;
      poke();
    });
  try {
    while (!finished) {
      await new Promise<void>((r) => wake = r);
      if (!finished && latest) {
        lastSent = performance.now();
        yield [latest];
      }
    }
    if (failure !== null) throw failure;
    yield [total!];
  } finally {
    stop = true;
    await run;
  }
}

function folderMessages(core: Core, user: string, folder: string): MessageRow[] {
  const u = targetUser(core, user);
  const f = folderByName(core, u.id, folder);
  if (!f) throw new StoreError("not_found", `no folder ${folder}`);
  return core.db.query("SELECT * FROM messages WHERE folder_id = ? ORDER BY uid").all(
    f.id,
  ) as MessageRow[];
}

/** The stored message as it was before import: CRLF back to LF when that was the original. */
async function* originalBytes(
  core: Core,
  m: MessageRow,
  origin: Origin,
): AsyncGenerator<Uint8Array> {
  const it = streamBody(core, m.body_id, m.prefix ? new Uint8Array(m.prefix) : null);
  if (origin.eol !== "lf") {
    yield* it;
    return;
  }
  let pendingCr = false;
  for await (const chunk of it) {
    const out = new Uint8Array(chunk.length + 1);
    let o = 0;
    if (pendingCr && chunk[0] !== 10) out[o++] = 13;
    pendingCr = false;
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      if (b === 13) {
        if (i + 1 === chunk.length) pendingCr = true;
        else if (chunk[i + 1] !== 10) out[o++] = 13;
        continue;
      }
      out[o++] = b;
    }
    yield out.subarray(0, o);
  }
  if (pendingCr) yield new Uint8Array([13]);
}

export async function exportMbox(
  core: Core,
  path: string,
  user: string,
  folder = "INBOX",
): Promise<MoveReport> {
  const rows = folderMessages(core, user, folder);
  const fd = fs.openSync(path, "w", 0o600);
  const report: MoveReport = { messages: 0, bytes: 0 };
  const enc = new TextEncoder();
  const latin = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));
  try {
    for (const m of rows) {
      const origin = (m.origin ? JSON.parse(m.origin) : {}) as Origin;
      fs.writeSync(
        fd,
        origin.from
          ? latin(origin.from)
          : enc.encode(`From MAILER-DAEMON ${asctime(m.internal_date)}\n`),
      );
      let carry = new Uint8Array(0);
      const emit = (line: Uint8Array) => {
        let k = 0;
        while (line[k] === 62) k++;
        if (isFromLine(line.subarray(k))) fs.writeSync(fd, new Uint8Array([62])); // mboxrd quoting
        fs.writeSync(fd, line);
      };
      for await (const chunk of originalBytes(core, m, origin)) {
        const data = carry.length ? concat([carry, chunk]) : chunk;
        let start = 0;
        for (let i = data.indexOf(10); i >= 0; i = data.indexOf(10, i + 1)) {
          emit(data.subarray(start, i + 1));
          start = i + 1;
        }
        carry = data.slice(start);
      }
      if (carry.length) emit(carry);
      fs.writeSync(fd, latin(origin.sep ?? "\n"));
      report.messages++;
      report.bytes += m.size;
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  return report;
}

function maildirFolders(root: string): [string, string][] {
  const out: [string, string][] = [["INBOX", root]];
  for (const e of fs.readdirSync(root, { withFileTypes: true })) {
    // Maildir++: ".Sent", ".Work.2024" → "Sent", "Work/2024"
    if (e.isDirectory() && e.name.startsWith(".") && e.name.length > 1 && e.name !== "..") {
      out.push([e.name.slice(1).replace(/\./g, "/"), join(root, e.name)]);
    }
  }
  return out;
}

export async function importMaildir(
  ctx: MoveContext,
  path: string,
  user: string,
  folder?: string,
  watch?: ImportWatch,
): Promise<MoveReport> {
  const u = targetUser(ctx.core, user);
  const report: MoveReport = { messages: 0, bytes: 0 };
  for (const [name, dir] of maildirFolders(path)) {
    const target = folder ? (name === "INBOX" ? folder : `${folder}/${name}`) : name;
    const files: [string, string][] = [];
    for (const sub of ["cur", "new"]) {
      const d = join(dir, sub);
      if (!fs.existsSync(d)) continue;
      for (const file of fs.readdirSync(d).sort()) files.push([sub, file]);
    }
    if (files.length === 0 && name !== "INBOX") continue;
    const f = ensureFolder(ctx.core, u.id, target);
    for (const [sub, file] of files) {
      if (watch?.stopped()) return report;
      const full = join(dir, sub, file);
      const info = file.includes(":2,") ? file.slice(file.indexOf(":2,") + 3) : "";
      const flags = MAILDIR_FLAGS.filter(([c]) => info.includes(c)).map(([, fl]) => fl);
      if (fs.statSync(full).size > ctx.core.maxImportMessageBytes) {
        throw tooBig(full, ctx.core.maxImportMessageBytes);
      }
      const bytes = new Uint8Array(fs.readFileSync(full));
      await store(ctx, f.id, bytes, flags, fs.statSync(full).mtimeMs, { file, sub });
      report.messages++;
      report.bytes += bytes.length;
      watch?.stored(report);
    }
  }
  return report;
}

export async function exportMaildir(
  core: Core,
  path: string,
  user: string,
  folder = "INBOX",
): Promise<MoveReport> {
  const rows = folderMessages(core, user, folder);
  for (const sub of ["cur", "new", "tmp"]) fs.mkdirSync(join(path, sub), { recursive: true });
  const report: MoveReport = { messages: 0, bytes: 0 };
  for (const m of rows) {
    const origin = (m.origin ? JSON.parse(m.origin) : {}) as Origin;
    const flags = new Set(m.flags.split(" "));
    const info = MAILDIR_FLAGS.filter(([, fl]) => flags.has(fl)).map(([c]) => c).join("");
    const name = origin.file
      ? basename(origin.file)
      : `${Math.floor(m.internal_date / 1000)}.P${m.id}.posthorn:2,${info}`;
    const sub = origin.sub === "new" ? "new" : "cur";
    // Written under tmp/, then renamed: a Maildir reader never sees half a message.
    const tmp = join(path, "tmp", name);
    const fd = fs.openSync(tmp, "w", 0o600);
    try {
      for await (const chunk of originalBytes(core, m, origin)) fs.writeSync(fd, chunk);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.utimesSync(tmp, m.internal_date / 1000, m.internal_date / 1000);
    fs.renameSync(tmp, join(path, sub, name));
    report.messages++;
    report.bytes += m.size;
  }
  return report;
}
