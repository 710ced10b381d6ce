// The author addresses of a submitted message (RFC 5322 §3.6.2, §3.6.6): the addresses of its
// topmost Resent-From: when it was resent (a client's "redirect"), else of its From:. They are
// checked against the authenticated account like MAIL FROM (RFC 6409 §8 lets an MSA do so),
// because outbound mail is DKIM-signed for its From: domain: one user must not get another's
// name signed.

/** Lower-cased addresses of the author field in the header section of `head` (all of the
 * message when `whole`): none when the header has no such field, null when the header section
 * does not end within `head`. */
export function authorAddresses(head: Uint8Array, whole = false): string[] | null {
  const text = Buffer.from(head).toString("latin1");
  let end = text.indexOf("\r\n\r\n");
  if (end < 0) {
    if (!whole) return null;
    end = text.length; // a message of header fields only (RFC 5322 §3.5: the body is optional)
  }
  // Unfolded (RFC 5322 §2.2.3), one field per line.
  const fields = text.slice(0, end).replace(/\r\n[ \t]/g, " ").split("\r\n");
  const pick = (name: string) => fields.find((f) => f.toLowerCase().startsWith(`${name}:`));
  const field = pick("resent-from") ?? pick("from");
  if (!field) return [];
  const value = field.slice(field.indexOf(":") + 1).replace(/\([^()]*\)/g, " ");
  // Angle addresses when there are any (a display name may itself hold an "@"), else the bare
  // addr-specs of the list.
  const angled = [...value.matchAll(/<([^<>]*)>/g)].map((m) => m[1]!.trim());
  const bare = value.replace(/"(?:[^"\\]|\\.)*"/g, " ").split(/[,;:\s]+/)
    .filter((t) => t.includes("@"));
  return (angled.length > 0 ? angled : bare)
    .map((a) => a.toLowerCase())
    .filter((a) => a.includes("@"));
}
