// Shared by the end-to-end tests: temp data dirs, running the CLI as a child process, free
// ports, and starting a whole appliance in-process on a fresh metabase.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { initialMetabase, type MetabaseInput } from "../metabase/mod.ts";
import { type Appliance, startAppliance } from "../mod.ts";

export const ROOT = resolve(import.meta.dir, "..");
export const BUN = join(ROOT, "node_modules/.bin/bun");

export function tempDir(prefix = "posthorn-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `posthorn ARGS` from source, with optional standard input. */
export function cli(args: string[], stdin?: string): CliResult {
  const r = Bun.spawnSync([BUN, join(ROOT, "main.ts"), ...args], {
    stdin: stdin === undefined ? "ignore" : new TextEncoder().encode(stdin),
    env: { ...process.env, BUN_RUNTIME_TRANSPILER_CACHE_PATH: "0" },
  });
  return { code: r.exitCode ?? -1, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

/** A metabase for tests: loopback, every port 0 (the kernel picks), quiet, fast fsync policy. */
export function testMetabase(
  domain = "example.test",
  overrides: (mb: any) => void = () => {},
): MetabaseInput {
  const mb = initialMetabase({ domain, portOffset: 0 }) as any;
  for (const c of mb.smtp.connectors) c.port = 0;
  for (const e of ["pop3", "imap", "nntp", "http"]) for (const l of mb[e].listeners) l.port = 0;
  mb.logging = { stderr: "off", level: "debug" };
  mb.auth = { failureDelayMs: 0 };
  overrides(mb);
  return mb;
}

/** Starts an appliance in a fresh temp dir and waits for ready. */
export async function startTestAppliance(
  overrides: (mb: any) => void = () => {},
  opts: { testHooks?: boolean; dir?: string } = {},
): Promise<Appliance & { dir: string }> {
  const dir = opts.dir ?? tempDir();
  const app = startAppliance({
    metabase: testMetabase("example.test", overrides),
    dir,
    stderr: "off",
    testHooks: opts.testHooks,
  });
  await app.ready;
  return Object.assign(app, { dir });
}

/** Polls `check` until it returns true or the deadline passes (for asynchronous effects). */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  ms = 10_000,
  what = "condition",
): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await Bun.sleep(25);
  }
  throw new Error(`timed out waiting for ${what}`);
}
