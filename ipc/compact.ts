// The compact form of small values (a call's `[method, {...}]`, a result such as `{ size }`):
// a stream of 32-bit words instead of JSON, so the common crossing costs no stringify, parse,
// UTF-8 measuring or string decoding. Names (methods, record keys) are sent once per binding
// direction and then by number: the first use defines the name under an explicit id, later uses
// cite the id. Blocks of one direction are decoded in the order they were encoded (each encode
// is followed at once by its ring push, and the consumer decodes every entry in ring order), so
// a definition always arrives before its first citation; an id the reader does not know is a
// clean "internal" error, never a wrong name. Anything the form does not cover (deep nesting,
// long strings, class instances, toJSON) falls back to the JSON form, which gives the same
// value: the compact form follows JSON's rules (undefined fields dropped, undefined array items
// and non-finite numbers become null, -0 becomes 0). Measured: a 64 KiB call's envelope costs
// about half the JSON form's; a record with several string values (an account) about 10 % more,
// since each string is written and read on its own.
//
// Layout: one word (COMPACT_TAG | stream words), the stream (each item a tag word, maybe
// followed by data words), then the Uint8Arrays as attachments at 8-byte boundaries, as in the
// JSON form.
import { StoreError } from "./store-api.ts";

/** Set in a block's first word: the JSON form's first word (a byte count) never has it. */
export const COMPACT_TAG = 0x80000000;

const MAX_WORDS = 1024;
const MAX_STRING_CHARS = 256;
const MAX_DEPTH = 4;
/** Names one binding direction interns; later new names travel inline, every time. */
const MAX_NAMES = 1024;
const MAX_NAME_CHARS = 64;

// A word is a tag in its low 4 bits and an operand (a count or an id) above them.
const NULL = 1;
const TRUE = 2;
const FALSE = 3;
const INT = 4; // then the int32
const F64 = 5; // then two words, little-endian halves
const STR = 6; // operand: byte count; then the UTF-8 bytes padded to a word
const NAME = 7; // operand: id of a name defined earlier on this binding direction
const DEFINE = 8; // operand: id; then like STR: a name, and its id from now on
const BYTES = 9; // operand: byte count of the next attachment
const RECORD = 10; // operand: field count; then (name, value) pairs
const ARRAY = 11; // operand: item count; then the items
const ASCII = 12; // like STR, but every byte is below 0x80: read back as Latin-1, twice as fast
const TAG_BITS = 4;
const TAG_MASK = 0xf;
/** Counts and ids must fit the operand; the heap's largest block is far below this. */
const MAX_OPERAND = 2 ** (32 - TAG_BITS) - 1;

/** Shared memory a block lives in: the heap, or a ring whose slot holds the value inline. */
export interface BlockMemory {
  readonly u32: Uint32Array;
  readonly bytes: Uint8Array;
  /** The same bytes as a Buffer: its UTF-8 read is ~3× faster than TextDecoder's here. */
  readonly buf: Buffer;
}

/** The encoding side's table of names already defined on one binding direction. */
export class SentNames {
  readonly ids = new Map<string, number>();
}

/** The decoding side's table: names by id, as the peer defined them. */
export class ReceivedNames {
  readonly names: string[] = [];
}

const scratch = new Uint32Array(MAX_WORDS);
const scratchBytes = Buffer.from(scratch.buffer);
const f64 = new Float64Array(1);
const f64Words = new Uint32Array(f64.buffer);

export interface Compact {
  /** Stream words in `scratch` (valid until the next encode). */
  words: number;
  attachments: Uint8Array[];
  /** Names this encode defined: withdrawn if the block is never sent. */
  fresh: string[];
  names: SentNames | undefined;
}

interface Writer extends Compact {
  at: number;
}

let encoding = false; // a getter that encodes while we encode gets the JSON form instead

/** Encodes `value` into the scratch stream, or null if the compact form does not cover it. */
export function compactEncode(value: unknown, names: SentNames | undefined): Compact | null {
  if (encoding) return null;
  encoding = true;
  const w: Writer = { at: 0, words: 0, attachments: [], fresh: [], names };
  try {
    if (!put(w, value, 0)) {
      withdrawNames(w);
      return null;
    }
  } catch {
    withdrawNames(w); // a throwing getter: let the JSON form report it
    return null;
  } finally {
    encoding = false;
  }
  w.words = w.at;
  return w;
}

/** The block was not sent (heap full, too large): its definitions never reach the peer. */
export function withdrawNames(c: Compact): void {
  if (c.names) { for (const s of c.fresh) c.names.ids.delete(s); }
  c.fresh.length = 0;
}

/** Bytes a block of `c` needs: first word, stream, then 8-byte-aligned attachments. */
export function compactBytes(c: Compact): number {
  let total = align8(4 + 4 * c.words);
  for (const a of c.attachments) total += align8(a.byteLength);
  return total;
}

