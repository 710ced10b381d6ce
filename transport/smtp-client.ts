// Owns: the outbound SMTP client: one session with one server (greeting, EHLO or HELO,
// STARTTLS, AUTH), then any number of mail transactions, each giving a result per recipient.
// The body is streamed from the store chunk by chunk (DATA with dot-stuffing, or BDAT), never
// held whole in memory. Routing and retry decisions are not made here: see runner.ts.
import type { Logger } from "../log/mod.ts";
import type { Metabase } from "../metabase/schema.ts";
import { ConnectionError, SmtpConnection } from "./connection.ts";
import { DotStuffer } from "./dot-stuff.ts";
import { formatReply, type SmtpReply, statusOf } from "./reply.ts";
import { DowngradeRefused, planSevenBit, type SevenBitLimits, toSevenBit } from "./seven-bit.ts";
import { type DkimKey, dkimSignature } from "./dkim.ts";
import { xtextEncode } from "./xtext.ts";

export interface HopTarget {
  host: string;
  port: number;
  tls: "none" | "opportunistic" | "required" | "implicit";
  verifyCertificate: boolean;
  /** Credentials for the smarthost (AUTH PLAIN or LOGIN, RFC 4954). */
  auth: { username: string; password: string } | null;
}

export interface ClientSettings {
  heloName: string;
  connectTimeoutMs: number;
  greetingMs: number;
  mailMs: number;
  rcptMs: number;
  dataInitMs: number;
  dataBlockMs: number;
  dataTermMs: number;
  replyLineBytes: number;
  replyLines: number;
  log: Logger;
  signal?: AbortSignal;
  /** The 8-bit → 7-bit downgrade's limits (defaults: the metabase defaults). */
  sevenBit?: SevenBitLimits;
  /** DKIM keys (smtp.dkim, files read): a message of one of their domains is signed. */
  dkim?: DkimKey[];
}

const DEFAULT_SEVEN_BIT: SevenBitLimits = { lineBytes: 64 * 1024, mimeDepth: 100 };

/** The client's settings from the live metabase (read per session so reloads apply). */
export function clientSettings(
  mb: Metabase,
  log: Logger,
  signal?: AbortSignal,
  dkim: DkimKey[] = [],
): ClientSettings {
  const c = mb.smtp.client;
  return {
    heloName: mb.server.hostname,
    connectTimeoutMs: mb.smtp.queue.connectTimeoutSeconds * 1000,
    greetingMs: c.greetingTimeoutSeconds * 1000,
    mailMs: c.mailTimeoutSeconds * 1000,
    rcptMs: c.rcptTimeoutSeconds * 1000,
    dataInitMs: c.dataInitTimeoutSeconds * 1000,
    dataBlockMs: c.dataBlockTimeoutSeconds * 1000,
    dataTermMs: c.dataTermTimeoutSeconds * 1000,
    replyLineBytes: c.replyLineBytes,
    replyLines: c.replyLines,
    log,
    signal,
    sevenBit: { lineBytes: mb.limits.dataLineBytes, mimeDepth: c.mimeNestingLimit },
    dkim,
  };
}

export interface OutboundRecipient {
  address: string;
  /** RFC 3461 NOTIFY, passed on when the server offers DSN. */
  notify?: string[] | null;
  /** RFC 3461 ORCPT as "addr-type;address" (decoded). */
  orcpt?: string | null;
}

export interface OutboundMessage {
  sender: string;
  recipients: OutboundRecipient[];
  size: number;
  envid?: string | null;
  ret?: "FULL" | "HDRS" | null;
  bodyType?: "7BIT" | "8BITMIME" | null;
  smtputf8?: boolean;
  /**
   * A fresh stream of the message bytes: called once per transaction, twice when a message
   * sent with BODY=8BITMIME goes to a server without 8BITMIME (scan, then convert).
   */
  body(): AsyncIterable<Uint8Array>;
}

export interface RecipientOutcome {
  address: string;
  kind: "sent" | "temporary" | "permanent";
  /** RFC 3463 status: the server's enhanced code, or one we chose. */
  status: string;
  /** What happened, for the queue's lastError and the DSN Diagnostic-Code. */
  diagnostic: string;
  /** Where it happened ("mx.example.com[192.0.2.1]:25"), null when no server was reached. */
  remoteMta: string | null;
  /** True when the server said this reply itself (Diagnostic-Code: smtp; …). */
  fromServer: boolean;
  /** NOTIFY=SUCCESS was asked but the server has no DSN: a "relayed" DSN is due (RFC 3461 §5.2.2). */
  relayedWithoutDsn: boolean;
}

