// After a crash the pid files of the dead server stay behind (run/posthorn.pid, store/owner.pid).
// After a reboot, or simply later, the kernel hands that pid to some unrelated program; a
// restart must still start and open the store. Simulated here by writing the pid of a live
// `sleep` into both files after a SIGKILL, exactly what a reused pid looks like.
import { afterAll, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { removeDir, tempDir } from "../helpers.ts";
import { checkMailbox } from "./check.ts";
import { initDataDir } from "./data-dir.ts";
import { PASSWORD, Rng, USERS } from "./messages.ts";
import { readMaildrop } from "./pop3-read.ts";
import { killAllServers, ServerProcess } from "./server-process.ts";
import { startLoad } from "./smtp-load.ts";

const dir = tempDir("posthorn-crash-pid-");
const data = join(dir, "data");

afterAll(async () => {
  await killAllServers();
  removeDir(dir);
});

test(
  "a dead server's pid files naming a live unrelated process do not block the restart",
  async () => {
    const metabase = initDataDir(data);
    let unrelated: ReturnType<typeof Bun.spawn> | null = null;
    try {
      const server = await ServerProcess.start(metabase, data);
      const load = startLoad({
        port: server.ports().mx!,
        connections: 1,
        rng: new Rng(1),
        tag: "pid",
      });
      while (!load.messages.some((m) => m.outcome === "acked")) await Bun.sleep(10);
      await load.stop();
      const deadPid = server.pid;
      await server.kill();
      // A program started after the crash inherits the pid (the kernel's start-time clock
      // ticks every 10 ms: let one pass, as any real reuse would).
      await Bun.sleep(30);
      unrelated = Bun.spawn(["sleep", "60"], { stdin: "ignore", stdout: "ignore" });

      const lockFiles = [join(data, "run", "posthorn.pid"), join(data, "store", "owner.pid")];
      for (const f of lockFiles) {
        const [pid, ...stamp] = readFileSync(f, "utf8").trim().split(/\s+/);
        expect(pid).toBe(String(deadPid)); // left by the crash
        // ...and that pid now belongs to someone else: the same stamp, naming the other pid.
        writeFileSync(f, `${[unrelated.pid, ...stamp].join(" ")}\n`);
      }
      expect(existsSync(`/proc/${unrelated.pid}`)).toBe(true);

      const again = await ServerProcess.start(metabase, data); // throws with the server's output
      const stored = await readMaildrop(again.ports().pop3!, USERS[0], PASSWORD);
      expect(checkMailbox(USERS[0], "POP3", stored, load.messages)).toEqual([]);
      expect(await again.stop()).toBe(0);
      expect(unrelated.exitCode).toBeNull(); // the unrelated process was left alone
    } finally {
      unrelated?.kill("SIGKILL");
      await unrelated?.exited;
      await killAllServers();
    }
  },
  60_000,
);
