// Worker entry that hosts the store: the only writer of SQLite and the page file (STORE.exe).
// It serves one ipc/ binding per engine worker and follows metabase reloads (domains).
/// <reference lib="webworker" />
import { serveStore } from "../ipc/mod.ts";
import { forwardingLogger, type Logger } from "../log/mod.ts";
import { openStore, type Store, storeOptionsFromMetabase } from "../store/mod.ts";
import type { FromWorker, ToWorker } from "./messages.ts";

declare const self: Worker;

const post = (msg: FromWorker) => self.postMessage(msg);
let log: Logger = forwardingLogger("store", (m) => post(m as FromWorker));
let store: Store | null = null;
let testHooks = false;
const served = new Map<string, { close(): void }>();

self.addEventListener("unhandledrejection", (event) => {
  const ev = event as Event & { reason: unknown };
  ev.preventDefault();
  log.error("worker.unhandled_rejection", {
    error: ev.reason instanceof Error ? ev.reason : String(ev.reason),
  });
});

self.onmessage = (ev: MessageEvent<ToWorker>) => {
  const msg = ev.data;
  handle(msg).catch((err) => {
    log.error("worker.control_failed", { type: msg.type, error: err });
    if (msg.type === "init") {
      post({ type: "failed", error: String((err as Error)?.message ?? err) });
    }
  });
};

async function handle(msg: ToWorker): Promise<void> {
  switch (msg.type) {
    case "init": {
      const mb = msg.metabase;
      testHooks = msg.testHooks;
      log = forwardingLogger("store", (m) => post(m as FromWorker), mb.logging.level);
      store = openStore(storeOptionsFromMetabase(mb, msg.paths.storeDir, log));
      post({ type: "started", listeners: [] });
      return;
    }
    case "serve": {
      if (!store) throw new Error("serve before init");
      served.get(msg.peer)?.close();
      served.set(msg.peer, serveStore(msg.descriptor as never, store.service));
      return;
    }
    case "unserve":
      served.get(msg.peer)?.close();
      served.delete(msg.peer);
      return;
    case "reload":
      store?.setDomains(msg.metabase.domains);
      return;
    case "stop": {
      for (const s of served.values()) s.close();
      served.clear();
      await store?.close();
      store = null;
      post({ type: "stopped" });
      return;
    }
    case "test.crash":
      if (testHooks) {
        setTimeout(() => {
          throw new Error("test crash requested by the supervisor");
        }, 0);
      }
      return;
    case "bind":
      return;
  }
}
