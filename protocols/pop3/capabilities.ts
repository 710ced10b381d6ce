// CAPA (RFC 2449 §5): what this server supports, as seen from the session's current state.
// Password mechanisms are listed only where a password may travel (auth.plaintext), and STLS
// only where it can still be used (RFC 2595 §4).

export interface CapaContext {
  authorization: boolean;
  plaintextAllowed: boolean;
  stlsAvailable: boolean;
}

export function capabilities(c: CapaContext): string[] {
  const caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"];
  if (c.authorization) {
    if (c.plaintextAllowed) caps.push("USER", `SASL ${saslMechanisms(true).join(" ")}`);
    if (c.stlsAvailable) caps.push("STLS");
  }
  caps.push("IMPLEMENTATION Posthorn");
  return caps;
}

/** SASL mechanisms offered (RFC 5034 §4): both carry the password, so only where plaintext
 * is allowed. LOGIN is not standard (draft-murchison-sasl-login) but Outlook-era clients use it. */
export function saslMechanisms(plaintextAllowed: boolean): string[] {
  return plaintextAllowed ? ["PLAIN", "LOGIN"] : [];
}
