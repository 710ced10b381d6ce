// ipc benchmark: the ring transport beside worker.postMessage and MessageChannel carrying the
// same requests to a worker, each case's transports taking turns in short slices. Prints figures
// only (never asserts). Run:
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

/** Sums of the slices one transport ran for one case. */
interface Tally {
  done: number;
  seconds: number;
  cpuMicros: number;
}

/** Load on this shared machine drifts within seconds, so each case runs as ROUNDS short slices
 * taking turns between the transports: every transport sees the same mix of quiet and busy. */
const ROUNDS = 4;

async function warm(call: Call, make: (i: number) => [string, unknown]) {
  for (let i = 0; i < 2000; i++) await call(...make(i));
}

/** Keeps `inFlight` requests outstanding for `seconds`; adds completions and CPU to `t`. */
async function slice(
  call: Call,
  inFlight: number,
  make: (i: number) => [string, unknown],
  seconds: number,
  t: Tally,
) {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  let done = 0;
  const lane = async () => {
    while (performance.now() < deadline) {
      await call(...make(done));
      done++;
    }
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
  const cpu = process.cpuUsage(cpu0);
  t.done += done;
  t.seconds += (performance.now() - t0) / 1000;
  t.cpuMicros += cpu.user + cpu.system;
}

/** One case for every transport, interleaved; completions/s and CPU µs each, per transport. */
async function runCase(
  transports: [string, Call][],
  inFlight: number,
  make: (i: number) => [string, unknown],
): Promise<Figures[]> {
  const tallies = transports.map(() => ({ done: 0, seconds: 0, cpuMicros: 0 }));
  for (const [, call] of transports) await warm(call, make);
  for (let r = 0; r < ROUNDS; r++) {
    for (let i = 0; i < transports.length; i++) {
      await slice(transports[i]![1], inFlight, make, SECONDS / ROUNDS, tallies[i]!);
    }
  }
  return tallies.map((t) => ({ perSecond: t.done / t.seconds, cpuMicros: t.cpuMicros / t.done }));
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
  const a = await runCase(transports, 1, realistic);
  const b = await runCase(transports, 64, realistic);
  const c = await runCase(transports, 16, body);
  const rows: Record<string, Record<string, Figures>> = {};
  transports.forEach(([name], i) => rows[name] = { a: a[i]!, b: b[i]!, c: c[i]! });

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
      pad("CPU µs/64 KiB (c)", 19),
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
        pad(fmt(r.c!.cpuMicros, 2), 19),
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
        `(d) CPU per request ${fmt(ringRow.b!.cpuMicros / o.b!.cpuMicros, 2)}×, ` +
        `per 64 KiB ${fmt(ringRow.c!.cpuMicros / o.c!.cpuMicros, 2)}×`,
    );
  }
  ring.close();
  for (const w of [ringWorker, pmWorker, mcWorker]) w.terminate();
  channel.port1.close();
}

await main();
