// Owns: a tiny scripted SMTP server for transport tests (127.0.0.1, any port). It speaks just
// enough ESMTP (EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA, BDAT, RSET, QUIT) to record what the
// client sent, and lets a test replace any reply to play failures at each stage.
import type { Socket, TCPSocketListener } from "bun";
import { readFileSync } from "node:fs";
import type { Logger } from "../../log/mod.ts";
import type { ClientSettings } from "../smtp-client.ts";

/** Outbound client settings for tests against this server: 5 s timeouts everywhere. */
export function testClientSettings(
  log: Logger,
  over: Partial<ClientSettings> = {},
): ClientSettings {
  return {
    heloName: "posthorn.test",
    connectTimeoutMs: 5000,
    greetingMs: 5000,
    mailMs: 5000,
    rcptMs: 5000,
    dataInitMs: 5000,
    dataBlockMs: 5000,
    dataTermMs: 5000,
    replyLineBytes: 1000,
    replyLines: 50,
    log,
    ...over,
  };
}

export interface ReceivedMessage {
  mail: string;
  rcpts: string[];
  /** Exactly what arrived after un-stuffing (DATA) or concatenation (BDAT). */
  data: Uint8Array;
  via: "DATA" | "BDAT";
}

export interface FakeSession {
  commands: string[];
  messages: ReceivedMessage[];
  tls: boolean;
}

/** What a script may answer instead of the default: a reply, "close" or "hang". */
export type ScriptedReply = string | "close" | "hang" | undefined;

export interface FakeSmtpOptions {
  hostname?: string;
  port?: number;
  greeting?: string;
  /** EHLO extension lines (without "250-"); null makes EHLO fail with 502 (HELO fallback). */
  extensions?: string[] | null;
  /** PEM material: offers STARTTLS when set (or, with implicitTls, TLS from the first byte). */
  tls?: { cert: string; key: string };
  implicitTls?: boolean;
  /**
   * A strict 7-bit hop: a message holding an octet over 127 or a line over 998 octets is
   * refused with 554 (as if 8BITMIME were missing and the server checked, RFC 6152 §3).
   */
  sevenBitOnly?: boolean;
  /** Called for every command line (and with "<DATA>" / "<BDAT>" at a message's end). */
  reply?: (line: string, session: FakeSession) => ScriptedReply;
}

export interface FakeSmtpServer {
  port: number;
  sessions: FakeSession[];
  messages(): ReceivedMessage[];
  stop(): void;
}

