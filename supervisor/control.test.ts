// The control socket: one JSON request per connection, progress lines, then done or error;
// a hang-up is seen by the handler; only the server's user may connect (mode 0600).
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
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
