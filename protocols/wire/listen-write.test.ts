// The write path of listen.ts: output gathered in pooled slabs arrives byte-exact and in order
// whatever is written — small replies, text whose multi-byte characters straddle a slab's end,
// views over shared memory overwritten as soon as write() returns, large arrays handed over.
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { BoundListener } from "../engine.ts";
import { memoryLogger } from "../../log/mod.ts";
import { listen } from "./listen.ts";
import type { Connection, Session } from "./types.ts";

/** Writes everything at once on connect, then closes; returns what should arrive. */
function script(conn: Connection): Uint8Array {
  const parts: Uint8Array[] = [];
  const text = (s: string) => {
    conn.write(s);
    parts.push(Buffer.from(s, "utf8"));
  };
  const bytes = (b: Uint8Array) => {
    parts.push(b.slice());
    conn.write(b);
  };
  for (let i = 0; i < 500; i++) text(`+OK line ${i}\r\n`);
  text("é€😀".repeat(20_000)); // 180 KB of 2-, 3- and 4-byte characters over several slabs
  const shared = new Uint8Array(new SharedArrayBuffer(100_000));
  for (let round = 0; round < 3; round++) {
    shared.fill(0x41 + round);
    bytes(shared.subarray(round, 70_000 + round)); // overwritten on the next round
  }
  shared.fill(0); // too late to matter: every view was copied as it was written
  const large = new Uint8Array(200_000).map((_, i) => i & 0xff);
  bytes(large); // behind a slab with room: copied
  text("\r\n");
  conn.write(new Uint8Array(0)); // nothing at all
  text("end\r\n");
  conn.close();
  return Buffer.concat(parts);
}

let bound: BoundListener;
const expected = new Map<number, Uint8Array>();

beforeAll(async () => {
  bound = await listen(
    {
      listener: { name: "writes", bind: "127.0.0.1", port: 0, tls: "none" },
      tls: () => {
        throw new Error("no TLS here");
      },
      idleTimeoutMs: 5000,
      maxConnections: 10,
      connectionsPerIp: 10,
      log: memoryLogger("listen-write"),
      bufferBytes: 64 * 1024,
    },
    (conn): Session => {
      expected.set(conn.remotePort, script(conn));
      return { onData() {}, onClose() {} };
    },
  );
});

afterAll(async () => {
  await bound.close(100);
});

test("slab-gathered output arrives byte-exact and in order, then the close", async () => {
  const chunks: Uint8Array[] = [];
  let port = 0;
  const closed = new Promise<void>((resolve) => {
    Bun.connect({
      hostname: "127.0.0.1",
      port: bound.port,
      socket: {
        open: (s) => void (port = s.localPort),
        data: (_s, d) => void chunks.push(Buffer.from(d)),
        close: () => resolve(),
        error: () => resolve(),
      },
    });
  });
  await closed;
  const got = Buffer.concat(chunks);
  const want = expected.get(port)!;
  expect(got.length).toBe(want.length);
  expect(got.equals(want)).toBe(true);
});
