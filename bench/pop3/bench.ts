// POP3 RETR throughput, Posthorn beside Dovecot on this machine: 4 concurrent sessions (one
// maildrop each), pipelined RETR of every message, 1 KiB and 64 KiB messages, the same bytes
// for both servers. Prints msgs/s, MB/s and the ratio; asserts nothing.
// Usage: node_modules/.bin/bun bench/pop3/bench.ts   (needs apt's dovecot-pop3d for the peer)
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createDirectStoreClient } from "../../ipc/store-client.ts";
import { silentLogger } from "../../log/mod.ts";
import { Metabase } from "../../metabase/schema.ts";
import { pop3Engine } from "../../protocols/pop3/mod.ts";
import { generateSelfSigned } from "../../protocols/wire/mod.ts";
import { openStore } from "../../store/mod.ts";

const SESSIONS = 4;
const CASES = [
  { size: 1024, count: 2000 },
  { size: 64 * 1024, count: 200 },
];
const BUN = process.execPath;
const CLIENT = join(import.meta.dir, "client.ts");

function message(size: number, i: number): Uint8Array {
  let s = `From: bench@example.org\r\nTo: user@example.com\r\nSubject: message ${i}\r\n\r\n`;
  const line = "The quick brown fox jumps over the lazy dog. 0123456789 abcdefghijklmnopq\r\n";
  while (s.length + line.length <= size - 2) s += line;
  s += "x".repeat(Math.max(0, size - 2 - s.length)) + "\r\n";
  return new TextEncoder().encode(s);
}

async function runClient(port: number, count: number, creds: string[]) {
  const proc = Bun.spawn([BUN, CLIENT, String(port), String(count), ...creds], {
    stdout: "pipe",
    stderr: "inherit",
  });
  const out = await new Response(proc.stdout).text();
  if ((await proc.exited) !== 0) throw new Error("client failed");
  return JSON.parse(out) as { msgs: number; bytes: number; seconds: number };
}

type Figures = { msgsPerSec: number; mbPerSec: number };
const figures = (r: { msgs: number; bytes: number; seconds: number }): Figures => ({
  msgsPerSec: r.msgs / r.seconds,
  mbPerSec: r.bytes / r.seconds / 1e6,
});

async function posthorn(size: number, count: number): Promise<Figures> {
  const dir = mkdtempSync(join(tmpdir(), "posthorn-bench-"));
  const config = Metabase.parse({
    auth: { plaintext: "always", failureDelayMs: 0 },
    domains: [{ name: "example.com" }],
    pop3: { listeners: [{ name: "pop3", port: 0 }] },
  });
  const store = openStore({
    dir,
    durability: "off",
    groupCommitMs: 0,
    pageBytes: config.store.pageBytes,
    quotaBytes: null,
    quotaMessages: null,
    domains: config.domains,
    auth: config.auth,
    log: silentLogger,
    chunkBytes: config.ipc.chunkBytes,
  });
  const client = createDirectStoreClient(store.service, "bench");
  const creds: string[] = [];
  for (let u = 0; u < SESSIONS; u++) {
    const address = `user${u}@example.com`;
    await store.addUser(address, "benchpw");
    creds.push(`${address}:benchpw`);
    for (let i = 0; i < count; i++) {
      const { uploadId } = await client.call("body.begin", {});
      await client.call("body.append", { uploadId, chunk: message(size, i) });
      await client.call("delivery.commit", { uploadId, sender: "", recipients: [{ address }] });
    }
  }
  const tls = generateSelfSigned("localhost");
  const bound = await pop3Engine.listen(config.pop3.listeners[0]!, {
    config: () => config,
    tls: () => tls,
    store: client,
    log: silentLogger,
    workerIndex: 0,
  });
  try {
    await runClient(bound.port, count, creds); // warm-up
    return figures(await runClient(bound.port, count, creds));
  } finally {
    await bound.close(500);
    client.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function dovecot(size: number, count: number): Promise<Figures | null> {
  if (!Bun.which("dovecot")) return null;
  const dir = mkdtempSync(join(tmpdir(), "dovecot-bench-"));
  chmodSync(dir, 0o755);
  const port = 20000 + Math.floor(Math.random() * 20000);
  const creds: string[] = [];
  let passwd = "";
  for (let u = 0; u < SESSIONS; u++) {
    const user = `user${u}`;
    creds.push(`${user}:benchpw`);
    passwd += `${user}:{PLAIN}benchpw\n`;
    const cur = join(dir, "mail", user, "cur");
    mkdirSync(cur, { recursive: true });
    mkdirSync(join(dir, "mail", user, "new"));
    mkdirSync(join(dir, "mail", user, "tmp"));
    for (let i = 0; i < count; i++) {
      writeFileSync(join(cur, `${1700000000 + i}.M${i}P1.bench,S=${size}:2,S`), message(size, i));
    }
  }
  writeFileSync(join(dir, "passwd"), passwd);
  writeFileSync(
    join(dir, "dovecot.conf"),
    `base_dir = ${dir}/run
state_dir = ${dir}/state
log_path = ${dir}/dovecot.log
protocols = pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:${dir}/mail/%u
passdb {
  driver = passwd-file
  args = scheme=PLAIN ${dir}/passwd
}
userdb {
  driver = static
  args = uid=dovecot gid=dovecot home=${dir}/mail/%u
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = ${port}
  }
}
service anvil {
  chroot =
}
default_login_user = dovenull
default_internal_user = dovecot
pop3_uidl_format = %08Xu%08Xv
first_valid_uid = 1
first_valid_gid = 1
`,
  );
  await Bun.spawn(["chown", "-R", "dovecot:dovecot", join(dir, "mail")]).exited;
  const proc = Bun.spawn(["dovecot", "-F", "-c", join(dir, "dovecot.conf")], {
    stdout: "ignore",
    stderr: "inherit",
  });
  try {
    for (let i = 0; i < 100; i++) {
      const up = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } })
        .then((s) => (s.end(), true), () => false);
      if (up) break;
      await Bun.sleep(50);
    }
    await runClient(port, count, creds); // warm-up (builds Dovecot's indexes)
    return figures(await runClient(port, count, creds));
  } catch (e) {
    console.error(await Bun.file(join(dir, "dovecot.log")).text().catch(() => ""));
    throw e;
  } finally {
    proc.kill("SIGTERM");
    await proc.exited;
    rmSync(dir, { recursive: true, force: true });
  }
}

console.log(`POP3 RETR, ${SESSIONS} concurrent sessions, pipelined, loopback`);
for (const { size, count } of CASES) {
  const p = await posthorn(size, count);
  const d = await dovecot(size, count);
  const label = size >= 1024 * 1024 ? `${size >> 20} MiB` : `${size >> 10} KiB`;
  const fmt = (f: Figures) => `${f.msgsPerSec.toFixed(0)} msgs/s  ${f.mbPerSec.toFixed(1)} MB/s`;
  console.log(`${label} × ${count} per session`);
  console.log(`  posthorn  ${fmt(p)}`);
  if (d) {
    console.log(`  dovecot   ${fmt(d)}`);
    console.log(`  ratio     ${(p.msgsPerSec / d.msgsPerSec).toFixed(2)}× Dovecot`);
  } else console.log("  dovecot   not installed (apt-get install dovecot-pop3d)");
}
