// Worker entry that hosts the store: the only writer of SQLite and the page file (STORE.exe).
// It serves one ipc/ binding per engine worker and follows metabase reloads (domains).
import { serveStore } from "../ipc/mod.ts";
import { openStore, type Store, storeOptionsFromMetabase } from "../store/mod.ts";
import type { ToWorker } from "./messages.ts";
import { runWorker, type WorkerRuntime } from "./worker-runtime.ts";

let store: Store | null = null;
let storeDir = "";
const served = new Map<string, { close(): void }>();

runWorker("store", handle);

async function handle(msg: ToWorker, rt: WorkerRuntime): Promise<void> {
  switch (msg.type) {
    case "init": {
      const mb = msg.metabase;
      const log = rt.setLogger("store", mb.logging.level);
      storeDir = msg.paths.storeDir;
      store = openStore({
        ...storeOptionsFromMetabase(mb, msg.paths.storeDir, log),
        // The disk failed under us: die, so the supervisor restarts the store from committed state.
        onFatal: (err) =>
          setTimeout(() => {
            throw err;
          }, 100),
      });
      rt.post({ type: "started", listeners: [] });
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
      store?.reconfigure(storeOptionsFromMetabase(msg.metabase, storeDir, rt.log));
      return;
    case "stop": {
      for (const s of served.values()) s.close();
      served.clear();
      await store?.close();
      store = null;
      rt.post({ type: "stopped" });
      return;
    }
    case "test.crash":
      rt.crash();
      return;
    case "test.hang":
      rt.hang();
      return;
    case "bind":
      return;
  }
}
