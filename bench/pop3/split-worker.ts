// The other half of profile.ts: a Worker hosting either the store (serving one ipc/ binding)
// or the POP3 engine (over a ring client), so the half left on the main thread can be profiled
// (bun --cpu-prof samples the main thread only).
/// <reference lib="webworker" />
import { attachStoreClient, type BindingDescriptor, serveStore } from "../../ipc/mod.ts";
import { silentLogger } from "../../log/mod.ts";
import { loadMetabase, resolvePaths } from "../../metabase/mod.ts";
import { pop3Engine } from "../../protocols/pop3/mod.ts";
import { generateSelfSigned } from "../../protocols/wire/mod.ts";
import { openStore, type Store, storeOptionsFromMetabase } from "../../store/mod.ts";

declare const self: Worker;

export interface SplitRequest {
  role: "store" | "engine";
  metabaseFile: string;
  descriptor: BindingDescriptor;
}

let store: Store | null = null;
let stop: (() => Promise<void>) | null = null;

self.onmessage = async (ev: MessageEvent<SplitRequest | "stop">) => {
  if (ev.data === "stop") {
    await stop?.();
    self.postMessage({ type: "stopped" });
    return;
  }
  const { role, metabaseFile, descriptor } = ev.data;
  const loaded = loadMetabase(metabaseFile);
  if (!loaded.ok) throw new Error("bad metabase");
  const mb = loaded.metabase;
  if (role === "store") {
    store = openStore(
      storeOptionsFromMetabase(mb, resolvePaths(metabaseFile, mb).storeDir, silentLogger),
    );
    const served = serveStore(descriptor, store.service);
    stop = async () => {
      served.close();
      await store?.close();
    };
    self.postMessage({ type: "ready", port: 0 });
  } else {
    const client = attachStoreClient(descriptor);
    const tls = generateSelfSigned("localhost");
    const bound = await pop3Engine.listen(mb.pop3.listeners[0]!, {
      config: () => mb,
      tls: () => tls,
      store: client,
      log: silentLogger,
      workerIndex: 0,
    });
    stop = async () => {
      await bound.close(500);
      client.close();
    };
    self.postMessage({ type: "ready", port: bound.port });
  }
};
