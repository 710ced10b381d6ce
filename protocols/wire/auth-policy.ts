// Where a password may travel in clear: the metabase's auth.plaintext rule applied to one
// connection (RFC 2595 §2.1, RFC 8314 §3: cleartext passwords only inside TLS by default).
import type { Metabase } from "../../metabase/schema.ts";
import type { Connection } from "./types.ts";

export function plaintextAllowed(
  conn: Pick<Connection, "secure" | "loopback">,
  policy: Metabase["auth"]["plaintext"],
): boolean {
  switch (policy) {
    case "always":
      return true;
    case "tls-or-loopback":
      return conn.secure || conn.loopback;
    case "tls":
      return conn.secure;
    default:
      return false; // an unknown policy never opens the door
  }
}

/** 127.0.0.0/8, ::1, and IPv4-mapped loopback. */
export function isLoopbackAddress(address: string): boolean {
  const a = address.toLowerCase();
  if (a === "::1" || a === "0:0:0:0:0:0:0:1") return true;
  const v4 = a.startsWith("::ffff:") ? a.slice(7) : a;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4);
}
