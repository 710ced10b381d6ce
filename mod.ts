// The library entry for embedding Posthorn: start a whole appliance in-process from a
// metabase, the way tests and edge appliances do.
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import type { LogRecord } from "./log/mod.ts";
import { type MetabaseInput, writeMetabaseFile } from "./metabase/mod.ts";
import { type ListenerStatus, Supervisor } from "./supervisor/mod.ts";

export interface ApplianceOptions {
  /** Path of a metabase file, or a metabase object to write into `dir`. */
  metabase: string | MetabaseInput;
  /** Where an object metabase is written (its data dir defaults beside it). */
  dir?: string;
  stderr?: "pretty" | "json" | "off";
  onLog?: (r: LogRecord) => void;
  /** Allow tests to crash workers on purpose. */
  testHooks?: boolean;
}

export interface Appliance {
  supervisor: Supervisor;
  /** Resolves once every started listener of every built engine is bound. */
  ready: Promise<Appliance>;
  /** Bound port by listener name (filled when ready). */
  ports: Record<string, number>;
  listeners(): ListenerStatus[];
  stop(): Promise<void>;
}

export function startAppliance(opts: ApplianceOptions): Appliance {
  let file: string;
  if (typeof opts.metabase === "string") file = resolve(opts.metabase);
  else {
    if (!opts.dir) throw new Error("startAppliance: an object metabase needs `dir`");
    mkdirSync(opts.dir, { recursive: true });
    file = join(resolve(opts.dir), "metabase.json");
    writeMetabaseFile(file, opts.metabase);
  }
  const supervisor = new Supervisor({
    metabaseFile: file,
    stderr: opts.stderr,
    onLog: opts.onLog,
    testHooks: opts.testHooks,
  });
  const ports: Record<string, number> = {};
  const appliance: Appliance = {
    supervisor,
    ports,
    ready: null as unknown as Promise<Appliance>,
    listeners: () => supervisor.listeners(),
    stop: () => supervisor.stop(),
  };
  appliance.ready = supervisor.start().then(() => {
    for (const l of supervisor.listeners()) if (l.boundPort) ports[l.name] = l.boundPort;
    return appliance;
  });
  return appliance;
}

export type { MetabaseInput } from "./metabase/mod.ts";
export type { StoreClient } from "./ipc/store-client.ts";
