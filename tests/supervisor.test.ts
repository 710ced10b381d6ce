// The supervisor end to end: ready with every built engine bound, hot reload of a valid and an
// invalid edit, a stopped listener that stays stopped across a restart, a crashed worker
// restarted while the others serve, and a clean shutdown.
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { X509Certificate } from "node:crypto";
import { connect as tlsConnect } from "node:tls";
import { generateSelfSigned } from "../protocols/wire/certificate.ts";
import { join } from "node:path";
import { editMetabase } from "../metabase/mod.ts";
import { startAppliance, type StoreClient } from "../mod.ts";
import { cli, eventually, removeDir, startTestAppliance, tempDir } from "./helpers.ts";

/** Opens a TCP connection and resolves with the server's first line (the greeting). */
function greeting(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: "127.0.0.1", port }, () => {});
    let buf = "";
    sock.setEncoding("latin1");
    sock.on("data", (d) => {
      buf += d;
      const nl = buf.indexOf("\r\n");
      if (nl >= 0) {
        sock.destroy();
        resolve(buf.slice(0, nl));
      }
    });
    sock.on("error", reject);
    sock.setTimeout(5000, () => {
      sock.destroy();
      reject(new Error("no greeting"));
    });
  });
}

/** Waits until the store answers the supervisor again (after a restart). */
async function storeAnswers(app: { supervisor: { store: StoreClient } }): Promise<void> {
  await eventually(
    async () => {
      try {
        return (await app.supervisor.store.call("store.stats", {})).messages >= 0;
      } catch {
        return false;
      }
    },
    10_000,
    "the store answering again",
  );
}

const refused = (port: number) => greeting(port).then(() => false, () => true);

const dirs: string[] = [];
afterAll(() => dirs.forEach(removeDir));

