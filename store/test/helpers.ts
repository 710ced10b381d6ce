// Test helpers for store/: a fresh store in a temporary directory and small delivery shortcuts.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { StoreClient } from "../../ipc/store-client.ts";
import { createDirectStoreClient } from "../../ipc/store-client.ts";
import { silentLogger } from "../../log/mod.ts";
import { openStore, type Store, type StoreOptions } from "../mod.ts";

export function tempDir(prefix = "posthorn-store-"): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function storeOptions(dir: string, over: Partial<StoreOptions> = {}): StoreOptions {
  return {
    dir,
    durability: "off",
    groupCommitMs: 0,
    pageBytes: 512,
    quotaBytes: null,
    quotaMessages: null,
    domains: [{ name: "example.com", catchAll: null }, { name: "example.org", catchAll: null }],
    auth: {
      plaintext: "always",
      failuresPerMinute: 5,
      failureDelayMs: 0,
      credentialCacheSeconds: 60,
      maxHashesInFlight: 2,
      hashWaitMs: 5000,
    },
    log: silentLogger,
    argon2: { memoryCost: 256, timeCost: 1 },
    ...over,
  };
}

export interface Fixture {
  store: Store;
  client: StoreClient & { close(): void };
  dir: string;
  done(): Promise<void>;
}

export function fixture(over: Partial<StoreOptions> = {}): Fixture {
  const t = tempDir();
  const store = openStore(storeOptions(t.dir, over));
  const client = createDirectStoreClient(store.service, "test");
  return {
    store,
    client,
    dir: t.dir,
    async done() {
      client.close();
      await store.close();
      t.cleanup();
    },
  };
}

export const enc = (s: string) => new TextEncoder().encode(s);
export const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** Upload `body` in chunks of `chunk` bytes and commit it to `recipients`. */
export async function deliver(
  client: StoreClient,
  body: Uint8Array | string,
  recipients: string[],
  opts: { chunk?: number; prefix?: string; sender?: string } = {},
) {
  const bytes = typeof body === "string" ? enc(body) : body;
  const { uploadId } = await client.call("body.begin", { sizeHint: bytes.length });
  const step = opts.chunk ?? 1000;
  for (let i = 0; i < bytes.length; i += step) {
    await client.call("body.append", { uploadId, chunk: bytes.subarray(i, i + step) });
  }
  return await client.call("delivery.commit", {
    uploadId,
    sender: opts.sender ?? "sender@remote.test",
    recipients: recipients.map((address) => ({ address })),
    localPrefix: opts.prefix ? enc(opts.prefix) : undefined,
  });
}

export async function readAll(it: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const c of it) parts.push(c);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export function message(subject: string, body: string, extra = ""): string {
  return `From: a@remote.test\r\nTo: b@example.com\r\nSubject: ${subject}\r\nMessage-ID: <${
    subject.replace(/\W/g, "")
  }@remote.test>\r\n${extra}\r\n${body}\r\n`;
}