/** Copies an encoded stream and its attachments into the block at byte `base`. */
export function compactWrite(mem: BlockMemory, base: number, c: Compact): void {
  const w = base >> 2;
  const u32 = mem.u32;
  u32[w] = COMPACT_TAG | c.words;
  // A short stream is copied word by word: a subarray view costs more than the copy.
  if (c.words <= 32) { for (let i = 0; i < c.words; i++) u32[w + 1 + i] = scratch[i]!; }
  else u32.set(scratch.subarray(0, c.words), w + 1);
  let at = base + align8(4 + 4 * c.words);
  for (const a of c.attachments) {
    mem.bytes.set(a, at);
    at += align8(a.byteLength);
  }
}

function put(w: Writer, v: unknown, depth: number): boolean {
  if (w.at + 3 > MAX_WORDS) return false;
  switch (typeof v) {
    case "number":
      if ((v | 0) === v) {
        scratch[w.at++] = INT;
        scratch[w.at++] = v; // stored modulo 2³², read back with `| 0`
      } else if (Number.isFinite(v)) {
        f64[0] = v;
        scratch[w.at++] = F64;
        scratch[w.at++] = f64Words[0]!;
        scratch[w.at++] = f64Words[1]!;
      } else scratch[w.at++] = NULL; // JSON: NaN and ±Infinity become null
      return true;
    case "string":
      return putString(w, v, STR);
    case "boolean":
      scratch[w.at++] = v ? TRUE : FALSE;
      return true;
    case "object": {
      if (v === null) {
        scratch[w.at++] = NULL;
        return true;
      }
      if (v instanceof Uint8Array) {
        if (v.byteLength > MAX_OPERAND) return false;
        scratch[w.at++] = BYTES | (v.byteLength << TAG_BITS) >>> 0;
        w.attachments.push(v);
        return true;
      }
      if (depth >= MAX_DEPTH) return false;
      if (Array.isArray(v)) {
        if (v.length >= MAX_WORDS) return false;
        scratch[w.at++] = ARRAY | (v.length << TAG_BITS);
        for (let i = 0; i < v.length; i++) {
          const item = v[i];
          const t = typeof item;
          if (t === "undefined" || t === "function" || t === "symbol") {
            if (w.at + 1 > MAX_WORDS) return false;
            scratch[w.at++] = NULL; // JSON: such array items become null
          } else if (depth === 0 && i === 0 && t === "string") {
            if (!putName(w, item as string)) return false; // a method or topic
          } else if (!put(w, item, depth + 1)) return false;
        }
        return true;
      }
      const proto = Object.getPrototypeOf(v);
      if (proto !== Object.prototype && proto !== null) return false; // class instance, Date…
      const rec = v as Record<string, unknown>;
      if (typeof rec.toJSON === "function") return false;
      const countAt = w.at++;
      let count = 0;
      const keys = Object.keys(rec);
      for (let i = 0; i < keys.length; i++) {
        const k = keys[i]!;
        const field = rec[k];
        const t = typeof field;
        if (t === "undefined" || t === "function" || t === "symbol") continue; // JSON drops them
        if (!putName(w, k) || !put(w, field, depth + 1)) return false;
        count++;
      }
      scratch[countAt] = RECORD | (count << TAG_BITS);
      return true;
    }
    default:
      return false; // bigint (JSON throws), or a top-level function or symbol
  }
}

/** A record key, method or topic: by id once the peer knows it. */
function putName(w: Writer, s: string): boolean {
  const names = w.names;
  if (names === undefined || s.length > MAX_NAME_CHARS) return putString(w, s, STR);
  const id = names.ids.get(s);
  if (id !== undefined) {
    if (w.at + 1 > MAX_WORDS) return false;
    scratch[w.at++] = NAME | (id << TAG_BITS);
    return true;
  }
  if (names.ids.size >= MAX_NAMES) return putString(w, s, STR);
  const fresh = names.ids.size;
  names.ids.set(s, fresh); // provisional: withdrawn if this block is never sent
  w.fresh.push(s);
  return putString(w, s, DEFINE, fresh);
}

function putString(w: Writer, s: string, tag: number, id = 0): boolean {
  // A lone surrogate would become U+FFFD in UTF-8; the JSON form keeps it: let JSON carry it.
  if (s.length > MAX_STRING_CHARS || !s.isWellFormed()) return false;
  const head = tag === DEFINE ? 2 : 1;
  // UTF-8 takes at most 3 bytes per UTF-16 unit
  if (w.at + head + ((s.length * 3 + 3) >> 2) > MAX_WORDS) return false;
  const n = scratchBytes.write(s, (w.at + head) * 4, "utf8");
  if (tag === DEFINE) {
    scratch[w.at] = DEFINE | (id << TAG_BITS);
    scratch[w.at + 1] = STR | (n << TAG_BITS);
  } else scratch[w.at] = (n === s.length ? ASCII : STR) | (n << TAG_BITS); // one byte a unit
  w.at += head + ((n + 3) >> 2);
  return true;
}

