// What bench.ts and profile.ts share: the POP3 client process, the measuring loop, and a
// Posthorn data dir (metabase + a store filled by populate.ts in its own process).
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { initialMetabase, writeMetabaseFile } from "../../metabase/mod.ts";

export const SESSIONS = 4;
const BUN = process.execPath;
const CLIENT = join(import.meta.dir, "client.ts");
const POPULATE = join(import.meta.dir, "populate.ts");
const DOMAIN = "example.test";

export interface Run {
  msgs: number;
  bytes: number;
  seconds: number;
  /** CPU time the client process used (user + system). */
  cpuMicros: number;
}

/** Per run: throughput, and the client's own CPU per message (when it nears 1e6/msgsPerSec,
 * the client is what limits the figure). */
export type Figures = { msgsPerSec: number; mbPerSec: number; clientMicrosPerMsg: number };

/** One run of the client process: every session RETRs all `count` of its messages. */
export async function runClient(port: number, count: number, creds: string[]): Promise<Run> {
  const proc = Bun.spawn([BUN, CLIENT, String(port), String(count), ...creds], {
    stdout: "pipe",
    stderr: "inherit",
  });
  const out = await new Response(proc.stdout).text();
  if ((await proc.exited) !== 0) throw new Error("client failed");
  return JSON.parse(out) as Run;
}

/** A running server under test. */
export interface Target {
  label: string;
  port: number;
  creds: string[];
  stop(): Promise<void>;
}

/**
 * A warm-up run each, then `rounds` rounds in which every target runs once in turn, so a load
 * spike on this shared machine hits them all alike; the median run of each (by msgs/s).
 */
export async function measureAll(
  targets: Target[],
  count: number,
  rounds: number,
): Promise<Figures[]> {
  for (const t of targets) await runClient(t.port, count, t.creds);
  const runs: Figures[][] = targets.map(() => []);
  for (let i = 0; i < rounds; i++) {
    for (const [k, t] of targets.entries()) {
      const r = await runClient(t.port, count, t.creds);
      runs[k]!.push({
        msgsPerSec: r.msgs / r.seconds,
        mbPerSec: r.bytes / r.seconds / 1e6,
        clientMicrosPerMsg: r.cpuMicros / r.msgs,
      });
    }
  }
  return runs.map((r) => {
    r.sort((a, b) => a.msgsPerSec - b.msgsPerSec);
    return r[Math.floor(r.length / 2)]!;
  });
}

export const addresses = Array.from({ length: SESSIONS }, (_, u) => `user${u}@${DOMAIN}`);
export const posthornCreds = addresses.map((a) => `${a}:benchpw`);

/** A data dir with a metabase (POP3 only, plaintext login allowed) and a filled store. */
export async function posthornDir(size: number, count: number): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "posthorn-bench-"));
  // deno-lint-ignore no-explicit-any
  const mb = initialMetabase({ domain: DOMAIN, portOffset: 0 }) as Record<string, any>;
  for (const e of ["smtp", "imap", "nntp", "http"]) mb[e].enabled = false;
  mb.pop3.listeners = [{ name: "pop3", bind: "127.0.0.1", port: 0, tls: "none" }];
  mb.auth = { plaintext: "always", failureDelayMs: 0 };
  mb.logging = { stderr: "off", level: "warn", file: null };
  writeMetabaseFile(join(dir, "metabase.json"), mb);
  const proc = Bun.spawn(
    [BUN, POPULATE, join(dir, "metabase.json"), String(size), String(count), ...addresses],
    { stdout: "inherit", stderr: "inherit" },
  );
  if ((await proc.exited) !== 0) throw new Error("populate failed");
  return dir;
}

/** Sets the POP3 pool size in the data dir's metabase (before the appliance starts). */
export function setPool(dir: string, poolSize: number): void {
  const file = join(dir, "metabase.json");
  const raw = JSON.parse(readFileSync(file, "utf8"));
  raw.pop3.poolSize = poolSize;
  writeMetabaseFile(file, raw);
}
