// The crash test: a child process delivers from four concurrent writers and is SIGKILLed at
// random moments, 50 times. After each kill the store must open, `verify` must pass, and every
// delivery the child saw acknowledged must be there with the right sha256.
import { expect, test } from "bun:test";
import { join } from "node:path";
import { createDirectStoreClient } from "../../ipc/store-client.ts";
import { openStore } from "../mod.ts";
import { readAll, storeOptions, tempDir } from "./helpers.ts";

const KILLS = 50;
const BUN = join(import.meta.dir, "../../node_modules/.bin/bun");
const CHILD = join(import.meta.dir, "crash-child.ts");

test(`store survives ${KILLS} SIGKILLs mid-delivery`, async () => {
  const t = tempDir("posthorn-crash-");
  const acked = new Map<number, { userId: number; sha: string }>();
  let totalAcks = 0;
  let seed = 12345;
  try {
    for (let run = 0; run < KILLS; run++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      const child = Bun.spawn(
        [BUN, CHILD, t.dir, run % 5 === 4 ? "always" : "group", String(seed)],
        {
          stdout: "pipe",
          stderr: "pipe",
          env: { ...process.env, BUN_RUNTIME_TRANSPILER_CACHE_PATH: "0" },
        },
      );
      const reader = child.stdout.getReader();
      let text = "";
      const decoder = new TextDecoder();
      // Wait until the child is delivering, then let it run for a random while.
      while (!text.includes("READY")) {
        const r = await reader.read();
        if (r.done) break;
        text += decoder.decode(r.value, { stream: true });
      }
      if (!text.includes("READY")) {
        throw new Error(`child did not start: ${await new Response(child.stderr).text()}`);
      }
      const delay = 20 + (seed % 250);
      const killer = setTimeout(() => child.kill("SIGKILL"), delay);
      for (;;) {
        const r = await reader.read();
        if (r.done) break;
        text += decoder.decode(r.value, { stream: true });
      }
      clearTimeout(killer);
      await child.exited;
      expect(child.signalCode).toBe("SIGKILL");
      for (const line of text.split("\n")) {
        const [kind, a, b, c] = line.split(" ");
        if (kind === "ACK") {
          acked.set(Number(b), { userId: Number(a), sha: c! });
          totalAcks++;
        } else if (kind === "DEL") acked.delete(Number(a));
      }

      const store = openStore(storeOptions(t.dir, { durability: "group" }));
      try {
        const report = await store.verify();
        expect(report.problems).toEqual([]);
        const client = createDirectStoreClient(store.service, "checker");
        for (const [messageId, want] of acked) {
          const bytes = await readAll(
            client.stream("message.read", { userId: want.userId, messageId }),
          );
          expect(new Bun.CryptoHasher("sha256").update(bytes).digest("hex")).toBe(want.sha);
        }
        client.close();
      } finally {
        await store.close();
      }
    }
    expect(totalAcks).toBeGreaterThan(KILLS);
  } finally {
    t.cleanup();
  }
}, 180_000);
