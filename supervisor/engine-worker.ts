// Worker entry that hosts one protocol engine (or the transport's queue runner). It owns the
// worker's lifecycle: the store binding, the listeners of its engine (diffed on hot reload so a
// changed listener restarts alone), clean shutdown, and reporting to the supervisor.
import { attachStoreClient } from "../ipc/mod.ts";
import type { Logger } from "../log/mod.ts";
import type { Listener, Metabase, SmtpConnector } from "../metabase/schema.ts";
import type {
  BoundListener,
  EngineContext,
  ProtocolEngine,
  TlsMaterial,
} from "../protocols/engine.ts";
import { engineModule, listenersOf } from "./engines.ts";
import type { BoundInfo, ToWorker } from "./messages.ts";
import { StoreProxy } from "./store-proxy.ts";
import { runWorker, type WorkerRuntime } from "./worker-runtime.ts";

const store = new StoreProxy();
let log: Logger;
let metabase: Metabase;
let tls: TlsMaterial | null = null;
let ctx: EngineContext;
let engine: ProtocolEngine<Listener | SmtpConnector> | null = null;
let background: { stop(): Promise<void> } | null = null;

/** Listeners bound by this worker, by name, with the config they were bound with. */
const bound = new Map<string, { config: string; listener: BoundListener; info: BoundInfo }>();

const runtime = runWorker("engine", handle);
log = runtime.log;

async function handle(msg: ToWorker, rt: WorkerRuntime): Promise<void> {
  switch (msg.type) {
    case "init": {
      metabase = msg.metabase;
      tls = msg.tls;
      log = rt.setLogger(msg.role, metabase.logging.level).child(String(msg.workerIndex));
      engine = engineModule(msg.role);
      ctx = {
        config: () => metabase,
        tls: () => {
          if (!tls) throw new Error("no TLS certificate loaded");
          return tls;
        },
        store,
        log,
        workerIndex: msg.workerIndex,
        dataDir: msg.paths.dataDir,
      };
      if (!engine) throw new Error(`engine ${msg.role} is not part of this build`);
      if (engine.start) background = await engine.start(ctx);
      rt.post({ type: "started", listeners: await syncListeners() });
      return;
    }
    case "bind":
      store.attach(attachStoreClient(msg.descriptor as never));
      return;
    case "reload": {
      metabase = msg.metabase;
      tls = msg.tls;
      rt.post({ type: "listeners", listeners: await syncListeners() });
      return;
    }
    case "stop": {
      await Promise.allSettled([...bound.values()].map((b) => b.listener.close(msg.graceMs)));
      bound.clear();
      await background?.stop();
      store.detach();
      rt.post({ type: "stopped" });
      return;
    }
    case "test.crash":
      rt.crash();
      return;
    case "test.hang":
      rt.hang();
      return;
    case "serve":
    case "unserve":
      return; // only the store worker serves bindings
  }
}

/** Brings the bound listeners in line with the metabase; returns the state of each. */
async function syncListeners(): Promise<BoundInfo[]> {
  if (!engine) return [];
  const wanted = new Map<string, Listener | SmtpConnector>();
  for (const l of listenersOf(metabase, ctx.workerIndex, engine.name)) {
    if (l.state === "started") wanted.set(l.name, l);
  }
  // Close listeners that went away or changed; their open sessions finish in the background.
  for (const [name, b] of bound) {
    const next = wanted.get(name);
    if (!next || JSON.stringify(next) + certificateStamp(next) !== b.config) {
      bound.delete(name);
      void b.listener.close(metabase.supervisor.shutdownGraceSeconds * 1000);
      log.info("listener.closed", { listener: name, reason: next ? "changed" : "removed" });
    }
  }
  for (const [name, l] of wanted) {
    if (bound.has(name)) continue;
    try {
      const listener = await listenWithRetry(l);
      // Recorded with the port the kernel chose, so the supervisor pinning a port-0 listener
      // to that port on the next reload is not mistaken for a change.
      const config = JSON.stringify(l.port === 0 ? { ...l, port: listener.port } : l) +
        certificateStamp(l);
      const info = { name, bind: l.bind, port: l.port, boundPort: listener.port, error: null };
      bound.set(name, { config, listener, info });
      log.info("listener.bound", {
        listener: name,
        address: `${l.bind}:${listener.port}`,
        tls: l.tls,
      });
    } catch (err) {
      log.error("listener.bind_failed", {
        listener: name,
        address: `${l.bind}:${l.port}`,
        error: err as Error,
      });
      // Reported, not fatal: the other listeners of this engine keep serving.
      bound.delete(name);
      wantedErrors.set(name, String((err as Error).message ?? err));
    }
  }
  const out: BoundInfo[] = [];
  for (const [name, l] of wanted) {
    const b = bound.get(name);
    out.push(
      b ? b.info : {
        name,
        bind: l.bind,
        port: l.port,
        boundPort: null,
        error: wantedErrors.get(name) ?? "not bound",
      },
    );
  }
  wantedErrors.clear();
  return out;
}
const wantedErrors = new Map<string, string>();

/**
 * For an implicit-TLS listener, which certificate it presents: Bun fixes a listener's TLS at
 * listen time, so a renewed certificate (SIGHUP, or the files changing) needs a new listener.
 * STARTTLS reads the current pair at each upgrade and needs nothing.
 */
function certificateStamp(l: Listener | SmtpConnector): string {
  return l.tls === "implicit" && tls ? `#${Bun.hash(tls.cert + tls.key).toString(36)}` : "";
}

/** A listener re-bound on the same port right after its old socket closed may race the kernel. */
async function listenWithRetry(l: Listener | SmtpConnector): Promise<BoundListener> {
  for (let attempt = 0;; attempt++) {
    try {
      return await engine!.listen(l, ctx);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (attempt >= 5 || code !== "EADDRINUSE") throw err;
      await Bun.sleep(50 * (attempt + 1));
    }
  }
}
