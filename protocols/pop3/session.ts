// One POP3 session: the RFC 1939 state machine (AUTHORIZATION → TRANSACTION → UPDATE) over a
// wire `Connection`. It owns the line reader, runs one command at a time (pipelined commands
// wait in the reader, RFC 2449 §6.6; reading stops only when too many pile up), and
// releases the maildrop lock whatever way the connection ends. In TRANSACTION state it looks
// ahead at the pipelined commands and starts reading the messages of queued RETRs from the
// store (prefetch.ts), so replies follow each other without a store round trip in between.
import type { AccountInfo } from "../../ipc/store-api.ts";
import type { StoreClient } from "../../ipc/store-client.ts";
import type { Logger } from "../../log/mod.ts";
import type { Metabase } from "../../metabase/schema.ts";
import {
  type CloseReason,
  type Connection,
  type LineEvent,
  LineReader,
  type Session,
} from "../wire/mod.ts";
import { handleAuthorization, handleSaslResponse } from "./commands/authorization.ts";
import { handleTransaction } from "./commands/transaction.ts";
import type { Maildrop } from "./maildrop.ts";
import { parseCommand, parseMessageNumber, type ParseResult } from "./parser.ts";
import { PrefetchedRead } from "./prefetch.ts";
import { err, ok } from "./replies.ts";

export interface Pop3Deps {
  store: StoreClient;
  /** The live metabase, read per command so hot-reloaded limits apply. */
  config: () => Metabase;
  log: Logger;
  /** Whether this listener offers STLS (its tls mode is "starttls"). */
  stls: boolean;
}

export type Pop3State = "authorization" | "transaction" | "update";

/** A command handler's result: done now, or a promise the session waits for. */
export type Outcome = void | Promise<void>;

/** A command taken from the reader ahead of its turn (TRANSACTION state only). */
interface Queued {
  ev: LineEvent;
  parsed: ParseResult | null;
  /** The message of a RETR, being read from the store already. */
  prefetch: PrefetchedRead | null;
}

/** Sessions begun in this thread: makes each session's lock owner unique on its binding. */
let sessionsBegun = 0;

export class Pop3Session implements Session {
  readonly conn: Connection;
  /**
   * Who holds the maildrop lock, as the store records it. Not the connection id alone: two
   * listeners of one worker (pop3 and pop3s, or one re-bound for a renewed certificate) number
   * their connections from 1 each, and mailbox.unlock by owner must never reach another
   * session's lock.
   */
  readonly lockOwner: string;
  readonly deps: Pop3Deps;
  readonly log: Logger;
  state: Pop3State = "authorization";
  /** USER given, awaiting PASS. */
  pendingUser: string | null = null;
  /** An AUTH exchange awaiting the client's response line (RFC 5034 §4): what to do with it. */
  pendingSasl: ((s: Pop3Session, response: string) => Outcome) | null = null;
  account: AccountInfo | null = null;
  maildrop: Maildrop | null = null;
  /** The connection is gone: everything in flight must clean up after itself. */
  closed = false;

  readonly #reader: LineReader;
  #busy = false;
  #readPaused = false;
  #shutdownRequested = false;
  /** Bytes written since the last backpressure check. */
  #unchecked = 0;
  /** Commands taken from the reader, in order, not yet run (at most limits.pipelineDepth). */
  #ahead: Queued[] = [];
  /** Entries of #ahead before this index have been considered for prefetching. */
  #scanned = 0;
  /** Listed sizes of the prefetched messages not yet handed to RETR. */
  #prefetchedBytes = 0;
  /** The prefetch of the command being dispatched, until RETR takes it. */
  #offered: PrefetchedRead | null = null;

  constructor(conn: Connection, deps: Pop3Deps) {
    this.conn = conn;
    this.lockOwner = `${conn.id}#${++sessionsBegun}`;
    this.deps = deps;
    this.log = deps.log;
    const cfg = deps.config();
    this.#reader = new LineReader({ maxLineBytes: cfg.limits.lineBytes, mode: "crlf-or-lf" });
    this.reply(ok("Posthorn POP3 server ready")); // RFC 1939 §4: the greeting
  }

  // ------------------------------------------------------------------ Session