describe("supervisor", () => {
  test("starts every built engine, reports the rest, writes status; stops cleanly", async () => {
    const app = await startTestAppliance();
    dirs.push(app.dir);
    try {
      expect(app.ports.mx).toBeGreaterThan(0);
      expect(app.ports.pop3).toBeGreaterThan(0);
      expect(await greeting(app.ports.mx!)).toMatch(/^220 /);
      expect(await greeting(app.ports.pop3!)).toMatch(/^\+OK/);
      const imap = app.listeners().find((l) => l.name === "imap")!;
      expect(imap.boundPort).toBeNull();
      expect(imap.error).toBe("engine not in this build");
      const status = JSON.parse(readFileSync(join(app.dir, "run", "status.json"), "utf8"));
      expect(status.running).toBe(true);
      expect(status.listeners.find((l: any) => l.name === "mx").boundPort).toBe(app.ports.mx);
      const log = app.supervisor.recentLog.map((r) => r.event);
      expect(log).toContain("store.started");
      expect(log).toContain("supervisor.ready");
    } finally {
      await app.stop();
    }
    expect(await refused(app.ports.mx!)).toBe(true);
    const events = app.supervisor.recentLog.map((r) => r.event);
    expect(events).toContain("store.stopped");
    expect(events).toContain("supervisor.stopped");
    expect(JSON.parse(readFileSync(join(app.dir, "run", "status.json"), "utf8")).running).toBe(
      false,
    );
    expect(existsSync(join(app.dir, "run", "posthorn.pid"))).toBe(false);
    // The event log is JSON lines with time, level, component, event.
    const first = JSON.parse(
      readFileSync(join(app.dir, "log", "events.jsonl"), "utf8").split("\n")[0]!,
    );
    expect(Object.keys(first).slice(0, 4)).toEqual(["time", "level", "component", "event"]);
  });

  test("hot reload: a changed listener restarts alone; an invalid edit is refused", async () => {
    const app = await startTestAppliance();
    dirs.push(app.dir);
    const file = join(app.dir, "metabase.json");
    try {
      // An SMTP session open across the reload keeps working.
      const smtp = connect({ host: "127.0.0.1", port: app.ports.mx! });
      let smtpText = "";
      smtp.setEncoding("latin1");
      smtp.on("data", (d) => (smtpText += d));
      await eventually(() => smtpText.startsWith("220"), 5000, "SMTP greeting");

      const oldPop3 = app.ports.pop3!;
      const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
      const newPort = probe.port;
      probe.stop(true);
      editMetabase(file, (raw: any) => {
        raw.pop3.listeners[0].port = newPort;
      });
      await eventually(
        async () => (await greeting(newPort).catch(() => "")).startsWith("+OK"),
        10_000,
        "POP3 on the new port",
      );
      expect(await refused(oldPop3)).toBe(true);
      expect(app.supervisor.recentLog.map((r) => r.event)).toContain("metabase.reloaded");

      smtp.write("NOOP\r\n");
      await eventually(() => /\r\n250 /.test(smtpText), 5000, "NOOP reply after the reload");
      smtp.destroy();

      // An invalid edit: logged, refused, and the running listeners stay.
      writeFileSync(
        file,
        readFileSync(file, "utf8").replace(`"port": ${newPort}`, `"port": "not a port"`),
      );
      await eventually(
        () => app.supervisor.recentLog.some((r) => r.event === "metabase.rejected"),
        10_000,
        "rejection",
      );
      const rejected = app.supervisor.recentLog.find((r) => r.event === "metabase.rejected")!;
      expect(JSON.stringify(rejected.issues)).toMatch(/pop3\.listeners\[0\]\.port/);
      expect(await greeting(newPort)).toMatch(/^\+OK/);
      expect(await greeting(app.ports.mx!)).toMatch(/^220/);
    } finally {
      await app.stop();
    }
  });

  test("a stopped listener stays stopped after a restart and is warned about", async () => {
    const dir = tempDir();
    dirs.push(dir);
    const first = await startTestAppliance(() => {}, { dir });
    const pop3 = first.ports.pop3!;
    editMetabase(join(dir, "metabase.json"), (raw: any) => {
      raw.pop3.listeners[0].state = "stopped";
    });
    await eventually(() => refused(pop3), 10_000, "the listener to stop");
    await first.stop();

    const logs: string[] = [];
    const second = startAppliance({
      metabase: join(dir, "metabase.json"),
      stderr: "off",
      onLog: (r) => logs.push(`${r.event} ${r.listener ?? ""}`),
    });
    await second.ready;
    try {
      expect(logs).toContain("listener.stopped pop3");
      const l = second.listeners().find((x) => x.name === "pop3")!;
      expect(l.state).toBe("stopped");
      expect(l.boundPort).toBeNull();
      expect(second.ports.pop3).toBeUndefined();
    } finally {
      await second.stop();
    }
  });

  test("a worker that throws is restarted while the others keep serving", async () => {
    const app = await startTestAppliance(() => {}, { testHooks: true });
    dirs.push(app.dir);
    try {
      app.supervisor.crashWorker("pop3");
      await eventually(
        () => app.supervisor.recentLog.some((r) => r.event === "worker.crashed"),
        10_000,
        "crash noticed",
      );
      expect(await greeting(app.ports.mx!)).toMatch(/^220/); // SMTP never noticed
      await eventually(
        () =>
          app.supervisor.workers().some((w) =>
            w.role === "pop3" && w.state === "running" && w.restarts === 1
          ),
        10_000,
        "pop3 restarted",
      );
      await eventually(
        async () => (await greeting(app.ports.pop3!).catch(() => "")).startsWith("+OK"),
        10_000,
        "POP3 back",
      );

      // The store worker too: engines get fresh bindings when it comes back.
      app.supervisor.crashWorker("store");
      await eventually(
        () =>
          app.supervisor.workers().some((w) =>
            w.role === "store" && w.state === "running" && w.restarts === 1
          ),
        10_000,
        "store restarted",
      );
      await storeAnswers(app);
    } finally {
      await app.stop();
    }
  });

  test("a clean shutdown lets an SMTP transaction in flight finish before closing", async () => {
    const app = await startTestAppliance();
    dirs.push(app.dir);
    const added = cli([
      "user",
      "add",
      "dora@example.test",
      "--password-stdin",
      "--metabase",
      join(app.dir, "metabase.json"),
    ], "pw-dora-1\n");
    expect(added.code).toBe(0);
    const sock = connect({ host: "127.0.0.1", port: app.ports.mx! });
    let text = "";
    let closed = false;
    sock.setEncoding("latin1");
    sock.on("data", (d) => (text += d));
    sock.on("close", () => (closed = true));
    await eventually(() => text.startsWith("220"), 5000, "greeting");
    sock.write(
      "EHLO client.test\r\nMAIL FROM:<x@client.test>\r\nRCPT TO:<dora@example.test>\r\nDATA\r\n",
    );
    await eventually(() => /\r\n354 /.test(text), 5000, "354");
    sock.write("Subject: in flight\r\n\r\nfirst half\r\n");
    const stopping = app.stop();
    await Bun.sleep(300);
    expect(closed).toBe(false); // the transaction is still being given its chance
    sock.write("second half\r\n.\r\n");
    await eventually(
      () => /\r\n250 /.test(text.slice(text.indexOf("354"))),
      10_000,
      "250 for the message",
    );
    await eventually(() => closed, 15_000, "the server to close the connection");
    await stopping;
    expect(text).toMatch(/421 /);
    // The message is in the store: the next start finds it.
    const again = await startTestAppliance(() => {}, { dir: app.dir });
    try {
      const acct = await again.supervisor.store.call("account.get", {
        address: "dora@example.test",
      });
      expect(acct?.usedMessages).toBe(1);
    } finally {
      await again.stop();
    }
  });

  test("a periodic health line carries the store's and the rings' figures", async () => {
    const app = await startTestAppliance((mb) => (mb.supervisor = { healthIntervalSeconds: 0.2 }));
    dirs.push(app.dir);
    try {
      await eventually(
        () => app.supervisor.recentLog.some((r) => r.event === "health"),
        5000,
        "a health line",
      );
      const health = app.supervisor.recentLog.find((r) => r.event === "health")!;
      expect(health.workers).toBeGreaterThanOrEqual(4); // store, smtp, pop3, transport
      expect((health.store as any).messages).toBe(0);
      expect((health.ipc as any).bindings).toBeGreaterThanOrEqual(4);
    } finally {
      await app.stop();
    }
  });

  test("a domain added with the CLI while serving takes mail at once", async () => {
    const app = await startTestAppliance();
    dirs.push(app.dir);
    const file = join(app.dir, "metabase.json");
    try {
      expect(cli(["domain", "add", "later.test", "--metabase", file]).code).toBe(0);
      expect(
        cli(["user", "add", "eve@later.test", "--password-stdin", "--metabase", file], "pw-eve-1\n")
          .code,
      ).toBe(0);
      await eventually(
        async () => {
          const r = await app.supervisor.store.call("recipient.resolve", {
            address: "eve@later.test",
          });
          return r.kind === "local";
        },
        10_000,
        "the store to learn the new domain",
      );
    } finally {
      await app.stop();
    }
  });

  test("a pool of two workers shares each port; while one restarts the other serves", async () => {
    const app = await startTestAppliance((mb) => {
      mb.pop3.poolSize = 2;
      mb.supervisor = { restartMinMs: 1500 }; // a wide window with one worker down
    }, { testHooks: true });
    dirs.push(app.dir);
    try {
      const pop3 = app.listeners().find((l) => l.name === "pop3")!;
      expect(pop3.workers).toBe(2);
      app.supervisor.crashWorker("pop3", 1);
      await eventually(
        () => app.supervisor.recentLog.some((r) => r.event === "worker.crashed"),
        10_000,
        "the crash",
      );
      // While it is down, every new connection is answered: the kernel gives each to the worker
      // that still listens. (Connections queued on the dying socket at the instant it closed are
      // reset by the kernel; clients retry those.)
      const greetings: string[] = [];
      for (let i = 0; i < 20; i++) greetings.push(await greeting(app.ports.pop3!));
      expect(greetings.every((g) => g.startsWith("+OK"))).toBe(true);
      await eventually(
        () =>
          app.supervisor.workers().some((w) =>
            w.id.startsWith("pop3-1") && w.restarts === 1 && w.state === "running"
          ),
        10_000,
        "the second pop3 worker back",
      );
      await eventually(
        () => app.listeners().find((l) => l.name === "pop3")!.workers === 2,
        5000,
        "two workers on the port",
      );
    } finally {
      await app.stop();
    }
  });

  test("a reload applies store settings at once and names those that need a restart", async () => {
    const app = await startTestAppliance();
    dirs.push(app.dir);
    const file = join(app.dir, "metabase.json");
    try {
      expect(
        cli(
          ["user", "add", "fay@example.test", "--password-stdin", "--metabase", file],
          "pw-fay-1\n",
        ).code,
      ).toBe(0);
      editMetabase(file, (raw: any) => {
        raw.store = { ...raw.store, quotaMessages: 7 };
        raw.ipc = { heapBytes: 32 * 1024 * 1024 };
      });
      await eventually(
        async () => {
          const a = await app.supervisor.store.call("account.get", { address: "fay@example.test" });
          return a?.quotaMessages === 7;
        },
        10_000,
        "the new default quota",
      );
      const warn = app.supervisor.recentLog.find((r) => r.event === "metabase.restart_required");
      expect(warn?.settings).toEqual(["ipc"]);
    } finally {
      await app.stop();
    }
  });

  test("a store that hangs is terminated by the watchdog and restarted", async () => {
    const app = await startTestAppliance((mb) => (mb.supervisor = { storeWatchdogSeconds: 0.3 }), {
      testHooks: true,
    });
    dirs.push(app.dir);
    try {
      app.supervisor.crashWorker("store", 0, "hang");
      await eventually(
        () =>
          app.supervisor.workers().some((w) =>
            w.role === "store" && w.restarts === 1 && w.state === "running"
          ),
        10_000,
        "the store restarted",
      );
      expect(app.supervisor.recentLog.some((r) => r.event === "store.unresponsive")).toBe(true);
      const crashed = app.supervisor.recentLog.find((r) =>
        r.event === "worker.crashed" && r.role === "store"
      )!;
      expect(String(crashed.reason)).toMatch(/watchdog/);
      await storeAnswers(app);
    } finally {
      await app.stop();
    }
  });

  test("a reload that moves a listener onto a port held elsewhere is refused", async () => {
    const app = await startTestAppliance();
    dirs.push(app.dir);
    const holder = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      editMetabase(join(app.dir, "metabase.json"), (raw: any) => {
        raw.pop3.listeners[0].port = holder.port;
      });
      await eventually(
        () => app.supervisor.recentLog.some((r) => r.event === "metabase.rejected"),
        10_000,
        "the rejection",
      );
      const rejected = app.supervisor.recentLog.find((r) => r.event === "metabase.rejected")!;
      expect(JSON.stringify(rejected.issues)).toMatch(/EADDRINUSE/);
      expect(await greeting(app.ports.pop3!)).toMatch(/^\+OK/); // still where it was
    } finally {
      holder.stop(true);
      await app.stop();
    }
  });
});

