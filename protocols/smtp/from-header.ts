// The author addresses of a submitted message, checked against the authenticated account like
// MAIL FROM (RFC 6409 §8 lets an MSA do so), because outbound mail is DKIM-signed for its
// author's domain: one user must not get another's name signed. Read by the same parser the
// transport picks the DKIM key with (../../mailformat/addresses.ts).
import { addrSpecText, authorMailboxes } from "../../mailformat/addresses.ts";

/** Lower-cased addresses of every author mailbox in `head` (all of the message when `whole`):
 * none when there is no author field, null when the header section does not end within it. */
export function authorAddresses(head: Uint8Array, whole = false): string[] | null {
  const boxes = authorMailboxes(head, whole);
  return boxes === null ? null : boxes.map(addrSpecText).filter((a) => a.includes("@"));
}
