// The SMTP benchmark of issue 5: Posthorn (the real server: supervisor, engine workers, ipc/
// rings, store worker, fsync with group commit) beside Postfix delivering locally, in one run,
// on loopback. For 1 KiB and 64 KiB messages over 8 and 16 connections it prints messages/s
// accepted, p50/p99 latency from the end of DATA to the 250, CPU per message, then the ratio
// per row, and checks that every acknowledged message reached its mailbox. Prints figures only.
//   node_modules/.bin/bun bench/smtp/run.ts [--seconds 6] [--warmup 1] [--rounds 2]
//       [--only posthorn|postfix] [--direct] [--set store.groupCommitMs=0] [--cpu-prof] [--keep]
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { cpuSeconds } from "./cpu.ts";
import type { LoadResult } from "./load.ts";
import { startPostfix } from "./postfix.ts";
import { startPosthorn } from "./posthorn.ts";

const { values: args } = parseArgs({
  options: {
    seconds: { type: "string", default: "6" },
    warmup: { type: "string", default: "1" },
    rounds: { type: "string", default: "2" },
    only: { type: "string" },
    direct: { type: "boolean", default: false },
    set: { type: "string", multiple: true, default: [] },
    "cpu-prof": { type: "boolean", default: false },
    keep: { type: "boolean", default: false },
    "drain-timeout": { type: "string", default: "90" },
  },
});
const SIZES = [1024, 64 * 1024];
const CONNS = [8, 16];
const ROUNDS = Math.max(1, Number(args.rounds));
const LOAD = join(import.meta.dir, "load.ts");
const DIRECT = join(import.meta.dir, "direct-server.ts");
const drainTimeoutMs = Number(args["drain-timeout"]) * 1000;

/** One server under test, whatever it is. */
interface Server {
  name: string;
  port: number;
  rcpt: string;
  /** Whose CPU is counted: a pid, and whether its descendants count too (Postfix's do). */
  pid: number;
  tree: boolean;
  /** Waits until everything acknowledged so far is in the mailbox; the time, or null. */
  settle(totalAcked: number): Promise<number | null>;
  /** Stops the server; returns how many messages its mailbox holds. */
  finish(): Promise<{ stored: number; how: string }>;
  /** Idempotent, for errors and signals. */
  kill(): Promise<void>;
  acked: number;
}

interface Row {
  server: string;
  size: number;
  conns: number;
  load: LoadResult;
  /** Seconds from the load's start until every acked message was in the mailbox. */
  inMailboxSeconds: number | null;
  cpuMsPerMessage: number;
}

const note = (s: string) => console.log(s);
const fmt = (n: number | null, d = 0) => (n !== null && Number.isFinite(n) ? n.toFixed(d) : "-");
const kib = (size: number) => `${size / 1024} KiB`;
const rate = (r: Row) => r.load.measured / r.load.windowSeconds;
const inMailboxRate = (r: Row) =>
  r.inMailboxSeconds ? r.load.acked / r.inMailboxSeconds : Number.NaN;

const base = mkdtempSync(join(tmpdir(), "posthorn-bench-smtp-"));
chmodSync(base, 0o755); // Postfix daemons run as the postfix user and walk into base/postfix.
const servers: Server[] = [];
let cleaning: Promise<void> | null = null;
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const s of servers) await s.kill().catch(() => {});
  })();
  return cleaning;
}
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => void cleanup().finally(() => process.exit(130)));
}

async function load(s: Server, size: number, conns: number, tag: string): Promise<LoadResult> {
  const proc = Bun.spawn([
    process.execPath,
    LOAD,
    ...["--port", String(s.port), "--rcpt", s.rcpt, "--size", String(size)],
    ...["--conns", String(conns), "--seconds", args.seconds!, "--warmup", args.warmup!],
    ...["--tag", tag],
  ], { stdout: "pipe", stderr: "inherit" });
  const out = await new Response(proc.stdout).text();
  if ((await proc.exited) !== 0) throw new Error(`load generator failed: ${out}`);
  return JSON.parse(out.trim().split("\n").pop()!) as LoadResult;
}

function parseSets(list: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const item of list) {
    const eq = item.indexOf("=");
    if (eq < 1) throw new Error(`--set wants path=value, got "${item}"`);
    const raw = item.slice(eq + 1);
    let value: unknown = raw;
    try {
      value = JSON.parse(raw);
    } catch { /* a bare string */ }
    out[item.slice(0, eq)] = value;
  }
  return out;
}

