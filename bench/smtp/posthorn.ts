// Posthorn for the benchmark, started the way users run it: `posthorn init` on a temp data dir,
// `posthorn user add`, then `posthorn serve` in a child process (supervisor, engine workers,
// ipc/ rings, store worker; durability as the metabase default says). Logs go to the event-log
// file; the only edit to the generated metabase is port 0 everywhere (no clash with other
// servers on this machine) and no log copy on stderr.
import { Database } from "bun:sqlite";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "..", "..");
const BUN = process.execPath;
const MAIN = join(ROOT, "main.ts");

export interface PosthornServer {
  port: number;
  rcpt: string;
  durability: string;
  pid: number;
  /** Messages in the benchmark mailbox per `posthorn user list`. */
  count(): Promise<number>;
  /** Bodies stored but not yet full-text indexed (the store indexes them once it is quiet). */
  indexBacklog(): number;
  stop(): Promise<void>;
}

async function cli(args: string[], stdin?: string): Promise<string> {
  const proc = Bun.spawn([BUN, MAIN, ...args], {
    cwd: ROOT,
    stdin: stdin === undefined ? "ignore" : new TextEncoder().encode(stdin),
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  if (code !== 0) throw new Error(`posthorn ${args[0]} failed (${code}): ${err || out}`);
  return out;
}

export interface PosthornOptions {
  /** Run the server under `bun --cpu-prof`, profiles written here. */
  cpuProfileDir?: string;
  /** Metabase edits for experiments, by dotted path: { "store.groupCommitMs": 0 }. */
  set?: Record<string, unknown>;
}

export async function startPosthorn(
  dir: string,
  opts: PosthornOptions = {},
): Promise<PosthornServer> {
  const metabaseFile = join(dir, "metabase.json");
  const rcpt = "bench@bench.test";
  await cli(["init", dir, "--domain", "bench.test"]);
  const mb = JSON.parse(readFileSync(metabaseFile, "utf8"));
  for (const section of ["smtp", "pop3", "imap", "nntp", "http"]) {
    const list = section === "smtp" ? mb[section]?.connectors : mb[section]?.listeners;
    for (const l of list ?? []) l.port = 0;
  }
  mb.logging = { ...(mb.logging ?? {}), stderr: "off" };
  for (const [path, value] of Object.entries(opts.set ?? {})) {
    const keys = path.split(".");
    let at = mb;
    for (const k of keys.slice(0, -1)) at = at[k] ??= {};
    at[keys.at(-1)!] = value;
  }
  writeFileSync(metabaseFile, JSON.stringify(mb, null, 2));
  await cli(["user", "add", rcpt, "--password-stdin", "-m", metabaseFile], "bench-password\n");

  const profile = opts.cpuProfileDir ? ["--cpu-prof", `--cpu-prof-dir=${opts.cpuProfileDir}`] : [];
  const stderrFile = join(dir, "serve.stderr");
  const proc = Bun.spawn(
    [BUN, ...profile, MAIN, "serve", "-m", metabaseFile],
    { cwd: ROOT, stdin: "ignore", stdout: "pipe", stderr: Bun.file(stderrFile) },
  );
  // Read stdout until "ready": the listener table before it holds the bound MX port.
  let printed = "";
  const reader = proc.stdout.getReader();
  const decoder = new TextDecoder();
  const readyBy = Date.now() + 30_000;
  while (!/^ready /m.test(printed)) {
    const chunk = await Promise.race([
      reader.read(),
      Bun.sleep(Math.max(0, readyBy - Date.now())).then(() => null),
    ]);
    if (!chunk || chunk.done) {
      proc.kill("SIGKILL");
      throw new Error(
        `posthorn serve did not get ready:\n${printed}\n${
          readFileSync(stderrFile, "utf8").slice(-2000)
        }`,
      );
    }
    printed += decoder.decode(chunk.value, { stream: true });
  }
  // Keep draining stdout so the server never blocks on a full pipe.
  void (async () => {
    for (;;) if ((await reader.read().catch(() => ({ done: true }))).done) return;
  })();
  const m = /^\s*mx\s+smtp\s+[\d.]+:(\d+)\s+\S+\s+listening/m.exec(printed);
  if (!m) {
    proc.kill("SIGTERM");
    throw new Error(`no MX listener in:\n${printed}`);
  }
  const durability = `${mb.store?.durability ?? "group"}, groupCommitMs ${
    mb.store?.groupCommitMs ?? "default"
  }`;
  return {
    port: Number(m[1]),
    rcpt,
    durability,
    pid: proc.pid,
    async count() {
      const out = await cli(["user", "list", "-m", metabaseFile]);
      const line = out.split("\n").find((l) => l.startsWith(rcpt));
      const n = line && /(\d+) message/.exec(line);
      if (!n) throw new Error(`no count for ${rcpt} in:\n${out}`);
      return Number(n[1]);
    },
    indexBacklog() {
      // Read-only, beside the server (WAL): the same count store.stats reports.
      const db = new Database(join(dir, "store", "posthorn.db"), { readonly: true });
      try {
        return (db.query("SELECT count(*) AS n FROM fts_pending").get() as { n: number }).n;
      } finally {
        db.close();
      }
    },
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill("SIGTERM");
      const exited = await Promise.race([proc.exited, Bun.sleep(20_000).then(() => null)]);
      if (exited === null) {
        proc.kill("SIGKILL");
        await proc.exited;
      }
    },
  };
}
