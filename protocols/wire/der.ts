// A minimal ASN.1 DER writer (ITU-T X.690 §8 and §10): just the types an X.509 v3 certificate
// needs. Every function returns complete TLV bytes, so callers nest them by plain composition.

/** Tag, definite length (X.690 §8.1.3: short form below 128, long form above), value. */
export function tlv(tag: number, value: Uint8Array): Uint8Array {
  const len = value.length;
  let header: number[];
  if (len < 0x80) header = [tag, len];
  else {
    const bytes: number[] = [];
    for (let n = len; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
    header = [tag, 0x80 | bytes.length, ...bytes];
  }
  const out = new Uint8Array(header.length + len);
  out.set(header, 0);
  out.set(value, header.length);
  return out;
}

export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export const sequence = (...items: Uint8Array[]) => tlv(0x30, concat(items));
export const set = (...items: Uint8Array[]) => tlv(0x31, concat(items));
export const octetString = (bytes: Uint8Array) => tlv(0x04, bytes);
export const utf8String = (s: string) => tlv(0x0c, new TextEncoder().encode(s));
export const boolean = (v: boolean) => tlv(0x01, new Uint8Array([v ? 0xff : 0x00]));
/** Context-specific tag [n]: constructed (EXPLICIT wrapper) or primitive (IMPLICIT value). */
export const explicit = (n: number, inner: Uint8Array) => tlv(0xa0 | n, inner);
export const implicitPrimitive = (n: number, value: Uint8Array) => tlv(0x80 | n, value);

/** BIT STRING with no unused bits (X.690 §8.6.2: the first content byte counts them). */
export function bitString(bytes: Uint8Array): Uint8Array {
  const v = new Uint8Array(bytes.length + 1);
  v.set(bytes, 1);
  return tlv(0x03, v);
}

/** INTEGER from unsigned big-endian bytes: minimal, with a 0x00 pad when the top bit is set. */
export function unsignedInteger(bytes: Uint8Array): Uint8Array {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  const trimmed = bytes.subarray(i);
  if (trimmed.length === 0) return tlv(0x02, new Uint8Array([0]));
  if ((trimmed[0]! & 0x80) !== 0) return tlv(0x02, concat([new Uint8Array([0]), trimmed]));
  return tlv(0x02, trimmed);
}

export function smallInteger(n: number): Uint8Array {
  if (!Number.isInteger(n) || n < 0 || n > 0x7fffffff) throw new RangeError("integer out of range");
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return unsignedInteger(new Uint8Array(bytes.length ? bytes : [0]));
}

/** OBJECT IDENTIFIER (X.690 §8.19): first two arcs packed as 40*a+b, then base-128 arcs. */
export function oid(dotted: string): Uint8Array {
  const arcs = dotted.split(".").map((a) => {
    const n = Number(a);
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`bad OID arc in ${dotted}`);
    return n;
  });
  if (arcs.length < 2) throw new RangeError(`OID needs two arcs: ${dotted}`);
  const out: number[] = [];
  const push128 = (n: number) => {
    const groups: number[] = [n & 0x7f];
    for (let v = Math.floor(n / 128); v > 0; v = Math.floor(v / 128)) {
      groups.unshift(0x80 | (v & 0x7f));
    }
    out.push(...groups);
  };
  push128(arcs[0]! * 40 + arcs[1]!);
  for (const a of arcs.slice(2)) push128(a);
  return tlv(0x06, new Uint8Array(out));
}

/** X.509 Time (RFC 5280 §4.1.2.5): UTCTime through 2049, GeneralizedTime from 2050. */
export function time(date: Date): Uint8Array {
  const p = (n: number, w = 2) => String(n).padStart(w, "0");
  const y = date.getUTCFullYear();
  const rest = `${p(date.getUTCMonth() + 1)}${p(date.getUTCDate())}${p(date.getUTCHours())}${
    p(date.getUTCMinutes())
  }${p(date.getUTCSeconds())}Z`;
  if (y >= 1950 && y < 2050) return tlv(0x17, new TextEncoder().encode(`${p(y % 100)}${rest}`));
  return tlv(0x18, new TextEncoder().encode(`${p(y, 4)}${rest}`));
}