async function addPosthorn(): Promise<void> {
  const profDir = args["cpu-prof"] ? join(base, "cpu-prof") : undefined;
  if (profDir) mkdirSync(profDir);
  const set = parseSets(args.set!);
  const p = await startPosthorn(join(base, "posthorn"), { cpuProfileDir: profDir, set });
  note(
    `posthorn: bun ${Bun.version}, \`posthorn serve\` pid ${p.pid}, MX 127.0.0.1:${p.port}, ` +
      `store durability ${p.durability}${
        Object.keys(set).length ? `, metabase edits ${JSON.stringify(set)}` : ""
      }`,
  );
  servers.push({
    name: "posthorn",
    port: p.port,
    rcpt: p.rcpt,
    pid: p.pid,
    tree: false,
    acked: 0,
    // Its 250 already means "in the mailbox". The full-text index is filled once the store is
    // quiet: wait for that too, so its CPU counts in this row and not during the next server's.
    settle: async () => {
      const by = Date.now() + 120_000;
      while (p.indexBacklog() > 0 && Date.now() < by) await Bun.sleep(100);
      return 0;
    },
    finish: async () => {
      await p.stop();
      return { stored: await p.count(), how: "posthorn user list, after a clean stop" };
    },
    kill: () => p.stop(),
  });
}

async function addDirect(): Promise<void> {
  const dir = join(base, "direct");
  mkdirSync(dir);
  const proc = Bun.spawn([process.execPath, DIRECT, dir], { stdout: "pipe", stderr: "inherit" });
  const reader = proc.stdout.getReader();
  let text = "";
  while (!text.includes("\n")) {
    const chunk = await reader.read();
    if (chunk.done) throw new Error(`direct server failed to start: ${text}`);
    text += new TextDecoder().decode(chunk.value);
  }
  const { port } = JSON.parse(text.split("\n")[0]!) as { port: number };
  note(
    `posthorn-direct: SMTP engine + store in one thread (no workers, no rings), pid ${proc.pid}`,
  );
  let rest = "";
  const stop = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill("SIGTERM");
    for (;;) {
      const chunk = await reader.read();
      if (chunk.done) break;
      rest += new TextDecoder().decode(chunk.value);
    }
    await proc.exited;
  };
  servers.push({
    name: "posthorn-direct",
    port,
    rcpt: "bench@bench.test",
    pid: proc.pid,
    tree: false,
    acked: 0,
    settle: async () => Date.now(),
    finish: async () => {
      await stop();
      const m = /"messages":(\d+)/.exec(rest);
      return { stored: m ? Number(m[1]) : 0, how: "store.stats after a clean stop" };
    },
    kill: stop,
  });
}

async function addPostfix(): Promise<void> {
  const p = await startPostfix(join(base, "postfix"), note);
  note(
    `postfix: ${p.version}, 127.0.0.1:${p.port}, local(8) into ${p.maildir} (${p.rcpt}); ` +
      Object.entries(p.settings).map(([k, v]) => `${k}=${v}`).join(", "),
  );
  /** Polls the Maildir until it holds `expected` messages; the time it did, or null. */
  const settle = async (expected: number): Promise<number | null> => {
    const by = Date.now() + drainTimeoutMs;
    let emptySince: number | null = null;
    for (;;) {
      if (p.count() >= expected) return Date.now();
      if (Date.now() > by) return null;
      // An empty queue with messages still missing: they went elsewhere; waiting cannot help.
      if (p.queued() > 0) emptySince = null;
      else if ((emptySince ??= Date.now()) < Date.now() - 2000) return null;
      await Bun.sleep(20);
    }
  };
  servers.push({
    name: "postfix",
    port: p.port,
    rcpt: p.rcpt,
    pid: p.masterPid,
    tree: true,
    acked: 0,
    settle,
    finish: async () => {
      await settle(servers.find((s) => s.name === "postfix")!.acked);
      const stored = p.count();
      const queued = p.queued();
      p.stop();
      if (!args.keep) p.clearMaildir();
      return { stored, how: `Maildir files, ${queued} still queued` };
    },
    kill: async () => p.stop(),
  });
}