/** The session could not be set up (or broke): every recipient of the hop shares this fate. */
export class SessionError extends Error {
  constructor(
    message: string,
    readonly temporary: boolean,
    readonly status: string,
    readonly remoteMta: string | null,
    readonly fromServer: boolean,
  ) {
    super(message);
    this.name = "SessionError";
  }
}

const ASCII_ONLY = /^[\x00-\x7f]*$/;
/** No controls or angle brackets: what could end the Path (RFC 5321 §4.1.2) or the line. */
const SAFE_ADDRESS = /^[^\x00-\x1f\x7f<>]*$/;

export class SmtpClient {
  /** EHLO keywords (upper-case) and their parameters; empty after HELO. */
  readonly capabilities = new Map<string, string>();
  private broken = false;
  /** A transaction is open on the server (MAIL accepted, not finished): RSET before the next. */
  private needsReset = false;

  private constructor(
    private readonly conn: SmtpConnection,
    private readonly target: HopTarget,
    private readonly settings: ClientSettings,
  ) {}

  /** Connect, read the greeting, EHLO, STARTTLS and AUTH as the target asks. */
  static async connect(target: HopTarget, settings: ClientSettings): Promise<SmtpClient> {
    let conn: SmtpConnection;
    try {
      conn = await SmtpConnection.open({
        host: target.host,
        port: target.port,
        implicitTls: target.tls === "implicit",
        verifyCertificate: target.verifyCertificate,
        connectTimeoutMs: settings.connectTimeoutMs,
        replyLineBytes: settings.replyLineBytes,
        replyLines: settings.replyLines,
        signal: settings.signal,
      });
    } catch (err) {
      // RFC 3463 §3.5: X.4.1 "no answer from host".
      throw new SessionError((err as Error).message, true, "4.4.1", null, false);
    }
    const client = new SmtpClient(conn, target, settings);
    try {
      await client.open();
      return client;
    } catch (err) {
      conn.destroy();
      throw client.asSessionError(err);
    }
  }

  get remote(): string {
    return this.conn.remote;
  }

  get usable(): boolean {
    return !this.broken;
  }

  get secure(): boolean {
    return this.conn.tls !== null;
  }

  private async open(): Promise<void> {
    const { log } = this.settings;
    const implicit = this.conn.tls;
    if (implicit && !implicit.authorized) {
      log.warn("tls_unverified", { remote: this.remote, reason: implicit.error });
    }
    const greeting = await this.conn.readReply(this.settings.greetingMs); // RFC 5321 §4.5.3.2.1
    if (greeting.code !== 220) throw this.replyError("greeting", greeting, true);
    await this.hello();
    if (this.target.tls === "opportunistic" || this.target.tls === "required") {
      if (this.capabilities.has("STARTTLS")) {
        const r = await this.command("STARTTLS", this.settings.mailMs);
        if (r.code === 220) {
          const outcome = await this.conn.startTls(this.target.host, this.settings.mailMs);
          if (!outcome.authorized) {
            // Opportunistic TLS still beats plaintext against a passive listener (RFC 7435).
            log.warn("tls_unverified", { remote: this.remote, reason: outcome.error });
          } else log.debug("tls", { remote: this.remote, protocol: outcome.protocol });
          this.capabilities.clear();
          await this.hello(); // RFC 3207 §4.2: discard what was learnt before TLS, EHLO again
        } else if (this.target.tls === "required") {
          throw this.replyError("STARTTLS", r, true);
        } else log.info("starttls_refused", { remote: this.remote, reply: formatReply(r) });
      } else if (this.target.tls === "required") {
        throw new SessionError(
          `${this.remote} does not offer STARTTLS, which the route requires`,
          true,
          "4.7.0",
          this.remote,
          false,
        );
      }
    }
    if (this.target.auth) await this.authenticate(this.target.auth);
  }

