// Issue 5, "Done when": a SIGKILL during a 16-connection SMTP load loses no acknowledged
// message. Through the real server as users run it: `posthorn init`, `user add`, `serve` as a
// child process, our own SMTP client on 16 connections, SIGKILL at a random moment, `serve`
// again on the same data dir, the mailboxes read back over POP3, `store verify`; five cycles
// accumulating in one data dir, then a last cross-check through `export maildir`. Variations
// on the crash instant: cycle 3 kills a server already shutting down (SIGTERM, then SIGKILL);
// odd cycles also kill the restarting server during its recovery; even cycles let the CLI
// (`store verify`) be the first to open the crashed store.
// CRASH_SEED=N replays the same messages; CRASH_KEEP=1 keeps the data dir for a post-mortem;
// CRASH_CYCLES=N runs N cycles instead of five (a soak: bun test … --timeout 0).
import { afterAll, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { cli, removeDir, tempDir } from "../helpers.ts";
import { checkMailbox } from "./check.ts";
import { initDataDir, mustRun } from "./data-dir.ts";
import { PASSWORD, Rng, type SentMessage, USERS } from "./messages.ts";
import { readMaildrop } from "./pop3-read.ts";
import { killAllServers, ServerProcess } from "./server-process.ts";
import { startLoad } from "./smtp-load.ts";

const CYCLES = Number(process.env.CRASH_CYCLES ?? 5);
const CONNECTIONS = 16;
const seed = Number(process.env.CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));
const dir = tempDir("posthorn-crash-");
const data = join(dir, "data");
const metabase = join(data, "metabase.json");

afterAll(async () => {
  await killAllServers();
  if (process.env.CRASH_KEEP) console.log(`crash test data kept in ${data}`);
  else removeDir(dir);
});

async function startServer(): Promise<ServerProcess> {
  const s = await ServerProcess.start(metabase, data);
  const ports = s.ports();
  if (!ports.mx || !ports.pop3) throw new Error(`mx or pop3 not bound: ${JSON.stringify(ports)}`);
  return s;
}

async function readAllOverPop3(server: ServerProcess, sent: SentMessage[]): Promise<string[]> {
  const problems: string[] = [];
  for (const u of USERS) {
    const stored = await readMaildrop(server.ports().pop3!, u, PASSWORD);
    problems.push(...checkMailbox(u, "POP3", stored, sent));
  }
  return problems;
}

function readExportedMaildir(user: string): Uint8Array[] {
  const target = join(dir, `export-${user}`);
  mustRun(["export", "maildir", target, "--user", user, "--metabase", metabase]);
  const out: Uint8Array[] = [];
  for (const sub of ["cur", "new"]) {
    for (const f of readdirSync(join(target, sub)).sort()) {
      out.push(new Uint8Array(readFileSync(join(target, sub, f))));
    }
  }
  return out;
}

const count = (ms: SentMessage[], pred: (m: SentMessage) => boolean) => ms.filter(pred).length;