try {
  note(
    `SMTP benchmark: ${cpus().length} CPUs, load average ${
      loadavg().map((l) => l.toFixed(2)).join(" ")
    } at start (the machine is shared: rates move with other work; CPU/msg much less so)`,
  );
  note(
    `${ROUNDS} round(s) of ${args.warmup} s warm-up + ${args.seconds} s measured per row and ` +
      `server, servers taking turns; the best round per row is shown. One message (one ` +
      `recipient) per transaction, up to 25 per connection, MAIL/RCPT/DATA pipelined.`,
  );
  if (args.only !== "postfix") await addPosthorn();
  if (args.direct) await addDirect();
  if (args.only !== "posthorn") await addPostfix();

  const rows: Row[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    for (const size of SIZES) {
      for (const conns of CONNS) {
        for (const s of servers) {
          const cpu0 = cpuSeconds(s.pid, s.tree);
          const r = await load(s, size, conns, `${s.name}.${round}.${size}x${conns}`);
          s.acked += r.acked;
          const at = await s.settle(s.acked);
          const cpu = cpuSeconds(s.pid, s.tree) - cpu0;
          const row: Row = {
            server: s.name,
            size,
            conns,
            load: r,
            inMailboxSeconds: at === null ? null : (Math.max(at, r.endedAt) - r.startedAt) / 1000,
            cpuMsPerMessage: r.acked ? (cpu * 1000) / r.acked : Number.NaN,
          };
          rows.push(row);
          note(
            `  round ${round} ${s.name.padEnd(15)} ${kib(size).padEnd(6)} x ${
              String(conns).padStart(2)
            }: ${fmt(rate(row)).padStart(5)} msg/s, p50 ${fmt(r.p50, 2)} ms, p99 ${
              fmt(r.p99, 2)
            } ms, ${fmt(row.cpuMsPerMessage, 2)} CPU ms/msg, ${r.failed} failed` +
              (s.name === "postfix"
                ? at === null
                  ? `; NOT all delivered within ${args["drain-timeout"]} s`
                  : `; all in the Maildir ${fmt((at - r.endedAt) / 1000, 2)} s after the last ack`
                : ""),
          );
        }
      }
    }
  }

  const best = (server: string, size: number, conns: number): Row | undefined =>
    rows.filter((r) => r.server === server && r.size === size && r.conns === conns)
      .sort((a, b) => rate(b) - rate(a))[0];

  console.log("");
  console.log(
    "server           size    conns  accepted msg/s  p50 ms   p99 ms  in-mailbox msg/s  CPU ms/msg",
  );
  for (const size of SIZES) {
    for (const conns of CONNS) {
      for (const s of servers) {
        const r = best(s.name, size, conns)!;
        console.log(
          `${s.name.padEnd(15)}  ${kib(size).padEnd(6)} ${String(conns).padStart(6)}  ${
            fmt(rate(r)).padStart(14)
          }  ${fmt(r.load.p50, 2).padStart(7)}  ${fmt(r.load.p99, 2).padStart(7)}  ${
            fmt(inMailboxRate(r)).padStart(16)
          }  ${fmt(r.cpuMsPerMessage, 2).padStart(10)}`,
        );
      }
    }
  }
  const a = servers.find((s) => s.name === "posthorn");
  const b = servers.find((s) => s.name === "postfix");
  if (a && b) {
    console.log("");
    console.log(
      "Posthorn/Postfix size    conns  accepted msg/s  p50 (<1 better)  p99 (<1 better)  " +
        "in-mailbox msg/s  CPU/msg (<1 better)",
    );
    const x = (n: number) => (fmt(n, 2) + "x");
    for (const size of SIZES) {
      for (const conns of CONNS) {
        const ra = best(a.name, size, conns)!;
        const rb = best(b.name, size, conns)!;
        console.log(
          `${"".padEnd(15)}  ${kib(size).padEnd(6)} ${String(conns).padStart(6)}  ${
            x(rate(ra) / rate(rb)).padStart(14)
          }  ${x(ra.load.p50 / rb.load.p50).padStart(15)}  ${
            x(ra.load.p99 / rb.load.p99).padStart(15)
          }  ${x(inMailboxRate(ra) / inMailboxRate(rb)).padStart(16)}  ${
            x(ra.cpuMsPerMessage / rb.cpuMsPerMessage).padStart(19)
          }`,
        );
      }
    }
  }
  console.log("");
  console.log(
    [
      "What a 250 means: Posthorn's 250 = delivered into the mailbox, fsynced (group commit).",
      "Postfix's 250 = queued: the queue file fsynced by cleanup(8); local(8) writes the Maildir",
      "file later. 'in-mailbox msg/s' compares like with like: every message acked in the row",
      "over the time from the load's start until the mailbox held them all (Maildir polled every",
      "20 ms). 'CPU ms/msg': CPU of the server (Posthorn: its one process, all threads; Postfix:",
      "master and every child, delivery included) over the row, per acked message; Posthorn's",
      "includes full-text indexing, done once the store is quiet (the row waits for it).",
    ].join("\n"),
  );

  // Correctness: every acknowledged message is in its mailbox.
  console.log("");
  for (const s of servers) {
    const { stored, how } = await s.finish();
    const ok = stored >= s.acked;
    console.log(
      `${
        ok ? "ok     " : "WARNING"
      } ${s.name}: ${s.acked} acknowledged, ${stored} in the mailbox ` +
        `(${how})${ok ? "" : `: ${s.acked - stored} ACKNOWLEDGED MESSAGE(S) MISSING`}`,
    );
  }
  if (args["cpu-prof"]) console.log(`posthorn cpu profiles in ${join(base, "cpu-prof")}`);
} finally {
  await cleanup();
  if (args.keep || args["cpu-prof"]) {
    console.log(`kept ${base}${args.keep ? " and the pfbench Maildir" : ""}`);
  } else rmSync(base, { recursive: true, force: true });
}
