// `posthorn status`: each listener with its state and bound address, read from the running
// server's status file; stopped listeners are marked loudly whether or not it runs.
import type { ListenerStatus } from "../supervisor/mod.ts";
import { readStatus } from "../supervisor/mod.ts";
import { ENGINES, listenersOfInput } from "./listeners.ts";
import { type Command, METABASE_HELP, openMetabase, out, parse } from "./common.ts";
import { formatListeners } from "./format.ts";

export const status: Command = {
  name: "status",
  summary: "show each listener's state and address, and whether the server runs",
  help: `Usage: posthorn status [--metabase P] [--json]

Exit 0 when the server runs and every started listener is bound, 3 when it is not running,
4 when it runs with a listener that failed to bind.
  --json             machine-readable output
${METABASE_HELP}`,
  async run(argv) {
    const { values } = parse(argv, { json: { type: "boolean" } }, false);
    const { metabase, paths } = openMetabase(values.metabase);
    const live = readStatus(paths.runDir);
    const running = !!live?.alive;
    const configured: ListenerStatus[] = [];
    for (const engine of ENGINES) {
      for (const l of listenersOfInput(metabase, engine)) {
        const seen = running ? live!.listeners.find((x) => x.name === l.name) : undefined;
        configured.push(
          seen && seen.state === l.state ? seen : {
            engine,
            name: l.name,
            bind: l.bind,
            port: l.port,
            tls: l.tls,
            state: l.state,
            boundPort: null,
            workers: 0,
            error: running ? "not bound (applying a metabase edit?)" : null,
          },
        );
      }
    }
    const stopped = configured.filter((l) => l.state === "stopped");
    const unbound = configured.filter((l) => l.state === "started" && l.boundPort === null);
    if (values.json) {
      out(
        JSON.stringify(
          {
            running,
            pid: running ? live!.pid : null,
            listeners: configured,
            workers: live?.workers ?? [],
          },
          null,
          2,
        ),
      );
    } else {
      out(
        running
          ? `Posthorn is running (pid ${live!.pid}, since ${live!.startedAt})`
          : "Posthorn is NOT running",
      );
      out(formatListeners(configured, running));
      if (stopped.length) {
        out(
          `\n*** ${stopped.length} listener(s) STOPPED by configuration: ${
            stopped.map((l) => l.name).join(", ")
          } ***`,
        );
      }
    }
    if (!running) return 3;
    return unbound.some((l) => l.error !== "engine not in this build") ? 4 : 0;
  },
};
