// The metabase's validation: every error names its JSON path; defaults make a minimal file work.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  editMetabase,
  initialMetabase,
  loadMetabase,
  MetabaseError,
  metabaseJsonSchema,
  validateMetabase,
} from "./mod.ts";

const base = () => initialMetabase({ domain: "example.com", portOffset: 20000 }) as any;

function issuesOf(value: unknown) {
  const r = validateMetabase(value);
  if (r.ok) throw new Error("expected the metabase to be refused");
  return r.issues;
}

describe("metabase validation", () => {
  test("an empty object is a valid metabase with every default", () => {
    const r = validateMetabase({});
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.metabase.auth.plaintext).toBe("tls-or-loopback");
    expect(r.metabase.store.durability).toBe("group");
    expect(r.metabase.limits.lineBytes).toBe(4096);
  });

  test("the init metabase is valid and has every standard port plus the offset", () => {
    const r = validateMetabase(base());
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    const ports = [
      ...r.metabase.smtp.connectors.map((c) => c.port),
      ...(["pop3", "imap", "nntp", "http"] as const).flatMap((e) =>
        r.metabase[e].listeners.map((l) => l.port)
      ),
    ];
    expect(ports.sort()).toEqual(
      [25, 587, 465, 110, 995, 143, 993, 119, 563, 80, 443].map((p) => p + 20000).sort(),
    );
  });

  test("a bad port is reported at its path", () => {
    const mb = base();
    mb.smtp.connectors[1].port = 70000;
    const issues = issuesOf(mb);
    expect(issues.map((i) => i.path)).toContain("smtp.connectors[1].port");
    expect(issues[0]!.message).toMatch(/65535/);
  });

  test("an unknown key is an error naming the key", () => {
    const mb = base();
    mb.pop3.listeners[0].prot = 110;
    mb.smtpp = {};
    const issues = issuesOf(mb);
    expect(issues.map((i) => i.path).sort()).toEqual(["pop3.listeners[0].prot", "smtpp"]);
    expect(issues[0]!.message).toMatch(/unknown key/);
  });

  test("a bad TLS mode lists the allowed modes", () => {
    const mb = base();
    mb.imap.listeners[1].tls = "ssl";
    const issues = issuesOf(mb);
    expect(issues[0]!.path).toBe("imap.listeners[1].tls");
    expect(issues[0]!.message).toMatch(/none.*starttls.*implicit/);
  });

  test("a duplicate port on one address names both listeners", () => {
    const mb = base();
    mb.pop3.listeners[0].port = mb.smtp.connectors[0].port;
    const issues = issuesOf(mb);
    expect(issues[0]!.path).toBe("pop3.listeners[0].port");
    expect(issues[0]!.message).toMatch(/already used by listener "mx"/);
  });

  test("a wildcard bind clashes with a specific address on the same port", () => {
    const mb = base();
    mb.pop3.listeners[0].bind = "0.0.0.0";
    mb.pop3.listeners[0].port = mb.smtp.connectors[0].port;
    expect(issuesOf(mb)[0]!.path).toBe("pop3.listeners[0].port");
  });

  test("the same port on two different addresses is fine", () => {
    const mb = base();
    mb.pop3.listeners[0].bind = "127.0.0.2";
    mb.pop3.listeners[0].port = mb.smtp.connectors[0].port;
    expect(validateMetabase(mb).ok).toBe(true);
  });

  test("duplicate listener names and domains are refused", () => {
    const mb = base();
    mb.imap.listeners[0].name = "mx";
    mb.domains.push({ name: "example.com" });
    const paths = issuesOf(mb).map((i) => i.path);
    expect(paths).toContain("imap.listeners[0].name");
    expect(paths).toContain("domains[1].name");
  });

  test("a JSON syntax error gives line and column", () => {
    const dir = mkdtempSync(join(tmpdir(), "ph-mb-"));
    const file = join(dir, "metabase.json");
    writeFileSync(file, '{\n  "server": {\n    "hostname": "x",\n  }\n}\n');
    const r = loadMetabase(file);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.issues[0]!.message).toMatch(/not valid JSON at line 4/);
  });

  test("editMetabase refuses an edit that would make the file invalid and leaves it untouched", () => {
    const dir = mkdtempSync(join(tmpdir(), "ph-mb-"));
    const file = join(dir, "metabase.json");
    writeFileSync(file, JSON.stringify({ domains: [{ name: "a.test" }] }));
    const before = readFileSync(file, "utf8");
    expect(() => editMetabase(file, (raw: any) => (raw.limits = { lineBytes: 3 }))).toThrow(
      MetabaseError,
    );
    expect(readFileSync(file, "utf8")).toBe(before);
    editMetabase(file, (raw) => raw.domains!.push({ name: "b.test" }));
    const after = JSON.parse(readFileSync(file, "utf8"));
    expect(after.domains.map((d: any) => d.name)).toEqual(["a.test", "b.test"]);
    expect(after.limits).toBeUndefined(); // the user's minimal file stays minimal
  });

  test("the JSON Schema describes the listeners and forbids unknown keys", () => {
    const schema = metabaseJsonSchema() as any;
    expect(schema.additionalProperties).toBe(false);
    expect(schema.properties.smtp.properties.connectors.items.properties.tls.enum).toEqual([
      "none",
      "starttls",
      "implicit",
    ]);
  });
});

test("README.md's metabase reference is the one the schema generates", async () => {
  const { metabaseReference, BEGIN, END } = await import("./reference.ts");
  const readme = await Bun.file(new URL("../README.md", import.meta.url)).text();
  const section = readme.slice(readme.indexOf(BEGIN), readme.indexOf(END) + END.length);
  expect(section).toBe(metabaseReference());
});
