// The SMTP server session (RFC 5321 §4): one per connection. It owns the input framing (a
// LineReader giving command lines, and raw reads for DATA and BDAT content), the reply queue,
// the timers and the error counter; each command group lives in commands/. Input is processed
// by one pump at a time: while it awaits the store the connection is paused, so memory stays
// bounded by one read plus one body chunk however fast the client pipelines (RFC 2920).
import type { AccountInfo } from "../../ipc/store-api.ts";
import type { StoreClient } from "../../ipc/store-client.ts";
import type { Logger } from "../../log/mod.ts";
import type { Metabase, SmtpConnector } from "../../metabase/schema.ts";
import { type LineEvent, LineReader } from "../wire/mod.ts";
import type { CloseReason, Connection, Session } from "../wire/mod.ts";
import type { BodySink } from "./body-sink.ts";
import { authStart } from "./commands/auth.ts";
import { type BdatChunk, bdatCommand, bdatEvent } from "./commands/bdat.ts";
import { dataCommand, dataEvent } from "./commands/data.ts";
import { ehlo, helo } from "./commands/hello.ts";
import { mail } from "./commands/mail.ts";
import { expn, help, noop, quit, rset, vrfy } from "./commands/misc.ts";
import { rcpt } from "./commands/rcpt.ts";
import { starttls } from "./commands/starttls.ts";
import type { MailParams } from "./params.ts";
import { parseSmtpCommand } from "./parser.ts";
import { inAnyNetwork } from "./relay.ts";
import { formatReply, isError, type Reply, reply } from "./reply.ts";

export interface TxRecipient {
  /** What the store resolved (canonical local address, or the remote address as given). */
  address: string;
  /** As the client wrote it in RCPT TO (for the Received: "for" clause). */
  original: string;
  notify: string[] | null;
  orcpt: string | null;
}

export interface Transaction {
  /** Ours, for logs, the Received: header and the 250 reply. */
  id: string;
  sender: string;
  params: MailParams;
  recipients: TxRecipient[];
  /** The body being received (DATA, or BDAT chunks so far). */
  sink: BodySink | null;
  /** BDAT was used: DATA is no longer allowed in this transaction (RFC 3030 §3). */
  usedBdat: boolean;
}

export interface SessionDeps {
  connector: SmtpConnector;
  /** The metabase as of this connection; a reload applies to the next one. */
  config: Metabase;
  store: StoreClient;
  log: Logger;
}

type Mode = "command" | "data" | "bdat" | "auth";
type AuthStep = (line: string) => void | Promise<void>;

/** Replies queued beyond this are flushed and the pump waits for the socket to drain. */
const OUTPUT_HIGH_WATER = 64 * 1024;

/** RFC 4954 §4: the longest AUTH continuation line a server must accept. */
const AUTH_LINE_BYTES = 12288;

export class SmtpSession implements Session {
  readonly connector: SmtpConnector;
  readonly config: Metabase;
  readonly store: StoreClient;
  readonly log: Logger;

  /** HELO/EHLO name, null before the client introduced itself (or after STARTTLS). */
  helo: string | null = null;
  esmtp = false;
  account: AccountInfo | null = null;
  tx: Transaction | null = null;

  #reader: LineReader;
  #mode: Mode = "command";
  #authStep: AuthStep | null = null;
  #bdat: BdatChunk | null = null;
  #out = "";
  #pumping = false;
  #closing = false;
  #closed = false;
  #shutdown = false;
  #errors = 0;
  #txCount = 0;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #lastVerb = "";

