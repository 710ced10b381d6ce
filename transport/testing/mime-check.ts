// Owns: test helpers to check a 7-bit downgrade from the outside: a small strict MIME reader
// (whole message in memory: test data only), a quoted-printable decoder, the 7-bit invariants,
// and a seeded generator of random MIME trees with 8-bit bodies.

export interface MimeNode {
  /** Header fields, unfolded, names lower-cased. */
  fields: [string, string][];
  contentType: string;
  cte: string;
  /** Leaf body bytes as they stand (still encoded). */
  body: Uint8Array;
  children: MimeNode[];
  preamble: Uint8Array | null;
  epilogue: Uint8Array | null;
  /** message/rfc822: the embedded message. */
  embedded: MimeNode | null;
}

/** Bytes to a string of the same code units (TextDecoder's "latin1" is really windows-1252). */
const latin1 = { decode: (b: Uint8Array) => Buffer.from(b).toString("latin1") };
const bytesOf = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));

export function concatBytes(parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}

function param(value: string, name: string): string | null {
  const m = new RegExp(`;\\s*${name}\\s*=\\s*("([^"]*)"|[^;\\s]+)`, "i").exec(value);
  return m ? (m[2] ?? m[1]!) : null;
}

/** Parse an entity; CRLF line breaks assumed (test data). */
export function parseMime(data: Uint8Array, defaultType = "text/plain"): MimeNode {
  const text = latin1.decode(data);
  let split = text.indexOf("\r\n\r\n");
  let headerText: string;
  let bodyText: string;
  if (text.startsWith("\r\n")) {
    headerText = "";
    bodyText = text.slice(2);
  } else if (split < 0) {
    headerText = text;
    bodyText = "";
  } else {
    headerText = text.slice(0, split);
    bodyText = text.slice(split + 4);
  }
  split = 0;
  const fields: [string, string][] = [];
  for (const line of headerText.split("\r\n")) {
    if (line === "") continue;
    if (/^[ \t]/.test(line) && fields.length > 0) fields.at(-1)![1] += line;
    else {
      const c = line.indexOf(":");
      fields.push([line.slice(0, c).trim().toLowerCase(), line.slice(c + 1).trim()]);
    }
  }
  const get = (n: string) => fields.find(([k]) => k === n)?.[1] ?? "";
  const contentType = get("content-type") || defaultType;
  const type = contentType.split(";")[0]!.trim().toLowerCase();
  const node: MimeNode = {
    fields,
    contentType: type,
    cte: get("content-transfer-encoding").toLowerCase(),
    body: bytesOf(bodyText),
    children: [],
    preamble: null,
    epilogue: null,
    embedded: null,
  };
  const boundary = param(contentType, "boundary");
  if (type.startsWith("multipart/") && boundary) {
    const lines = bodyText.split("\r\n");
    const delim = `--${boundary}`;
    const isDelim = (l: string) => /^[ \t]*$/.test(l.slice(delim.length)) && l.startsWith(delim);
    const isClose = (l: string) =>
      l.startsWith(delim + "--") && /^[ \t]*$/.test(l.slice(delim.length + 2));
    let current: string[] | null = null;
    const pre: string[] = [];
    let ended = false;
    let epi: string[] = [];
    const childType = type === "multipart/digest" ? "message/rfc822" : "text/plain";
    for (let i = 0; i < lines.length; i++) {
      const l = lines[i]!;
      if (ended) {
        epi.push(l);
        continue;
      }
      if (isClose(l) || isDelim(l)) {
        if (current) node.children.push(parseMime(bytesOf(current.join("\r\n")), childType));
        else node.preamble = bytesOf(pre.join("\r\n"));
        current = [];
        if (isClose(l)) {
          ended = true;
          epi = [];
        }
        continue;
      }
      (current ?? pre).push(l);
    }
    if (ended) node.epilogue = bytesOf(epi.join("\r\n"));
  } else if (type === "message/rfc822") {
    node.embedded = parseMime(node.body);
  }
  return node;
}

