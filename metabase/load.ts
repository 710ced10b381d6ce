// Reading, validating and writing the metabase file. Errors carry the JSON path of the bad
// value and what was expected, so `posthorn check` can point at the exact line to fix.
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { z } from "zod";
import { jsonErrorIndex } from "./json-position.ts";
import { Metabase, type MetabaseInput } from "./schema.ts";

export interface MetabaseIssue {
  /** JSON path, e.g. "smtp.connectors[0].port" ("" for the whole file). */
  path: string;
  message: string;
}

export type LoadResult =
  | { ok: true; metabase: Metabase; raw: MetabaseInput; text: string }
  | { ok: false; issues: MetabaseIssue[]; text: string | null };

export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const p of path) {
    if (typeof p === "number") out += `[${p}]`;
    else out += out ? `.${String(p)}` : String(p);
  }
  return out;
}

/** Validates a parsed JSON value; every issue has its path and a readable expectation. */
export function validateMetabase(
  value: unknown,
): { ok: true; metabase: Metabase } | { ok: false; issues: MetabaseIssue[] } {
  const parsed = Metabase.safeParse(value);
  if (parsed.success) return { ok: true, metabase: parsed.data };
  const issues: MetabaseIssue[] = [];
  for (const issue of parsed.error.issues) {
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys) {
        issues.push({
          path: formatPath([...issue.path, key]),
          message: `unknown key "${key}" (check the spelling)`,
        });
      }
      continue;
    }
    if (issue.code === "invalid_union" && issue.errors.length) {
      // Report the closest branch instead of "invalid input".
      const inner = issue.errors.flat()[0];
      if (inner) {
        issues.push({ path: formatPath([...issue.path, ...inner.path]), message: inner.message });
        continue;
      }
    }
    issues.push({ path: formatPath(issue.path), message: issue.message });
  }
  return { ok: false, issues };
}

/** Parses JSON and reports a syntax error with its line and column. */
export function parseMetabaseText(
  text: string,
): { ok: true; value: unknown } | { ok: false; issues: MetabaseIssue[] } {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (err) {
    const msg = (err as Error).message;
    const at = jsonErrorIndex(text);
    let where = "";
    if (at >= 0) {
      const before = text.slice(0, at);
      const line = before.split("\n").length;
      where = ` at line ${line}, column ${before.length - before.lastIndexOf("\n")}`;
    }
    return { ok: false, issues: [{ path: "", message: `not valid JSON${where}: ${msg}` }] };
  }
}

export function loadMetabase(file: string): LoadResult {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    return {
      ok: false,
      issues: [{
        path: "",
        message: (err as { code?: string }).code === "ENOENT"
          ? `no metabase at ${file} (create one with "posthorn init DIR --domain D")`
          : `cannot read ${file}: ${(err as Error).message}`,
      }],
      text: null,
    };
  }
  const json = parseMetabaseText(text);
  if (!json.ok) return { ok: false, issues: json.issues, text };
  const valid = validateMetabase(json.value);
  if (!valid.ok) return { ok: false, issues: valid.issues, text };
  return { ok: true, metabase: valid.metabase, raw: json.value as MetabaseInput, text };
}

/** Writes the file atomically (temp file, fsync, rename) so a crash never leaves half a file. */
export function writeMetabaseFile(file: string, raw: MetabaseInput): void {
  const text = JSON.stringify(raw, null, 2) + "\n";
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = openSync(tmp, "w", 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
}

/**
 * Read-modify-write of the raw (not defaulted) file, so a user's minimal file stays minimal.
 * The result is validated before it is written: an edit that would break the file is refused.
 */
export function editMetabase(file: string, edit: (raw: MetabaseInput) => void): Metabase {
  const loaded = loadMetabase(file);
  if (!loaded.ok) throw new MetabaseError(file, loaded.issues);
  const raw = structuredClone(loaded.raw);
  edit(raw);
  const valid = validateMetabase(raw);
  if (!valid.ok) throw new MetabaseError(file, valid.issues);
  writeMetabaseFile(file, raw);
  return valid.metabase;
}

export class MetabaseError extends Error {
  constructor(readonly file: string, readonly issues: MetabaseIssue[]) {
    super(`${file}: ${issues.map((i) => `${i.path || "(file)"}: ${i.message}`).join("; ")}`);
    this.name = "MetabaseError";
  }
  /** The file does not exist (rather than being invalid). */
  get missing(): boolean {
    return this.issues.length === 1 && this.issues[0]!.message.startsWith("no metabase at ");
  }
}

/** Absolute paths derived from a metabase and the file it was read from. */
export interface MetabasePaths {
  file: string;
  dataDir: string;
  storeDir: string;
  logFile: string | null;
  tlsDir: string;
  runDir: string;
  certFile: string | null;
  keyFile: string | null;
}

export function resolvePaths(file: string, mb: Metabase): MetabasePaths {
  const abs = (base: string, p: string) => (isAbsolute(p) ? p : resolve(base, p));
  const fileAbs = resolve(file);
  const dataDir = abs(dirname(fileAbs), mb.server.dataDir);
  return {
    file: fileAbs,
    dataDir,
    storeDir: abs(dataDir, mb.store.dir),
    logFile: mb.logging.file === null ? null : abs(dataDir, mb.logging.file),
    tlsDir: resolve(dataDir, "tls"),
    runDir: resolve(dataDir, "run"),
    certFile: mb.tls.certFile === null ? null : abs(dataDir, mb.tls.certFile),
    keyFile: mb.tls.keyFile === null ? null : abs(dataDir, mb.tls.keyFile),
  };
}

export function metabaseJsonSchema(): unknown {
  return z.toJSONSchema(Metabase, { io: "input", unrepresentable: "any" });
}
