// SMTP receive throughput: messages/s accepted and stored (fsync on, group commit) and the
// latency from MAIL FROM to the 250 after the final dot, for 1 KiB and 64 KiB messages over 8
// and 16 connections. Prints figures only. Postfix side-by-side is not in this script yet.
//   node_modules/.bin/bun bench/smtp/throughput.ts [messagesPerRun]
import { mkdtempSync, rmSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createDirectStoreClient } from "../../ipc/store-client.ts";
import { silentLogger } from "../../log/mod.ts";
import { Metabase } from "../../metabase/schema.ts";
import { smtpEngine } from "../../protocols/smtp/mod.ts";
import { generateSelfSigned } from "../../protocols/wire/mod.ts";
import { openStore } from "../../store/mod.ts";

const total = Number(process.argv[2] ?? 2000);
const dir = mkdtempSync(join(tmpdir(), "posthorn-bench-smtp-"));
const mb = Metabase.parse({
  server: { hostname: "bench.test" },
  domains: [{ name: "example.com" }],
  store: { durability: "group" },
  limits: { connectionsPerIp: 64 },
  smtp: { connectors: [{ name: "mx", port: 0 }] },
});
const store = openStore({
  dir,
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
await store.addUser("bench@example.com", "x");
const client = createDirectStoreClient(store.service, "bench");
const tls = generateSelfSigned("bench.test");
const listener = await smtpEngine.listen(mb.smtp.connectors[0]!, {
  config: () => mb,
  tls: () => tls,
  store: client,
  log: silentLogger,
  workerIndex: 0,
});

/** One connection sending `count` messages one after another; returns per-message latencies. */
async function sender(count: number, body: string): Promise<number[]> {
  const socket: Socket = connect({ host: "127.0.0.1", port: listener.port });
  let buf = "";
  let wake: (() => void) | null = null;
  socket.on("data", (d) => {
    buf += d.toString("latin1");
    wake?.();
  });
  const reply = async (): Promise<string> => {
    for (;;) {
      const m = /^(?:\d{3}-[^\r\n]*\r\n)*\d{3} [^\r\n]*\r\n/.exec(buf);
      if (m) {
        buf = buf.slice(m[0].length);
        return m[0];
      }
      await new Promise<void>((r) => (wake = r));
    }
  };
  await reply();
  socket.write("EHLO bench\r\n");
  await reply();
  const latencies: number[] = [];
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    // PIPELINING (RFC 2920): MAIL, RCPT and DATA in one write.
    socket.write("MAIL FROM:<load@remote.example>\r\nRCPT TO:<bench@example.com>\r\nDATA\r\n");
    for (let k = 0; k < 3; k++) await reply();
    socket.write(body);
    const done = await reply();
    if (!done.startsWith("250")) throw new Error(`refused: ${done}`);
    latencies.push(performance.now() - t0);
  }
  socket.end("QUIT\r\n");
  return latencies;
}

function message(bytes: number): string {
  const head = "From: load@remote.example\r\nTo: bench@example.com\r\nSubject: bench\r\n\r\n";
  const line = "x".repeat(76) + "\r\n";
  return head + line.repeat(Math.max(1, Math.floor((bytes - head.length) / line.length))) +
    ".\r\n";
}

const pct = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;

console.log(`posthorn smtp receive, durability=${mb.store.durability}, ${total} messages per run`);
for (const size of [1024, 64 * 1024]) {
  for (const conns of [8, 16]) {
    const body = message(size);
    const each = Math.max(1, Math.floor(total / conns));
    const t0 = performance.now();
    const all = (await Promise.all(Array.from({ length: conns }, () => sender(each, body)))).flat();
    const seconds = (performance.now() - t0) / 1000;
    all.sort((a, b) => a - b);
    console.log(
      `${String(size / 1024).padStart(3)} KiB x ${String(conns).padStart(2)} conns: ` +
        `${(all.length / seconds).toFixed(0).padStart(6)} msg/s  ` +
        `p50 ${pct(all, 0.5).toFixed(2)} ms  p99 ${pct(all, 0.99).toFixed(2)} ms`,
    );
  }
}
await listener.close(100);
client.close();
await store.close();
rmSync(dir, { recursive: true, force: true });
