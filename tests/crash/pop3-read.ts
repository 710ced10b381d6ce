// Reads a whole maildrop back over POP3 (RFC 1939) with our own small client on node:net:
// USER/PASS, STAT, then RETR of every message, un-dot-stuffed, as raw bytes.
import { connect, type Socket } from "node:net";

class Pop3Connection {
  #chunks: Buffer[] = [];
  #buffered = 0;
  #closed = false;
  #wake: (() => void) | null = null;

  constructor(readonly socket: Socket) {
    socket.on("data", (d: Buffer) => {
      this.#chunks.push(d);
      this.#buffered += d.length;
      this.#notify();
    });
    socket.on("error", () => this.#end());
    socket.on("close", () => this.#end());
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

  #joined(): Buffer {
    if (this.#chunks.length > 1) this.#chunks = [Buffer.concat(this.#chunks)];
    return this.#chunks[0] ?? Buffer.alloc(0);
  }

  #take(n: number): Buffer {
    const all = this.#joined();
    const head = all.subarray(0, n);
    this.#chunks = n < all.length ? [all.subarray(n)] : [];
    this.#buffered -= n;
    return head;
  }

  async #more(what: string): Promise<void> {
    if (this.#closed) throw new Error(`POP3 connection closed while waiting for ${what}`);
    await new Promise<void>((resolve) => (this.#wake = resolve));
  }

  /** The status line (without CRLF); throws unless it is +OK. */
  async status(what: string): Promise<string> {
    for (;;) {
      const at = this.#buffered > 0 ? this.#joined().indexOf("\r\n") : -1;
      if (at >= 0) {
        const line = this.#take(at + 2).toString("latin1").slice(0, -2);
        if (!line.startsWith("+OK")) throw new Error(`POP3 ${what}: ${line}`);
        return line;
      }
      await this.#more(what);
    }
  }

  /** A multi-line response body after its +OK line (RFC 1939 §3), un-dot-stuffed. */
  async multiline(what: string): Promise<Uint8Array> {
    await this.status(what);
    const END = Buffer.from("\r\n.\r\n");
    let searchFrom = 0;
    for (;;) {
      const all = this.#joined();
      // An empty body is just ".\r\n" right after the status line.
      if (all.length >= 3 && all.subarray(0, 3).toString("latin1") === ".\r\n") {
        this.#take(3);
        return new Uint8Array(0);
      }
      const at = all.indexOf(END, searchFrom);
      if (at >= 0) {
        const body = this.#take(at + END.length).subarray(0, at + 2);
        return unstuff(body);
      }
      searchFrom = Math.max(0, all.length - END.length);
      await this.#more(what);
    }
  }

  write(line: string): void {
    if (this.#closed) throw new Error(`POP3 connection closed before "${line.split(" ")[0]}"`);
    this.socket.write(line + "\r\n");
  }

  close(): void {
    this.socket.destroy();
  }
}

/** RFC 1939 §3: a line that starts with a dot had one more put in front of it. */
export function unstuff(body: Buffer): Uint8Array {
  const out = new Uint8Array(body.length);
  let o = 0;
  for (let i = 0; i < body.length; i++) {
    if (body[i] === 0x2e && (i === 0 || (body[i - 1] === 0x0a && body[i - 2] === 0x0d))) continue;
    out[o++] = body[i]!;
  }
  return out.subarray(0, o);
}

/** Every message of the maildrop, in order, as stored bytes. */
export async function readMaildrop(
  port: number,
  user: string,
  password: string,
): Promise<Uint8Array[]> {
  const socket = connect({ host: "127.0.0.1", port });
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  const c = new Pop3Connection(socket);
  try {
    await c.status("greeting");
    c.write(`USER ${user}`);
    await c.status("USER");
    c.write(`PASS ${password}`);
    await c.status("PASS");
    c.write("STAT");
    const count = Number(/^\+OK (\d+) /.exec(await c.status("STAT"))?.[1]);
    if (!Number.isInteger(count)) throw new Error("POP3 STAT: no message count");
    const out: Uint8Array[] = [];
    for (let n = 1; n <= count; n++) {
      c.write(`RETR ${n}`);
      out.push(await c.multiline(`RETR ${n}`));
    }
    c.write("QUIT");
    await c.status("QUIT");
    return out;
  } finally {
    c.close();
  }
}