  /** EHLO, or HELO when the server does not know EHLO (RFC 5321 §3.2). */
  private async hello(): Promise<void> {
    const name = this.settings.heloName;
    const r = await this.command(`EHLO ${name}`, this.settings.mailMs);
    if (r.code === 250) {
      // RFC 5321 §4.1.1.1: the first line is the greeting, each further line one extension.
      for (const line of r.lines.slice(1)) {
        const [kw, ...params] = line.trim().split(/\s+/);
        if (kw) this.capabilities.set(kw.toUpperCase(), params.join(" "));
      }
      return;
    }
    if (r.code >= 500) {
      const h = await this.command(`HELO ${name}`, this.settings.mailMs);
      if (h.code === 250) return;
      throw this.replyError("HELO", h, true);
    }
    throw this.replyError("EHLO", r, true);
  }

  private async authenticate(auth: { username: string; password: string }): Promise<void> {
    if (!this.secure && this.target.tls !== "none") {
      throw new SessionError(
        `refusing to send credentials to ${this.remote} without TLS`,
        true,
        "4.7.0",
        this.remote,
        false,
      );
    }
    const mechs = (this.capabilities.get("AUTH") ?? "").toUpperCase().split(/\s+/);
    const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");
    let r: SmtpReply;
    if (mechs.includes("PLAIN")) {
      // RFC 4616 §2: authzid NUL authcid NUL passwd; sent as the initial response (RFC 4954 §4).
      r = await this.command(
        `AUTH PLAIN ${b64(`\0${auth.username}\0${auth.password}`)}`,
        this.settings.mailMs,
        "AUTH PLAIN ***",
      );
    } else if (mechs.includes("LOGIN")) {
      r = await this.command("AUTH LOGIN", this.settings.mailMs);
      if (r.code === 334) {
        r = await this.command(b64(auth.username), this.settings.mailMs, "***");
      }
      if (r.code === 334) {
        r = await this.command(b64(auth.password), this.settings.mailMs, "***");
      }
    } else {
      throw new SessionError(
        `${this.remote} offers no AUTH mechanism we know (PLAIN, LOGIN)`,
        true,
        "4.7.0",
        this.remote,
        false,
      );
    }
    // RFC 4954 §6: 235 is success. A refusal is a configuration problem here: defer, not bounce.
    if (r.code !== 235) throw this.replyError("AUTH", r, true);
  }

