// The control socket: one JSON request per connection, progress lines, then done or error;
// a hang-up is seen by the handler; only the server's user may connect (mode 0600).
import { afterAll, expect, test } from "bun:test";
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { StoreError } from "../ipc/store-api.ts";
import { memoryLogger } from "../log/mod.ts";
import { eventually } from "../tests/helpers.ts";
import { CONTROL_SOCKET, controlRequest, ControlServer } from "./control.ts";

const dir = mkdtempSync(join(tmpdir(), "posthorn-control-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("requests, progress, errors and hang-ups", async () => {
  let sawGone = false;
  let release = () => {};
  const server = new ControlServer(
    dir,
    {
      count: async (req, reply) => {
        for (let i = 1; i <= Number(req.to); i++) reply.progress({ i });
        return { counted: req.to };
      },
      refuse: () => Promise.reject(new StoreError("not_found", "no such mailbox")),
      crash: () => Promise.reject(new Error("boom")),
      wait: async (_req, reply) => {
        await new Promise<void>((r) => release = r);
        sawGone = reply.gone;
        return null;
      },
    },
    memoryLogger("control"),
  );
  server.start();
  try {
    expect(statSync(join(dir, CONTROL_SOCKET)).mode & 0o777).toBe(0o600);
    const seen: unknown[] = [];
    const answer = await controlRequest(dir, { op: "count", to: 3 }, (p) => seen.push(p));
    expect(seen).toEqual([{ i: 1 }, { i: 2 }, { i: 3 }]);
    expect(answer).toEqual({ done: { counted: 3 } });

    const fails = async (req: Record<string, unknown>) => {
      try {
        await controlRequest(dir, req, () => {});
      } catch (e) {
        return e as StoreError;
      }
      throw new Error("expected a failure");
    };
    expect(await fails({ op: "refuse" })).toMatchObject({ code: "not_found" });
    expect(await fails({ op: "crash" })).toMatchObject({ code: "internal", message: "boom" });
    expect(await fails({ op: "nothing" })).toMatchObject({ code: "invalid" });
    expect(await fails({ op: "__proto__" })).toMatchObject({ code: "invalid" });

    // A raw client that hangs up while its request runs: the handler sees it gone.
    const sock = await Bun.connect({ unix: join(dir, CONTROL_SOCKET), socket: { data() {} } });
    sock.write(JSON.stringify({ op: "wait" }) + "\n");
    await Bun.sleep(50);
    sock.end();
    await Bun.sleep(50);
    release();
    await eventually(() => sawGone);
  } finally {
    server.stop();
  }
  // No server: null, so the caller can fall back.
  expect(await controlRequest(dir, { op: "count", to: 1 }, () => {})).toBeNull();
});

test("the socket is never reachable by other users, even for an instant", async () => {
  // A run dir others may enter (as the supervisor makes it) and a umask that hides nothing:
  // a socket bound there and only then chmod-ed takes connections from anyone in between
  // (connect() is checked against the mode at that moment, and the kernel queues it).
  const runDir = join(dir, "open-run");
  mkdirSync(runDir);
  chmodSync(runDir, 0o755);
  // A symlink planted at the socket's path must not make chmod reach its target.
  const target = join(dir, "target-file");
  writeFileSync(target, "x");
  chmodSync(target, 0o644);
  symlinkSync(target, join(runDir, CONTROL_SOCKET));
  const listen = Bun.listen;
  const reachable: string[] = [];
  (Bun as { listen: unknown }).listen = (opts: { unix?: string }) => {
    const l = listen(opts as Parameters<typeof listen>[0]);
    if (opts.unix) {
      const sock = statSync(opts.unix).mode & 0o077;
      const parent = statSync(dirname(opts.unix)).mode & 0o077;
      if (sock !== 0 && parent !== 0) reachable.push(opts.unix);
    }
    return l;
  };
  const umask = process.umask(0);
  const server = new ControlServer(
    runDir,
    { ping: () => Promise.resolve("pong") },
    memoryLogger("c"),
  );
  try {
    server.start();
  } finally {
    process.umask(umask);
    (Bun as { listen: unknown }).listen = listen;
  }
  try {
    expect(reachable).toEqual([]);
    expect(statSync(join(runDir, CONTROL_SOCKET)).mode & 0o777).toBe(0o600);
    expect(statSync(join(runDir, CONTROL_SOCKET)).isSocket()).toBe(true);
    expect(statSync(target).mode & 0o777).toBe(0o644);
    expect(await controlRequest(runDir, { op: "ping" }, () => {})).toEqual({ done: "pong" });
  } finally {
    server.stop();
  }
});

test("a client that does not read: every line it gets is whole, and the answer comes last", async () => {
  const line = "p".repeat(200);
  const server = new ControlServer(
    dir,
    {
      // Far more progress than a socket buffer holds, sent before the client can read any.
      flood: (_req, reply) => {
        for (let i = 0; i < 20_000; i++) reply.progress({ i, line });
        return Promise.resolve({ finished: true });
      },
    },
    memoryLogger("control"),
  );
  server.start();
  try {
    let seen = 0;
    let last = -1;
    const answer = await controlRequest(dir, { op: "flood" }, (p) => {
      const { i } = p as { i: number };
      expect(i).toBeGreaterThan(last); // in order; some may be skipped, none cut
      last = i;
      seen++;
    });
    expect(answer).toEqual({ done: { finished: true } });
    expect(seen).toBeGreaterThan(0);
  } finally {
    server.stop();
  }
});

test("a request trickled a byte at a time is still cut off at the deadline", async () => {
  const server = new ControlServer(
    dir,
    { ping: () => Promise.resolve("pong") },
    memoryLogger("c"),
    300,
  );
  server.start();
  try {
    let closed = false;
    let answer = "";
    const sock = await Bun.connect({
      unix: join(dir, CONTROL_SOCKET),
      socket: {
        data: (_s, d) => void (answer += Buffer.from(d).toString()),
        close: () => void (closed = true),
      },
    });
    sock.write("{");
    for (let i = 0; i < 40 && !closed; i++) {
      await Bun.sleep(50); // well inside any idle timeout
      sock.write(" ");
    }
    expect(closed).toBe(true);
    expect(answer).toBe("");
    // A request too long is refused once, and what follows it is not buffered.
    const refusal = await controlRequest(dir, { op: "ping", pad: "x".repeat(70_000) }, () => {})
      .catch((e) => e);
    expect(refusal).toMatchObject({ code: "invalid", message: "request too long" });
  } finally {
    server.stop();
  }
});
