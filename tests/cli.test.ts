// The CLI as a user runs it: init, check, listener state, domains, accounts with passwords from
// standard input (never argv), status of a server that is not running, the schema.
import { afterAll, describe, expect, test } from "bun:test";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cli, removeDir, tempDir } from "./helpers.ts";

const dir = tempDir("posthorn-cli-");
const mb = join(dir, "data", "metabase.json");
afterAll(() => removeDir(dir));

describe("posthorn CLI", () => {
  test("--help works on every command", () => {
    const top = cli(["--help"]);
    expect(top.code).toBe(0);
    const names = [...top.stdout.matchAll(/^ {2}([a-z]+) /gm)].map((m) => m[1]!);
    expect(names).toContain("serve");
    for (const name of names) {
      const r = cli([name, "--help"]);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/Usage: posthorn/);
    }
  });

  test("an unknown command or option is a usage error, exit 2", () => {
    expect(cli(["frobnicate"]).code).toBe(2);
    const r = cli(["check", "--nope"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/nope/);
  });

  test("init writes a valid metabase with standard ports plus the offset", () => {
    const r = cli([
      "init",
      join(dir, "data"),
      "--domain",
      "Example.TEST",
      "--port-offset",
      "40000",
    ]);
    expect(r.code).toBe(0);
    const written = JSON.parse(readFileSync(mb, "utf8"));
    expect(written.domains).toEqual([{ name: "example.test" }]);
    expect(written.smtp.connectors.map((c: any) => c.port)).toEqual([40025, 40587, 40465]);
    expect(JSON.parse(readFileSync(join(dir, "data", "metabase.schema.json"), "utf8")).type).toBe(
      "object",
    );
    expect(cli(["init", join(dir, "data"), "--domain", "x.test"]).code).toBe(1); // no silent overwrite
    expect(cli(["check", "--metabase", mb]).code).toBe(0);
  });

  test("check prints every error with its path and exits 1", () => {
    const bad = join(dir, "bad.json");
    writeFileSync(
      bad,
      JSON.stringify({ smtp: { connectors: [{ name: "a", port: 99999, tls: "ssl" }] }, colour: 1 }),
    );
    const r = cli(["check", "--metabase", bad]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/smtp\.connectors\[0\]\.port: .*65535/);
    expect(r.stderr).toMatch(/smtp\.connectors\[0\]\.tls: /);
    expect(r.stderr).toMatch(/colour: unknown key/);
  });

  test("domain add, list and remove edit the metabase", () => {
    expect(cli(["domain", "add", "second.test", "--metabase", mb]).code).toBe(0);
    expect(cli(["domain", "add", "second.test", "--metabase", mb]).code).toBe(2);
    expect(cli(["domain", "list", "--metabase", mb]).stdout.split("\n")).toContain("second.test");
    expect(cli(["domain", "remove", "second.test", "--metabase", mb]).code).toBe(0);
    expect(cli(["domain", "list", "--metabase", mb]).stdout).not.toMatch(/second/);
  });

  test("dkim keygen writes a private key (0600), records it, prints the TXT record; list repeats it", () => {
    const r = cli(["dkim", "keygen", "Example.test", "--selector", "mail", "--metabase", mb]);
    expect(r.code).toBe(0);
    const record =
      /^mail\._domainkey\.example\.test\. IN TXT "v=DKIM1; k=rsa; p=[A-Za-z0-9+/=" ]+$/m;
    expect(r.stdout).toMatch(record);
    const meta = JSON.parse(readFileSync(mb, "utf8"));
    expect(meta.smtp.dkim).toEqual([
      { domain: "example.test", selector: "mail", keyFile: "dkim/example.test.mail.key" },
    ]);
    const keyFile = join(dir, "data", "dkim", "example.test.mail.key");
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(readFileSync(keyFile, "utf8")).toStartWith("-----BEGIN PRIVATE KEY-----");
    expect(cli(["dkim", "list", "--metabase", mb]).stdout).toMatch(record);
    // the same selector again: refused, nothing overwritten
    expect(cli(["dkim", "keygen", "example.test", "--selector", "mail", "--metabase", mb]).code)
      .toBe(1);
    expect(cli(["check", "--metabase", mb]).code).toBe(0);
  });

  test("a stopped listener is persisted and status marks it loudly", () => {
    expect(cli(["listener", "stop", "pop3", "--metabase", mb]).code).toBe(0);
    const r = cli(["status", "--metabase", mb]);
    expect(r.code).toBe(3); // not running
    expect(r.stdout).toMatch(/NOT running/);
    expect(r.stdout).toMatch(/pop3 .*\*\*\* STOPPED \*\*\*/);
    expect(r.stdout).toMatch(/1 listener\(s\) STOPPED by configuration: pop3/);
    expect(cli(["listener", "start", "pop3", "--metabase", mb]).code).toBe(0);
    expect(cli(["status", "--metabase", mb]).stdout).not.toMatch(/STOPPED/);
    expect(cli(["listener", "stop", "nosuch", "--metabase", mb]).code).toBe(1);
  });

  test("user add takes the password from stdin, never argv, and the account works", () => {
    const add = cli(
      ["user", "add", "alice@example.test", "--password-stdin", "--metabase", mb],
      "s3cret-Pass\n",
    );
    expect(add.code).toBe(0);
    expect(cli(["user", "list", "--metabase", mb]).stdout).toMatch(/alice@example\.test/);
    // A duplicate is refused; an unknown domain is refused.
    expect(
      cli(["user", "add", "alice@example.test", "--password-stdin", "--metabase", mb], "x\n").code,
    ).toBe(1);
    expect(
      cli(["user", "add", "bob@elsewhere.test", "--password-stdin", "--metabase", mb], "x\n").code,
    ).toBe(1);
    // Without a terminal and without --password-stdin there is no way to pass a password.
    const noTty = cli(["user", "add", "carol@example.test", "--metabase", mb]);
    expect(noTty.code).toBe(2);
    expect(noTty.stderr).toMatch(/password-stdin/);
    expect(cli(["user", "add", "carol@example.test", "--password", "x", "--metabase", mb]).code)
      .toBe(2);
  });

  test("user passwd changes the password; user remove deletes the account", () => {
    expect(
      cli(
        ["user", "passwd", "alice@example.test", "--password-stdin", "--metabase", mb],
        "n3w-Pass\n",
      ).code,
    ).toBe(0);
    expect(
      cli(["user", "passwd", "nobody@example.test", "--password-stdin", "--metabase", mb], "x\n")
        .code,
    ).toBe(1);
    expect(cli(["user", "remove", "alice@example.test", "--metabase", mb]).code).toBe(0);
    expect(cli(["user", "list", "--metabase", mb]).stdout).not.toMatch(/alice/);
  });

  test("a missing metabase is named as missing; status then says not running (exit 3)", () => {
    const r = cli(["status", "--metabase", join(dir, "nope", "metabase.json")]);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/no metabase at .*posthorn init/);
    expect(cli(["user", "list", "--metabase", join(dir, "nope", "metabase.json")]).code).toBe(1);
  });

  test("metabase schema prints a JSON Schema", () => {
    const r = cli(["metabase", "schema"]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).properties.smtp).toBeDefined();
  });
});
