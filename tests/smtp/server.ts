// End-to-end fixture: the real store in a temporary directory and the SMTP engine listening on
// ephemeral loopback ports, one per connector, with a self-signed certificate for STARTTLS.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createDirectStoreClient, type StoreClient } from "../../ipc/store-client.ts";
import { type LogRecord, makeLogger } from "../../log/mod.ts";
import { Metabase, type MetabaseInput } from "../../metabase/schema.ts";
import type { BoundListener, TlsMaterial } from "../../protocols/engine.ts";
import { smtpEngine } from "../../protocols/smtp/mod.ts";
import { generateSelfSigned } from "../../protocols/wire/mod.ts";
import { openStore, type Store, type StoreOptions } from "../../store/mod.ts";

let material: TlsMaterial | null = null;
function tls(): TlsMaterial {
  material ??= generateSelfSigned("mx.test");
  return material;
}

export interface TestServer {
  /** Bound port per connector name. */
  ports: Record<string, number>;
  store: Store;
  /** What the store was opened with (for a live `store.reconfigure`). */
  storeOptions: StoreOptions;
  client: StoreClient;
  logs: LogRecord[];
  /** The messages in a user's INBOX, as stored (Return-Path and Received: included). */
  inbox(address: string): Promise<Buffer[]>;
  close(): Promise<void>;
}

export async function startServer(
  input: MetabaseInput,
  users: [string, string][] = [],
): Promise<TestServer> {
  const dir = mkdtempSync(join(tmpdir(), "posthorn-smtp-"));
  const mb = Metabase.parse({
    server: { hostname: "mx.test" },
    domains: [{ name: "example.com" }],
    ...input,
    store: { durability: "off", ...input.store },
    auth: { failureDelayMs: 10, ...input.auth },
  });
  const logs: LogRecord[] = [];
  const log = makeLogger("test", (r) => logs.push(r));
  const storeOptions: StoreOptions = {
    dir: join(dir, "store"),
    durability: mb.store.durability,
    groupCommitMs: mb.store.groupCommitMs,
    pageBytes: mb.store.pageBytes,
    quotaBytes: null,
    quotaMessages: null,
    domains: mb.domains,
    postmaster: mb.server.postmaster,
    auth: mb.auth,
    log: log.child("store"),
    chunkBytes: mb.ipc.chunkBytes,
    argon2: { memoryCost: 256, timeCost: 1 },
  };
  const store = openStore(storeOptions);
  for (const [address, password] of users) await store.addUser(address, password);
  const client = createDirectStoreClient(store.service, "smtp-e2e");
  const ctx = { config: () => mb, tls, store: client, log, workerIndex: 0 };
  const bound: BoundListener[] = [];
  const ports: Record<string, number> = {};
  for (const connector of mb.smtp.connectors) {
    const l = await smtpEngine.listen(connector, ctx);
    bound.push(l);
    ports[connector.name] = l.port;
  }
  return {
    ports,
    store,
    storeOptions,
    client,
    logs,
    async inbox(address) {
      const account = await client.call("account.get", { address });
      if (!account) throw new Error(`no account ${address}`);
      const folder = await client.call("folder.status", { userId: account.userId, name: "INBOX" });
      const list = await client.call("message.list", {
        userId: account.userId,
        folderId: folder.folderId,
      });
      const out: Buffer[] = [];
      for (const m of list) {
        const chunks: Uint8Array[] = [];
        for await (
          const c of client.stream("message.read", {
            userId: account.userId,
            messageId: m.messageId,
          })
        ) chunks.push(c);
        out.push(Buffer.concat(chunks));
      }
      return out;
    },
    async close() {
      await Promise.all(bound.map((b) => b.close(100)));
      client.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The stored message without the Return-Path and Received: lines this server added. */
export function withoutTrace(stored: Buffer): Buffer {
  let at = 0;
  while (/^(Return-Path|Received):/i.test(stored.subarray(at, at + 12).toString("latin1"))) {
    let stop = stored.indexOf("\r\n", at) + 2;
    // Folded continuation lines start with white space (RFC 5322 §2.2.3).
    while (stored[stop] === 0x09 || stored[stop] === 0x20) stop = stored.indexOf("\r\n", stop) + 2;
    at = stop;
  }
  return stored.subarray(at);
}
