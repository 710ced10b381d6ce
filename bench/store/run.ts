// Store benchmark: deliveries per second with fsync on (1 KiB and 100 KiB bodies, 1 and 16
// concurrent writers, durability "group" and "always"), MB/s streaming a body out of the page
// file, and peak RSS while streaming a 100 MB body. Prints figures only; asserts nothing.
// Run: node_modules/.bin/bun bench/store/run.ts [seconds-per-case]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createDirectStoreClient } from "../../ipc/store-client.ts";
import { silentLogger } from "../../log/mod.ts";
import { openStore, type StoreOptions } from "../../store/mod.ts";

const SECONDS = Number(process.argv[2] ?? 2);
const MiB = 1024 * 1024;

function options(dir: string, durability: StoreOptions["durability"]): StoreOptions {
  return {
    dir,
    durability,
    groupCommitMs: 0,
    pageBytes: 4096,
    quotaBytes: null,
    quotaMessages: null,
    domains: [{ name: "example.com", catchAll: null }],
    auth: {
      plaintext: "always",
      failuresPerMinute: 5,
      failureDelayMs: 0,
      credentialCacheSeconds: 60,
      maxHashesInFlight: 4,
      hashWaitMs: 5000,
    },
    log: silentLogger,
    argon2: { memoryCost: 256, timeCost: 1 },
  };
}

async function deliveries(durability: "group" | "always", size: number, writers: number) {
  const dir = mkdtempSync(join(tmpdir(), "posthorn-bench-"));
  const store = openStore(options(dir, durability));
  const client = createDirectStoreClient(store.service);
  await store.addUser("u@example.com", "pw");
  // Mail is text (attachments travel base64-encoded): a body of 78-column lines, as on the wire.
  const line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor\r\n";
  const body = new TextEncoder().encode(line.repeat(Math.ceil(Math.min(size, 65536) / line.length)))
    .subarray(0, Math.min(size, 65536));
  let done = 0;
  const end = performance.now() + SECONDS * 1000;
  const writer = async (w: number) => {
    for (let n = 0; performance.now() < end; n++) {
      const { uploadId } = await client.call("body.begin", { sizeHint: size });
      // a unique first chunk per message, so single-instance dedupe does not flatter us
      const head = new TextEncoder().encode(`X-Seq: ${w}-${n}\r\n`);
      await client.call("body.append", { uploadId, chunk: head });
      for (let left = size; left > 0; left -= body.length) {
        await client.call("body.append", {
          uploadId,
          chunk: body.subarray(0, Math.min(left, body.length)),
        });
      }
      await client.call("delivery.commit", {
        uploadId,
        sender: "s@remote.test",
        recipients: [{ address: "u@example.com" }],
      });
      done++;
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: writers }, (_, w) => writer(w)));
  const secs = (performance.now() - t0) / 1000;
  client.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
  return done / secs;
}

async function streaming(size: number) {
  const dir = mkdtempSync(join(tmpdir(), "posthorn-bench-"));
  const store = openStore(options(dir, "off"));
  const client = createDirectStoreClient(store.service);
  const acct = await store.addUser("u@example.com", "pw");
  const chunk = crypto.getRandomValues(new Uint8Array(MiB));
  const { uploadId } = await client.call("body.begin", { sizeHint: size });
  for (let left = size; left > 0; left -= chunk.length) {
    await client.call("body.append", {
      uploadId,
      chunk: chunk.subarray(0, Math.min(left, chunk.length)),
    });
  }
  const res = await client.call("delivery.commit", {
    uploadId,
    sender: "",
    recipients: [{ address: "u@example.com" }],
  });
  Bun.gc(true);
  const base = process.memoryUsage().rss;
  let peak = base, total = 0;
  const t0 = performance.now();
  for await (
    const c of client.stream("message.read", {
      userId: acct.userId,
      messageId: res.delivered[0]!.messageId,
    })
  ) {
    total += c.length;
    if ((total & (8 * MiB - 1)) < c.length) peak = Math.max(peak, process.memoryUsage().rss);
  }
  const secs = (performance.now() - t0) / 1000;
  peak = Math.max(peak, process.memoryUsage().rss);
  client.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
  return { mbps: total / MiB / secs, growthMiB: (peak - base) / MiB, total };
}

console.log(`posthorn store bench (${SECONDS}s per case, page 4 KiB, groupCommitMs 0)`);
for (const durability of ["group", "always"] as const) {
  for (const size of [1024, 100 * 1024]) {
    for (const writers of [1, 16]) {
      const rate = await deliveries(durability, size, writers);
      console.log(
        `deliveries  durability=${durability.padEnd(6)} body=${
          String(size / 1024).padStart(3)
        } KiB writers=${String(writers).padStart(2)}  ${rate.toFixed(0).padStart(6)} /s`,
      );
    }
  }
}
const s = await streaming(100 * MiB);
console.log(`streaming   100 MiB body out of the page file  ${s.mbps.toFixed(0)} MB/s`);
console.log(
  `memory      RSS growth while streaming 100 MiB: ${s.growthMiB.toFixed(1)} MiB (chunk 64 KiB)`,
);
