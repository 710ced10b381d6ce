// The command line: one module per command, dispatched by name. Every command takes --help.
import pkg from "../package.json" with { type: "json" };
import { MetabaseError } from "../metabase/mod.ts";
import { type Command, err, out, UsageError } from "./common.ts";
import { check, domain, init, listener, metabaseCmd } from "./config.ts";
import { dkim } from "./dkim.ts";
import { serve } from "./serve.ts";
import { status } from "./status.ts";
import {
  alias,
  backup,
  exportCmd,
  importCmd,
  queue,
  restore,
  storeCmd,
  user,
} from "./store-commands.ts";

const version: Command = {
  name: "version",
  summary: "print the version",
  help: "Usage: posthorn version",
  async run() {
    out(`posthorn ${pkg.version} (bun ${Bun.version})`);
    return 0;
  },
};

export const COMMANDS: Command[] = [
  serve,
  init,
  check,
  status,
  listener,
  domain,
  dkim,
  user,
  alias,
  queue,
  storeCmd,
  backup,
  restore,
  importCmd,
  exportCmd,
  metabaseCmd,
  version,
];

function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return `Posthorn ${pkg.version}: a mail and news server in one executable.

Usage: posthorn COMMAND [options]     (posthorn COMMAND --help for each)

${COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join("\n")}`;
}

export async function runCli(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    out(usage());
    return name ? 0 : 2;
  }
  if (name === "--version") return version.run([]);
  const cmd = COMMANDS.find((c) => c.name === name);
  if (!cmd) {
    err(`posthorn: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    out(cmd.help);
    return 0;
  }
  try {
    return await cmd.run(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      err(`posthorn ${cmd.name}: ${e.message}\n\n${cmd.help}`);
      return 2;
    }
    if (e instanceof MetabaseError && e.missing) {
      err(`posthorn ${cmd.name}: ${e.issues[0]!.message}`);
      return cmd.name === "status" ? 3 : 1; // status: not running, as with no server
    }
    if (e instanceof MetabaseError) {
      err(`posthorn ${cmd.name}: the metabase ${e.file} is invalid:`);
      for (const i of e.issues) err(`  ${i.path || "(file)"}: ${i.message}`);
      return 1;
    }
    err(`posthorn ${cmd.name}: ${(e as Error).message}`);
    return 1;
  }
}
