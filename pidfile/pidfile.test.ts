// A stamp is live only while the very process that wrote it runs: a reused pid, a reboot or a
// dead pid all read as stale.
import { expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { liveStampPid, ownStamp, parseStamp, stampAlive } from "./mod.ts";

test("our own stamp is live and round-trips", () => {
  const s = parseStamp(ownStamp())!;
  expect(s.pid).toBe(process.pid);
  expect(stampAlive(s)).toBe(true);
});

test("another live process is live only with its own start time and boot id", async () => {
  const child = Bun.spawn(["sleep", "30"]);
  try {
    const dir = mkdtempSync(join(tmpdir(), "pidfile-"));
    const file = join(dir, "x.pid");
    const stat = await Bun.file(`/proc/${child.pid}/stat`).text();
    const start = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
    const boot = (await Bun.file("/proc/sys/kernel/random/boot_id").text()).trim();
    writeFileSync(file, `${child.pid} ${start} ${boot}\n`);
    expect(liveStampPid(file)).toBe(child.pid);
    // The same pid, started at another time: an unrelated program that inherited the pid.
    writeFileSync(file, `${child.pid} ${Number(start) + 12345} ${boot}\n`);
    expect(liveStampPid(file)).toBeNull();
    // Written before a reboot.
    writeFileSync(file, `${child.pid} ${start} 00000000-0000-0000-0000-000000000000\n`);
    expect(liveStampPid(file)).toBeNull();
    // An old-style file with the pid alone falls back to "is the pid alive".
    writeFileSync(file, `${child.pid}\n`);
    expect(liveStampPid(file)).toBe(child.pid);
    child.kill();
    await child.exited;
    expect(liveStampPid(file)).toBeNull();
    writeFileSync(file, "garbage");
    expect(liveStampPid(file)).toBeNull();
  } finally {
    child.kill();
  }
});
