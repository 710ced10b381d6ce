// Child process of bounce-crash.test.ts: a real store and a real queue runner. Alice sends
// one message after another to a domain with a null MX (RFC 7505), which the runner bounces
// at once; the child prints "Q <queueId> <recipient>" once each delivery.commit resolved, and
// the parent SIGKILLs it at a random moment. With "drain" it sends nothing, lets the runner
// empty the queue and exits.
import { createDirectStoreClient } from "../../ipc/store-client.ts";
import { silentLogger } from "../../log/mod.ts";
import { Metabase } from "../../metabase/schema.ts";
import { openStore } from "../../store/mod.ts";
import { storeOptions } from "../../store/test/helpers.ts";
import { QueueRunner } from "../../transport/mod.ts";

const [dir, run = "0"] = process.argv.slice(2);
const store = openStore(storeOptions(dir!, { durability: "group", groupCommitMs: 1 }));
try {
  await store.addUser("alice@example.com", "pw");
} catch { /* exists from an earlier run */ }
const client = createDirectStoreClient(store.service, "bounce-crash-child");
const mb = Metabase.parse({
  server: { hostname: "crash.test" },
  smtp: { queue: { pollSeconds: 3600 } },
});
const runner = new QueueRunner({
  store: client,
  config: () => mb,
  log: silentLogger,
  dns: () => ({ resolveMx: () => Promise.resolve([{ exchange: ".", priority: 0 }]) }),
});
client.subscribe("queue", () => runner.kick());
runner.start();
const write = (line: string) => process.stdout.write(line + "\n");
write("READY");

if (run === "drain") {
  await runner.idle();
  await runner.stop();
  client.close();
  await store.close();
  write("DRAINED");
  process.exit(0);
}

const enc = new TextEncoder();
for (let n = 0; n < 60; n++) {
  const to = `r${run}-${n}@nomail.test`;
  const body = enc.encode(`From: alice@example.com\r\nSubject: ${to}\r\n\r\nmessage ${n}\r\n`);
  const { uploadId } = await client.call("body.begin", { sizeHint: body.length });
  await client.call("body.append", { uploadId, chunk: body });
  const res = await client.call("delivery.commit", {
    uploadId,
    sender: "alice@example.com",
    recipients: [{ address: to }],
  });
  for (const q of res.queued) write(`Q ${q.queueId} ${q.address}`);
}
await runner.idle();
write("IDLE");
await new Promise(() => {}); // wait for the kill
