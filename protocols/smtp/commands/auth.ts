// AUTH (RFC 4954) with the PLAIN (RFC 4616) and LOGIN mechanisms. Offered and accepted only
// where a password may travel (metabase auth.plaintext); credentials are checked by the store,
// which also throttles per IP and account. A failure is answered after auth.failureDelayMs.
import { decodeLoginField, decodePlainBase64, LOGIN_PROMPTS, SaslError } from "../../wire/mod.ts";
import { plaintextAllowed } from "../../wire/mod.ts";
import type { SmtpCommand } from "../parser.ts";
import { reply } from "../reply.ts";
import type { SmtpSession } from "../session.ts";

export function authStart(
  s: SmtpSession,
  cmd: Extract<SmtpCommand, { verb: "AUTH" }>,
): void | Promise<void> {
  if (s.connector.auth === "none") return s.send(reply(502, "5.5.1", "AUTH not available"));
  if (!s.esmtp) return s.send(reply(503, "5.5.1", "Send EHLO first"));
  // RFC 4954 §4: not twice, and not inside a mail transaction.
  if (s.account) return s.send(reply(503, "5.5.1", "Already authenticated"));
  if (s.tx) return s.send(reply(503, "5.5.1", "AUTH not allowed during a mail transaction"));
  if (!plaintextAllowed(s.conn, s.config.auth.plaintext)) {
    // RFC 4954 §6: 538 5.7.11 encryption required for the requested mechanism.
    return s.send(
      reply(538, "5.7.11", "Encryption required for requested authentication mechanism"),
    );
  }
  switch (cmd.mechanism) {
    case "PLAIN":
      if (cmd.initialResponse !== null) return plain(s, cmd.initialResponse);
      s.send(reply(334, null, "")); // RFC 4954 §4: an empty challenge
      return s.enterAuth((line) => plain(s, line));
    case "LOGIN":
      if (cmd.initialResponse !== null) return loginUser(s, cmd.initialResponse);
      s.send(reply(334, null, LOGIN_PROMPTS.username));
      return s.enterAuth((line) => loginUser(s, line));
    default:
      return s.send(reply(504, "5.5.4", "Unrecognized authentication type"));
  }
}

function plain(s: SmtpSession, response: string): void | Promise<void> {
  try {
    const creds = decodePlainBase64(response);
    // Acting as someone else (a non-empty, different authzid) is not supported.
    if (creds.authzid !== "" && creds.authzid !== creds.authcid) {
      return fail(s, "authorization identity not allowed");
    }
    return verify(s, creds.authcid, creds.password);
  } catch (err) {
    return saslError(s, err);
  }
}

function loginUser(s: SmtpSession, response: string): void {
  try {
    const username = decodeLoginField(response, "user name");
    s.send(reply(334, null, LOGIN_PROMPTS.password));
    s.enterAuth((line) => loginPassword(s, username, line));
  } catch (err) {
    saslError(s, err);
  }
}

function loginPassword(s: SmtpSession, username: string, response: string): void | Promise<void> {
  try {
    return verify(s, username, decodeLoginField(response, "password"));
  } catch (err) {
    return saslError(s, err);
  }
}

function saslError(s: SmtpSession, err: unknown): void {
  if (err instanceof SaslError && err.reason === "cancelled") {
    return s.send(reply(501, "5.0.0", "Authentication cancelled")); // RFC 4954 §4
  }
  const why = err instanceof Error ? err.message : "malformed response";
  return s.send(reply(501, "5.5.2", `Cannot decode response: ${why}`));
}

async function verify(s: SmtpSession, username: string, password: string): Promise<void> {
  let result;
  try {
    result = await s.store.call("auth.verify", {
      username,
      password,
      remoteIp: s.conn.remoteAddress,
      protocol: "smtp",
    });
  } catch (err) {
    s.log.warn("smtp.auth_unavailable", { conn: s.conn.id, error: err as Error });
    return s.send(reply(454, "4.7.0", "Temporary authentication failure")); // RFC 4954 §6
  }
  if (result.ok) {
    s.account = result.account;
    s.log.info("smtp.auth_ok", {
      conn: s.conn.id,
      ip: s.conn.remoteAddress,
      user: result.account.address,
    });
    return s.send(reply(235, "2.7.0", "Authentication successful"));
  }
  s.log.info("smtp.auth_failed", {
    conn: s.conn.id,
    ip: s.conn.remoteAddress,
    user: username.slice(0, 100),
    reason: result.reason,
  });
  if (result.reason === "throttled") {
    return s.send(reply(454, "4.7.0", "Too many authentication failures, try again later"));
  }
  return fail(s, result.reason);
}

/** RFC 4954 §6: 535 5.7.8 after a delay that slows password guessing down. */
async function fail(s: SmtpSession, why: string): Promise<void> {
  s.log.debug("smtp.auth_refused", { conn: s.conn.id, why });
  await Bun.sleep(s.config.auth.failureDelayMs);
  s.send(reply(535, "5.7.8", "Authentication credentials invalid"));
}
