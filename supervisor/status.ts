// The run directory: a lock so two servers never share one data dir (with reusePort they would
// silently split the traffic), and status.json, which `posthorn status` reads from outside.
import { readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { liveStampPid, ownStamp, parseStamp } from "../pidfile/mod.ts";

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

export function acquireRunLock(runDir: string): void {
  const file = join(runDir, PID_FILE);
  const pid = liveStampPid(file);
  if (pid !== null && pid !== process.pid) {
    throw new Error(`another Posthorn (pid ${pid}) is serving this data directory`);
  }
  writeFileSync(file, ownStamp());
}

export function releaseRunLock(runDir: string): void {
  const file = join(runDir, PID_FILE);
  try {
    if (parseStamp(readFileSync(file, "utf8"))?.pid === process.pid) rmSync(file);
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
    // The pid file, not the status file, says whether that server still runs.
    return { ...s, alive: s.running && liveStampPid(join(runDir, PID_FILE)) === s.pid };
  } catch {
    return null;
  }
}
