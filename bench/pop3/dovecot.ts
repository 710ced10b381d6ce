// The peer: Dovecot's POP3 server (apt's dovecot-pop3d) on a maildir holding the same messages,
// started as the current user's child with a private configuration on a random loopback port.
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SESSIONS, type Target } from "./harness.ts";
import { message } from "./messages.ts";

/** Null when Dovecot is not installed. */
export async function startDovecot(size: number, count: number): Promise<Target | null> {
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
  const stop = async () => {
    proc.kill("SIGTERM");
    await proc.exited;
    rmSync(dir, { recursive: true, force: true });
  };
  for (let i = 0; i < 100; i++) {
    const up = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } })
      .then((s) => (s.end(), true), () => false);
    if (up) return { label: "dovecot", port, creds, stop };
    await Bun.sleep(50);
  }
  console.error(await Bun.file(join(dir, "dovecot.log")).text().catch(() => ""));
  await stop();
  throw new Error("dovecot did not start");
}