  /** One mail transaction; never throws: every recipient gets an outcome. */
  async send(msg: OutboundMessage): Promise<RecipientOutcome[]> {
    const outcomes = new Map<string, RecipientOutcome>();
    const settle = (
      address: string,
      kind: RecipientOutcome["kind"],
      status: string,
      diagnostic: string,
      fromServer: boolean,
    ) => {
      if (outcomes.has(address)) return;
      const notify = msg.recipients.find((r) => r.address === address)?.notify ?? [];
      outcomes.set(address, {
        address,
        kind,
        status,
        diagnostic,
        remoteMta: this.remote,
        fromServer,
        relayedWithoutDsn: kind === "sent" && notify.includes("SUCCESS") &&
          !this.capabilities.has("DSN"),
      });
    };
    const settleAll = (
      addresses: string[],
      kind: RecipientOutcome["kind"],
      status: string,
      diagnostic: string,
      fromServer: boolean,
    ) => {
      for (const a of addresses) settle(a, kind, status, diagnostic, fromServer);
    };
    const fromReply = (addresses: string[], r: SmtpReply) =>
      settleAll(
        addresses,
        r.code >= 500 ? "permanent" : r.code >= 400 ? "temporary" : "sent",
        statusOf(r),
        formatReply(r),
        true,
      );
    const all = msg.recipients.map((r) => r.address);
    const finish = () => all.map((a) => outcomes.get(a)!);

    if (this.broken) {
      settleAll(all, "temporary", "4.4.2", `connection to ${this.remote} lost`, false);
      return finish();
    }
    // An address is written into a command line: one with CR, LF or angle brackets could
    // smuggle commands. The receiving side should never queue such a thing; refuse it anyway.
    if (!SAFE_ADDRESS.test(msg.sender)) {
      settleAll(
        all,
        "permanent",
        "5.1.7",
        `unusable sender address ${JSON.stringify(msg.sender)}`,
        false,
      );
      return finish();
    }
    for (const a of all) {
      if (!SAFE_ADDRESS.test(a) || a === "") {
        settle(a, "permanent", "5.1.3", `unusable recipient address ${JSON.stringify(a)}`, false);
      }
    }
    const usable = msg.recipients.filter((r) => !outcomes.has(r.address));
    if (usable.length === 0) return finish();
    // RFC 1870 §6.1: do not send a message the server has declared too big (checked again
    // after each step below that makes it bigger; `how` says which).
    const maxSize = Number(this.capabilities.get("SIZE") ?? "0");
    const overLimit = (n: number, how = ""): boolean => {
      if (!this.capabilities.has("SIZE") || maxSize <= 0 || n <= maxSize) return false;
      const text =
        `message of ${n} bytes${how} exceeds the ${maxSize} bytes ${this.remote} accepts`;
      settleAll(all, "permanent", "5.3.4", text, false);
      return true;
    };
    // The store could not give the body: like a failed read during DATA, try later.
    const unreadable = (err: unknown) =>
      settleAll(all, "temporary", "4.3.0", String((err as Error)?.message ?? err), false);
    if (overLimit(msg.size)) return finish();
    const needsUtf8 = msg.smtputf8 === true ||
      !ASCII_ONLY.test(msg.sender + all.join(""));
    // RFC 6531 §3.2: without SMTPUTF8 on the server such a message must not be sent.
    if (needsUtf8 && !this.capabilities.has("SMTPUTF8")) {
      settleAll(
        all,
        "permanent",
        "5.6.7",
        `${this.remote} does not support SMTPUTF8, which this message needs`,
        false,
      );
      return finish();
    }

    let body = () => exactly(msg.body(), msg.size);
    let size = msg.size;
    if (msg.bodyType === "8BITMIME" && !this.capabilities.has("8BITMIME")) {
      // RFC 6152 §3: to a server without 8BITMIME, convert to 7-bit MIME or do not relay. The
      // scan reads the whole message before MAIL, so a refusal never leaves half a message
      // on the server, and SIZE= below is the exact size of what will be sent.
      const limits = this.settings.sevenBit ?? DEFAULT_SEVEN_BIT;
      try {
        const plan = await planSevenBit(msg.body(), limits);
        if (plan.convert) {
          body = () => exactly(toSevenBit(msg.body(), plan, limits), plan.outputBytes);
          size = plan.outputBytes;
          // A changed body breaks every DKIM signature on it (RFC 6376 §3.7 body hash): not
          // ours to fix (sign after routing, or give the hop 8BITMIME), but said loudly.
          const level = plan.dkimSignatures > 0 ? "warn" : "info";
          this.settings.log[level]("downgraded_7bit", {
            remote: this.remote,
            sender: msg.sender,
            parts: plan.encodedParts,
            bytesIn: plan.inputBytes,
            bytesOut: plan.outputBytes,
            dkimSignatures: plan.dkimSignatures,
          });
        }
      } catch (err) {
        if (err instanceof DowngradeRefused) {
          this.settings.log.info("downgrade_refused", {
            remote: this.remote,
            sender: msg.sender,
            reason: err.message,
          });
          settleAll(all, "permanent", err.status, `${err.message} (${this.remote})`, false);
        } else unreadable(err);
        return finish();
      }
      if (overLimit(size, " once converted to 7 bits")) return finish();
    }

    // RFC 6376: signed as it leaves, over the bytes that leave (after any 7-bit conversion).
    const keys = this.settings.dkim ?? [];
    if (keys.length > 0) {
      // A read of the store that fails (or ends early) while the key is chosen or the
      // signature computed is the store's fault, not the key's: the mail is tried later,
      // never sent unsigned because of it (a receiver's DMARC policy could refuse it).
      let readError: unknown = null;
      try {
        const unsigned = body;
        const read = noteFailure(unsigned(), (err) => readError ??= err);
        const field = await dkimSignature(keys, read, msg.sender);
        if (field) {
          body = () => withField(field, unsigned());
          size += field.length;
        }
      } catch (err) {
        if (readError !== null) {
          unreadable(readError);
          return finish();
        }
        // A key that cannot sign must not hold the mail: it goes unsigned, and loudly so.
        this.settings.log.error("dkim.sign_failed", {
          remote: this.remote,
          sender: msg.sender,
          error: err as Error,
        });
      }
      if (overLimit(size, " once signed")) return finish();
    }

    try {
      if (this.needsReset) await this.reset();
      const dsn = this.capabilities.has("DSN");
      let mail = `MAIL FROM:<${msg.sender}>`;
      if (this.capabilities.has("SIZE")) mail += ` SIZE=${size}`; // RFC 1870 §3
      if (this.capabilities.has("8BITMIME") && msg.bodyType !== "7BIT") {
        mail += " BODY=8BITMIME"; // RFC 6152 §2
      }
      if (needsUtf8) mail += " SMTPUTF8"; // RFC 6531 §3.4
      if (dsn && msg.ret) mail += ` RET=${msg.ret}`; // RFC 3461 §4.3
      if (dsn && msg.envid) mail += ` ENVID=${xtextEncode(msg.envid)}`; // RFC 3461 §4.4
      const rcpts = usable.map((r) => {
        let cmd = `RCPT TO:<${r.address}>`;
        if (dsn && r.notify && r.notify.length > 0) cmd += ` NOTIFY=${r.notify.join(",")}`; // §4.1
        if (dsn && r.orcpt) {
          const semi = r.orcpt.indexOf(";");
          // RFC 3461 §4.2: ORCPT=addr-type ";" xtext
          if (semi > 0) {
            cmd += ` ORCPT=${r.orcpt.slice(0, semi)};${xtextEncode(r.orcpt.slice(semi + 1))}`;
          }
        }
        return cmd;
      });
      const pipelining = this.capabilities.has("PIPELINING");
      const chunking = this.capabilities.has("CHUNKING");

      let mailReply: SmtpReply;
      const rcptReplies: SmtpReply[] = [];
      let dataReply: SmtpReply | null = null;
      if (pipelining) {
        // RFC 2920 §3.1: MAIL, RCPT… and DATA go in one group; DATA is the last of it.
        const group = [mail, ...rcpts, ...(chunking ? [] : ["DATA"])];
        await this.conn.write(group.map((c) => c + "\r\n").join(""), this.settings.mailMs);
        this.needsReset = true;
        mailReply = await this.conn.readReply(this.settings.mailMs);
        for (let i = 0; i < rcpts.length; i++) {
          rcptReplies.push(await this.conn.readReply(this.settings.rcptMs));
        }
        if (!chunking) dataReply = await this.conn.readReply(this.settings.dataInitMs);
      } else {
        mailReply = await this.command(mail, this.settings.mailMs);
        this.needsReset = mailReply.code < 300;
        if (mailReply.code < 300) {
          for (const cmd of rcpts) {
            rcptReplies.push(await this.command(cmd, this.settings.rcptMs));
          }
        }
      }
      if (mailReply.code >= 300) {
        fromReply(all, mailReply);
        // RFC 2920 §3.1: a 354 to a pipelined DATA after a failed MAIL still needs its ".".
        if (dataReply?.code === 354) await this.endEmptyData();
        this.needsReset = false;
        return finish();
      }
      const accepted: string[] = [];
      rcptReplies.forEach((r, i) => {
        const address = usable[i]!.address;
        if (r.code === 250 || r.code === 251) accepted.push(address);
        else if (r.code === 552) {
          // RFC 5321 §4.5.3.1.10: 552 to RCPT means "too many recipients": temporary.
          settle(address, "temporary", r.enhanced ?? "4.5.3", formatReply(r), true);
        } else fromReply([address], r);
      });
      if (accepted.length === 0) {
        if (dataReply?.code === 354) await this.endEmptyData();
        return finish();
      }

      if (chunking) {
        const r = await this.sendBdat(body());
        fromReply(accepted, r);
        this.needsReset = r.code >= 300;
        return finish();
      }
      if (!pipelining) dataReply = await this.command("DATA", this.settings.dataInitMs);
      if (dataReply!.code !== 354) {
        fromReply(accepted, dataReply!);
        return finish();
      }
      const stuffer = new DotStuffer();
      for await (const chunk of body()) {
        const out = stuffer.push(chunk);
        if (out.length > 0) await this.conn.write(out, this.settings.dataBlockMs); // §4.5.3.2.5
      }
      await this.conn.write(stuffer.finish(), this.settings.dataBlockMs);
      const final = await this.conn.readReply(this.settings.dataTermMs); // §4.5.3.2.6
      this.needsReset = false;
      fromReply(accepted, final);
      return finish();
    } catch (err) {
      // The connection broke, timed out, or the body could not be read: without the final "."
      // the server discards the message (RFC 5321 §4.1.1.4), so dropping it is the safe abort.
      this.broken = true;
      this.conn.destroy();
      const e = this.asSessionError(err);
      settleAll(all, "temporary", e.temporary ? e.status : "4.4.2", e.message, false);
      return finish();
    }
  }