/** An appliance serving a certificate from files checked every 0.1 s, a second pair ready, and
 * the fingerprint the POP3S listener presents to a new connection (null: the connection
 * failed). */
async function renewalSetup() {
  const dir = tempDir();
  const certFile = join(dir, "cert.pem");
  const keyFile = join(dir, "key.pem");
  const first = generateSelfSigned("mail.example.test");
  const second = generateSelfSigned("mail.example.test");
  writeFileSync(certFile, first.cert);
  writeFileSync(keyFile, first.key);
  const app = await startTestAppliance(
    (mb) => mb.tls = { certFile, keyFile, checkSeconds: 0.1 },
    { dir: join(dir, "data") },
  );
  // A connection made while the listener is being re-bound may be reset: null, try again.
  const presented = () =>
    new Promise<string | null>((resolve) => {
      const s = tlsConnect(
        { host: "127.0.0.1", port: app.ports.pop3s!, rejectUnauthorized: false },
        () => {
          resolve(s.getPeerCertificate().fingerprint256);
          s.destroy();
        },
      );
      s.on("error", () => resolve(null));
    });
  return { dir, certFile, keyFile, first, second, app, presented };
}

const fingerprint = (pem: string) => new X509Certificate(pem).fingerprint256;

describe("certificate renewal", () => {
  test("new certificate files are picked up by themselves, implicit TLS included", async () => {
    const { dir, certFile, keyFile, first, second, app, presented } = await renewalSetup();
    try {
      expect(await presented()).toBe(fingerprint(first.cert));
      // A renewal: the key, then the certificate, replaced on disk. No SIGHUP.
      writeFileSync(keyFile, second.key);
      writeFileSync(certFile, second.cert);
      await eventually(async () => (await presented()) === fingerprint(second.cert));
      expect(app.supervisor.recentLog.some((r) => r.event === "tls.files_changed")).toBe(true);
    } finally {
      await app.stop();
      removeDir(dir);
    }
  });
  test("a half-written certificate or a key that is not its own: the old pair keeps serving", async () => {
    const { dir, certFile, keyFile, first, second, app, presented } = await renewalSetup();
    const failures = () =>
      app.supervisor.recentLog.filter((r) => r.event === "tls.reload_failed").length;
    try {
      expect(await presented()).toBe(fingerprint(first.cert));
      // Caught mid-write: half a certificate.
      writeFileSync(certFile, second.cert.slice(0, 300));
      await eventually(() => failures() >= 1);
      expect(await presented()).toBe(fingerprint(first.cert));
      // The new key, with the old certificate: not a pair.
      writeFileSync(certFile, first.cert);
      writeFileSync(keyFile, second.key);
      await eventually(() => failures() >= 2);
      expect(await presented()).toBe(fingerprint(first.cert));
      // The renewal completes: the new pair is served.
      writeFileSync(certFile, second.cert);
      await eventually(async () => (await presented()) === fingerprint(second.cert));
    } finally {
      await app.stop();
      removeDir(dir);
    }
  });
});
