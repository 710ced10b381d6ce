// Where a RETR's time goes. Three ways to run the same load (4 sessions, pipelined RETR):
//   threads  the whole appliance; prints CPU µs per message and % busy of every thread of this
//            process (/proc/self/task, Linux): JIT and GC helpers, then the "Worker" threads in
//            the order the supervisor starts them: the store worker first, then POP3;
//   engine   the POP3 engine on the main thread, the store in a Worker, over the ipc/ rings;
//   store    the other way round.
// `bun --cpu-prof` samples the main thread only, hence engine/store: profile one half at a time.
// Prints figures; asserts nothing.
// Usage: bun bench/pop3/profile.ts threads [size] [count] [runs]
//        bun --cpu-prof-md --cpu-prof-dir=DIR bench/pop3/profile.ts engine|store [size] [count] [runs]
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { attachStoreClient, QueueManager, serveStore } from "../../ipc/mod.ts";
import { silentLogger } from "../../log/mod.ts";
import { loadMetabase, resolvePaths } from "../../metabase/mod.ts";
import { startAppliance } from "../../mod.ts";
import { pop3Engine } from "../../protocols/pop3/mod.ts";
import { generateSelfSigned } from "../../protocols/wire/mod.ts";
import { openStore, storeOptionsFromMetabase } from "../../store/mod.ts";
import { posthornCreds, posthornDir, runClient } from "./harness.ts";
import type { SplitRequest } from "./split-worker.ts";

const [here = "threads", ...rest] = process.argv.slice(2);
const [size = 1024, count = 2000, runs = 5] = rest.map(Number);
const dir = await posthornDir(size, count);
const metabaseFile = join(dir, "metabase.json");

/** CPU clock ticks (user + system) of each thread of this process, by "tid name". */
function threadTicks(): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync("/proc/self/task")) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, "utf8");
      const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      out.set(`${tid} ${name}`, Number(fields[11]) + Number(fields[12])); // utime, stime
    } catch { /* the thread ended */ }
  }
  return out;
}

if (here === "threads") {
  const app = startAppliance({ metabase: metabaseFile, stderr: "off" });
  try {
    await app.ready;
    const port = app.ports["pop3"]!;
    await runClient(port, count, posthornCreds); // warm-up
    const before = threadTicks();
    let msgs = 0;
    let seconds = 0;
    let clientMicros = 0;
    for (let i = 0; i < runs; i++) {
      const r = await runClient(port, count, posthornCreds);
      msgs += r.msgs;
      seconds += r.seconds;
      clientMicros += r.cpuMicros;
    }
    const after = threadTicks();
    const tick = 1e6 / 100; // µs per clock tick (USER_HZ)
    console.log(
      `${(msgs / seconds).toFixed(0)} msgs/s; client ${(clientMicros / msgs).toFixed(1)} µs/msg`,
    );
    for (const [thread, t] of after) {
      const used = (t - (before.get(thread) ?? 0)) * tick;
      if (used / msgs < 0.5) continue;
      const busy = (100 * used) / 1e6 / seconds;
      console.log(
        `  ${thread.padEnd(20)} ${(used / msgs).toFixed(1)} µs/msg, ${busy.toFixed(0)}% busy`,
      );
    }
  } finally {
    await app.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  process.exit(0);
}

const loaded = loadMetabase(metabaseFile);
if (!loaded.ok) throw new Error("bad metabase");
const mb = loaded.metabase;
const qm = new QueueManager({ ...mb.ipc, streamWindowChunks: mb.ipc.streamWindowChunks });
const { server, client } = qm.bind("store", "pop3");
const worker = new Worker(new URL("./split-worker.ts", import.meta.url));
const message = <T>(type: string) =>
  new Promise<T>((resolve) => {
    const on = (ev: MessageEvent) => {
      if (ev.data?.type !== type) return;
      worker.removeEventListener("message", on);
      resolve(ev.data as T);
    };
    worker.addEventListener("message", on);
  });

let port: number;
let stopHere: () => Promise<void>;
if (here === "engine") {
  const ready = message<{ port: number }>("ready");
  worker.postMessage({ role: "store", metabaseFile, descriptor: server } satisfies SplitRequest);
  await ready;
  const store = attachStoreClient(client);
  const tls = generateSelfSigned("localhost");
  const bound = await pop3Engine.listen(mb.pop3.listeners[0]!, {
    config: () => mb,
    tls: () => tls,
    store,
    log: silentLogger,
    workerIndex: 0,
  });
  port = bound.port;
  stopHere = async () => {
    await bound.close(500);
    store.close();
  };
} else {
  const store = openStore(
    storeOptionsFromMetabase(mb, resolvePaths(metabaseFile, mb).storeDir, silentLogger),
  );
  const served = serveStore(server, store.service);
  const ready = message<{ port: number }>("ready");
  worker.postMessage({ role: "engine", metabaseFile, descriptor: client } satisfies SplitRequest);
  port = (await ready).port;
  stopHere = async () => {
    served.close();
    await store.close();
  };
}

try {
  for (let i = 0; i < runs; i++) {
    const r = await runClient(port, count, posthornCreds);
    console.log(`${(r.msgs / r.seconds).toFixed(0)} msgs/s`);
  }
} finally {
  const stopped = message("stopped");
  worker.postMessage("stop");
  await stopped;
  await stopHere();
  worker.terminate();
  rmSync(dir, { recursive: true, force: true });
}