  /** BDAT (RFC 3030 §2): one chunk per store chunk, the last one marked LAST. */
  private async sendBdat(body: AsyncIterable<Uint8Array>): Promise<SmtpReply> {
    let held: Uint8Array | null = null;
    const sendChunk = async (chunk: Uint8Array, last: boolean): Promise<SmtpReply> => {
      await this.conn.write(`BDAT ${chunk.length}${last ? " LAST" : ""}\r\n`, this.settings.mailMs);
      if (chunk.length > 0) await this.conn.write(chunk, this.settings.dataBlockMs);
      return await this.conn.readReply(
        last ? this.settings.dataTermMs : this.settings.dataBlockMs,
      );
    };
    for await (const chunk of body) {
      if (chunk.length === 0) continue;
      if (held) {
        const r = await sendChunk(held, false);
        // RFC 3030 §2: after a failed BDAT no more chunks are sent; the transaction is over.
        if (r.code >= 300) return r;
      }
      held = chunk;
    }
    return await sendChunk(held ?? new Uint8Array(0), true);
  }

  private async endEmptyData(): Promise<void> {
    await this.conn.write(".\r\n", this.settings.dataBlockMs);
    await this.conn.readReply(this.settings.dataTermMs);
  }

  private async reset(): Promise<void> {
    const r = await this.command("RSET", this.settings.mailMs);
    if (r.code !== 250) throw this.replyError("RSET", r, true);
    this.needsReset = false;
  }