/** The leaves in document order (embedded messages walked). */
export function leaves(n: MimeNode): MimeNode[] {
  if (n.embedded) return leaves(n.embedded);
  if (n.children.length > 0) return n.children.flatMap(leaves);
  return [n];
}

/** RFC 2045 §6.7 decoding: soft breaks removed, =XX to octets, CRLF kept. */
export function qpDecode(data: Uint8Array): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < data.length; i++) {
    const b = data[i]!;
    if (b !== 0x3d) {
      out.push(b);
      continue;
    }
    if (data[i + 1] === 0x0d && data[i + 2] === 0x0a) {
      i += 2;
      continue;
    }
    const hex = String.fromCharCode(data[i + 1]!, data[i + 2]!);
    if (!/^[0-9A-F]{2}$/.test(hex)) throw new Error(`bad QP escape "=${hex}" at ${i}`);
    out.push(parseInt(hex, 16));
    i += 2;
  }
  return new Uint8Array(out);
}

/** The first broken 7-bit invariant, or null: no octet over 127, no line over 998 octets. */
export function sevenBitProblem(data: Uint8Array): string | null {
  let lineStart = 0;
  for (let i = 0; i < data.length; i++) {
    if (data[i]! > 127) return `octet ${data[i]} at ${i}`;
    if (data[i] === 0x0a) {
      const end = data[i - 1] === 0x0d ? i - 1 : i;
      if (end - lineStart > 998) return `line of ${end - lineStart} octets at ${lineStart}`;
      lineStart = i + 1;
    }
  }
  return data.length - lineStart > 998 ? "last line over 998 octets" : null;
}

/** Feed `data` in pieces cut at the given offsets. */
export async function* pieces(data: Uint8Array, cuts: number[]): AsyncIterable<Uint8Array> {
  let at = 0;
  for (const c of [...cuts, data.length]) {
    if (c > at) yield data.slice(at, c);
    at = Math.max(at, c);
  }
}

export async function collect(stream: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const p of stream) parts.push(p);
  return concatBytes(parts);
}

/** The seeded PRNG of the SMTP fuzz tests (mulberry32), so a failing case can be replayed. */
export { rng as prng } from "../../tests/smtp/random-message.ts";

export interface GeneratedMessage {
  bytes: Uint8Array;
  /** Each leaf's decoded body, in document order. */
  leafBodies: Uint8Array[];
  /** The leaf's original Content-Transfer-Encoding ("" when absent). */
  leafCtes: string[];
  /** True when the generator put something in that must be refused (5.6.3). */
  mustRefuse: boolean;
}