  constructor(readonly conn: Connection, deps: SessionDeps) {
    this.connector = deps.connector;
    this.config = deps.config;
    this.store = deps.store;
    this.log = deps.log;
    this.#reader = new LineReader({
      maxLineBytes: this.config.limits.lineBytes,
      mode: "crlf-or-lf",
    });
    // RFC 5321 §4.3.1: the greeting; no enhanced code on it (RFC 2034 §3).
    this.#enqueue(reply(220, null, `${this.hostname} ${this.connector.banner}`));
    this.#flush();
    this.#arm();
  }

  get hostname(): string {
    return this.config.server.hostname;
  }

  /** Authenticated users and listed networks may send to remote domains; nobody else. */
  mayRelay(): boolean {
    return this.account !== null ||
      inAnyNetwork(this.conn.remoteAddress, this.connector.relayNetworks);
  }

  nextTransactionId(): string {
    return `${this.conn.id}.${++this.#txCount}`;
  }

  // ------------------------------------------------------------ input

  onData(chunk: Uint8Array): void {
    if (this.#closed || this.#closing) return;
    this.#disarm();
    this.#reader.push(chunk);
    // pause() is honoured by the wire layer; this cap only guards against one that is not.
    const cap = Math.max(
      this.config.limits.pipelineDepth * this.config.limits.lineBytes,
      16 * this.config.ipc.chunkBytes,
    );
    if (this.#reader.buffered > cap) {
      this.log.warn("smtp.input_flood", { conn: this.conn.id, ip: this.conn.remoteAddress });
      this.#enqueue(reply(421, "4.7.0", "Too much pipelined input, closing connection"));
      this.close();
      return;
    }
    if (!this.#pumping) void this.#pump();
  }

  async #pump(): Promise<void> {
    this.#pumping = true;
    let burst = 0;
    try {
      while (!this.#closed && !this.#closing) {
        const ev = this.#reader.next();
        if (!ev) break;
        const pending = this.#dispatch(ev);
        if (pending) {
          this.conn.pause();
          // RFC 2920 §3.2: replies to a pipelined group may be held until the server would
          // wait for input. While more commands are buffered (MAIL, RCPT, DATA sent at once)
          // the client waits for all the replies anyway: one write instead of one per await.
          if (this.#reader.buffered === 0) this.#flush();
          await pending;
        }
        // RFC 2920 §3.1 lets us batch replies; a client that pipelines without reading them
        // is made to wait once limits.pipelineDepth commands are answered.
        const counted = this.#mode === "command" && ++burst >= this.config.limits.pipelineDepth;
        if (counted || this.#out.length > OUTPUT_HIGH_WATER) {
          burst = 0;
          this.conn.pause();
          this.#flush();
          await this.conn.drained();
        }
      }
    } catch (err) {
      this.log.error("smtp.session_failed", { conn: this.conn.id, error: err as Error });
      this.#enqueue(reply(421, "4.3.0", "Local error, closing connection"));
      this.close();
    } finally {
      this.#pumping = false;
    }
    if (this.#closed || this.#closing) return;
    if (this.#shutdown && this.#mode === "command" && !this.tx?.sink) {
      this.#enqueue(reply(421, "4.3.2", "Server shutting down, try again later"));
      this.close();
      return;
    }
    this.#flush();
    this.conn.resume();
    this.#arm();
  }

  #dispatch(ev: LineEvent): void | Promise<void> {
    switch (this.#mode) {
      case "data":
        return dataEvent(this, ev);
      case "bdat":
        return bdatEvent(this, this.#bdat!, ev);
      case "auth": {
        const step = this.#authStep!;
        this.#mode = "command";
        this.#authStep = null;
        this.#reader.setMaxLineBytes(this.config.limits.lineBytes);
        if (ev.kind === "overflow") {
          // RFC 4954 §4: 500 5.5.6 for an authentication line that is too long.
          return this.send(reply(500, "5.5.6", "Authentication exchange line is too long"));
        }
        if (ev.kind !== "line") return;
        return step(Buffer.from(ev.line).toString("latin1"));
      }
      case "command":
        if (ev.kind === "overflow") {
          this.#lastVerb = "";
          return this.send(
            reply(500, "5.5.2", `Line too long (limit ${this.config.limits.lineBytes} bytes)`),
          );
        }
        if (ev.kind !== "line") return;
        return this.#command(ev.line);
    }
  }

  #command(line: Uint8Array): void | Promise<void> {
    const cmd = parseSmtpCommand(line);
    if (cmd.verb === "ERROR") {
      this.#lastVerb = cmd.attempted;
      return this.send(cmd.reply);
    }
    this.#lastVerb = cmd.verb;
    switch (cmd.verb) {
      case "EHLO":
        return ehlo(this, cmd.domain);
      case "HELO":
        return helo(this, cmd.domain);
      case "MAIL":
        return mail(this, cmd);
      case "RCPT":
        return rcpt(this, cmd);
      case "DATA":
        return dataCommand(this);
      case "BDAT":
        return bdatCommand(this, cmd);
      case "AUTH":
        return authStart(this, cmd);
      case "STARTTLS":
        return starttls(this);
      case "RSET":
        return rset(this);
      case "NOOP":
        return noop(this);
      case "HELP":
        return help(this);
      case "VRFY":
        return vrfy(this);
      case "EXPN":
        return expn(this);
      case "QUIT":
        return quit(this);
    }
  }

  // ------------------------------------------------------------ modes

  enterData(): void {
    this.#mode = "data";
    // The message goes to the sink's DataScanner one read at a time, in bulk (commands/data.ts);
    // the reader only queues reads until the scanner finds CRLF.CRLF and calls endData.
    this.#reader.readRaw(Number.MAX_SAFE_INTEGER);
  }

  /** DATA ended inside a read: `rest` (what followed the final dot) and later reads are commands. */
  endData(rest: Uint8Array): void {
    const queued = [rest];
    for (let ev = this.#reader.next(); ev; ev = this.#reader.next()) {
      if (ev.kind === "raw") queued.push(ev.data);
    }
    this.#reader.clear();
    for (const bytes of queued) this.#reader.push(bytes);
    this.backToCommands();
  }

  enterBdat(chunk: BdatChunk): void {
    this.#mode = "bdat";
    this.#bdat = chunk;
    this.#reader.readRaw(chunk.size);
  }

  enterAuth(step: AuthStep): void {
    this.#mode = "auth";
    this.#authStep = step;
    // RFC 4954 §4: a continuation line may be up to 12288 octets (long SASL responses).
    this.#reader.setMaxLineBytes(Math.max(this.config.limits.lineBytes, AUTH_LINE_BYTES));
  }

  backToCommands(): void {
    this.#mode = "command";
    this.#bdat = null;
    this.#reader.setMode("crlf-or-lf");
    this.#reader.setMaxLineBytes(this.config.limits.lineBytes);
  }

  /** Drops the transaction and releases its upload (RSET, EHLO, STARTTLS, failures). */
  resetTransaction(): void {
    const sink = this.tx?.sink;
    this.tx = null;
    if (sink) void sink.abort();
  }

  /** The transaction ended with a final reply: honour a pending shutdown. */
  afterTransaction(): void {
    if (this.#shutdown) {
      this.#enqueue(reply(421, "4.3.2", "Server shutting down, try again later"));
      this.close();
    }
  }

  /**
   * STARTTLS after its 220 (RFC 3207 §4.2): whatever the client pipelined after the command is
   * thrown away here and by the wire layer (CVE-2011-0411), and the session starts over.
   */
  async upgradeTls(): Promise<void> {
    this.#flush();
    this.#reader.clear();
    this.resetTransaction();
    this.helo = null;
    this.esmtp = false;
    this.account = null;
    try {
      await this.conn.startTls();
    } catch (err) {
      this.log.info("smtp.tls_failed", { conn: this.conn.id, error: err as Error });
      this.close();
    }
  }

  // ------------------------------------------------------------ output

  /**
   * Queues a reply. 4xx/5xx replies are logged and counted; after smtp.maxBadCommands of them
   * the client is dropped with 421 (RFC 5321 §3.8).
   */
  send(r: Reply): void {
    if (this.#closing || this.#closed) return;
    this.#enqueue(r);
    if (!isError(r)) return;
    this.#errors++;
    this.log.info("smtp.error_reply", {
      conn: this.conn.id,
      ip: this.conn.remoteAddress,
      command: this.#lastVerb,
      code: r.code,
      status: r.enhanced,
      text: r.lines[0],
    });
    if (this.#errors >= this.config.smtp.maxBadCommands) {
      this.log.warn("smtp.too_many_errors", { conn: this.conn.id, ip: this.conn.remoteAddress });
      this.#enqueue(reply(421, "4.7.0", "Too many errors, closing connection"));
      this.close();
    }
  }

  /** Writes queued replies now (before an await, or when input is exhausted). */
  flushReplies(): void {
    this.#flush();
  }

  #enqueue(r: Reply): void {
    this.#out += formatReply(r);
  }

  #flush(): void {
    if (this.#out === "") return;
    this.conn.write(this.#out);
    this.#out = "";
  }

  // ------------------------------------------------------------ life cycle

  /** Flushes replies and closes; input still buffered is ignored. */
  close(): void {
    if (this.#closing || this.#closed) return;
    this.#closing = true;
    this.#disarm();
    this.#flush();
    this.resetTransaction();
    this.conn.close();
  }

  onClose(reason: CloseReason): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#disarm();
    this.resetTransaction();
    this.log.debug("smtp.closed", { conn: this.conn.id, reason, errors: this.#errors });
  }

  onShutdown(): void {
    this.#shutdown = true;
    if (!this.#pumping && this.#mode === "command" && !this.tx?.sink) {
      this.#enqueue(reply(421, "4.3.2", "Server shutting down, try again later"));
      this.close();
    }
  }

  /** RFC 5321 §4.5.3.2: command and data timeouts; 421 then close. */
  #arm(): void {
    this.#disarm();
    if (this.#closing || this.#closed || this.#pumping) return;
    const seconds = this.#mode === "data" || this.#mode === "bdat"
      ? this.connector.dataTimeoutSeconds
      : this.connector.commandTimeoutSeconds;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.log.info("smtp.timeout", {
        conn: this.conn.id,
        ip: this.conn.remoteAddress,
        mode: this.#mode,
      });
      this.#enqueue(reply(421, "4.4.2", `${this.hostname} Error: timeout exceeded`));
      this.close();
    }, seconds * 1000);
  }

  #disarm(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }
}
