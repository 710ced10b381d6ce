// The full-text index filled behind the deliveries (store/fts.ts): queued with the delivery,
// indexed in batches when the store is quiet, found by a search at once regardless, dropped
// with its body, and finished after a restart.
import { describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { join } from "node:path";
import { createDirectStoreClient } from "../../ipc/store-client.ts";
import { eventually } from "../../tests/helpers.ts";
import { DB_FILE } from "../core.ts";
import { INDEX_BATCH } from "../fts.ts";
import { decodeQuotedPrintable, htmlWords } from "../index-text.ts";
import { openStore } from "../mod.ts";
import { deliver, fixture, storeOptions, tempDir } from "./helpers.ts";

const message = (subject: string, text: string) =>
  `From: a@remote.test\r\nTo: alice@example.com\r\nSubject: ${subject}\r\n\r\n${text}\r\n`;

async function inboxOf(f: ReturnType<typeof fixture>, address: string) {
  const acct = await f.client.call("account.get", { address });
  const folders = await f.client.call("folder.list", { userId: acct!.userId });
  return { userId: acct!.userId, folderId: folders.find((x) => x.name === "INBOX")!.folderId };
}

/** `n` deliveries to alice back to back (no quiet moment); the most bodies left pending. */
async function flood(f: ReturnType<typeof fixture>, from: number, n: number): Promise<number> {
  let most = 0;
  for (let i = from; i < from + n; i++) {
    await deliver(f.client, message(`Flood ${i}`, `flood${i}`), ["alice@example.com"]);
    most = Math.max(most, (await f.client.call("store.stats", {})).indexPending);
  }
  return most;
}

describe("full-text index behind the deliveries", () => {
  test("a delivery queues its body; the quiet store indexes it; a search never misses", async () => {
    const f = fixture();
    try {
      await f.store.addUser("alice@example.com", "pw");
      const { userId, folderId } = await inboxOf(f, "alice@example.com");
      await deliver(f.client, message("Harbour", "the ferry leaves at noon"), [
        "alice@example.com",
      ]);
      // A search right after the delivery indexes whatever is still pending first.
      expect(await f.client.call("message.search", { userId, folderId, text: "ferry" })).toEqual([
        1,
      ]);
      expect((await f.client.call("store.stats", {})).indexPending).toBe(0);

      // Without a search, the store indexes on its own once deliveries pause.
      await deliver(f.client, message("Lighthouse", "a beam over the rocks"), [
        "alice@example.com",
      ]);
      await eventually(async () => (await f.client.call("store.stats", {})).indexPending === 0);
      expect(await f.client.call("message.search", { userId, folderId, text: "beam" })).toEqual([
        2,
      ]);
      // An indexed body freed with its last message leaves the (contentless) index too.
      await f.client.call("mailbox.expunge", { userId, folderId, uids: [2] });
      expect(await f.client.call("message.search", { userId, folderId, text: "beam" })).toEqual(
        [],
      );
      expect((await f.store.verify()).problems).toEqual([]);
    } finally {
      await f.done();
    }
  });

  test("a search indexes its own folder's pending bodies, in slices; others wait", async () => {
    const f = fixture();
    try {
      await f.store.addUser("alice@example.com", "pw");
      await f.store.addUser("bob@example.com", "pw");
      const alice = await inboxOf(f, "alice@example.com");
      const bob = await inboxOf(f, "bob@example.com");
      const n = INDEX_BATCH + 10; // more than one slice
      for (let i = 0; i < n; i++) {
        await deliver(f.client, message(`Note ${i}`, `word${i} shared`), ["alice@example.com"]);
      }
      for (let i = 0; i < 3; i++) {
        await deliver(f.client, message(`Memo ${i}`, "elsewhere"), ["bob@example.com"]);
      }
      const all = await f.client.call("message.search", { ...alice, text: "shared" });
      expect(all.length).toBe(n);
      expect(await f.client.call("message.search", { ...alice, text: `word${n - 1}` }))
        .toEqual([n]);
      // Bob's bodies were not needed by that search (the quiet store may have done them since).
      expect((await f.client.call("store.stats", {})).indexPending).toBeLessThanOrEqual(3);
      expect(await f.client.call("message.search", { ...bob, text: "elsewhere" })).toEqual([
        1,
        2,
        3,
      ]);
      expect((await f.client.call("store.stats", {})).indexPending).toBe(0);
    } finally {
      await f.done();
    }
  });

  test("deliveries that never pause are indexed past store.indexBacklog; below it, once quiet", async () => {
    const f = fixture({ indexBacklog: 128 });
    try {
      await f.store.addUser("alice@example.com", "pw");
      // Back to back (no 200 ms pause): once the backlog reaches 128 it is held near that mark.
      expect(await flood(f, 0, 400)).toBeLessThanOrEqual(128 + INDEX_BATCH);
      expect((await f.client.call("store.stats", {})).indexPending).toBeGreaterThan(0);
      await eventually(async () => (await f.client.call("store.stats", {})).indexPending === 0);
    } finally {
      await f.done();
    }
  });

  test("store.indexBacklog applies live on a metabase reload", async () => {
    const f = fixture(); // the default backlog: a burst of 300 is not indexed while it lasts
    try {
      await f.store.addUser("alice@example.com", "pw");
      expect(await flood(f, 0, 300)).toBeGreaterThan(128 + INDEX_BATCH);
      f.store.reconfigure(storeOptions(f.dir, { indexBacklog: 128 }));
      await flood(f, 300, 20); // the next deliveries see the new limit and index down to it
      expect((await f.client.call("store.stats", {})).indexPending).toBeLessThanOrEqual(
        128 + INDEX_BATCH,
      );
    } finally {
      await f.done();
    }
  });

  test("the index reads text parts decoded, HTML as words, attachments by name only", async () => {
    const f = fixture();
    try {
      await f.store.addUser("alice@example.com", "pw");
      const { userId, folderId } = await inboxOf(f, "alice@example.com");
      const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");
      const attachment = Buffer.from("secretpayloadword ".repeat(40)).toString("base64");
      const mime = [
        "From: =?utf-8?q?J=C3=B6rg?= <j@remote.test>",
        "To: alice@example.com",
        "Subject: =?utf-8?b?" + b64("Grüße vom Hafen") + "?=",
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="outer"',
        "",
        "--outer",
        'Content-Type: multipart/alternative; boundary="alt"',
        "",
        "--alt",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: quoted-printable",
        "",
        "Der Kapit=C3=A4n sagt: zebra crossing am Kai=",
        "mauer.",
        "--alt",
        "Content-Type: text/html; charset=iso-8859-1",
        "Content-Transfer-Encoding: base64",
        "",
        Buffer.from(
          "<div class=x><b>Lighthouse</b> caf\xe9 &amp; more<script>hiddenscript()</script></div>",
          "latin1",
        )
          .toString("base64"),
        "--alt--",
        "--outer",
        'Content-Type: application/pdf; name="harbour-plan.pdf"',
        'Content-Disposition: attachment; filename="harbour-plan.pdf"',
        "Content-Transfer-Encoding: base64",
        "",
        attachment,
        "--outer--",
        "",
      ].join("\r\n");
      await deliver(f.client, mime, ["alice@example.com"]);
      const q = (text: string) => f.client.call("message.search", { userId, folderId, text });
      expect(await q("zebra")).toEqual([1]); // quoted-printable, decoded
      expect(await q("Kaimauer")).toEqual([1]); // a soft line break joins the word again
      expect(await q("Kapitän")).toEqual([1]); // charset decoded (and diacritics folded)
      expect(await q("lighthouse cafe")).toEqual([1]); // base64 HTML in latin-1, as words
      expect(await q("harbour plan")).toEqual([1]); // the attachment's file name
      expect(await q("Grüße")).toEqual([1]); // an encoded-word subject
      expect(await q("Jörg")).toEqual([1]);
      expect(await q("secretpayloadword")).toEqual([]); // attachment bytes are not indexed
      expect(await q("hiddenscript")).toEqual([]); // nor scripts
      expect(await q("div")).toEqual([]); // nor tags
    } finally {
      await f.done();
    }
  });

  test("a body that cannot be indexed is skipped; the others are indexed", async () => {
    const f = fixture({ inlineBytes: 0 });
    try {
      await f.store.addUser("alice@example.com", "pw");
      const { userId, folderId } = await inboxOf(f, "alice@example.com");
      await deliver(f.client, message("Broken", "unreadable words"), ["alice@example.com"]);
      await deliver(f.client, message("Fine", "readable words"), ["alice@example.com"]);
      // Damage the first body's page list, as a bad disk or a bug might.
      const db = new Database(join(f.dir, DB_FILE));
      db.exec(
        "UPDATE bodies SET extents = 'not a page list' WHERE id = (SELECT min(id) FROM bodies)",
      );
      db.close();
      expect(await f.client.call("message.search", { userId, folderId, text: "readable" }))
        .toEqual([2]);
      expect((await f.client.call("store.stats", {})).indexPending).toBe(0);
    } finally {
      await f.done();
    }
  });

  test("an expunged message's pending body leaves the queue with it", async () => {
    const f = fixture();
    try {
      await f.store.addUser("alice@example.com", "pw");
      const { userId, folderId } = await inboxOf(f, "alice@example.com");
      await deliver(f.client, message("Gone", "ephemeral words"), ["alice@example.com"]);
      await f.client.call("mailbox.expunge", { userId, folderId, uids: [1] });
      expect((await f.client.call("store.stats", {})).indexPending).toBe(0);
      expect(await f.client.call("message.search", { userId, folderId, text: "ephemeral" }))
        .toEqual([]);
      expect((await f.store.verify()).problems).toEqual([]);
    } finally {
      await f.done();
    }
  });

  test("bodies left pending by a crash are indexed after the next start", async () => {
    const t = tempDir();
    try {
      let store = openStore(storeOptions(t.dir));
      let client = createDirectStoreClient(store.service, "test");
      await store.addUser("alice@example.com", "pw");
      await deliver(client, message("Before", "restart survives"), ["alice@example.com"]);
      client.close();
      await store.close();
      // As a crash between the delivery's commit and its indexing leaves it: queued only.
      const db = new Database(join(t.dir, DB_FILE));
      db.exec("DELETE FROM body_fts; INSERT OR IGNORE INTO fts_pending SELECT id FROM bodies");
      expect((db.query("SELECT count(*) AS n FROM fts_pending").get() as { n: number }).n).toBe(1);
      db.close();

      store = openStore(storeOptions(t.dir));
      client = createDirectStoreClient(store.service, "test");
      try {
        await eventually(async () => (await client.call("store.stats", {})).indexPending === 0);
        const acct = await client.call("account.get", { address: "alice@example.com" });
        const folders = await client.call("folder.list", { userId: acct!.userId });
        const folderId = folders.find((x) => x.name === "INBOX")!.folderId;
        expect(
          await client.call("message.search", {
            userId: acct!.userId,
            folderId,
            text: "survives",
          }),
        ).toEqual([1]);
      } finally {
        client.close();
        await store.close();
      }
    } finally {
      t.cleanup();
    }
  });
});

describe("index text helpers", () => {
  test("htmlWords keeps the words and drops markup, even unterminated or hostile", () => {
    expect(
      htmlWords(
        '<p class="x">Light<b>house</b> &amp; &#233;t&#xE9;</p><script>no()</script>' +
          "<STYLE>p{}</style>end<!-- gone -->tail",
      ).split(/\s+/).filter(Boolean),
    ).toEqual(["Light", "house", "&", "été", "end", "tail"]);
    expect(htmlWords("words <b unterminated and more").trim()).toBe("words");
    expect(htmlWords("a <!-- never closed").trim()).toBe("a");
    expect(htmlWords("b <script>never closed").trim()).toBe("b");
    // Long runs of markup openers end (linear scan): nothing of them is a word.
    expect(htmlWords("<".repeat(65536)).trim()).toBe("");
    expect(htmlWords("<!--".repeat(16000)).trim()).toBe("");
  });

  test("quoted-printable: bytes, soft line breaks, stray '=' kept", () => {
    const dec = (s: string) => new TextDecoder().decode(decodeQuotedPrintable(Buffer.from(s)));
    expect(dec("caf=C3=A9 =3D ok")).toBe("café = ok");
    expect(dec("Kai=\r\nmauer and=\nmore")).toBe("Kaimauer andmore");
    expect(dec("50% =ZZ off=")).toBe("50% =ZZ off=");
  });
});
