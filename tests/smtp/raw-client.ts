// A raw SMTP client over a socket for the attacks no polite client library will send:
// smuggling sequences, pipelined STARTTLS injection. Plain node:net and node:tls.
import { connect, type Socket } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";

export class RawClient {
  #buf = "";
  #waiters: (() => void)[] = [];
  constructor(public socket: Socket | TLSSocket) {
    this.#listen(socket);
  }

  static async open(port: number): Promise<RawClient> {
    const socket = connect({ host: "127.0.0.1", port });
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    return new RawClient(socket);
  }

  #listen(s: Socket | TLSSocket): void {
    s.on("data", (d: Buffer) => {
      this.#buf += d.toString("latin1");
      for (const w of this.#waiters.splice(0)) w();
    });
    s.on("close", () => {
      for (const w of this.#waiters.splice(0)) w();
    });
  }

  write(data: string | Uint8Array): void {
    this.socket.write(typeof data === "string" ? Buffer.from(data, "latin1") : data);
  }

  /** The next complete reply (all its lines), or null when the server closed first. */
  async reply(): Promise<string | null> {
    for (;;) {
      const m = /^(?:\d{3}-[^\r\n]*\r\n)*\d{3}(?: [^\r\n]*)?\r\n/.exec(this.#buf);
      if (m) {
        this.#buf = this.#buf.slice(m[0].length);
        return m[0];
      }
      if (this.socket.destroyed || this.socket.readyState === "closed") return null;
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        setTimeout(resolve, 200);
      });
    }
  }

  async cmd(line: string): Promise<string | null> {
    this.write(line + "\r\n");
    return await this.reply();
  }

  /** Whatever arrived and was not consumed as a reply. */
  get unread(): string {
    return this.#buf;
  }

  /** Upgrades the socket after a 220 to STARTTLS; bytes read before are kept. */
  async startTls(): Promise<void> {
    const plain = this.socket as Socket;
    plain.removeAllListeners("data");
    const secure = tlsConnect({ socket: plain, rejectUnauthorized: false, servername: "mx.test" });
    await new Promise<void>((resolve, reject) => {
      secure.once("secureConnect", resolve);
      secure.once("error", reject);
    });
    this.socket = secure;
    this.#listen(secure);
  }

  close(): void {
    this.socket.destroy();
  }
}
