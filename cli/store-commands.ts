// Commands that open the store in this process: accounts, aliases, the queue, verify, compact,
// backup/restore and import/export. They work whether or not a server runs on the same data
// dir: beside a running server the store opens "shared" (SQL only; page allocation and
// reclaim stay with the server). Import hands its work to the running server through its
// control socket; compact and restore ask for the server to stop.
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { createDirectStoreClient } from "../ipc/store-client.ts";
import { silentLogger } from "../log/mod.ts";
import { openStore, restoreStore, type Store, storeOptionsFromMetabase } from "../store/mod.ts";
import { controlRequest, readStatus } from "../supervisor/mod.ts";
import {
  type Command,
  err,
  METABASE_HELP,
  openMetabase,
  out,
  parse,
  readPassword,
  UsageError,
} from "./common.ts";

async function withStore<T>(
  metabaseFile: string | undefined,
  fn: (store: Store) => Promise<T>,
): Promise<T> {
  const { metabase: mb, paths } = openMetabase(metabaseFile);
  const opts = storeOptionsFromMetabase(mb, paths.storeDir, silentLogger, "auto");
  // One command, one transaction at a time: no group commit to wait for.
  const store = openStore({
    ...opts,
    durability: mb.store.durability === "off" ? "off" : "always",
    groupCommitMs: 0,
  });
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

const isAddress = (a: string | undefined): a is string => !!a && /^[^@\s]+@[^@\s]+$/.test(a);

export const user: Command = {
  name: "user",
  summary: "add, list, change the password of, or remove accounts",
  help: `Usage: posthorn user add ADDRESS [--password-stdin] [--name N] [--quota-mb N]
       posthorn user passwd ADDRESS [--password-stdin]
       posthorn user remove ADDRESS
       posthorn user list

Passwords come from standard input (--password-stdin: its first line) or a prompt; never from
the command line. Hashes are argon2id. The domain must be a local domain of the metabase.
  --name N           display name
  --quota-mb N       storage quota in MiB (default: the metabase's store.quotaBytes)
${METABASE_HELP}`,
  async run(argv) {
    const { values, positionals } = parse(argv, {
      "password-stdin": { type: "boolean" },
      name: { type: "string" },
      "quota-mb": { type: "string" },
    });
    const [verb, address] = positionals;
    if (verb === "list") {
      return withStore(values.metabase, async (store) => {
        for (const u of store.listUsers()) {
          const quota = u.quotaBytes ? ` quota ${Math.round(u.quotaBytes / 1048576)} MiB` : "";
          out(
            `${u.address}  ${u.usedMessages} message(s), ${u.usedBytes} bytes${quota}${
              u.displayName ? `  "${u.displayName}"` : ""
            }`,
          );
        }
        return 0;
      });
    }
    if (!verb || !["add", "passwd", "remove"].includes(verb)) {
      throw new UsageError("expected add|passwd|remove|list");
    }
    if (!isAddress(address)) throw new UsageError("expected an address like alice@example.com");
    const lower = address.toLowerCase();
    if (verb === "remove") {
      return withStore(values.metabase, async (store) => {
        store.removeUser(lower);
        out(`removed ${lower}`);
        return 0;
      });
    }
    if (verb === "add") {
      const domain = lower.slice(lower.lastIndexOf("@") + 1);
      if (!openMetabase(values.metabase).metabase.domains.some((d) => d.name === domain)) {
        err(`${domain} is not a local domain (posthorn domain add ${domain})`);
        return 1;
      }
    }
    // Read the password before opening anything, so a prompt never holds the store open.
    const password = await readPassword(!!values["password-stdin"]);
    return withStore(values.metabase, async (store) => {
      if (verb === "add") {
        const quota = values["quota-mb"] === undefined
          ? undefined
          : Number(values["quota-mb"]) * 1048576;
        if (quota !== undefined && !(quota > 0)) {
          throw new UsageError("--quota-mb takes a positive number");
        }
        await store.addUser(lower, password, { displayName: values.name, quotaBytes: quota });
        out(`added ${lower}`);
      } else {
        await store.setPassword(lower, password);
        out(`password changed for ${lower}`);
      }
      return 0;
    });
  },
};

export const alias: Command = {
  name: "alias",
  summary: "aliases and distribution lists",
  help: `Usage: posthorn alias add ADDRESS TARGET...     (forward to each target)
       posthorn alias list-add LIST MEMBER...    (a distribution list)
       posthorn alias remove ADDRESS [TARGET]
       posthorn alias list
${METABASE_HELP}`,
  async run(argv) {
    const { values, positionals } = parse(argv, {});
    const [verb, address, ...targets] = positionals;
    return withStore(values.metabase, async (store) => {
      if (verb === "list") {
        for (const a of store.listAliases()) {
          out(`${a.address}  ${a.kind}  → ${a.targets.join(", ")}`);
        }
        return 0;
      }
      if (!isAddress(address)) throw new UsageError("expected an address");
      if (verb === "add" || verb === "list-add") {
        if (!targets.length || !targets.every(isAddress)) {
          throw new UsageError("expected one or more target addresses");
        }
        for (const t of targets) {
          if (verb === "add") store.addAlias(address.toLowerCase(), t.toLowerCase());
          else store.addListMember(address.toLowerCase(), t.toLowerCase());
        }
        out(`${address.toLowerCase()} → ${targets.join(", ")}`);
        return 0;
      }
      if (verb === "remove") {
        store.removeAlias(address.toLowerCase(), targets[0]?.toLowerCase());
        out(`removed ${address.toLowerCase()}${targets[0] ? ` → ${targets[0]}` : ""}`);
        return 0;
      }
      throw new UsageError("expected add|list-add|remove|list");
    });
  },
};

/** `queue retry` beside a running server: done by its store, so its transport wakes at once.
 * Null when no server runs here (the command then does it itself). */
async function retryThroughServer(
  metabaseFile: string | undefined,
  all: boolean,
  id: string | undefined,
): Promise<number | null> {
  const { paths } = openMetabase(metabaseFile);
  if (!readStatus(paths.runDir)?.alive) return null;
  const queueId = Number(id);
  if (!all && (!Number.isInteger(queueId) || queueId <= 0)) {
    throw new UsageError("expected a queue id (see queue list)");
  }
  try {
    const answer = await controlRequest(
      paths.runDir,
      all ? { op: "queue.retry", all: true } : { op: "queue.retry", queueId },
      () => {},
    );
    if (answer === null) return null; // no control socket: the shared store still works
    const { count } = answer.done as { count: number };
    if (!all && !count) {
      err(`no queued message ${queueId}`);
      return 1;
    }
    out(all ? `${count} message(s) due now` : `message ${queueId} due now`);
    return 0;
  } catch (e) {
    err(`posthorn queue: ${(e as Error).message}`);
    return 1;
  }
}

export const queue: Command = {
  name: "queue",
  summary: "list, retry or delete messages in the outbound queue",
  help: `Usage: posthorn queue list | retry ID | retry --all | delete ID

Beside a running server, retry goes through the server, which sends at once.
  --all              with retry: every queued message
${METABASE_HELP}`,
  async run(argv) {
    const { values, positionals } = parse(argv, { all: { type: "boolean" } });
    const [verb, id] = positionals;
    if (verb === "retry") {
      const online = await retryThroughServer(values.metabase, values.all === true, id);
      if (online !== null) return online;
    }
    return withStore(values.metabase, async (store) => {
      const client = createDirectStoreClient(store.service, "cli");
      try {
        if (verb === "list") {
          const entries = await client.call("queue.list", {});
          if (!entries.length) out("the queue is empty");
          for (const e of entries) {
            out(
              `${e.queueId}  ${
                new Date(e.createdAt).toISOString()
              }  <${e.sender}> → ${e.recipient}  via ${e.nextHop}  ` +
                `attempts ${e.attempts}, next ${new Date(e.nextAttemptAt).toISOString()}` +
                (e.lastError ? `\n      last error: ${e.lastError}` : ""),
            );
          }
          return 0;
        }
        if (verb === "retry" && values.all) {
          out(`${(await client.call("queue.retry", { all: true })).count} message(s) due now`);
          return 0;
        }
        const queueId = Number(id);
        if (!Number.isInteger(queueId) || queueId <= 0) {
          throw new UsageError("expected a queue id (see queue list)");
        }
        if (verb === "retry") {
          const { count } = await client.call("queue.retry", { queueId });
          if (!count) {
            err(`no queued message ${queueId}`);
            return 1;
          }
          out(`message ${queueId} due now`);
          return 0;
        }
        if (verb === "delete") {
          await client.call("queue.delete", { queueId });
          out(`deleted ${queueId} (no bounce is sent)`);
          return 0;
        }
        throw new UsageError("expected list|retry|delete");
      } finally {
        client.close();
      }
    });
  },
};

export const storeCmd: Command = {
  name: "store",
  summary: "verify or compact the store",
  help: `Usage: posthorn store verify | compact

verify: every extent inside the page file, no page both free and used, reference counts and
sha256 of every body; exit 1 on any problem. compact: shrink the page file (server stopped).
${METABASE_HELP}`,
  async run(argv) {
    const { values, positionals } = parse(argv, {});
    const verb = positionals[0];
    if (verb !== "verify" && verb !== "compact") throw new UsageError("expected verify|compact");
    return withStore(values.metabase, async (store) => {
      if (verb === "verify") {
        const r = await store.verify();
        for (const p of r.problems) err(`problem: ${p}`);
        out(
          `${
            r.ok ? "ok" : "FAILED"
          }: ${r.bodies} bodies, ${r.messages} messages, ${r.pages} pages, ${r.problems.length} problem(s)`,
        );
        return r.ok ? 0 : 1;
      }
      if (!store.owner) {
        err("the server is running on this store: stop it before compacting");
        return 1;
      }
      const r = store.compact();
      out(`page file ${r.before} → ${r.after} bytes`);
      return 0;
    });
  },
};

export const backup: Command = {
  name: "backup",
  summary: "take a consistent snapshot of the store (while serving)",
  help: `Usage: posthorn backup DIR

Writes a consistent copy of the database and page file into DIR (which must not exist or be
empty); works while the server runs.
${METABASE_HELP}`,
  async run(argv) {
    const { values, positionals } = parse(argv, {});
    const dir = positionals[0];
    if (!dir) throw new UsageError("expected a target directory");
    return withStore(values.metabase, async (store) => {
      const m = await store.backup(dir);
      out(`backup in ${dir}: ${m.messages} messages, ${m.bodies} bodies, ${m.pages} pages`);
      return 0;
    });
  },
};

export const restore: Command = {
  name: "restore",
  summary: "replace the store by a backup (server stopped)",
  help: `Usage: posthorn restore DIR

Replaces the store of the metabase by the backup in DIR, then verifies it. The server must be
stopped.
${METABASE_HELP}`,
  async run(argv) {
    const { values, positionals } = parse(argv, {});
    const dir = positionals[0];
    if (!dir || !existsSync(dir)) throw new UsageError("expected an existing backup directory");
    const { paths } = openMetabase(values.metabase);
    if (readStatus(paths.runDir)?.alive) {
      err("the server is running: stop it before restoring");
      return 1;
    }
    const m = restoreStore(dir, paths.storeDir);
    out(`restored ${m.messages} messages from the backup of ${m.createdAt}`);
    return withStore(values.metabase, async (store) => {
      const r = await store.verify();
      for (const p of r.problems) err(`problem: ${p}`);
      out(r.ok ? "verify: ok" : "verify: FAILED");
      return r.ok ? 0 : 1;
    });
  },
};

/**
 * `import` beside a running server: the server's store worker (which owns the page file) reads
 * the mbox or Maildir and delivers it; this command shows the progress. Null when no server
 * runs on this data dir (the command then imports itself).
 */
async function importThroughServer(
  metabaseFile: string | undefined,
  format: "mbox" | "maildir",
  path: string,
  user: string,
  folder: string | undefined,
): Promise<number | null> {
  const { paths } = openMetabase(metabaseFile);
  if (!readStatus(paths.runDir)?.alive) return null;
  const request = { op: "import", format, path: resolve(path), user, folder };
  try {
    const answer = await controlRequest(paths.runDir, request, (p) => {
      const { messages, bytes } = p as { messages: number; bytes: number };
      err(`… ${messages} message(s), ${bytes} bytes so far`);
    });
    if (answer === null) {
      err("the server is running but its control socket does not answer: stop it to import");
      return 1;
    }
    const { messages, bytes } = answer.done as { messages: number; bytes: number };
    out(`imported ${messages} message(s), ${bytes} bytes (by the running server)`);
    return 0;
  } catch (e) {
    err(`posthorn import: ${(e as Error).message}`);
    return 1;
  }
}

function moveCommand(direction: "import" | "export"): Command {
  return {
    name: direction,
    summary: direction === "import"
      ? "import an mbox file or Maildir into a mailbox"
      : "export a mailbox as mbox or Maildir",
    help: `Usage: posthorn ${direction} mbox|maildir PATH --user ADDRESS [--folder F]

${
      direction === "import"
        ? "Moves mail in from Dovecot, Postfix or a mail client"
        : "Writes mail out"
    } (folder default INBOX).
  --user ADDRESS     the account
  --folder F         the folder (default INBOX)
${METABASE_HELP}`,
    async run(argv) {
      const { values, positionals } = parse(argv, {
        user: { type: "string" },
        folder: { type: "string" },
      });
      const [format, path] = positionals;
      if ((format !== "mbox" && format !== "maildir") || !path) {
        throw new UsageError("expected mbox|maildir PATH");
      }
      if (!isAddress(values.user)) throw new UsageError("--user ADDRESS is required");
      const u = values.user.toLowerCase();
      if (direction === "import") {
        const online = await importThroughServer(values.metabase, format, path, u, values.folder);
        if (online !== null) return online;
      }
      return withStore(values.metabase, async (store) => {
        if (direction === "import" && !store.owner) {
          err("the server is running on this store: stop it before importing");
          return 1;
        }
        const r = direction === "import"
          ? await (format === "mbox"
            ? store.importMbox(path, u, values.folder)
            : store.importMaildir(path, u, values.folder))
          : await (format === "mbox"
            ? store.exportMbox(path, u, values.folder)
            : store.exportMaildir(path, u, values.folder));
        out(
          `${
            direction === "import" ? "imported" : "exported"
          } ${r.messages} message(s), ${r.bytes} bytes`,
        );
        return 0;
      });
    },
  };
}

export const importCmd = moveCommand("import");
export const exportCmd = moveCommand("export");
