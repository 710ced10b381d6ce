// Reply texts and RFC 2449/3206 response codes, in one place so wording stays consistent.
import { StoreError } from "../../ipc/store-api.ts";

export const CRLF = "\r\n";

export const ok = (text: string) => (text ? `+OK ${text}${CRLF}` : `+OK${CRLF}`);
export const err = (text: string) => `-ERR ${text}${CRLF}`;

/** RFC 2449 §8 / RFC 3206 response codes. */
export const code = {
  inUse: "[IN-USE]", // RFC 2449 §8.1.1: the maildrop is locked by another session
  loginDelay: "[LOGIN-DELAY]",
  sysTemp: "[SYS/TEMP]", // RFC 3206 §4: temporary system problem, retry later
  sysPerm: "[SYS/PERM]",
  auth: "[AUTH]", // RFC 3206 §5: the credentials are the problem
} as const;

/** A -ERR for a failed store call: temporary failures say so, so clients retry later. */
export function storeFailure(e: unknown, what: string): string {
  if (e instanceof StoreError) {
    if (e.temporary) return err(`${code.sysTemp} ${what}: the store is busy, try again later`);
    if (e.code === "in_use") return err(`${code.inUse} Mailbox is locked by another session`);
  }
  return err(`${code.sysTemp} ${what} failed`);
}
