// A Posthorn data dir made the way a user makes one: `posthorn init`, then the two test
// accounts with `posthorn user add --password-stdin`; every port set to 0 so the kernel picks
// (the bound ports are read back from run/status.json).
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cli } from "../helpers.ts";
import { DOMAIN, PASSWORD, USERS } from "./messages.ts";

export function mustRun(args: string[], stdin?: string): string {
  const r = cli(args, stdin);
  if (r.code !== 0) {
    throw new Error(`posthorn ${args.join(" ")} exited ${r.code}\n${r.stdout}\n${r.stderr}`);
  }
  return r.stdout;
}

/** Creates DIR/data with its metabase; returns the metabase's path. */
export function initDataDir(data: string): string {
  const metabase = join(data, "metabase.json");
  mustRun(["init", data, "--domain", DOMAIN, "--port-offset", "0"]);
  const mb = JSON.parse(readFileSync(metabase, "utf8"));
  for (const c of mb.smtp.connectors) c.port = 0;
  for (const e of ["pop3", "imap", "nntp", "http"]) for (const l of mb[e].listeners) l.port = 0;
  writeFileSync(metabase, JSON.stringify(mb, null, 2));
  mustRun(["check", "--metabase", metabase]);
  for (const u of USERS) {
    mustRun(["user", "add", u, "--password-stdin", "--metabase", metabase], `${PASSWORD}\n`);
  }
  return metabase;
}
