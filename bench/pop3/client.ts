// The benchmark's POP3 client, run as its own process so it does not share the server's thread:
// logs in on each session, pipelines RETR for every message, and prints JSON figures.
// Usage: bun client.ts <port> <messages> <user:pass>...
export {}; // a module, so top-level await is allowed

const [portArg, countArg, ...creds] = process.argv.slice(2);
const port = Number(portArg);
const count = Number(countArg);
const WINDOW = 32; // RETRs in flight per session (RFC 2449 PIPELINING)

const TERMINATOR = Buffer.from("\r\n.\r\n");

async function session(user: string, pass: string): Promise<{ bytes: number; msgs: number }> {
  let carry = Buffer.alloc(0);
  let state: "status" | "body" = "status";
  let phase: "greeting" | "user" | "pass" | "retr" = "greeting";
  let sent = 0;
  let done = 0;
  let bytes = 0;
  let finish!: () => void;
  let fail!: (e: Error) => void;
  const finished = new Promise<void>((res, rej) => {
    finish = res;
    fail = rej;
  });
  const sendRetrs = (sock: { write(s: string): number }) => {
    let batch = "";
    while (sent < count && sent - done < WINDOW) batch += `RETR ${++sent}\r\n`;
    if (batch) sock.write(batch);
  };
  await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      data(sock, chunk) {
        let buf = carry.length ? Buffer.concat([carry, chunk]) : Buffer.from(chunk);
        for (;;) {
          if (state === "status") {
            const eol = buf.indexOf("\r\n");
            if (eol < 0) break;
            const line = buf.subarray(0, eol).toString();
            buf = buf.subarray(eol + 2);
            if (!line.startsWith("+OK")) return fail(new Error(`${phase}: ${line}`));
            if (phase === "greeting") {
              phase = "user";
              sock.write(`USER ${user}\r\n`);
            } else if (phase === "user") {
              phase = "pass";
              sock.write(`PASS ${pass}\r\n`);
            } else if (phase === "pass") {
              phase = "retr";
              sendRetrs(sock);
            } else state = "body";
            continue;
          }
          // The body ends at CRLF.CRLF; a body is at least its CRLF, so search from 0 works
          // since the status line's CRLF was consumed.
          const end = buf.indexOf(TERMINATOR);
          if (end < 0) break;
          bytes += end + 2;
          buf = buf.subarray(end + TERMINATOR.length);
          state = "status";
          done++;
          if (done === count) {
            sock.write("QUIT\r\n");
            sock.end();
            return finish();
          }
          sendRetrs(sock);
        }
        carry = buf.length ? Buffer.from(buf) : Buffer.alloc(0);
      },
      close() {
        if (done < count) fail(new Error(`closed after ${done} messages`));
      },
      error(_s, e) {
        fail(e);
      },
    },
  });
  await finished;
  return { bytes, msgs: done };
}

const started = performance.now();
const cpuBefore = process.cpuUsage();
const results = await Promise.all(creds.map((c) => {
  const [u, p] = c.split(":") as [string, string];
  return session(u, p);
}));
const seconds = (performance.now() - started) / 1000;
const msgs = results.reduce((n, r) => n + r.msgs, 0);
const bytes = results.reduce((n, r) => n + r.bytes, 0);
const cpu = process.cpuUsage(cpuBefore);
// The client's own CPU time, so a reader can tell when the client is what limits a figure.
console.log(JSON.stringify({ msgs, bytes, seconds, cpuMicros: cpu.user + cpu.system }));
