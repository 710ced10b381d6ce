// Postfix for the benchmark: a private instance (own config, queue and data directories in a
// temp dir; the system instance is left alone) listening on 127.0.0.1 at a free high port,
// delivering locally to the Maildir of a local user. Installed from apt when missing. Postfix
// defaults are kept except what a loopback-only, DNS-free, filter-free box needs.
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";

export const POSTFIX_USER = "pfbench";
const POSTFIX_HOME = "/var/lib/posthorn-bench-postfix";

export interface PostfixServer {
  port: number;
  rcpt: string;
  version: string;
  /** Settings that shape the comparison, as Postfix reports them. */
  settings: Record<string, string>;
  maildir: string;
  /** The master daemon: every Postfix process of this instance descends from it. */
  masterPid: number;
  /** Messages delivered into the Maildir (new/ + cur/). */
  count(): number;
  /** Deletes the delivered messages (they can be gigabytes). */
  clearMaildir(): void;
  /** Messages still in the queue (incoming, active, deferred, hold). */
  queued(): number;
  stop(): void;
}

function run(cmd: string[], env: Record<string, string> = {}): { code: number; out: string } {
  const r = Bun.spawnSync(cmd, {
    env: { ...process.env, ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: r.exitCode, out: r.stdout.toString() + r.stderr.toString() };
}

function must(cmd: string[], env: Record<string, string> = {}): string {
  const r = run(cmd, env);
  if (r.code !== 0) throw new Error(`${cmd.join(" ")} failed (${r.code}): ${r.out}`);
  return r.out;
}

/** apt-get install postfix, preseeded so it asks nothing; the package's own instance is not
 * started by this (policy-rc.d on these machines), and it is not used. */
function ensureInstalled(log: (s: string) => void): void {
  if (run(["sh", "-c", "command -v postfix"]).code === 0) return;
  log("installing postfix from apt (once) …");
  must([
    "sh",
    "-c",
    "echo 'postfix postfix/main_mailer_type select Local only' | debconf-set-selections",
  ]);
  must(["apt-get", "install", "-y", "postfix"], { DEBIAN_FRONTEND: "noninteractive" });
}

/** The local user Postfix delivers to; returns its Maildir (emptied). */
function ensureUser(): string {
  if (run(["id", POSTFIX_USER]).code !== 0) {
    must(["useradd", "-M", "-d", POSTFIX_HOME, "-s", "/usr/sbin/nologin", POSTFIX_USER]);
  }
  // local(8) delivers under the home the passwd file names, whatever it is.
  const [, , uid, gid, , home] = must(["getent", "passwd", POSTFIX_USER]).trim().split(":");
  mkdirSync(home!, { recursive: true });
  chownSync(home!, Number(uid), Number(gid));
  const maildir = join(home!, "Maildir");
  // Start from an empty mailbox: counts below are this run's deliveries.
  rmSync(maildir, { recursive: true, force: true });
  return maildir;
}

async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

function countFiles(dir: string): number {
  try {
    return readdirSync(dir).length;
  } catch {
    return 0;
  }
}

function masterPid(queue: string): number | null {
  try {
    const pid = Number(readFileSync(join(queue, "pid", "master.pid"), "utf8").trim());
    return pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function startPostfix(dir: string, log: (s: string) => void): Promise<PostfixServer> {
  ensureInstalled(log);
  const maildir = ensureUser();
  const etc = join(dir, "etc");
  const queue = join(dir, "queue");
  const data = join(dir, "data");
  for (const d of [etc, queue, data]) mkdirSync(d, { recursive: true });
  // Postfix daemons drop to the postfix user and must be able to walk into the queue.
  chmodSync(dir, 0o755);
  const postfixUid = Number(must(["id", "-u", "postfix"]).trim());
  const postfixGid = Number(must(["id", "-g", "postfix"]).trim());
  chownSync(data, postfixUid, postfixGid);
  const port = await freePort();

  // master.cf from the package, with the smtpd inet service on our loopback port and no chroot
  // (a chroot would need copies of /etc files inside the temp queue directory).
  const master = readFileSync("/etc/postfix/master.cf", "utf8").split("\n").map((line) => {
    if (/^smtp\s+inet\s/.test(line)) return `127.0.0.1:${port} inet n - n - - smtpd`;
    const f = line.split(/\s+/);
    if (/^[a-z]/.test(line) && f.length >= 8 && f[4] === "y") {
      f[4] = "n";
      return f.join(" ");
    }
    return line;
  }).join("\n");
  writeFileSync(join(etc, "master.cf"), master);
  writeFileSync(
    join(etc, "main.cf"),
    [
      "compatibility_level = 3.6",
      `queue_directory = ${queue}`,
      `data_directory = ${data}`,
      "myhostname = postfix.bench.test",
      "mydomain = bench.test",
      "myorigin = bench.test",
      "mydestination = bench.test, localhost",
      "inet_interfaces = 127.0.0.1",
      "inet_protocols = ipv4",
      "mynetworks = 127.0.0.0/8",
      "relayhost =",
      "relay_domains =",
      // Local delivery into ~/Maildir/ (local(8) fsyncs each file before reporting success).
      "home_mailbox = Maildir/",
      "alias_maps =",
      "alias_database =",
      "biff = no",
      // No DNS: loopback only.
      "disable_dns_lookups = yes",
      "smtp_host_lookup = native",
      "lmtp_host_lookup = native",
      "smtpd_peername_lookup = no",
      // No content filters, no milters (the defaults, stated so the comparison is explicit).
      "content_filter =",
      "smtpd_milters =",
      "non_smtpd_milters =",
      // Log to a file in the temp dir (there is no syslog daemon here).
      `maillog_file_prefixes = ${dir}`,
      `maillog_file = ${join(dir, "maillog")}`,
      "",
    ].join("\n"),
  );
  const pf = ["postfix", "-c", etc];
  // Postfix reports startup errors to its log, not to a non-terminal stderr: quote the log.
  const maillog = () => {
    try {
      return readFileSync(join(dir, "maillog"), "utf8").slice(-1500);
    } catch {
      return "(no maillog)";
    }
  };
  for (const step of ["check", "start"]) {
    const r = run([...pf, step]);
    if (r.code !== 0) throw new Error(`postfix ${step} failed (${r.code}): ${r.out}\n${maillog()}`);
  }
  const settings: Record<string, string> = {};
  for (
    const name of [
      "in_flow_delay",
      "local_destination_concurrency_limit",
      "default_process_limit",
      "smtpd_client_connection_count_limit",
    ]
  ) {
    settings[name] = must(["postconf", "-c", etc, "-h", name]).trim();
  }
  const version = must(["postconf", "-c", etc, "-h", "mail_version"]).trim();
  // Wait until smtpd answers on the port (master forks it on the first connection).
  const readyBy = Date.now() + 15_000;
  for (;;) {
    try {
      const s = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
      s.end();
      break;
    } catch (e) {
      if (Date.now() > readyBy) throw new Error(`postfix is not listening on ${port}: ${e}`);
      await Bun.sleep(100);
    }
  }
  const masterPidNow = masterPid(queue);
  if (masterPidNow === null) {
    throw new Error(`postfix started but left no master.pid\n${maillog()}`);
  }
  let stopped = false;
  return {
    masterPid: masterPidNow,
    port,
    rcpt: `${POSTFIX_USER}@bench.test`,
    version,
    settings,
    maildir,
    count: () => countFiles(join(maildir, "new")) + countFiles(join(maildir, "cur")),
    clearMaildir: () => rmSync(maildir, { recursive: true, force: true }),
    queued: () => {
      let n = 0;
      for (const q of ["incoming", "active", "deferred", "hold", "maildrop"]) {
        const walk = (d: string) => {
          if (!existsSync(d)) return;
          for (const e of readdirSync(d, { withFileTypes: true })) {
            if (e.isDirectory()) walk(join(d, e.name));
            else n++;
          }
        };
        walk(join(queue, q));
      }
      return n;
    },
    stop: () => {
      if (stopped) return;
      stopped = true;
      const master = masterPid(queue);
      run([...pf, "stop"]);
      // `postfix stop` signals the master; wait until it (and so its children) has gone.
      if (master !== null) {
        const by = Date.now() + 10_000;
        while (alive(master) && Date.now() < by) Bun.sleepSync(100);
        if (alive(master)) process.kill(master, "SIGKILL");
      }
    },
  };
}
