// Fills a Posthorn store for the benchmark, as its own short-lived process: the server is not
// running yet, so this process owns the store (store/owner.ts) and closes it before exiting.
// Messages go through the store's delivery API exactly as the SMTP engine sends them.
// Usage: bun populate.ts <metabase.json> <size> <count> <address>...   (password "benchpw")
import { createDirectStoreClient } from "../../ipc/store-client.ts";
import { silentLogger } from "../../log/mod.ts";
import { loadMetabase, resolvePaths } from "../../metabase/mod.ts";
import { openStore, storeOptionsFromMetabase } from "../../store/mod.ts";
import { stored } from "./messages.ts";

const [file, sizeArg, countArg, ...addresses] = process.argv.slice(2);
const loaded = loadMetabase(file!);
if (!loaded.ok) throw new Error(`bad metabase: ${JSON.stringify(loaded.issues)}`);
const mb = loaded.metabase;
const store = openStore({
  ...storeOptionsFromMetabase(mb, resolvePaths(file!, mb).storeDir, silentLogger),
  durability: "off", // filling a benchmark store: no need to wait for the disk
  groupCommitMs: 0,
  argon2: { memoryCost: 8192, timeCost: 1 }, // logins are not what is measured
});
const client = createDirectStoreClient(store.service, "bench-populate");
try {
  for (const address of addresses) {
    await store.addUser(address, "benchpw");
    for (let i = 0; i < Number(countArg); i++) {
      const { prefix, body } = stored(Number(sizeArg), i);
      const { uploadId } = await client.call("body.begin", {});
      await client.call("body.append", { uploadId, chunk: body });
      const r = await client.call("delivery.commit", {
        uploadId,
        sender: "bench@example.org",
        recipients: [{ address }],
        localPrefix: prefix,
      });
      if (r.delivered.length !== 1) throw new Error(`delivery failed: ${JSON.stringify(r)}`);
    }
  }
} finally {
  client.close();
  await store.close();
}
