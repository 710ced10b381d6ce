// For finding where Posthorn's time goes: the same SMTP engine and store as `posthorn serve`,
// but joined in ONE thread by the direct store client (no supervisor, no worker threads, no
// ipc/ rings). Run by `run.ts --direct` as a third server; the gap between this row and the
// real server is the cost of the worker/ring architecture under this load.
//   bun bench/smtp/direct-server.ts DIR   → prints {"port":N} on stdout, serves until SIGTERM
import { join } from "node:path";
import { createDirectStoreClient } from "../../ipc/store-client.ts";
import { silentLogger } from "../../log/mod.ts";
import { Metabase } from "../../metabase/schema.ts";
import { smtpEngine } from "../../protocols/smtp/mod.ts";
import { generateSelfSigned } from "../../protocols/wire/mod.ts";
import { openStore } from "../../store/mod.ts";

const dir = process.argv[2];
if (!dir) throw new Error("usage: direct-server.ts DIR");
// Defaults as `posthorn init` writes them (durability group, groupCommitMs, limits), one MX.
const mb = Metabase.parse({
  server: { hostname: "bench.test" },
  domains: [{ name: "bench.test" }],
  smtp: { connectors: [{ name: "mx", port: 0, tls: "starttls" }] },
});
const store = openStore({
  dir: join(dir, "store"),
  durability: mb.store.durability,
  groupCommitMs: mb.store.groupCommitMs,
  pageBytes: mb.store.pageBytes,
  quotaBytes: null,
  quotaMessages: null,
  domains: mb.domains,
  auth: mb.auth,
  log: silentLogger,
  chunkBytes: mb.ipc.chunkBytes,
});
await store.addUser("bench@bench.test", "bench-password");
const client = createDirectStoreClient(store.service, "bench");
const tls = generateSelfSigned("bench.test");
const listener = await smtpEngine.listen(mb.smtp.connectors[0]!, {
  config: () => mb,
  tls: () => tls,
  store: client,
  log: silentLogger,
  workerIndex: 0,
});

async function stop(): Promise<void> {
  await listener.close(100);
  // Count before closing: the same figure `posthorn user list` gives for the real server.
  const stats = await client.call("store.stats", {});
  client.close();
  await store.close();
  console.log(JSON.stringify({ stopped: true, messages: stats.messages }));
  process.exit(0);
}
process.on("SIGTERM", () => void stop());
process.on("SIGINT", () => void stop());
console.log(JSON.stringify({ port: listener.port, durability: mb.store.durability }));