interface Reader {
  mem: BlockMemory;
  at: number; // word index of the next word
  end: number; // word index past the stream
  bytesAt: number; // byte offset of the next attachment
  bytesEnd: number; // byte offset past the block's content
  lease: boolean;
  leased: boolean;
  names: ReceivedNames | undefined;
}

function bad(): never {
  throw new StoreError("internal", "bad IPC block");
}

/** Reads a compact block at byte `base` of `length` content bytes. */
export function compactDecode(
  mem: BlockMemory,
  base: number,
  length: number,
  lease: boolean,
  names: ReceivedNames | undefined,
): { value: unknown; leased: boolean } {
  const words = mem.u32[base >> 2]! & ~COMPACT_TAG;
  const streamBytes = align8(4 + 4 * words);
  if (streamBytes > length) bad();
  const r: Reader = {
    mem,
    at: (base >> 2) + 1,
    end: (base >> 2) + 1 + words,
    bytesAt: base + streamBytes,
    bytesEnd: base + length,
    lease,
    leased: false,
    names,
  };
  const value = get(r, 0);
  if (r.at !== r.end) bad();
  return { value, leased: r.leased };
}

function word(r: Reader): number {
  if (r.at >= r.end) bad();
  return r.mem.u32[r.at++]!;
}

function get(r: Reader, depth: number): unknown {
  const wd = word(r);
  const tag = wd & TAG_MASK;
  const operand = wd >>> TAG_BITS;
  switch (tag) {
    case NULL:
      return null;
    case TRUE:
      return true;
    case FALSE:
      return false;
    case INT:
      return word(r) | 0;
    case F64:
      f64Words[0] = word(r);
      f64Words[1] = word(r);
      return f64[0];
    case STR:
    case NAME:
    case DEFINE:
    case ASCII:
      return getString(r, tag, operand);
    case BYTES: {
      const n = operand;
      const at = r.bytesAt;
      if (at + n > r.bytesEnd) bad();
      r.bytesAt = at + align8(n);
      if (r.lease) r.leased = true;
      // slice: a private, non-shared copy; subarray: a view of the block itself
      return r.lease ? r.mem.bytes.subarray(at, at + n) : r.mem.bytes.slice(at, at + n);
    }
    case ARRAY: {
      if (depth >= MAX_DEPTH) bad();
      const n = operand;
      if (n > r.end - r.at) bad();
      const out = new Array<unknown>(n);
      for (let i = 0; i < n; i++) out[i] = get(r, depth + 1);
      return out;
    }
    case RECORD: {
      if (depth >= MAX_DEPTH) bad();
      const n = operand;
      if (n > r.end - r.at) bad();
      const out: Record<string, unknown> = {};
      for (let i = 0; i < n; i++) {
        const kw = word(r);
        const kt = kw & TAG_MASK;
        if (kt !== STR && kt !== ASCII && kt !== NAME && kt !== DEFINE) bad();
        const k = getString(r, kt, kw >>> TAG_BITS);
        const v = get(r, depth + 1);
        setOwn(out, k, v);
      }
      return out;
    }
  }
  return bad();
}

/** `rec[k] = v`, except that "__proto__" names an own property as in JSON, not the prototype. */
export function setOwn(rec: Record<string, unknown>, k: string, v: unknown): void {
  if (k === "__proto__") {
    Object.defineProperty(rec, k, {
      value: v,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  } else rec[k] = v;
}

function getString(r: Reader, tag: number, operand: number): string {
  if (tag === NAME) {
    const s = r.names?.names[operand];
    if (s === undefined) throw new StoreError("internal", "IPC name used before its definition");
    return s;
  }
  const id = operand;
  let n = operand;
  if (tag === DEFINE) {
    const sw = word(r);
    if ((sw & TAG_MASK) !== STR) bad();
    n = sw >>> TAG_BITS;
  }
  const start = r.at * 4;
  const nWords = (n + 3) >> 2;
  if (nWords > r.end - r.at) bad();
  r.at += nWords;
  const s = r.mem.buf.toString(tag === ASCII ? "latin1" : "utf8", start, start + n);
  if (tag === DEFINE) {
    const names = r.names;
    if (!names || id > names.names.length) {
      throw new StoreError("internal", "IPC name defined out of order");
    }
    names.names[id] = s;
  }
  return s;
}

function align8(n: number): number {
  return (n + 7) & ~7;
}
