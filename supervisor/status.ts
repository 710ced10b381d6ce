// The run directory: a lock so two servers never share one data dir (with reusePort they would
// silently split the traffic), and status.json, which `posthorn status` reads from outside.
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface ListenerStatus {
  engine: string;
  name: string;
  bind: string;
  port: number;
  tls: string;
  state: "started" | "stopped";
  boundPort: number | null;
  workers: number;
  error: string | null;
}

export interface StatusFile {
  pid: number;
  running: boolean;
  startedAt: string;
  updatedAt: string;
  listeners: ListenerStatus[];
  workers: { id: string; role: string; state: string; restarts: number }[];
}

const PID_FILE = "posthorn.pid";
const STATUS_FILE = "status.json";

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code === "EPERM";
  }
}

export function acquireRunLock(runDir: string): void {
  const file = join(runDir, PID_FILE);
  if (existsSync(file)) {
    const pid = Number(readFileSync(file, "utf8").trim());
    if (pid && pid !== process.pid && processAlive(pid)) {
      throw new Error(`another Posthorn (pid ${pid}) is serving this data directory`);
    }
  }
  writeFileSync(file, `${process.pid}\n`);
}

export function releaseRunLock(runDir: string): void {
  const file = join(runDir, PID_FILE);
  try {
    if (Number(readFileSync(file, "utf8").trim()) === process.pid) rmSync(file);
  } catch { /* already gone */ }
}

export function writeStatus(runDir: string, status: StatusFile): void {
  const file = join(runDir, STATUS_FILE);
  writeFileSync(`${file}.tmp`, JSON.stringify(status, null, 2) + "\n");
  renameSync(`${file}.tmp`, file);
}

/** The last status written, and whether its process still lives. */
export function readStatus(runDir: string): (StatusFile & { alive: boolean }) | null {
  try {
    const s = JSON.parse(readFileSync(join(runDir, STATUS_FILE), "utf8")) as StatusFile;
    return { ...s, alive: s.running && processAlive(s.pid) };
  } catch {
    return null;
  }
}
