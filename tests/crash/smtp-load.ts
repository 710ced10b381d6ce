// The load the crash test runs: N concurrent SMTP connections (our own small client on
// node:net), each sending distinct messages one after another with DATA or BDAT until the
// server dies under it, recording for every message exactly how far it got (see Outcome).
import { connect, type Socket } from "node:net";
import { dotStuff, makeMessage, type Rng, type SentMessage } from "./messages.ts";

/** One SMTP reply: its code and full text, or null when the connection closed first. */
type Reply = { code: number; text: string } | null;

class SmtpConnection {
  #buf = "";
  #closed = false;
  #wake: (() => void) | null = null;

  private constructor(readonly socket: Socket) {
    socket.on("data", (d: Buffer) => {
      this.#buf += d.toString("latin1");
      this.#notify();
    });
    // The server dying shows up as an error (ECONNRESET) or a plain close: both end the story.
    socket.on("error", () => this.#end());
    socket.on("close", () => this.#end());
  }

  static open(port: number): Promise<SmtpConnection | null> {
    return new Promise((resolve) => {
      const socket = connect({ host: "127.0.0.1", port });
      socket.once("connect", () => resolve(new SmtpConnection(socket)));
      socket.once("error", () => resolve(null));
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  #end(): void {
    this.#closed = true;
    this.#notify();
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  async reply(): Promise<Reply> {
    for (;;) {
      const m = /^(?:\d{3}-[^\r\n]*\r\n)*(\d{3})(?: [^\r\n]*)?\r\n/.exec(this.#buf);
      if (m) {
        this.#buf = this.#buf.slice(m[0].length);
        return { code: Number(m[1]), text: m[0] };
      }
      if (this.#closed) return null;
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
  }

  /** Writes; false when the connection is already gone (nothing was written). */
  write(data: string | Uint8Array): boolean {
    if (this.#closed || this.socket.destroyed) return false;
    this.socket.write(typeof data === "string" ? Buffer.from(data, "latin1") : data);
    return true;
  }

  async command(line: string): Promise<Reply> {
    if (!this.write(line + "\r\n")) return null;
    return await this.reply();
  }

  close(): void {
    this.socket.destroy();
    this.#end();
  }
}

export interface LoadOptions {
  port: number;
  connections: number;
  rng: Rng;
  /** Prefix of every Message-ID of this run (the cycle). */
  tag: string;
}

export interface Load {
  /** Every message attempted, in order of attempt. */
  messages: SentMessage[];
  /** Connections that could not be opened or greeted (the server was already dead). */
  failedConnections: number;
  /** Stop starting new messages; resolves when every connection has finished. */
  stop(): Promise<void>;
  /** Resolves when every connection has finished (the server closed them). */
  done: Promise<void>;
  /** Destroys every socket (last resort if the kernel never closed them). */
  destroy(): void;
}

export function startLoad(opts: LoadOptions): Load {
  const messages: SentMessage[] = [];
  const open: SmtpConnection[] = [];
  let stopping = false;
  let failedConnections = 0;

  const one = async (index: number): Promise<void> => {
    const conn = await SmtpConnection.open(opts.port);
    if (!conn) {
      failedConnections++;
      return;
    }
    open.push(conn);
    try {
      const greeting = await conn.reply();
      if (greeting?.code !== 220) return void failedConnections++;
      const ehlo = await conn.command(`EHLO client${index}.crash.test`);
      if (ehlo?.code !== 250) return void failedConnections++;
      const chunking = /^250[- ]CHUNKING\b/m.test(ehlo.text);
      for (let n = 0; !stopping && !conn.closed; n++) {
        // Once per connection, a message with a bare LF, which must be refused and never stored.
        const bareLf = index % 4 === 1 && n === 2;
        const msg = makeMessage(opts.rng, `${opts.tag}.c${index}.m${n}`, { bareLf });
        if (!chunking) msg.bdat = false;
        messages.push(msg);
        const ok = await sendOne(conn, msg);
        if (!ok) break;
      }
      if (!conn.closed) await conn.command("QUIT");
    } finally {
      conn.close();
    }
  };

  const done = Promise.all(Array.from({ length: opts.connections }, (_, i) => one(i))).then(
    () => {},
  );
  return {
    messages,
    get failedConnections() {
      return failedConnections;
    },
    async stop() {
      stopping = true;
      await done;
    },
    done,
    destroy() {
      stopping = true;
      for (const c of open) c.close();
    },
  };
}

/** One transaction; false when the connection is no longer usable. */
async function sendOne(conn: SmtpConnection, msg: SentMessage): Promise<boolean> {
  const refuse = (r: Reply): boolean => {
    if (r === null) return false; // died before the end was written: stays "unsent"
    msg.outcome = "refused";
    msg.reply = r.text;
    msg.repliedAt = performance.now();
    return !conn.closed;
  };
  const mail = await conn.command(
    `MAIL FROM:<${msg.sender}>${msg.eightBit ? " BODY=8BITMIME" : ""} SIZE=${msg.canonical.length}`,
  );
  if (mail?.code !== 250) return refuse(mail);
  msg.stage = "rcpt";
  for (const rcpt of msg.recipients) {
    const r = await conn.command(`RCPT TO:<${rcpt}>`);
    if (r?.code !== 250) {
      await conn.command("RSET");
      return refuse(r);
    }
  }
  let final: Reply = null;
  msg.stage = "data";
  if (msg.bdat) {
    // RFC 3030 §2: BDAT chunks carry the exact bytes, no dot-stuffing; up to three chunks.
    const body = msg.canonical;
    const cuts = [0, Math.floor(body.length / 3), Math.floor((2 * body.length) / 3), body.length]
      .filter((v, i, a) => i === 0 || v > a[i - 1]!);
    for (let i = 0; i + 1 < cuts.length; i++) {
      const chunk = body.subarray(cuts[i]!, cuts[i + 1]!);
      const last = i + 2 === cuts.length;
      msg.stage = last ? "end" : "body";
      if (!conn.write(`BDAT ${chunk.length}${last ? " LAST" : ""}\r\n`)) return false;
      if (!conn.write(chunk)) return false;
      if (last) msg.outcome = "in-flight";
      const r = await conn.reply();
      if (last) final = r;
      else if (r?.code !== 250) return refuse(r);
    }
  } else {
    const data = await conn.command("DATA");
    if (data?.code !== 354) return refuse(data);
    msg.stage = "end";
    if (!conn.write(dotStuff(msg.canonical))) return false;
    msg.outcome = "in-flight";
    final = await conn.reply();
  }
  if (final === null) return false; // "in-flight": the server died before answering
  msg.reply = final.text;
  msg.repliedAt = performance.now();
  msg.outcome = final.code === 250 ? "acked" : "refused";
  return !conn.closed;
}
