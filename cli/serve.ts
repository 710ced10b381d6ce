// `posthorn serve`: runs the server in the foreground until SIGINT/SIGTERM; SIGHUP re-reads
// the metabase. Prints every listener, then a line beginning with "ready".
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { initialMetabase, metabaseJsonSchema, writeMetabaseFile } from "../metabase/mod.ts";
import { Supervisor } from "../supervisor/mod.ts";
import { type Command, DEFAULT_METABASE, err, METABASE_HELP, out, parse } from "./common.ts";
import { formatListeners, selfCommand } from "./format.ts";

export const serve: Command = {
  name: "serve",
  summary: "run the server in the foreground",
  help: `Usage: posthorn serve [--metabase P] [--init-if-missing]

Runs every engine of the metabase until SIGINT or SIGTERM (clean shutdown); SIGHUP re-reads the
metabase (edits are also picked up on their own). Prints each listener, then "ready".

  --init-if-missing  when the metabase does not exist, create it with the embedded default:
                     domain "localhost", every listener on 127.0.0.1 at its standard port + 10000
${METABASE_HELP}`,
  async run(argv) {
    const { values } = parse(argv, { "init-if-missing": { type: "boolean" } }, false);
    const file = values.metabase ?? DEFAULT_METABASE;
    if (!existsSync(file)) {
      if (!values["init-if-missing"]) {
        err(`no metabase at ${file}: create one with "posthorn init DIR --domain D"`);
        return 1;
      }
      mkdirSync(dirname(file), { recursive: true });
      writeMetabaseFile(file, initialMetabase({ domain: "localhost", portOffset: 10000 }));
      writeFileSync(
        join(dirname(file), "metabase.schema.json"),
        JSON.stringify(metabaseJsonSchema(), null, 2),
      );
      out(`created ${file} (domain localhost, listeners on 127.0.0.1 at standard ports + 10000)`);
    }
    const sup = new Supervisor({ metabaseFile: file });
    let stopping: Promise<void> | null = null;
    const stop = (signal: string) => {
      if (stopping) return;
      sup.log.info("supervisor.signal", { signal });
      stopping = sup.stop();
    };
    process.on("SIGINT", () => stop("SIGINT"));
    process.on("SIGTERM", () => stop("SIGTERM"));
    process.on("SIGHUP", () => void sup.reload());
    try {
      await sup.start();
    } catch (e) {
      err(`posthorn: cannot start: ${(e as Error).message}`);
      await sup.stop().catch(() => {});
      return 1;
    }
    const listeners = sup.listeners();
    out(`Posthorn serving ${sup.paths.file}`);
    out(formatListeners(listeners));
    const bound = listeners.filter((l) => l.boundPort !== null);
    const failed = listeners.filter((l) =>
      l.state === "started" && l.boundPort === null && l.error !== "engine not in this build"
    );
    if (failed.length) {
      err(
        `warning: ${failed.length} listener(s) failed to bind: ${
          failed.map((l) => l.name).join(", ")
        }`,
      );
    }
    out(`ready ${bound.length} listener(s) bound; pid ${process.pid}`);
    const domain = sup.metabase.domains[0]?.name ?? "example.com";
    out(
      `Add the first user: ${selfCommand()} user add you@${domain} --password-stdin --metabase ${file}`,
    );
    // Keep running until a signal starts the shutdown, then until it finishes.
    while (!stopping) await Bun.sleep(200);
    await stopping;
    out("stopped");
    return 0;
  },
};
