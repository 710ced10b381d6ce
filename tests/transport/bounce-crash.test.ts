// A transport SIGKILLed at random moments while it bounces mail never sends a bounce twice and
// never loses one: after every kill, each queued entry is either still queued or bounced (the
// DSN and the queue update are one store transaction, queue.report), and once the queue is
// drained every entry was bounced exactly once.
import { expect, test } from "bun:test";
import { join } from "node:path";
import { createDirectStoreClient } from "../../ipc/store-client.ts";
import { openStore } from "../../store/mod.ts";
import { readAll, storeOptions, tempDir } from "../../store/test/helpers.ts";

const KILLS = 12;
const BUN = join(import.meta.dir, "../../node_modules/.bin/bun");
const CHILD = join(import.meta.dir, "bounce-crash-child.ts");
const dec = new TextDecoder();

/** Run the child until it prints `until`, then (unless `kill` is null) kill it `kill` ms later. */
async function runChild(dir: string, arg: string, kill: number | null): Promise<string> {
  const child = Bun.spawn([BUN, CHILD, dir, arg], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, BUN_RUNTIME_TRANSPILER_CACHE_PATH: "0" },
  });
  const reader = child.stdout.getReader();
  let text = "";
  let killer: ReturnType<typeof setTimeout> | null = null;
  for (;;) {
    const r = await reader.read();
    if (r.done) break;
    text += dec.decode(r.value, { stream: true });
    if (killer === null && kill !== null && text.includes("READY\n")) {
      killer = setTimeout(() => child.kill("SIGKILL"), kill);
    }
    if (text.includes("IDLE\n")) child.kill("SIGKILL"); // finished before the timer: kill now
  }
  if (killer) clearTimeout(killer);
  await child.exited;
  if (kill === null) {
    expect(child.exitCode).toBe(0);
  } else {
    expect(child.signalCode).toBe("SIGKILL");
  }
  if (!text.includes("READY")) throw new Error(await new Response(child.stderr).text());
  return text;
}

/** Bounces per recipient in alice's INBOX, and the ids still queued. */
async function look(dir: string) {
  const store = openStore(storeOptions(dir, { durability: "group" }));
  const client = createDirectStoreClient(store.service, "checker");
  try {
    const bounced = new Map<string, number>();
    const account = await client.call("account.get", { address: "alice@example.com" });
    const st = await client.call("folder.status", { userId: account!.userId, name: "INBOX" });
    const list = await client.call("message.list", {
      userId: account!.userId,
      folderId: st.folderId,
    });
    for (const m of list) {
      const text = dec.decode(
        await readAll(
          client.stream("message.read", { userId: account!.userId, messageId: m.messageId }),
        ),
      );
      for (const hit of text.matchAll(/^Final-Recipient: rfc822; (\S+)$/gm)) {
        bounced.set(hit[1]!, (bounced.get(hit[1]!) ?? 0) + 1);
      }
    }
    const queued = new Set((await client.call("queue.list", {})).map((e) => e.queueId));
    expect((await store.verify()).problems).toEqual([]);
    return { bounced, queued };
  } finally {
    client.close();
    await store.close();
  }
}

test(
  `a transport killed ${KILLS} times while bouncing sends each bounce exactly once`,
  async () => {
    const t = tempDir("posthorn-bounce-crash-");
    const acked = new Map<number, string>(); // queueId → recipient
    let seed = 4242;
    try {
      for (let run = 0; run < KILLS; run++) {
        seed = (seed * 1103515245 + 12345) >>> 0;
        const text = await runChild(t.dir, String(run), 10 + (seed % 150));
        for (const line of text.split("\n")) {
          const [kind, id, rcpt] = line.split(" ");
          if (kind === "Q") acked.set(Number(id), rcpt!);
        }
        const { bounced, queued } = await look(t.dir);
        for (const [rcpt, n] of bounced) expect([rcpt, n]).toEqual([rcpt, 1]);
        // Both or neither: an entry still queued has no bounce yet, a gone one has its bounce.
        for (const [id, rcpt] of acked) {
          expect({ rcpt, queued: queued.has(id) }).toEqual({ rcpt, queued: !bounced.has(rcpt) });
        }
      }
      await runChild(t.dir, "drain", null);
      const { bounced, queued } = await look(t.dir);
      expect(queued.size).toBe(0);
      expect(acked.size).toBeGreaterThan(KILLS);
      for (const rcpt of acked.values()) expect([rcpt, bounced.get(rcpt)]).toEqual([rcpt, 1]);
      for (const n of bounced.values()) expect(n).toBe(1);
    } finally {
      t.cleanup();
    }
  },
  60_000,
);
