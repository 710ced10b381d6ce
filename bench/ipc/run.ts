// ipc benchmark: the ring transport beside worker.postMessage and MessageChannel carrying the
// same requests to a worker. Prints figures only (never asserts). Run:
//   node_modules/.bin/bun bench/ipc/run.ts [seconds-per-case]
import { attachStoreClient, QueueManager } from "../../ipc/mod.ts";

const SECONDS = Number(process.argv[2] ?? 1);
const BODY = new Uint8Array(64 * 1024).map((_, i) => i & 0xff);

type Call = (method: string, req: unknown) => Promise<unknown>;

function waitFor(w: Worker, type: string): Promise<void> {
  return new Promise((resolve) => {
    const on = (e: MessageEvent) => {
      if (e.data?.type === type) {
        w.removeEventListener("message", on);
        resolve();
      }
    };
    w.addEventListener("message", on);
  });
}

/** A promise-per-request client over anything with postMessage/onmessage. */
function messageClient(port: { postMessage(m: unknown): void; onmessage: any }): Call {
  const pending = new Map<number, (v: unknown) => void>();
  let next = 1;
  port.onmessage = (e: MessageEvent) => {
    const r = e.data as { id: number; r: unknown };
    const p = pending.get(r.id);
    if (p) {
      pending.delete(r.id);
      p(r.r);
    }
  };
  return (m, a) =>
    new Promise((resolve) => {
      const id = next++;
      pending.set(id, resolve);
      port.postMessage({ id, m, a });
    });
}

interface Figures {
  perSecond: number;
  cpuMicros: number;
}

/** Keeps `inFlight` requests outstanding for SECONDS; returns completions/s and CPU µs each. */
async function load(call: Call, inFlight: number, make: (i: number) => [string, unknown]) {
  // warm up
  for (let i = 0; i < 2000; i++) await call(...make(i));
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const deadline = t0 + SECONDS * 1000;
  let done = 0;
  const lane = async () => {
    while (performance.now() < deadline) {
      await call(...make(done));
      done++;
    }
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { perSecond: done / seconds, cpuMicros: (cpu.user + cpu.system) / done } as Figures;
}

const realistic = (i: number): [string, unknown] => [
  "account.get",
  { address: `user${i % 1000}@example.com` },
];
const body = (i: number): [string, unknown] => ["body.append", { uploadId: i, chunk: BODY }];

async function main() {
  const qm = new QueueManager({ heapBytes: 64 << 20, ringSlots: 1024, chunkBytes: 64 * 1024 });
  const ringWorker = new Worker(new URL("./worker.ts", import.meta.url));
  const pmWorker = new Worker(new URL("./worker.ts", import.meta.url));
  const mcWorker = new Worker(new URL("./worker.ts", import.meta.url));

  const { server, client } = qm.bind("bench-store", "bench-main");
  ringWorker.postMessage({ type: "serve", descriptor: server });
  await waitFor(ringWorker, "ready");
  const ring = attachStoreClient(client);
  const ringCall: Call = (m, a) => ring.call(m as never, a as never);

  const pmCall = messageClient(pmWorker);

  const channel = new MessageChannel();
  mcWorker.postMessage({ type: "port", port: channel.port2 }, [channel.port2]);
  await waitFor(mcWorker, "ready");
  const mcCall = messageClient(channel.port1);

  const transports: [string, Call][] = [
    ["ipc ring", ringCall],
    ["postMessage", pmCall],
    ["MessageChannel", mcCall],
  ];
  const rows: Record<string, Record<string, Figures>> = {};
  for (const [name, call] of transports) {
    rows[name] = {
      a: await load(call, 1, realistic),
      b: await load(call, 64, realistic),
      c: await load(call, 16, body),
    };
  }

  const fmt = (n: number, d = 0) => n.toLocaleString("en-US", { maximumFractionDigits: d });
  const pad = (s: string, n: number) => s.padStart(n);
  console.log(
    `ipc benchmark, ${SECONDS}s per case, Bun ${Bun.version}, ${navigator.hardwareConcurrency} CPUs`,
  );
  console.log(
    [
      "transport".padEnd(16),
      pad("(a) rt/s 1 in flight", 22),
      pad("(b) req/s 64 in flight", 24),
      pad("(c) MB/s 64 KiB", 17),
      pad("(d) CPU µs/req (b)", 20),
      pad("CPU µs/req (a)", 16),
    ].join(" "),
  );
  for (const [name] of transports) {
    const r = rows[name]!;
    console.log(
      [
        name.padEnd(16),
        pad(fmt(r.a!.perSecond), 22),
        pad(fmt(r.b!.perSecond), 24),
        pad(fmt((r.c!.perSecond * BODY.byteLength) / 1e6), 17),
        pad(fmt(r.b!.cpuMicros, 2), 20),
        pad(fmt(r.a!.cpuMicros, 2), 16),
      ].join(" "),
    );
  }
  const ringRow = rows["ipc ring"]!;
  for (const other of ["postMessage", "MessageChannel"]) {
    const o = rows[other]!;
    console.log(
      `ring vs ${other}: (a) ${fmt(ringRow.a!.perSecond / o.a!.perSecond, 2)}×  ` +
        `(b) ${fmt(ringRow.b!.perSecond / o.b!.perSecond, 2)}×  ` +
        `(c) ${fmt(ringRow.c!.perSecond / o.c!.perSecond, 2)}×  ` +
        `(d) CPU per request ${fmt(ringRow.b!.cpuMicros / o.b!.cpuMicros, 2)}×`,
    );
  }
  ring.close();
  for (const w of [ringWorker, pmWorker, mcWorker]) w.terminate();
  channel.port1.close();
}

await main();
