// CPU time of a server, read from /proc: a process with all its threads (Posthorn's supervisor,
// engine workers and store worker live in one process), or a process tree (Postfix's master,
// its live children, and the children it has reaped). CPU per message is robust to the other
// work on a shared machine, where messages/s is not.
import { readdirSync, readFileSync } from "node:fs";

const TICKS_PER_SECOND = 100; // USER_HZ on Linux (getconf CLK_TCK)

/** utime, stime, cutime, cstime in seconds (proc(5): fields 14-17). */
function times(
  pid: number,
  statFile = `/proc/${pid}/stat`,
): [number, number, number, number] | null {
  try {
    const stat = readFileSync(statFile, "utf8");
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return [f[11], f[12], f[13], f[14]].map((x) => Number(x) / TICKS_PER_SECOND) as [
      number,
      number,
      number,
      number,
    ];
  } catch {
    return null;
  }
}

function children(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const list = readFileSync(`/proc/${pid}/task/${task}/children`, "utf8").trim();
      if (list) out.push(...list.split(/\s+/).map(Number));
    }
  } catch { /* gone */ }
  return out;
}

/** CPU seconds used so far by `pid` and, with `tree`, by every descendant, live or reaped. */
export function cpuSeconds(pid: number, tree = false): number {
  const t = times(pid);
  if (!t) return 0;
  if (!tree) return t[0] + t[1];
  let sum = t[0] + t[1] + t[2] + t[3];
  for (const child of children(pid)) sum += cpuSeconds(child, true);
  return sum;
}

/** Per-thread CPU seconds of one process, keyed "tid name" (for finding the busy thread). */
export function threadSeconds(pid: number): Map<string, number> {
  const m = new Map<string, number>();
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      // /proc/TID/stat would give the whole process's totals; the task's own file gives the thread's.
      const t = times(Number(tid), `/proc/${pid}/task/${tid}/stat`);
      const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, "utf8").trim();
      if (t) m.set(`${tid} ${name}`, t[0] + t[1]);
    }
  } catch { /* gone */ }
  return m;
}
