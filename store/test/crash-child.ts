// Child process of the crash test: delivers (and expunges) as fast as it can from several
// concurrent writers, printing "ACK <messageId> <sha256>" only after delivery.commit resolved
// and "DEL <messageId>" before it expunges one; the parent SIGKILLs it at a random moment.
import { createDirectStoreClient } from "../../ipc/store-client.ts";
import { silentLogger } from "../../log/mod.ts";
import { openStore } from "../mod.ts";
import { storeOptions } from "./helpers.ts";

const [dir, durability = "group", seedArg = "1"] = process.argv.slice(2);
let seed = Number(seedArg) >>> 0 || 1;
const rand = () => {
  seed = (seed * 1664525 + 1013904223) >>> 0;
  return seed / 2 ** 32;
};

const store = openStore(
  storeOptions(dir!, {
    durability: durability as "group",
    groupCommitMs: 1,
    log: silentLogger,
  }),
);
const client = createDirectStoreClient(store.service, "crash-child");
for (const u of ["alice@example.com", "bob@example.com"]) {
  try {
    await store.addUser(u, "pw");
  } catch { /* exists from an earlier run */ }
}
const ids = new Map<string, number>();
for (const u of ["alice@example.com", "bob@example.com"]) {
  ids.set(u, (await client.call("account.get", { address: u }))!.userId);
}
const write = (line: string) => process.stdout.write(line + "\n");
const shared = new Uint8Array(3000).fill(65); // identical bodies exercise dedupe

async function writer(w: number): Promise<void> {
  for (let n = 0;; n++) {
    const size = rand() < 0.2 ? shared.length : Math.floor(rand() ** 3 * 300_000) + 1;
    const body = size === shared.length ? shared : crypto.getRandomValues(new Uint8Array(size));
    const { uploadId } = await client.call("body.begin", { sizeHint: size });
    for (let i = 0; i < size; i += 16_384) {
      await client.call("body.append", { uploadId, chunk: body.subarray(i, i + 16_384) });
    }
    const rcpts = rand() < 0.5 ? ["alice@example.com"] : ["alice@example.com", "bob@example.com"];
    if (rand() < 0.2) rcpts.push("far@remote.test");
    const prefix = new TextEncoder().encode(`X-Writer: ${w}-${n}\r\n`);
    const res = await client.call("delivery.commit", {
      uploadId,
      sender: "s@remote.test",
      recipients: rcpts.map((address) => ({ address })),
      localPrefix: prefix,
    });
    const full = new Uint8Array(prefix.length + size);
    full.set(prefix);
    full.set(body, prefix.length);
    const sha = new Bun.CryptoHasher("sha256").update(full).digest("hex");
    for (const d of res.delivered) write(`ACK ${ids.get(d.address)} ${d.messageId} ${sha}`);
    if (rand() < 0.3) {
      // expunge an older message of alice's to free pages for reuse
      const userId = ids.get("alice@example.com")!;
      const folder = await client.call("folder.status", { userId, name: "INBOX" });
      const list = await client.call("message.list", { userId, folderId: folder.folderId });
      const victim = list[Math.floor(rand() * list.length)];
      if (victim) {
        write(`DEL ${victim.messageId}`);
        await client.call("mailbox.expunge", {
          userId,
          folderId: folder.folderId,
          uids: [victim.uid],
        });
      }
    }
    if (rand() < 0.2) {
      const due = await client.call("queue.due", { now: Date.now(), limit: 1 });
      // Two writers may pick the same entry: the loser gets not_found, as a transport would.
      if (due[0]) await client.call("queue.done", { queueId: due[0].queueId }).catch(() => {});
    }
  }
}

write("READY");
await Promise.all([0, 1, 2, 3].map(writer));
