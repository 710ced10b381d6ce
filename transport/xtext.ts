// Owns: the xtext encoding of ENVID and ORCPT values (RFC 3461 §4): "!" to "~" stand for
// themselves except "+" and "="; every other byte is "+" and two upper-case hex digits.

export function xtextEncode(value: string): string {
  let out = "";
  for (const b of new TextEncoder().encode(value)) {
    if (b >= 0x21 && b <= 0x7e && b !== 0x2b && b !== 0x3d) out += String.fromCharCode(b);
    else out += "+" + b.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

export function xtextDecode(value: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 0x2b && /^[0-9A-F]{2}$/.test(value.slice(i + 1, i + 3))) {
      bytes.push(parseInt(value.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(c & 0xff);
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}
