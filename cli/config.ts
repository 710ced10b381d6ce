// Commands over the metabase file itself: init, check, metabase schema, listener, domain.
// They edit the file atomically and validate before writing; a running server picks the edit
// up by itself (hot reload).
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  Domain,
  editMetabase,
  ENGINES,
  initialMetabase,
  loadMetabase,
  type MetabaseInput,
  metabaseJsonSchema,
  writeMetabaseFile,
} from "../metabase/mod.ts";
import {
  type Command,
  DEFAULT_METABASE,
  err,
  METABASE_HELP,
  openMetabase,
  out,
  parse,
  UsageError,
} from "./common.ts";

export const init: Command = {
  name: "init",
  summary: "write a new metabase and data directory",
  help:
    `Usage: posthorn init DIR --domain D [--bind ADDR] [--port-offset N] [--hostname H] [--force]

Writes DIR/metabase.json (and metabase.schema.json for editors): SMTP on 25 (MX), 587
(submission) and 465 (implicit TLS), POP3 110/995, IMAP 143/993, NNTP 119/563, HTTP 80/443,
each plus N. The data (store, logs, TLS certificate) lives in DIR.

  --domain D        the first local mail domain (required)
  --bind ADDR       address every listener binds (default 127.0.0.1; 0.0.0.0 for a VM)
  --port-offset N   added to every standard port (default 0)
  --hostname H      name in banners and Received: (default mail.D, or localhost on loopback)
  --force           overwrite an existing metabase
  -h, --help        this help`,
  async run(argv) {
    const { values, positionals } = parse(argv, {
      domain: { type: "string" },
      bind: { type: "string" },
      "port-offset": { type: "string" },
      hostname: { type: "string" },
      force: { type: "boolean" },
    });
    const dir = positionals[0];
    if (!dir || positionals.length > 1) throw new UsageError("give exactly one directory");
    if (!values.domain) throw new UsageError("--domain is required");
    const offset = Number(values["port-offset"] ?? 0);
    if (!Number.isInteger(offset) || offset < 0 || offset > 65000) {
      throw new UsageError("--port-offset takes 0..65000");
    }
    const domain = Domain.shape.name.safeParse(values.domain.toLowerCase());
    if (!domain.success) throw new UsageError(`--domain: ${domain.error.issues[0]?.message}`);
    const file = join(dir, "metabase.json");
    if (existsSync(file) && !values.force) {
      err(`${file} exists (use --force to overwrite)`);
      return 1;
    }
    mkdirSync(dir, { recursive: true });
    const mb = initialMetabase({
      domain: domain.data,
      bind: values.bind,
      portOffset: offset,
      hostname: values.hostname,
    });
    writeMetabaseFile(file, mb);
    writeFileSync(
      join(dir, "metabase.schema.json"),
      JSON.stringify(metabaseJsonSchema(), null, 2) + "\n",
    );
    out(`wrote ${file}`);
    return 0;
  },
};

export const check: Command = {
  name: "check",
  summary: "validate the metabase; print every error with its path",
  help: `Usage: posthorn check [--metabase P]

Validates the metabase. Each error is printed as "PATH: what was expected"; exit 1 on any.
${METABASE_HELP}`,
  async run(argv) {
    const { values } = parse(argv, {}, false);
    const file = values.metabase ?? DEFAULT_METABASE;
    const r = loadMetabase(file);
    if (!r.ok) {
      err(`${file}: ${r.issues.length} error(s)`);
      for (const i of r.issues) err(`  ${i.path || "(file)"}: ${i.message}`);
      return 1;
    }
    const listeners = r.metabase.smtp.connectors.length +
      ENGINES.filter((e) => e !== "smtp").reduce(
        (n, e) => n + r.metabase[e as "pop3"].listeners.length,
        0,
      );
    out(`${file}: ok (${listeners} listeners, ${r.metabase.domains.length} domain(s))`);
    return 0;
  },
};

export const metabaseCmd: Command = {
  name: "metabase",
  summary: "metabase tools: schema",
  help: `Usage: posthorn metabase schema

Prints the JSON Schema of the metabase, for editors ("$schema": "./metabase.schema.json").`,
  async run(argv) {
    const { positionals } = parse(argv, {});
    if (positionals[0] !== "schema") throw new UsageError("unknown subcommand (schema)");
    out(JSON.stringify(metabaseJsonSchema(), null, 2));
    return 0;
  },
};

type AnyListener = { name: string; state?: "started" | "stopped" };

function listenersIn(raw: MetabaseInput): AnyListener[] {
  const all: AnyListener[] = [...(raw.smtp?.connectors ?? [])];
  for (const e of ["pop3", "imap", "nntp", "http"] as const) all.push(...(raw[e]?.listeners ?? []));
  return all;
}

export const listener: Command = {
  name: "listener",
  summary: "start or stop a listener (persisted in the metabase)",
  help: `Usage: posthorn listener start|stop NAME

Sets the listener's state in the metabase. A stopped listener stays stopped across restarts and
is marked loudly by "posthorn status" and at every start. A running server applies the change.
${METABASE_HELP}`,
  async run(argv) {
    const { values, positionals } = parse(argv, {});
    const [verb, name] = positionals;
    if ((verb !== "start" && verb !== "stop") || !name) {
      throw new UsageError("expected start|stop NAME");
    }
    const file = values.metabase ?? DEFAULT_METABASE;
    let found = false;
    editMetabase(file, (raw) => {
      for (const l of listenersIn(raw)) {
        if (l.name === name) {
          l.state = verb === "start" ? "started" : "stopped";
          found = true;
        }
      }
    });
    if (!found) {
      err(`no listener named ${name}`);
      return 1;
    }
    out(`listener ${name} ${verb === "start" ? "started" : "STOPPED"} (persisted in ${file})`);
    return 0;
  },
};

export const domain: Command = {
  name: "domain",
  summary: "add, list or remove local mail domains",
  help: `Usage: posthorn domain add D [--catch-all ADDR] | list | remove D

Local domains live in the metabase; a running server applies the change at once.
${METABASE_HELP}`,
  async run(argv) {
    const { values, positionals } = parse(argv, { "catch-all": { type: "string" } });
    const [verb, name] = positionals;
    const file = values.metabase ?? DEFAULT_METABASE;
    if (verb === "list") {
      for (const d of openMetabase(file).metabase.domains) {
        out(d.catchAll ? `${d.name}  (catch-all → ${d.catchAll})` : d.name);
      }
      return 0;
    }
    if (!name) throw new UsageError("expected add|list|remove [DOMAIN]");
    const lower = name.toLowerCase();
    if (verb === "add") {
      editMetabase(file, (raw) => {
        raw.domains ??= [];
        if (raw.domains.some((d) => d.name === lower)) {
          throw new UsageError(`${lower} is already a local domain`);
        }
        raw.domains.push({
          name: lower,
          ...(values["catch-all"] ? { catchAll: values["catch-all"] } : {}),
        });
      });
      out(`added ${lower}`);
      return 0;
    }
    if (verb === "remove") {
      let removed = false;
      editMetabase(file, (raw) => {
        const before = raw.domains?.length ?? 0;
        raw.domains = (raw.domains ?? []).filter((d) => d.name !== lower);
        removed = raw.domains.length < before;
      });
      if (!removed) {
        err(`${lower} is not a local domain`);
        return 1;
      }
      out(`removed ${lower} (its users' mail stays in the store)`);
      return 0;
    }
    throw new UsageError("expected add|list|remove");
  },
};

export { writeMetabaseFile };
