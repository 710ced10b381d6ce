// POP3 RETR throughput, Posthorn beside Dovecot on this machine: 4 concurrent sessions (one
// maildrop each), pipelined RETR of every message, 1 KiB and 64 KiB messages, the same bytes
// for every server. Posthorn is measured two ways:
//   server  the appliance as users run it: supervisor, POP3 worker(s), store worker, the
//           ipc/ rings between them (mod.ts startAppliance), on a store filled beforehand by
//           a separate short-lived process (populate.ts) through the delivery API;
//   direct  the POP3 engine on this thread over an in-thread store client (no rings, no
//           workers: the figure this benchmark printed before it measured the server).
// Every server is up at once and the rounds alternate between them, so the load of this shared
// machine weighs on each alike; each figure is the median of its rounds, after a warm-up.
// Prints msgs/s, MB/s and the ratio to Dovecot; asserts nothing.
// Usage: node_modules/.bin/bun bench/pop3/bench.ts [--pools 1,2] [--rounds 5]
//        [--sizes 1024,65536] [--no-direct] [--no-dovecot]   (Dovecot: apt's dovecot-pop3d)
import { rmSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createDirectStoreClient } from "../../ipc/store-client.ts";
import { silentLogger } from "../../log/mod.ts";
import { loadMetabase, type Metabase, resolvePaths } from "../../metabase/mod.ts";
import { startAppliance } from "../../mod.ts";
import { pop3Engine } from "../../protocols/pop3/mod.ts";
import { generateSelfSigned } from "../../protocols/wire/mod.ts";
import { openStore, storeOptionsFromMetabase } from "../../store/mod.ts";
import { startDovecot } from "./dovecot.ts";
import {
  type Figures,
  measureAll,
  posthornCreds,
  posthornDir,
  SESSIONS,
  setPool,
  type Target,
} from "./harness.ts";

const { values: args } = parseArgs({
  options: {
    pools: { type: "string", default: "1" },
    rounds: { type: "string", default: "5" },
    sizes: { type: "string", default: "1024,65536" },
    direct: { type: "boolean", default: true },
    dovecot: { type: "boolean", default: true },
  },
  allowNegative: true,
});
const POOLS = args.pools.split(",").map(Number).filter((n) => n >= 1);
const ROUNDS = Math.max(1, Number(args.rounds));
/** Messages per session: about 2 MB for the small sizes, 13 MB for the large. */
const CASES = args.sizes.split(",").map(Number).filter((n) => n > 0).map((size) => ({
  size,
  count: size <= 4096 ? 2000 : 200,
}));

/** The whole appliance (supervisor, workers, rings) on a freshly filled data dir. */
async function startServer(size: number, count: number, poolSize: number): Promise<Target> {
  const dir = await posthornDir(size, count);
  setPool(dir, poolSize);
  const app = startAppliance({ metabase: join(dir, "metabase.json"), stderr: "off" });
  const stop = async () => {
    await app.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await app.ready;
  } catch (e) {
    await stop();
    throw e;
  }
  const port = app.ports["pop3"];
  if (!port) throw new Error("the pop3 listener did not bind");
  return { label: `posthorn server (poolSize ${poolSize})`, port, creds: posthornCreds, stop };
}

/** The engine on this thread over an in-thread store client. */
async function startDirect(size: number, count: number): Promise<Target> {
  const dir = await posthornDir(size, count);
  const file = join(dir, "metabase.json");
  const loaded = loadMetabase(file);
  if (!loaded.ok) throw new Error("bad metabase");
  const config: Metabase = loaded.metabase;
  const store = openStore(
    storeOptionsFromMetabase(config, resolvePaths(file, config).storeDir, silentLogger),
  );
  const client = createDirectStoreClient(store.service, "bench");
  const tls = generateSelfSigned("localhost");
  const bound = await pop3Engine.listen(config.pop3.listeners[0]!, {
    config: () => config,
    tls: () => tls,
    store: client,
    log: silentLogger,
    workerIndex: 0,
  });
  return {
    label: "posthorn direct store (no rings)",
    port: bound.port,
    creds: posthornCreds,
    async stop() {
      await bound.close(500);
      client.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const fmt = (f: Figures) =>
  `${f.msgsPerSec.toFixed(0).padStart(6)} msgs/s  ${f.mbPerSec.toFixed(1).padStart(6)} MB/s  ` +
  `(client ${f.clientMicrosPerMsg.toFixed(1)} µs/msg)`;

console.log(
  `POP3 RETR, ${SESSIONS} concurrent sessions, pipelined, loopback, median of ${ROUNDS} rounds`,
);
for (const { size, count } of CASES) {
  const label = size >= 1024 * 1024 ? `${size >> 20} MiB` : `${size >> 10} KiB`;
  console.log(`${label} × ${count} per session`);
  const targets: Target[] = [];
  try {
    for (const pool of POOLS) targets.push(await startServer(size, count, pool));
    if (args.direct) targets.push(await startDirect(size, count));
    const d = args.dovecot ? await startDovecot(size, count) : null;
    if (d) targets.push(d);
    const figures = await measureAll(targets, count, ROUNDS);
    const dovecot = d ? figures[targets.indexOf(d)]! : null;
    const width = Math.max(...targets.map((t) => t.label.length));
    for (const [k, t] of targets.entries()) {
      const f = figures[k]!;
      const ratio = dovecot && t !== d
        ? `  ${(f.msgsPerSec / dovecot.msgsPerSec).toFixed(2)}× Dovecot`
        : "";
      console.log(`  ${t.label.padEnd(width)}  ${fmt(f)}${ratio}`);
    }
    if (!d && args.dovecot) console.log("  dovecot: not installed (apt-get install dovecot-pop3d)");
  } finally {
    for (const t of targets) await t.stop();
  }
}
