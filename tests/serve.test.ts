// `posthorn serve` as a process: the embedded default (--init-if-missing), the ready line,
// status while running, SIGHUP, a second server refused on the same data dir, SIGTERM.
import { afterAll, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BUN, cli, removeDir, ROOT, tempDir, testMetabase } from "./helpers.ts";

const dirs: string[] = [];
afterAll(() => dirs.forEach(removeDir));

/** Starts `serve` and resolves once it printed its "ready" line. */
async function serve(args: string[]) {
  const proc = Bun.spawn([BUN, join(ROOT, "main.ts"), "serve", ...args], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, BUN_RUNTIME_TRANSPILER_CACHE_PATH: "0" },
  });
  let out = "";
  const reader = proc.stdout.getReader();
  const pump = (async () => {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      out += new TextDecoder().decode(value);
    }
  })();
  const deadline = Date.now() + 20_000;
  while (!/^ready/m.test(out) && Date.now() < deadline && proc.exitCode === null) {
    await Bun.sleep(25);
  }
  return { proc, output: () => out, pump };
}

/** `serve` on a fresh data dir with the test metabase. */
async function serveTestMetabase() {
  const dir = tempDir();
  dirs.push(dir);
  const file = join(dir, "metabase.json");
  writeFileSync(file, JSON.stringify(testMetabase()));
  return { dir, file, s: await serve(["--metabase", file]) };
}

test("serve --init-if-missing creates the embedded default and serves it", async () => {
  const dir = tempDir();
  dirs.push(dir);
  const file = join(dir, "data", "metabase.json");
  const s = await serve(["--init-if-missing", "--metabase", file]);
  try {
    expect(s.output()).toMatch(/^created .*metabase\.json/m);
    expect(s.output()).toMatch(/^ready \d+ listener/m);
    expect(s.output()).toMatch(/mx +smtp +127\.0\.0\.1:10025/);
    expect(s.output()).toMatch(/Add the first user: .*user add you@localhost --password-stdin/);
    expect(existsSync(join(dir, "data", "tls", "self-signed.cert.pem"))).toBe(true);
  } finally {
    s.proc.kill("SIGTERM");
    expect(await s.proc.exited).toBe(0);
    await s.pump;
  }
  expect(s.output()).toMatch(/^stopped$/m);
});

test("status while running, SIGHUP, one server per data dir, SIGTERM", async () => {
  const { dir, file, s } = await serveTestMetabase();
  try {
    expect(s.output()).toMatch(/^ready/m);
    const st = cli(["status", "--metabase", file, "--json"]);
    expect(st.code).toBe(0);
    const status = JSON.parse(st.stdout);
    expect(status.running).toBe(true);
    expect(status.listeners.find((l: any) => l.name === "pop3").boundPort).toBeGreaterThan(0);

    // A second server on the same data dir must refuse (with reusePort it would silently
    // share the ports and split the traffic).
    const second = Bun.spawnSync([BUN, join(ROOT, "main.ts"), "serve", "--metabase", file], {
      env: { ...process.env, BUN_RUNTIME_TRANSPILER_CACHE_PATH: "0" },
    });
    expect(second.exitCode).toBe(1);
    expect(second.stderr.toString()).toMatch(/another Posthorn \(pid \d+\) is serving/);

    // SIGHUP re-reads the metabase even when nothing changed; the server logs it and carries on.
    s.proc.kill("SIGHUP");
    const log = join(dir, "log", "events.jsonl");
    const deadline = Date.now() + 10_000;
    while (!readFileSync(log, "utf8").includes('"metabase.reloaded"') && Date.now() < deadline) {
      await Bun.sleep(50);
    }
    expect(readFileSync(log, "utf8")).toContain('"metabase.reloaded"');
    expect(cli(["status", "--metabase", file]).code).toBe(0);
  } finally {
    s.proc.kill("SIGTERM");
    expect(await s.proc.exited).toBe(0);
    await s.pump;
  }
  expect(cli(["status", "--metabase", file]).code).toBe(3);
});

test("a port another process holds stops the start loudly instead of being shared", async () => {
  const dir = tempDir();
  dirs.push(dir);
  const holder = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  try {
    const file = join(dir, "metabase.json");
    writeFileSync(
      file,
      JSON.stringify(
        testMetabase("example.test", (mb) => (mb.pop3.listeners[0].port = holder.port)),
      ),
    );
    const r = Bun.spawnSync([BUN, join(ROOT, "main.ts"), "serve", "--metabase", file], {
      env: { ...process.env, BUN_RUNTIME_TRANSPILER_CACHE_PATH: "0" },
    });
    expect(r.exitCode).toBe(1);
    expect(r.stderr.toString()).toMatch(
      new RegExp(`pop3 \\(127\\.0\\.0\\.1:${holder.port}: EADDRINUSE\\)`),
    );
    expect(cli(["status", "--metabase", file]).code).toBe(3);
  } finally {
    holder.stop(true);
  }
});

test("import while the server runs: the server's store does it, with progress; errors are clean", async () => {
  const { dir, file, s } = await serveTestMetabase();
  try {
    expect(cli(["user", "add", "ann@example.test", "--password-stdin", "-m", file], "pw\n").code)
      .toBe(0);
    const mbox = join(dir, "old.mbox");
    writeFileSync(
      mbox,
      "From a@remote.test Thu Jan  1 00:00:00 2024\nSubject: one\n\nfirst\n\n" +
        "From b@remote.test Thu Jan  1 00:00:01 2024\nSubject: two\n\n>From the past\n\n" +
        "From c@remote.test Thu Jan  1 00:00:02 2024\nSubject: three\n\nthird\n",
    );
    const r = cli(["import", "mbox", mbox, "--user", "ann@example.test", "-m", file]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^imported 3 message\(s\), \d+ bytes \(by the running server\)/);
    expect(cli(["user", "list", "-m", file]).stdout).toMatch(/ann@example\.test\s.*\b3\b/);
    // Refused by the store: a clean error, exit 1, and the server carries on.
    const bad = cli([
      "import",
      "mbox",
      join(dir, "missing.mbox"),
      "--user",
      "ann@example.test",
      "-m",
      file,
    ]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/posthorn import: /);
    const nobody = cli(["import", "mbox", mbox, "--user", "nobody@example.test", "-m", file]);
    expect(nobody.code).toBe(1);
    // queue retry goes through the running server too (its transport hears of it at once)
    const retry = cli(["queue", "retry", "--all", "-m", file]);
    expect([retry.code, retry.stdout.trim()]).toEqual([0, "0 message(s) due now"]);
    expect(cli(["queue", "retry", "99", "-m", file]).code).toBe(1);
    expect(readFileSync(join(dir, "log", "events.jsonl"), "utf8")).toContain('"op":"queue.retry"');
    expect(cli(["status", "-m", file]).code).toBe(0);
  } finally {
    s.proc.kill("SIGTERM");
    expect(await s.proc.exited).toBe(0);
    await s.pump;
  }
});
