// Moving mail in and out: mbox (mboxrd quoting) and Maildir, byte-exact round trips.
import type { Committer } from "./commit.ts";
import type { Core } from "./core.ts";
import type { Uploads } from "./uploads.ts";

export interface MoveReport {
  messages: number;
  bytes: number;
}

export interface MoveContext {
  core: Core;
  uploads: Uploads;
  committer: Committer;
}

export function importMbox(
  _c: MoveContext,
  _p: string,
  _u: string,
  _f?: string,
): Promise<MoveReport> {
  throw new Error("todo");
}
export function importMaildir(
  _c: MoveContext,
  _p: string,
  _u: string,
  _f?: string,
): Promise<MoveReport> {
  throw new Error("todo");
}
export function exportMbox(_c: Core, _p: string, _u: string, _f?: string): Promise<MoveReport> {
  throw new Error("todo");
}
export function exportMaildir(_c: Core, _p: string, _u: string, _f?: string): Promise<MoveReport> {
  throw new Error("todo");
}
