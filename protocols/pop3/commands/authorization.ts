// AUTHORIZATION state (RFC 1939 §4, §7): CAPA, USER/PASS, AUTH PLAIN and LOGIN (RFC 5034, with
// the initial response), STLS (RFC 2595 §4) and QUIT; then the maildrop lock that opens
// TRANSACTION.
import { type AuthResult, type MailboxLock, StoreError } from "../../../ipc/store-api.ts";
import {
  decodeLoginField,
  decodePlainBase64,
  latin1,
  LOGIN_PROMPTS,
  plaintextAllowed,
  SaslError,
} from "../../wire/mod.ts";
import { capabilities, saslMechanisms } from "../capabilities.ts";
import { listMaildrop, Maildrop } from "../maildrop.ts";
import type { Pop3Command } from "../parser.ts";
import { code, CRLF, err, ok, storeFailure } from "../replies.ts";
import type { Outcome, Pop3Session } from "../session.ts";

/** Commands that exist but only in TRANSACTION: wrong state, not unknown. */
const TRANSACTION_ONLY = new Set(["STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "RSET", "NOOP"]);

export function handleAuthorization(s: Pop3Session, cmd: Pop3Command): Outcome {
  // RFC 1939 §7: PASS only "immediately after a successful USER command".
  if (cmd.verb !== "PASS" && cmd.verb !== "USER") s.pendingUser = null;
  switch (cmd.verb) {
    case "CAPA":
      return capa(s);
    case "USER":
      return user(s, cmd);
    case "PASS":
      return pass(s, cmd);
    case "AUTH":
      return auth(s, cmd);
    case "STLS":
      return stls(s);
    case "QUIT":
      s.reply(ok("Posthorn POP3 server signing off"));
      s.conn.close();
      return;
    case "APOP":
      return s.reply(err("APOP is not supported; use USER/PASS or AUTH PLAIN"));
    default:
      if (TRANSACTION_ONLY.has(cmd.verb)) {
        return s.reply(err(`${cmd.verb} is only valid after logging in`));
      }
      return s.reply(err(`Unknown command ${cmd.verb}`));
  }
}

export function capa(s: Pop3Session): void {
  const caps = capabilities({
    authorization: s.state === "authorization",
    plaintextAllowed: plaintextAllowed(s.conn, s.config().auth.plaintext),
    stlsAvailable: s.deps.stls && !s.conn.secure,
  });
  s.reply(`+OK Capability list follows${CRLF}${caps.join(CRLF)}${CRLF}.${CRLF}`);
}

/** RFC 2595 §2.1 / RFC 8314: no passwords in clear unless the metabase allows it here. */
function refusePlaintext(s: Pop3Session): boolean {
  if (plaintextAllowed(s.conn, s.config().auth.plaintext)) return false;
  s.reply(
    err(
      `${code.auth} Plaintext authentication is not allowed without TLS${
        s.deps.stls && !s.conn.secure ? " (use STLS)" : ""
      }`,
    ),
  );
  return true;
}

function user(s: Pop3Session, cmd: Pop3Command): void {
  if (refusePlaintext(s)) return;
  const name = cmd.rest.trim();
  if (name === "") return s.reply(err("USER needs a user name"));
  s.pendingUser = name;
  s.reply(ok("Send PASS"));
}

function pass(s: Pop3Session, cmd: Pop3Command): Outcome {
  const name = s.pendingUser;
  s.pendingUser = null; // RFC 1939 §7: a failed PASS means starting again with USER
  if (name === null) return s.reply(err("Send USER first"));
  if (refusePlaintext(s)) return;
  // RFC 1939 §7: the password is the rest of the line; it may contain spaces.
  if (cmd.rest === "") return s.reply(err("PASS needs a password"));
  return login(s, name, cmd.rest);
}

function auth(s: Pop3Session, cmd: Pop3Command): Outcome {
  const allowed = plaintextAllowed(s.conn, s.config().auth.plaintext);
  const [mechanism, initial] = cmd.args;
  if (mechanism === undefined) {
    // Listing mechanisms for AUTH without arguments (RFC 1734 practice, Outlook relies on it).
    const mechs = saslMechanisms(allowed);
    return s.reply(`+OK${CRLF}${mechs.map((m) => m + CRLF).join("")}.${CRLF}`);
  }
  const mech = mechanism.toUpperCase();
  if (mech !== "PLAIN" && mech !== "LOGIN") {
    return s.reply(err(`Unsupported SASL mechanism ${mechanism}`));
  }
  if (refusePlaintext(s)) return;
  if (cmd.args.length > 2) return s.reply(err("AUTH takes a mechanism and an initial response"));
  // RFC 5034 §4: an initial response may come with the command ("=" is an empty one).
  if (mech === "PLAIN") {
    if (initial !== undefined) return plainResponse(s, initial);
    return challenge(s, "", plainResponse); // an empty server challenge
  }
  if (initial !== undefined) return loginUser(s, initial);
  return challenge(s, LOGIN_PROMPTS.username, loginUser);
}

/** Sends a "+ " continuation and waits for the client's response line. */
function challenge(
  s: Pop3Session,
  text: string,
  next: (s: Pop3Session, response: string) => Outcome,
): void {
  s.pendingSasl = next;
  s.reply(`+ ${text}${CRLF}`);
}

/** The line answering a "+ " challenge: a base64 response or "*" to cancel (RFC 5034 §4). */
export function handleSaslResponse(s: Pop3Session, line: Uint8Array): Outcome {
  const next = s.pendingSasl;
  s.pendingSasl = null;
  return next?.(s, latin1(line));
}

function saslFailure(s: Pop3Session, e: unknown, mechanism: string): void {
  if (e instanceof SaslError && e.reason === "cancelled") {
    return s.reply(err("Authentication cancelled"));
  }
  return s.reply(err(`Malformed AUTH ${mechanism} response: ${(e as Error).message}`));
}

function loginUser(s: Pop3Session, text: string): Outcome {
  let username: string;
  try {
    username = decodeLoginField(text, "user name");
  } catch (e) {
    return saslFailure(s, e, "LOGIN");
  }
  return challenge(s, LOGIN_PROMPTS.password, (s, response) => {
    let password: string;
    try {
      password = decodeLoginField(response, "password");
    } catch (e) {
      return saslFailure(s, e, "LOGIN");
    }
    return login(s, username, password);
  });
}

function plainResponse(s: Pop3Session, text: string): Outcome {
  let creds;
  try {
    creds = decodePlainBase64(text);
  } catch (e) {
    return saslFailure(s, e, "PLAIN");
  }
  if (creds.authzid !== "" && creds.authzid !== creds.authcid) {
    return s.reply(err(`${code.auth} Acting as another user is not permitted`));
  }
  return login(s, creds.authcid, creds.password);
}

/** Verify the password, then lock the maildrop (RFC 1939 §8) and enter TRANSACTION. */
async function login(s: Pop3Session, username: string, password: string): Promise<void> {
  const { store } = s.deps;
  let result: AuthResult;
  try {
    result = await store.call("auth.verify", {
      username,
      password,
      remoteIp: s.conn.remoteAddress,
      protocol: "pop3",
    });
  } catch (e) {
    s.log.warn("auth.store_failed", { conn: s.conn.id, error: e as Error });
    return s.reply(storeFailure(e, "Authentication"));
  }
  if (s.closed) return;
  if (!result.ok) {
    s.log.info("auth.failed", {
      conn: s.conn.id,
      remote: s.conn.remoteAddress,
      user: username,
      reason: result.reason,
    });
    // Every failure answers late: guessing passwords over one connection stays slow.
    const delay = s.config().auth.failureDelayMs;
    if (delay > 0) await Bun.sleep(delay);
    if (s.closed) return;
    if (result.reason === "throttled") {
      return s.reply(err(`${code.auth} Too many failed logins; try again later`));
    }
    if (result.reason === "disabled") return s.reply(err(`${code.auth} Account disabled`));
    return s.reply(err(`${code.auth} Invalid user name or password`));
  }
  const account = result.account;
  let lock: MailboxLock;
  try {
    lock = await store.call("mailbox.lock", {
      userId: account.userId,
      folder: "INBOX",
      owner: s.lockOwner,
    });
  } catch (e) {
    s.log.info("maildrop.lock_failed", {
      conn: s.conn.id,
      user: account.address,
      error: e as Error,
    });
    // Given up on our side (deadline, "unavailable"): the store may still take the lock once
    // it gets to the call. Let go of whatever this session holds, in the same order.
    if (e instanceof StoreError && e.code === "unavailable") {
      store.call("mailbox.unlock", { owner: s.lockOwner }).catch(() => {});
    }
    return s.reply(storeFailure(e, "Opening the maildrop"));
  }
  let messages;
  try {
    messages = s.closed ? [] : await listMaildrop(store, account.userId, lock, () => s.closed);
  } catch (e) {
    s.log.info("maildrop.list_failed", {
      conn: s.conn.id,
      user: account.address,
      error: e as Error,
    });
    await s.releaseLock(lock.lockId);
    return s.reply(storeFailure(e, "Opening the maildrop"));
  }
  if (s.closed) {
    // The peer left while we were locking: let go at once, nothing else happened.
    await s.releaseLock(lock.lockId);
    return;
  }
  s.account = account;
  s.maildrop = new Maildrop(lock, messages);
  s.state = "transaction";
  const { count, size } = s.maildrop.stat();
  s.log.info("auth.ok", { conn: s.conn.id, user: account.address, messages: count });
  s.reply(ok(`Logged in, ${count} messages (${size} octets)`));
}

async function stls(s: Pop3Session): Promise<void> {
  if (!s.deps.stls) return s.reply(err("STLS is not offered on this port"));
  if (s.conn.secure) return s.reply(err("TLS is already active"));
  s.reply(ok("Begin TLS negotiation"));
  // RFC 2595 §4: the client starts over after TLS: forget USER and anything pipelined.
  s.discardBufferedInput();
  s.pendingUser = null;
  try {
    await s.conn.startTls();
  } catch (e) {
    s.log.info("stls.failed", { conn: s.conn.id, error: (e as Error).message });
    s.conn.close();
  }
}
