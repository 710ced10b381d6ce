// Pid files that know their process. After a crash (SIGKILL, power loss) the pid written in a
// pid file is often reused by an unrelated program, and "is that pid alive?" then wrongly says
// a server still runs. So a stamp records the pid, the process's start time and the kernel's
// boot id (Linux /proc); a stamp is live only if all three still match. Where /proc is absent
// the check falls back to the pid alone.
import { readFileSync } from "node:fs";

export interface ProcessStamp {
  pid: number;
  /** Start time in clock ticks since boot (/proc/PID/stat field 22), or null off Linux. */
  start: string | null;
  boot: string | null;
}

function procStart(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may hold spaces and parentheses: fields restart after the last ")".
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return rest[19] ?? null; // field 22 overall: starttime
  } catch {
    return null;
  }
}

function bootId(): string | null {
  try {
    return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  } catch {
    return null;
  }
}

/** This process's stamp, as one line for a pid file: "PID START BOOT". */
export function ownStamp(): string {
  return `${process.pid} ${procStart(process.pid) ?? "-"} ${bootId() ?? "-"}\n`;
}

export function parseStamp(text: string): ProcessStamp | null {
  const [pid, start, boot] = text.trim().split(/\s+/);
  const n = Number(pid);
  if (!Number.isInteger(n) || n <= 0) return null;
  return {
    pid: n,
    start: start && start !== "-" ? start : null,
    boot: boot && boot !== "-" ? boot : null,
  };
}

function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code === "EPERM";
  }
}

/** Whether the process that wrote the stamp is still running (not merely its pid). */
export function stampAlive(s: ProcessStamp): boolean {
  if (s.pid === process.pid) return true;
  if (!pidExists(s.pid)) return false;
  if (s.boot !== null) {
    const boot = bootId();
    if (boot !== null && boot !== s.boot) return false; // written before a reboot
  }
  if (s.start !== null) {
    const start = procStart(s.pid);
    if (start !== null && start !== s.start) return false; // the pid now names another process
  }
  return true;
}

/** The live writer's pid of a stamp file, or null when missing, unreadable or stale. */
export function liveStampPid(file: string): number | null {
  try {
    const s = parseStamp(readFileSync(file, "utf8"));
    return s && stampAlive(s) ? s.pid : null;
  } catch {
    return null;
  }
}