/** A random MIME tree whose text leaves hold random 8-bit bodies (CRLF line breaks). */
export function randomMessage(rand: () => number): GeneratedMessage {
  const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const leafBodies: Uint8Array[] = [];
  const leafCtes: string[] = [];
  let mustRefuse = false;
  let boundaries = 0;
  const parts: Uint8Array[] = [];
  const put = (s: string) => parts.push(bytesOf(s));

  const eightBitBody = (): Uint8Array => {
    const lines: number[][] = [];
    const n = Math.floor(rand() * 6);
    for (let i = 0; i < n; i++) {
      const len = rand() < 0.1 ? 900 + Math.floor(rand() * 1200) : Math.floor(rand() * 90);
      const line: number[] = [];
      for (let j = 0; j < len; j++) {
        const r = rand();
        // Plenty of the octets that matter: high bytes, "=", "-", space, tab, bare CR, NUL.
        line.push(
          r < 0.3
            ? 0x80 + Math.floor(rand() * 128)
            : r < 0.35
            ? 0x3d
            : r < 0.42
            ? 0x2d
            : r < 0.5
            ? 0x20
            : r < 0.52
            ? 0x09
            : r < 0.53
            ? 0x0d
            : r < 0.54
            ? 0
            : 0x21 + Math.floor(rand() * 94),
        );
      }
      if (line[0] === 0x2d && line[1] === 0x2d) line[0] = 0x21; // no accidental delimiters
      lines.push(line);
    }
    const flat: number[] = [];
    lines.forEach((l, i) => {
      if (i > 0) flat.push(0x0d, 0x0a);
      flat.push(...l);
    });
    return new Uint8Array(flat);
  };
  const asciiBody = (): string => {
    const n = Math.floor(rand() * 4);
    const lines: string[] = [];
    for (let i = 0; i < n; i++) {
      lines.push(`ascii line ${i} ${"x".repeat(Math.floor(rand() * 70))}`);
    }
    return lines.join("\r\n");
  };
  const header = (fields: string[]) => {
    if (rand() < 0.3) fields.push(`X-Note: ${asciiBody().replace(/\r\n/g, " ").slice(0, 60)}`);
    if (rand() < 0.02) {
      fields.push("Subject: Gr\xfc\xdfe");
      mustRefuse = true;
    }
    put(fields.join("\r\n") + "\r\n\r\n");
  };

  const leaf = () => {
    const kind = pick(["8bit", "", "7bit", "base64", "qp", "8bit-as-7bit"]);
    if (kind === "base64") {
      header(["Content-Type: application/octet-stream", "Content-Transfer-Encoding: base64"]);
      const raw = new Uint8Array(Math.floor(rand() * 200)).map(() => Math.floor(rand() * 256));
      let b64 = Buffer.from(raw).toString("base64").replace(/.{76}/g, "$&\r\n").replace(
        /\r\n$/,
        "",
      );
      if (rand() < 0.02) {
        b64 += "\xff";
        mustRefuse = true;
      }
      put(b64);
      leafBodies.push(bytesOf(b64));
      leafCtes.push("base64");
    } else if (kind === "7bit" || kind === "qp") {
      const cte = kind === "7bit" ? "7bit" : "quoted-printable";
      header(["Content-Type: text/plain; charset=us-ascii", `Content-Transfer-Encoding: ${cte}`]);
      const body = asciiBody();
      put(body);
      leafBodies.push(bytesOf(body));
      leafCtes.push(cte);
    } else {
      const cte = kind === "8bit-as-7bit" ? "7bit" : kind;
      header([
        "Content-Type: text/plain; charset=utf-8",
        ...(cte ? [`Content-Transfer-Encoding: ${cte}`] : []),
      ]);
      const body = eightBitBody();
      parts.push(body);
      leafBodies.push(body);
      leafCtes.push(cte);
    }
  };

  const entity = (depth: number): void => {
    const r = rand();
    if (depth < 4 && r < 0.35) {
      const b = `=_b${boundaries++}_${Math.floor(rand() * 1e6)}`;
      const sub = pick(["mixed", "alternative", "related"]);
      header([
        `Content-Type: multipart/${sub}; boundary="${b}"`,
        ...(rand() < 0.5 ? ["Content-Transfer-Encoding: 8bit"] : []),
      ]);
      if (rand() < 0.5) {
        put(rand() < 0.2 ? "Pr\xe9amble 8-bit\r\n" : "This is a multi-part message.\r\n");
      }
      const n = 1 + Math.floor(rand() * 3);
      for (let i = 0; i < n; i++) {
        put(`--${b}\r\n`);
        entity(depth + 1);
        put("\r\n");
      }
      put(`--${b}--`);
      if (rand() < 0.5) put(rand() < 0.2 ? "\r\n\xe9pilogue\r\n" : "\r\nepilogue\r\n");
    } else if (depth < 4 && r < 0.5) {
      header([
        "Content-Type: message/rfc822",
        ...(rand() < 0.5 ? ["Content-Transfer-Encoding: 8bit"] : []),
      ]);
      put("From: someone@example.test\r\n");
      entity(depth + 1);
    } else leaf();
  };

  put("From: a@example.test\r\nMIME-Version: 1.0\r\n");
  entity(0);
  return { bytes: concatBytes(parts), leafBodies, leafCtes, mustRefuse };
}