  /** QUIT politely; errors here change nothing. */
  async quit(): Promise<void> {
    if (this.broken) return;
    try {
      await this.command("QUIT", Math.min(this.settings.mailMs, 10_000));
    } catch { /* the server may close first */ }
    this.broken = true;
    this.conn.end();
  }

  /** Drop the connection at once (shutdown). */
  abort(): void {
    this.broken = true;
    this.conn.destroy();
  }

  private async command(line: string, timeoutMs: number, logAs?: string): Promise<SmtpReply> {
    this.settings.log.debug("send", { remote: this.remote, line: logAs ?? line });
    await this.conn.write(line + "\r\n", timeoutMs);
    return await this.conn.readReply(timeoutMs);
  }

  private replyError(stage: string, r: SmtpReply, forceTemporary = false): SessionError {
    const temporary = forceTemporary || r.code < 500;
    return new SessionError(
      `${stage} refused by ${this.remote}: ${formatReply(r)}`,
      temporary,
      temporary && r.code >= 500 ? `4${statusOf(r).slice(1)}` : statusOf(r),
      this.remote,
      true,
    );
  }

  private asSessionError(err: unknown): SessionError {
    if (err instanceof SessionError) return err;
    if (err instanceof ConnectionError) {
      return new SessionError(
        `${err.message} (${this.remote})`,
        true,
        "4.4.2",
        this.remote,
        false,
      );
    }
    return new SessionError(
      String((err as Error)?.message ?? err),
      true,
      "4.3.0",
      this.remote,
      false,
    );
  }
}

/**
 * The message's bytes, checked against the size it was queued with: a store read that ends
 * early (or runs long) fails before the final "." or BDAT LAST, so the next hop never takes
 * a cut message for a whole one. The caller drops the connection and retries later.
 */
async function* exactly(
  body: AsyncIterable<Uint8Array>,
  size: number,
): AsyncGenerator<Uint8Array> {
  let n = 0;
  for await (const chunk of body) {
    n += chunk.length;
    if (n > size) throw new Error(`the message is longer than its ${size} bytes`);
    yield chunk;
  }
  if (n !== size) throw new Error(`the message ended after ${n} of its ${size} bytes`);
}

/** The bytes of `source`, passed on; a failure to read them is reported to `onError` too. */
async function* noteFailure(
  source: AsyncIterable<Uint8Array>,
  onError: (err: unknown) => void,
): AsyncGenerator<Uint8Array> {
  try {
    yield* source;
  } catch (err) {
    onError(err);
    throw err;
  }
}

/** A header field in front of a message's bytes. */
async function* withField(
  field: Uint8Array,
  body: AsyncIterable<Uint8Array>,
): AsyncGenerator<Uint8Array> {
  yield field;
  yield* body;
}