interface State {
  session: FakeSession;
  buf: Uint8Array;
  mode: "cmd" | "data" | "bdat" | "tls";
  bdatLeft: number;
  bdatLast: boolean;
  bdatParts: Uint8Array[];
  mail: string;
  rcpts: string[];
  authStep: number;
  out: Socket<State>;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export function fakeSmtpServer(opts: FakeSmtpOptions = {}): FakeSmtpServer {
  const sessions: FakeSession[] = [];
  const extensions = opts.extensions === undefined
    ? ["PIPELINING", "8BITMIME", "SIZE 1000000", "ENHANCEDSTATUSCODES"]
    : opts.extensions;
  const handlers = {
    open(s: Socket<State>) {
      const session: FakeSession = { commands: [], messages: [], tls: false };
      sessions.push(session);
      s.data = {
        session,
        buf: new Uint8Array(0),
        mode: "cmd",
        bdatLeft: 0,
        bdatLast: false,
        bdatParts: [],
        mail: "",
        rcpts: [],
        authStep: 0,
        out: s,
      };
      const g = opts.reply?.("<GREETING>", session);
      if (g === "close") return void s.end();
      if (g === "hang") return;
      s.write((g ?? opts.greeting ?? "220 fake.test ESMTP ready") + "\r\n");
    },
    data(s: Socket<State>, chunk: Uint8Array) {
      // After STARTTLS the plaintext socket still sees ciphertext: ignore it (DESIGN.md).
      if (s.data.mode === "tls") return;
      feed(s.data, chunk);
    },
    close() {},
    error() {},
  };

  const feed = (st: State, chunk: Uint8Array) => {
    const joined = new Uint8Array(st.buf.length + chunk.length);
    joined.set(st.buf);
    joined.set(chunk, st.buf.length);
    st.buf = joined;
    for (;;) {
      if (st.mode === "bdat") {
        if (st.buf.length < st.bdatLeft) return;
        st.bdatParts.push(st.buf.slice(0, st.bdatLeft));
        st.buf = st.buf.slice(st.bdatLeft);
        st.mode = "cmd";
        if (st.bdatLast) {
          const data = Buffer.concat(st.bdatParts);
          st.bdatParts = [];
          finishMessage(st, data, "BDAT");
        } else {
          const r = opts.reply?.("<BDAT>", st.session);
          if (!act(st, r)) return;
          if (r === undefined) send(st, "250 2.0.0 chunk ok");
        }
        continue;
      }
      if (st.mode === "data") {
        const data = endOfData(st.buf);
        if (!data) return;
        st.buf = st.buf.slice(data.consumed);
        st.mode = "cmd";
        finishMessage(st, data.body, "DATA");
        continue;
      }
      if (st.mode !== "cmd") return;
      const lf = st.buf.indexOf(0x0a);
      if (lf < 0) return;
      const line = dec.decode(st.buf.subarray(0, lf)).replace(/\r$/, "");
      st.buf = st.buf.slice(lf + 1);
      if (!command(st, line)) return;
    }
  };

  const send = (st: State, text: string) => st.out.write(text + "\r\n");

  /** Apply a scripted reply; false when the connection is gone or silent. */
  const act = (st: State, r: ScriptedReply): boolean => {
    if (r === "close") {
      st.out.end();
      st.mode = "tls"; // ignore anything further
      return false;
    }
    if (r === "hang") {
      st.mode = "tls";
      return false;
    }
    if (r !== undefined) send(st, r);
    return true;
  };

  const finishMessage = (st: State, data: Uint8Array, via: "DATA" | "BDAT") => {
    const r = opts.sevenBitOnly && !sevenBitClean(data)
      ? "554 5.6.0 8-bit data or an overlong line sent to a 7-bit server"
      : opts.reply?.(`<${via}>`, st.session);
    if (!act(st, r)) return;
    if (r === undefined || r.startsWith("2")) {
      st.session.messages.push({ mail: st.mail, rcpts: st.rcpts, data, via });
    }
    if (r === undefined) send(st, "250 2.0.0 queued as FAKE");
    st.mail = "";
    st.rcpts = [];
  };

  const command = (st: State, line: string): boolean => {
    st.session.commands.push(line);
    if (st.authStep > 0) {
      st.authStep = st.authStep === 1 ? 2 : 0;
      send(st, st.authStep === 2 ? "334 UGFzc3dvcmQ6" : "235 2.7.0 ok");
      return true;
    }
    const r = opts.reply?.(line, st.session);
    const verb = line.split(" ")[0]!.toUpperCase();
    if (r !== undefined) {
      const ok = act(st, r);
      if (ok && verb === "MAIL" && r.startsWith("2")) st.mail = line;
      if (ok && verb === "RCPT" && r.startsWith("2")) st.rcpts.push(line);
      if (ok && verb === "DATA" && r.startsWith("354")) st.mode = "data";
      return ok;
    }
    switch (verb) {
      case "EHLO": {
        if (extensions === null) return send(st, "502 5.5.2 EHLO not here"), true;
        if (opts.implicitTls) st.session.tls = true;
        const ext = [...extensions];
        if (opts.tls && !opts.implicitTls && !st.session.tls) ext.push("STARTTLS");
        const lines = ["fake.test hello", ...ext];
        lines.forEach((l, i) => send(st, `250${i === lines.length - 1 ? " " : "-"}${l}`));
        return true;
      }
      case "HELO":
        return send(st, "250 fake.test"), true;
      case "STARTTLS": {
        if (!opts.tls) return send(st, "502 5.5.1 no TLS"), true;
        send(st, "220 2.0.0 go ahead");
        st.buf = new Uint8Array(0);
        st.mode = "tls";
        const inner: State = { ...st, mode: "cmd", buf: new Uint8Array(0) };
        inner.session.tls = true;
        const [, secure] = st.out.upgradeTLS<State>({
          data: inner,
          tls: opts.tls,
          socket: {
            open(t: Socket<State>) {
              t.data.out = t;
            },
            data(t: Socket<State>, d: Uint8Array) {
              t.data.out = t;
              if (t.data.mode !== "tls") feed(t.data, d);
            },
            close() {},
            error() {},
          },
        });
        inner.out = secure;
        return false;
      }
      case "AUTH": {
        if (/^AUTH PLAIN \S+/i.test(line)) return send(st, "235 2.7.0 ok"), true;
        if (/^AUTH LOGIN$/i.test(line)) {
          st.authStep = 1;
          return send(st, "334 VXNlcm5hbWU6"), true;
        }
        return send(st, "504 5.5.4 unknown mechanism"), true;
      }
      case "MAIL":
        st.mail = line;
        st.rcpts = [];
        return send(st, "250 2.1.0 ok"), true;
      case "RCPT":
        if (!st.mail) return send(st, "503 5.5.1 MAIL first"), true;
        st.rcpts.push(line);
        return send(st, "250 2.1.5 ok"), true;
      case "DATA":
        if (st.rcpts.length === 0) return send(st, "554 5.5.1 no valid recipients"), true;
        st.mode = "data";
        return send(st, "354 go ahead"), true;
      case "BDAT": {
        const m = /^BDAT (\d+)( LAST)?$/i.exec(line);
        if (!m) return send(st, "501 5.5.4 bad BDAT"), true;
        st.mode = "bdat";
        st.bdatLeft = Number(m[1]);
        st.bdatLast = !!m[2];
        return true;
      }
      case "RSET":
        st.mail = "";
        st.rcpts = [];
        return send(st, "250 2.0.0 ok"), true;
      case "QUIT":
        send(st, "221 2.0.0 bye");
        st.out.end();
        return false;
      default:
        return send(st, "500 5.5.1 unknown command"), true;
    }
  };

  const listener: TCPSocketListener<State> = Bun.listen<State>({
    hostname: opts.hostname ?? "127.0.0.1",
    port: opts.port ?? 0,
    socket: handlers,
    ...(opts.implicitTls && opts.tls ? { tls: opts.tls } : {}),
  });
  return {
    port: listener.port,
    sessions,
    messages: () => sessions.flatMap((s) => s.messages),
    stop: () => listener.stop(true),
  };
}

/** No octet over 127 and no line longer than 998 octets before its CRLF. */
export function sevenBitClean(data: Uint8Array): boolean {
  let lineStart = 0;
  for (let i = 0; i < data.length; i++) {
    if (data[i]! > 127) return false;
    if (data[i] === 0x0a) {
      const end = i > 0 && data[i - 1] === 0x0d ? i - 1 : i;
      if (end - lineStart > 998) return false;
      lineStart = i + 1;
    }
  }
  return data.length - lineStart <= 998;
}

/** Find CRLF "." CRLF; return the un-stuffed body (with its final CRLF) and bytes consumed. */
function endOfData(buf: Uint8Array): { body: Uint8Array; consumed: number } | null {
  let end = -1;
  let consumed = 0;
  if (buf[0] === 0x2e && buf[1] === 0x0d && buf[2] === 0x0a) {
    end = 0;
    consumed = 3;
  } else {
    for (let i = 0; i + 4 < buf.length; i++) {
      if (
        buf[i] === 0x0d && buf[i + 1] === 0x0a && buf[i + 2] === 0x2e && buf[i + 3] === 0x0d &&
        buf[i + 4] === 0x0a
      ) {
        end = i + 2;
        consumed = i + 5;
        break;
      }
    }
  }
  if (end < 0) return null;
  const text = buf.subarray(0, end);
  // RFC 5321 §4.5.2: drop the first "." of every line that starts with one.
  const out: number[] = [];
  let lineStart = true;
  for (let i = 0; i < text.length; i++) {
    const b = text[i]!;
    if (lineStart && b === 0x2e) {
      lineStart = false;
      continue;
    }
    out.push(b);
    lineStart = b === 0x0a;
  }
  return { body: new Uint8Array(out), consumed };
}

/** A throw-away self-signed certificate for localhost (openssl from Debian). */
export function selfSignedCert(dir: string): { cert: string; key: string } {
  const key = `${dir}/key.pem`;
  const cert = `${dir}/cert.pem`;
  const r = Bun.spawnSync([
    "openssl",
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    key,
    "-out",
    cert,
    "-days",
    "1",
    "-subj",
    "/CN=localhost",
  ], { stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`openssl failed: ${r.stderr.toString()}`);
  return { cert: readFileSync(cert, "utf8"), key: readFileSync(key, "utf8") };
}

export { enc as utf8 };
