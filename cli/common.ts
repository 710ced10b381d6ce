// What every command shares: argument parsing with --help and --metabase, locating the data
// directory, and reading a password without it ever touching the command line.
import { parseArgs, type ParseArgsConfig } from "node:util";
import {
  loadMetabase,
  type Metabase,
  MetabaseError,
  type MetabasePaths,
  resolvePaths,
} from "../metabase/mod.ts";

export const DEFAULT_METABASE = "./data/metabase.json";

export interface Command {
  name: string;
  summary: string;
  /** Full help text: usage line, then options. */
  help: string;
  run(argv: string[]): Promise<number>;
}

/** Thrown for a wrong command line: printed with the command's usage, exit 2. */
export class UsageError extends Error {}

type Options = NonNullable<ParseArgsConfig["options"]>;

export function parse<O extends Options>(argv: string[], options: O, allowPositionals = true) {
  try {
    return parseArgs({
      args: argv,
      options: {
        ...options,
        help: { type: "boolean", short: "h" },
        metabase: { type: "string", short: "m" },
      },
      allowPositionals,
      strict: true,
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

export const METABASE_HELP =
  `  -m, --metabase P   the metabase file (default ${DEFAULT_METABASE})\n  -h, --help         this help`;

export function openMetabase(
  file: string | undefined,
): { metabase: Metabase; paths: MetabasePaths; file: string } {
  const path = file ?? DEFAULT_METABASE;
  const loaded = loadMetabase(path);
  if (!loaded.ok) throw new MetabaseError(path, loaded.issues);
  return { metabase: loaded.metabase, paths: resolvePaths(path, loaded.metabase), file: path };
}

export const out = (s = "") => process.stdout.write(s + "\n");
export const err = (s: string) => process.stderr.write(s + "\n");

/**
 * A password from stdin (--password-stdin: the first line) or typed at a prompt with echo off.
 * Never from argv: a command line is visible to every user of the machine.
 */
export async function readPassword(fromStdin: boolean, confirm = true): Promise<string> {
  if (fromStdin) {
    const text = await new Response(Bun.stdin.stream()).text();
    const line = text.split(/\r?\n/)[0] ?? "";
    if (!line) throw new UsageError("no password on standard input");
    return line;
  }
  if (!process.stdin.isTTY) {
    throw new UsageError("standard input is not a terminal: use --password-stdin");
  }
  const first = await promptHidden("Password: ");
  if (!first) throw new UsageError("empty password");
  if (confirm && (await promptHidden("Again: ")) !== first) {
    throw new UsageError("the passwords differ");
  }
  return first;
}

function promptHidden(prompt: string): Promise<string> {
  return new Promise((resolve, reject) => {
    process.stderr.write(prompt);
    const stdin = process.stdin;
    stdin.setRawMode(true);
    stdin.resume();
    let value = "";
    const onData = (buf: Buffer) => {
      for (const ch of buf.toString("utf8")) {
        if (ch === "\r" || ch === "\n") {
          done();
          resolve(value);
          return;
        }
        if (ch === "\u0003") {
          done();
          reject(new UsageError("cancelled"));
          return;
        }
        if (ch === "\u007f" || ch === "\b") value = value.slice(0, -1);
        else value += ch;
      }
    };
    const done = () => {
      stdin.off("data", onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write("\n");
    };
    stdin.on("data", onData);
  });
}
