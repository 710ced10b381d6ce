// Text tables for the terminal: listeners with their state, stopped ones marked loudly.
import type { ListenerStatus } from "../supervisor/mod.ts";

export function formatListeners(ls: ListenerStatus[], live = true): string {
  const rows = ls.map((l) => {
    const address = `${l.bind}:${l.boundPort ?? l.port}`;
    let state: string;
    if (l.state === "stopped") state = `*** STOPPED *** (posthorn listener start ${l.name})`;
    else if (l.error === "engine not in this build") state = "- (engine not in this build yet)";
    else if (!live) state = "started (server not running)";
    else if (l.boundPort !== null) {
      state = `listening${l.workers > 1 ? ` (${l.workers} workers)` : ""}`;
    } else state = `NOT BOUND: ${l.error ?? "unknown"}`;
    return [l.name, l.engine, address, l.tls, state];
  });
  const widths = [0, 1, 2, 3].map((i) => Math.max(...rows.map((r) => r[i]!.length), 4));
  return rows.map((r) => "  " + r.map((c, i) => (i < 4 ? c.padEnd(widths[i]!) : c)).join("  "))
    .join("\n");
}

/** How to call this program again: the binary's name, or the npm script from a source tree. */
export function selfCommand(): string {
  return /bun(\.exe)?$/.test(process.execPath) ? "npm run posthorn --" : "posthorn";
}
