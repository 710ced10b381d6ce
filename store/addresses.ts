// Address syntax as the store keys it: "local@domain", lower-cased (local parts are
// case-sensitive in theory, RFC 5321 §2.4, but no deployed mailbox relies on it).
import { StoreError } from "../ipc/store-api.ts";

export interface Address {
  local: string;
  domain: string;
  address: string;
}

export function parseAddress(input: string): Address | null {
  if (typeof input !== "string") return null;
  let s = input.trim();
  if (s.startsWith("<") && s.endsWith(">")) s = s.slice(1, -1);
  if (s.length === 0 || s.length > 320) return null;
  const at = s.lastIndexOf("@");
  if (at <= 0 || at === s.length - 1) return null;
  const local = s.slice(0, at).toLowerCase();
  const domain = s.slice(at + 1).toLowerCase().replace(/\.$/, "");
  // RFC 5321 §4.5.3.1.1/2: local part ≤ 64 octets, domain ≤ 255.
  if (local.length > 64 || domain.length > 255) return null;
  // deno-lint-ignore no-control-regex
  if (/[\x00-\x20\x7f<>]/.test(local) || !/^[a-z0-9.-]+$|^\[.+\]$/.test(domain)) return null;
  return { local, domain, address: `${local}@${domain}` };
}

export function requireAddress(input: string): Address {
  const a = parseAddress(input);
  if (!a) throw new StoreError("invalid", `not an address: ${JSON.stringify(input)}`);
  return a;
}
