// One POP3 session: the RFC 1939 state machine (AUTHORIZATION → TRANSACTION → UPDATE) over a
// wire `Connection`. It owns the line reader, runs one command at a time (pipelined commands
// wait in the reader, RFC 2449 §6.6; reading stops only when too many pile up), and
// releases the maildrop lock whatever way the connection ends.
import type { AccountInfo } from "../../ipc/store-api.ts";
import type { StoreClient } from "../../ipc/store-client.ts";
import type { Logger } from "../../log/mod.ts";
import type { Metabase } from "../../metabase/schema.ts";
import { type CloseReason, type Connection, LineReader, type Session } from "../wire/mod.ts";
import { handleAuthorization, handleSaslResponse } from "./commands/authorization.ts";
import { handleTransaction } from "./commands/transaction.ts";
import type { Maildrop } from "./maildrop.ts";
import { parseCommand } from "./parser.ts";
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

export class Pop3Session implements Session {
  readonly conn: Connection;
  readonly deps: Pop3Deps;
  readonly log: Logger;
  state: Pop3State = "authorization";
  /** USER given, awaiting PASS. */
  pendingUser: string | null = null;
  /** An AUTH exchange awaiting the client's response line (RFC 5034 §4). */
  pendingSasl: "PLAIN" | null = null;
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

  constructor(conn: Connection, deps: Pop3Deps) {
    this.conn = conn;
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
      const ev = this.#reader.next();
      if (!ev) {
        if (this.#shutdownRequested) this.conn.close();
        return;
      }
      let outcome: Outcome;
      if (ev.kind === "overflow") {
        this.pendingSasl = null;
        outcome = this.reply(err(`Line too long (limit ${this.config().limits.lineBytes} octets)`));
      } else if (ev.kind === "line") {
        outcome = this.#dispatch(ev.line);
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

  #dispatch(line: Uint8Array): Outcome {
    if (this.pendingSasl) return handleSaslResponse(this, line);
    const parsed = parseCommand(line);
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