test(
  `SIGKILL during a ${CONNECTIONS}-connection SMTP load loses no acknowledged message`,
  async () => {
    console.log(`crash test seed ${seed} (CRASH_SEED=${seed} to replay the messages)`);
    const rng = new Rng(seed);
    initDataDir(data);
    const sent: SentMessage[] = [];
    let server = await startServer();
    try {
      for (let cycle = 1; cycle <= CYCLES; cycle++) {
        // --- load, then SIGKILL at a random moment of it ---
        const load = startLoad({
          port: server.ports().mx!,
          connections: CONNECTIONS,
          rng,
          tag: `k${cycle}`,
        });
        const killAfter = rng.int(300, 1500);
        await Bun.sleep(killAfter);
        const killedPid = server.pid;
        const killedAt = performance.now();
        // Cycle 3 kills a server that is already shutting down cleanly (SIGTERM, then SIGKILL).
        const duringShutdown = cycle === 3;
        if (duringShutdown) {
          server.signal("SIGTERM");
          await Bun.sleep(rng.int(0, 30));
        }
        await server.kill();
        // The kernel closes the dead server's sockets, so every connection ends; if one did not
        // within 10 s, that alone is worth failing for.
        const ended = await Promise.race([
          load.done.then(() => true),
          Bun.sleep(10_000).then(() => false),
        ]);
        if (!ended) load.destroy();
        await load.done;
        expect(ended).toBe(true);
        sent.push(...load.messages);

        const ms = load.messages;
        const normal = ms.filter((m) => !m.bareLf);
        const lastReply = Math.max(...ms.map((m) => m.repliedAt ?? 0));
        const cutAt = new Map<string, number>();
        for (const m of ms.filter((m) => m.outcome === "unsent")) {
          cutAt.set(m.stage, (cutAt.get(m.stage) ?? 0) + 1);
        }
        console.log(
          `cycle ${cycle}: ${duringShutdown ? "SIGTERM then " : ""}SIGKILL pid ${killedPid} ` +
            `after ${killAfter} ms: ${ms.length} messages ` +
            `started, ${count(ms, (m) => m.outcome === "acked")} acknowledged, ` +
            `${count(ms, (m) => m.outcome === "in-flight")} in flight (end sent, no reply), ` +
            `${count(ms, (m) => m.outcome === "unsent")} cut before their end, ` +
            `${count(ms, (m) => m.outcome === "refused")} refused ` +
            `(${count(ms, (m) => m.bareLf && m.outcome === "refused")} bare-LF probes); ` +
            `${count(ms, (m) => m.bdat)} via BDAT, ${count(ms, (m) => m.eightBit)} 8-bit; ` +
            `cut at ${JSON.stringify(Object.fromEntries(cutAt))}; last final reply ` +
            `${Math.round(killedAt - lastReply)} ms before the kill`,
        );
        if (duringShutdown) {
          const replies = new Map<string, number>();
          for (const m of normal.filter((m) => m.outcome === "refused")) {
            const key = `${m.stage}: ${m.reply?.trim()}`;
            replies.set(key, (replies.get(key) ?? 0) + 1);
          }
          console.log(
            `cycle ${cycle}: refused while shutting down: ${
              JSON.stringify(Object.fromEntries(replies))
            }`,
          );
        }
        // The load really ran: messages were acknowledged before the kill.
        expect(count(ms, (m) => m.outcome === "acked")).toBeGreaterThan(0);
        // Under 16 connections nothing but the bare-LF probes may be refused, except with 421
        // by a server shutting down (RFC 5321 §3.8)...
        expect(
          normal.filter((m) =>
            m.outcome === "refused" && !(duringShutdown && m.reply?.startsWith("421"))
          ).map((m) => `${m.messageId}: ${m.reply}`),
        ).toEqual([]);
        // ...and those must be, with 550 5.6.0 (RFC 5321 §2.3.8), whenever a reply came.
        for (const m of ms.filter((m) => m.bareLf && m.reply !== null)) {
          expect(m.reply).toMatch(/^550 5\.6\.0/);
        }

        // Every other cycle the crashed store is first opened by the CLI, not the server.
        if (cycle % 2 === 0) {
          const v = cli(["store", "verify", "--metabase", metabase]);
          expect({ after: "crash", code: v.code, out: v.stdout + v.stderr }).toMatchObject({
            code: 0,
          });
        }

        // Odd cycles crash the recovery itself: SIGKILL while the server starts up again.
        if (cycle % 2 === 1) {
          const early = ServerProcess.spawn(metabase, data);
          const after = rng.int(20, 350);
          await Bun.sleep(after);
          const wasReady = early.isReady;
          await early.kill();
          console.log(
            `cycle ${cycle}: SIGKILL of the restarting server after ${after} ms ` +
              `(${wasReady ? "after" : "before"} its ready line)`,
          );
        }

        // --- restart on the same data dir: the dead pid's run lock must not block it ---
        server = await startServer();
        const problems = await readAllOverPop3(server, sent);
        expect(problems).toEqual([]);

        // --- clean stop, then the store must verify ---
        const code = await server.stop();
        expect({ cycle, code, stdoutTail: server.stdout.text.slice(-300) }).toMatchObject({
          code: 0,
        });
        expect(server.stdout.text).toMatch(/^stopped$/m);
        const v = cli(["store", "verify", "--metabase", metabase]);
        expect({ cycle, code: v.code, out: v.stdout + v.stderr }).toMatchObject({ code: 0 });
        console.log(`cycle ${cycle}: restarted, POP3 read back, stopped, ${v.stdout.trim()}`);

        if (cycle < CYCLES) server = await startServer();
      }

      // --- the same expectations through `posthorn export maildir` (server stopped) ---
      const problems: string[] = [];
      for (const u of USERS) {
        problems.push(...checkMailbox(u, "export", readExportedMaildir(u), sent));
      }
      expect(problems).toEqual([]);
      console.log(
        `total over ${CYCLES} cycles: ${sent.length} messages, ` +
          `${count(sent, (m) => m.outcome === "acked")} acknowledged and all present, ` +
          `${count(sent, (m) => m.outcome === "in-flight")} in flight at a kill`,
      );
    } finally {
      await killAllServers();
    }
  },
  30_000 * CYCLES,
);