  onData(chunk: Uint8Array): void {
    this.#reader.push(chunk);
    if (this.#busy) {
      // Start reading the messages of RETRs that just arrived while this command runs.
      if (this.state === "transaction") this.#lookahead();
      // Pipelined commands wait in the reader while one runs; stop reading only when too many
      // have piled up (pausing per command would cost two syscalls each time).
      if (!this.#readPaused && this.#reader.buffered > this.#inputLimit()) {
        this.#readPaused = true;
        this.conn.pause();
      }
      return;
    }
    this.#pump();
  }

  /** limits.pipelineDepth command lines of limits.lineBytes each. */
  #inputLimit(): number {
    const { lineBytes, pipelineDepth } = this.config().limits;
    return lineBytes * pipelineDepth;
  }

  onClose(reason: CloseReason): void {
    if (this.closed) return;
    this.closed = true;
    // RFC 1939 §6: without QUIT there is no UPDATE state; marks are forgotten, nothing removed.
    const drop = this.maildrop;
    if (drop && this.state !== "update") void this.releaseLock(drop.lockId);
    this.#dropAhead();
    this.log.debug("session.closed", { conn: this.conn.id, reason, state: this.state });
  }

  onShutdown(): void {
    this.#shutdownRequested = true;
    // Between commands: close now (like a dropped connection, nothing is committed).
    // In the middle of one (a RETR stream): close when it ends.
    if (!this.#busy) this.conn.close();
  }

  // ------------------------------------------------------------------ helpers for commands

  reply(text: string): void {
    this.#unchecked += text.length;
    this.conn.write(text);
  }

  /** Count bytes a command streamed, for the backpressure check between commands. */
  wrote(bytes: number): void {
    this.#unchecked += bytes;
  }

  config(): Metabase {
    return this.deps.config();
  }

  /** STLS: forget plaintext that was pipelined after the command (RFC 2595 §4, CVE-2011-0411). */
  discardBufferedInput(): void {
    this.#reader.clear();
    this.#dropAhead();
  }

  /** RETR: the message read ahead for the command being run, if it is this one. */
  takePrefetched(messageId: number): PrefetchedRead | null {
    const p = this.#offered;
    if (!p || p.messageId !== messageId) return null;
    this.#offered = null;
    this.#prefetchedBytes -= p.size;
    return p;
  }

  async releaseLock(lockId: string): Promise<void> {
    try {
      await this.deps.store.call("mailbox.unlock", { lockId });
    } catch (e) {
      this.log.warn("maildrop.unlock_failed", { conn: this.conn.id, error: e as Error });
    }
  }

  // ------------------------------------------------------------------ the loop

  #pump(): void {
    while (!this.#busy && !this.closed) {
      const q = this.#next();
      if (!q) {
        if (this.#shutdownRequested) this.conn.close();
        return;
      }
      const ev = q.ev;
      if (q.prefetch && !q.prefetch.settled) {
        // Its message is still on the way: wait, then run it and every command behind it that
        // is ready in one synchronous go, so their replies leave in one write.
        this.#ahead.unshift(q);
        this.#scanned++;
        this.#await(q.prefetch.whenSettled());
        continue;
      }
      let outcome: Outcome;
      if (ev.kind === "overflow") {
        this.pendingSasl = null;
        outcome = this.reply(err(`Line too long (limit ${this.config().limits.lineBytes} octets)`));
      } else if (ev.kind === "line") {
        this.#offered = q.prefetch;
        try {
          outcome = this.#dispatch(ev.line, q.parsed);
        } finally {
          // Not a RETR that took it (DELE came first, a bad argument, QUIT): not needed.
          if (this.#offered) this.#discard(this.#offered);
          this.#offered = null;
        }
      } else continue; // raw mode is never used by POP3
      if (outcome instanceof Promise) this.#await(outcome);
      else if (this.#unchecked > this.config().limits.connectionBufferBytes) {
        // Many small replies in a row (pipelined LISTs): let the peer catch up first.
        this.#await(this.conn.drained());
      }
    }
  }

  #await(p: Promise<void>): void {
    this.#busy = true;
    p.catch((e) => {
      this.log.error("command.failed", { conn: this.conn.id, error: e as Error });
      if (!this.closed) this.reply(err("[SYS/TEMP] Internal error"));
    }).finally(() => {
      this.#busy = false;
      this.#unchecked = 0;
      if (this.closed) return;
      if (this.#shutdownRequested) {
        this.conn.close();
        return;
      }
      if (this.#readPaused) {
        this.#readPaused = false;
        this.conn.resume();
      }
      this.#pump();
    });
  }

  /** The next command: read ahead already, or straight from the reader. */
  #next(): Queued | null {
    if (this.state === "transaction") this.#lookahead();
    const q = this.#ahead.shift();
    if (q) {
      if (this.#scanned > 0) this.#scanned--;
      return q;
    }
    const ev = this.#reader.next();
    return ev ? { ev, parsed: null, prefetch: null } : null;
  }

  /**
   * TRANSACTION state: take the pipelined commands out of the reader (up to
   * limits.pipelineDepth) and start reading the messages of the RETRs (and of the TOPs of
   * messages that fit one chunk: a header scan, as clients that leave mail on the server
   * pipeline) among them, as long as
   * their listed sizes fit in limits.connectionBufferBytes together; those that fit one ipc
   * chunk in one message.readMany call per pass. Nothing here changes what a command does:
   * each still runs in order and checks its message when its turn comes.
   */
  #lookahead(): void {
    if (this.closed || this.pendingSasl) return;
    const { pipelineDepth, connectionBufferBytes } = this.config().limits;
    while (this.#ahead.length < pipelineDepth) {
      const ev = this.#reader.next();
      if (!ev) break;
      const parsed = ev.kind === "line" ? parseCommand(ev.line) : null;
      this.#ahead.push({ ev, parsed, prefetch: null });
    }
    const drop = this.maildrop;
    const account = this.account;
    if (!drop || !account) return;
    // Refill only once half the budget is free: the reads then go several to one store call
    // (64 KiB messages: 2 rather than 1, halving round trips and wake-ups) while the other
    // half is still being sent. No stall: what is held belongs to commands queued ahead.
    if (this.#prefetchedBytes > connectionBufferBytes / 2) return;
    const small: { q: Queued; messageId: number; size: number }[] = [];
    const chunkBytes = this.config().ipc.chunkBytes;
    scan: for (; this.#scanned < this.#ahead.length; this.#scanned++) {
      const q = this.#ahead[this.#scanned]!;
      const cmd = q.parsed?.ok ? q.parsed.command : null;
      if (!cmd) continue;
      if (cmd.verb === "QUIT") break scan; // nothing after it will be retrieved
      const top = cmd.verb === "TOP" && cmd.args.length === 2;
      if (!top && (cmd.verb !== "RETR" || cmd.args.length !== 1)) continue;
      const n = parseMessageNumber(cmd.args[0]);
      const found = n === null ? null : drop.get(n);
      if (found?.kind !== "ok") continue;
      const { messageId, size } = found.message;
      if (size > connectionBufferBytes) continue; // too big to hold: streamed in its turn
      // TOP of a big message needs only its head: read in its turn, not whole ahead of time.
      if (top && size > chunkBytes) continue;
      if (this.#prefetchedBytes + size > connectionBufferBytes) break scan; // resumes later
      this.#prefetchedBytes += size;
      if (size <= chunkBytes) small.push({ q, messageId, size });
      else q.prefetch = PrefetchedRead.stream(this.deps.store, account.userId, messageId, size);
    }
    if (small.length === 0) return;
    const reads = PrefetchedRead.batch(this.deps.store, account.userId, small);
    small.forEach(({ q }, i) => q.prefetch = reads[i]!);
  }

  #discard(p: PrefetchedRead): void {
    this.#prefetchedBytes -= p.size;
    p.cancel();
  }

  /** The connection ended or input was discarded: nothing queued will run. */
  #dropAhead(): void {
    for (const q of this.#ahead) if (q.prefetch) this.#discard(q.prefetch);
    this.#ahead = [];
    this.#scanned = 0;
    if (this.#offered) this.#discard(this.#offered);
    this.#offered = null;
  }

  #dispatch(line: Uint8Array, preParsed: ParseResult | null): Outcome {
    if (this.pendingSasl) return handleSaslResponse(this, line);
    const parsed = preParsed ?? parseCommand(line);
    if (!parsed.ok) return this.reply(err(parsed.error));
    const cmd = parsed.command;
    switch (this.state) {
      case "authorization":
        return handleAuthorization(this, cmd);
      case "transaction":
        return handleTransaction(this, cmd);
      default:
        return this.reply(err("Session is ending"));
    }
  }
}
