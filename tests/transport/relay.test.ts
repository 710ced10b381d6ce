// End to end: two Posthorn halves in one process. Instance A (here.test) queues mail for
// there.test; its transport relays it over a static route, with STARTTLS, to instance B's SMTP
// receive engine. B comes up late, so the first attempt is deferred and `queue.retry` (what
// `posthorn queue retry` calls) sends it. A recipient B refuses bounces into the sender's INBOX.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createDirectStoreClient, type StoreClient } from "../../ipc/store-client.ts";
import { memoryLogger } from "../../log/mod.ts";
import { Metabase, SmtpConnector } from "../../metabase/schema.ts";
import type { EngineContext } from "../../protocols/engine.ts";
import { smtpEngine } from "../../protocols/smtp/mod.ts";
import { openStore, type Store } from "../../store/mod.ts";
import { startTransport, type Transport } from "../../transport/mod.ts";
import { selfSignedCert } from "../../transport/testing/fake-smtp.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const dir = mkdtempSync(join(tmpdir(), "posthorn-relay-"));
const opened: { store: Store; client: StoreClient & { close(): void } }[] = [];
let transport: Transport | null = null;

afterAll(async () => {
  await transport?.stop();
  for (const o of opened) {
    o.client.close();
    await o.store.close();
  }
  rmSync(dir, { recursive: true, force: true });
});

function instance(name: string, domain: string, mb: Metabase) {
  const store = openStore({
    dir: join(dir, name),
    durability: "off",
    groupCommitMs: 0,
    pageBytes: 512,
    quotaBytes: null,
    quotaMessages: null,
    domains: [{ name: domain, catchAll: null }],
    auth: mb.auth,
    log: memoryLogger(`${name}.store`),
    argon2: { memoryCost: 256, timeCost: 1 },
  });
  const client = createDirectStoreClient(store.service, name);
  opened.push({ store, client });
  return { store, client };
}

async function inbox(client: StoreClient, address: string): Promise<string[]> {
  const account = await client.call("account.get", { address });
  const folder = await client.call("folder.status", { userId: account!.userId, name: "INBOX" });
  const list = await client.call("message.list", {
    userId: account!.userId,
    folderId: folder.folderId,
  });
  const out: string[] = [];
  for (const m of list) {
    const parts: Uint8Array[] = [];
    for await (
      const c of client.stream("message.read", { userId: account!.userId, messageId: m.messageId })
    ) {
      parts.push(c);
    }
    out.push(dec.decode(Buffer.concat(parts)));
  }
  return out;
}

async function eventually(check: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (await check()) return;
    await Bun.sleep(20);
  }
  throw new Error(`timed out waiting for ${what}`);
}

let pem: { cert: string; key: string };
beforeAll(() => {
  pem = selfSignedCert(dir);
});

test("relay over a static route with STARTTLS, a retry after the receiver comes up late, a bounce", async () => {
  // Find a free port for B, then leave it closed: B is "down" at first.
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const portB = probe.port;
  probe.stop(true);

  const mbB = Metabase.parse({
    server: { hostname: "b.test" },
    domains: [{ name: "there.test" }],
    auth: { failureDelayMs: 0 },
    logging: { stderr: "off" },
  });
  const b = instance("b", "there.test", mbB);
  await b.store.addUser("bob@there.test", "pw-bob");

  const mbA = Metabase.parse({
    server: { hostname: "a.test" },
    domains: [{ name: "here.test" }],
    auth: { failureDelayMs: 0 },
    logging: { stderr: "off" },
    smtp: {
      routes: [{ domain: "there.test", host: "127.0.0.1", port: portB, tls: "opportunistic" }],
      queue: { pollSeconds: 3600, retryBaseSeconds: 3600, connectTimeoutSeconds: 5 },
    },
  });
  const a = instance("a", "here.test", mbA);
  await a.store.addUser("alice@here.test", "pw-alice");
  const logA = memoryLogger("a");
  const ctxA: EngineContext = {
    config: () => mbA,
    tls: () => pem,
    store: a.client,
    log: logA,
    workerIndex: 0,
  };
  transport = await startTransport(ctxA);

  // Alice's message for two recipients at B; 8-bit text, a line starting with a dot.
  const body = "From: alice@here.test\r\nTo: bob@there.test\r\nSubject: caf\u00e9\r\n\r\n" +
    ".starts with a dot\r\nna\u00efve 8-bit line\r\n";
  const bytes = enc.encode(body);
  const { uploadId } = await a.client.call("body.begin", { sizeHint: bytes.length });
  for (let i = 0; i < bytes.length; i += 16) {
    await a.client.call("body.append", { uploadId, chunk: bytes.subarray(i, i + 16) });
  }
  const committed = await a.client.call("delivery.commit", {
    uploadId,
    sender: "alice@here.test",
    recipients: [{ address: "bob@there.test" }, { address: "nobody@there.test" }],
    bodyType: "8BITMIME",
  });
  expect(committed.queued.map((q) => q.address).sort()).toEqual([
    "bob@there.test",
    "nobody@there.test",
  ]);

  // B is down: the attempt fails and both entries are deferred, not lost.
  await eventually(async () => {
    const q = await a.client.call("queue.list", {});
    return q.length === 2 && q.every((e) => e.attempts === 1);
  }, "the first attempt to be deferred");
  const deferred = await a.client.call("queue.list", {});
  expect(deferred[0]!.lastError).toContain("127.0.0.1");

  // B comes up on the routed port, with STARTTLS offered.
  const connector = SmtpConnector.parse({
    name: "mx",
    port: portB,
    tls: "starttls",
    role: "mx",
    auth: "none",
  });
  const ctxB: EngineContext = {
    config: () => mbB,
    tls: () => pem,
    store: b.client,
    log: memoryLogger("b"),
    workerIndex: 0,
  };
  const listenerB = await smtpEngine.listen(connector, ctxB);
  try {
    const retried = await a.client.call("queue.retry", { all: true });
    expect(retried.count).toBe(2);

    await eventually(
      async () => (await a.client.call("queue.list", {})).length === 0,
      "the queue to drain",
    );
    const bobMail = await inbox(b.client, "bob@there.test");
    expect(bobMail.length).toBe(1);
    // B adds its own trace fields in front; the message itself arrives byte for byte.
    expect(bobMail[0]!.endsWith(body)).toBe(true);
    expect(logA.records.some((r) => r.event === "tls_unverified" || r.event === "tls")).toBe(true);

    const aliceMail = await inbox(a.client, "alice@here.test");
    expect(aliceMail.length).toBe(1);
    const dsn = aliceMail[0]!;
    expect(dsn).toContain("Content-Type: multipart/report; report-type=delivery-status;");
    expect(dsn).toContain("Final-Recipient: rfc822; nobody@there.test");
    expect(dsn).toContain("Action: failed");
    expect(dsn).toMatch(/Status: 5\.1\.1/);
    expect(dsn).toContain(".starts with a dot"); // the returned original
  } finally {
    await listenerB.close(0);
  }
});
