// The metabase schema: the one JSON file that configures every listener, domain, limit and
// path. Unknown keys are errors (a typo must never pass silently); every limit has a sane
// default so a minimal file is a working server.
import { z } from "zod";

const port = z.number().int().min(0).max(65535).describe("TCP port; 0 picks a free port (tests)");
const tlsMode = z.enum(["none", "starttls", "implicit"]).describe(
  "none: plaintext only; starttls: plaintext, upgraded on the client's request; implicit: TLS from the first byte",
);
const listenerState = z.enum(["started", "stopped"]).describe(
  "A stopped listener stays stopped across restarts and is reported loudly by `posthorn status`",
);
const ipAddress = z.string().refine((s) => /^[0-9.]+$|:/.test(s) || s === "localhost", {
  message: "expected an IPv4 or IPv6 address",
});
const cidr = z.string().regex(
  /^[0-9a-fA-F:.]+(\/\d{1,3})?$/,
  "expected an address or CIDR range like 10.0.0.0/8",
);
const seconds = (d: number) => z.number().positive().default(d);

const listenerFields = {
  name: z.string().min(1).regex(/^[A-Za-z0-9_.-]+$/, "letters, digits, _ . - only").describe(
    "Unique across all listeners; used by `posthorn listener start|stop NAME`",
  ),
  bind: ipAddress.default("127.0.0.1").describe(
    "Address to listen on; 0.0.0.0 or :: for every interface",
  ),
  port,
  tls: tlsMode.default("none"),
  state: listenerState.default("started"),
};

export const SmtpConnector = z.strictObject({
  ...listenerFields,
  fromMustMatch: z.boolean().default(true).describe(
    "Authenticated clients: the From: (or Resent-From:) header must name addresses the account owns, as MAIL FROM must (550 5.7.1 otherwise); outbound mail is DKIM-signed for its From: domain",
  ),
  role: z.enum(["mx", "submission"]).default("mx").describe(
    "mx: accepts mail for local domains from anyone; submission: for authenticated users",
  ),
  auth: z.enum(["none", "optional", "required"]).default("optional").describe(
    "none: AUTH not offered; optional: offered; required: MAIL refused before AUTH (530 5.7.0)",
  ),
  relayNetworks: z.array(cidr).default([]).describe(
    "Client addresses allowed to relay without AUTH",
  ),
  maxMessageBytes: z.number().int().positive().default(50 * 1024 * 1024).describe(
    "SIZE advertised and enforced while streaming (552 5.3.4)",
  ),
  maxRecipients: z.number().int().positive().default(100).describe(
    "RCPT per transaction (452 4.5.3 beyond)",
  ),
  banner: z.string().max(200).default("Posthorn ESMTP").describe(
    "Text after the host name in the 220 greeting",
  ),
  commandTimeoutSeconds: seconds(300).describe(
    "Idle time between commands (RFC 5321 §4.5.3.2.7: at least 5 min)",
  ),
  dataTimeoutSeconds: seconds(600).describe("Idle time inside DATA/BDAT (RFC 5321 §4.5.3.2.6)"),
});
export type SmtpConnector = z.infer<typeof SmtpConnector>;

export const Listener = z.strictObject({
  ...listenerFields,
  idleTimeoutSeconds: seconds(600).describe("A session silent this long is closed"),
});
export type Listener = z.infer<typeof Listener>;

const engineFields = {
  enabled: z.boolean().default(true).describe("false: the engine and all its listeners are off"),
  poolSize: z.number().int().min(1).max(64).default(1).describe(
    "Workers sharing this engine's ports (reusePort)",
  ),
};

export const SmtpRoute = z.strictObject({
  domain: z.string().min(1).describe("Recipient domain, or * for every remote domain"),
  host: z.string().min(1).describe("Next hop: host name or address"),
  port: port.default(25),
  tls: z.enum(["none", "opportunistic", "required"]).default("opportunistic").describe(
    "STARTTLS toward the next hop: never, when offered, or always (else defer)",
  ),
  verifyCertificate: z.boolean().default(false).describe(
    "Refuse a TLS certificate that does not verify (otherwise it is accepted and logged)",
  ),
});

export const Smarthost = z.strictObject({
  host: z.string().min(1).describe("The relay host"),
  port: port.default(587),
  tls: z.enum(["none", "opportunistic", "required", "implicit"]).default("required").describe(
    "TLS toward the relay; AUTH is never sent without it",
  ),
  verifyCertificate: z.boolean().default(false).describe(
    "Refuse a TLS certificate that does not verify (otherwise it is accepted and logged)",
  ),
  username: z.string().nullable().default(null).describe("AUTH user name (null: no AUTH)"),
  passwordFile: z.string().nullable().default(null).describe(
    "File holding the password (never inline)",
  ),
});

export const SmtpSection = z.strictObject({
  ...engineFields,
  connectors: z.array(SmtpConnector).default([]).describe(
    "Receive connectors: any number of listeners into one transport",
  ),
  queue: z.strictObject({
    lifetimeHours: z.number().positive().default(120).describe(
      "A message undelivered this long is bounced",
    ),
    delayNoticeHours: z.number().positive().default(4).describe(
      "One delay notice (DSN) after this long",
    ),
    retryBaseSeconds: z.number().positive().default(60).describe(
      "First retry; doubles per attempt",
    ),
    retryMaxSeconds: z.number().positive().default(3600).describe("Longest wait between retries"),
    concurrency: z.number().int().positive().default(8).describe(
      "Outbound SMTP connections at once, all next hops together",
    ),
    connectionsPerHop: z.number().int().positive().default(4).describe(
      "Outbound SMTP connections at once to one next hop (a smarthost, a big provider)",
    ),
    connectTimeoutSeconds: seconds(30).describe("TCP connect to a next hop"),
    pollSeconds: seconds(30).describe("How often the queue runner looks for due entries"),
    batchSize: z.number().int().positive().default(200).describe("Due entries fetched per look"),
    recipientsPerTransaction: z.number().int().positive().default(50).describe(
      "RCPT commands in one outbound SMTP transaction",
    ),
    dnsTimeoutSeconds: seconds(10).describe("Per DNS query (MX, A, AAAA)"),
    dnsTries: z.number().int().positive().default(2).describe("DNS attempts per query"),
    unknownDomainMinutes: z.number().min(0).default(60).describe(
      "A recipient domain DNS says does not exist (NXDOMAIN) bounces (5.1.2) once DNS has said so, and the message waited, this long; until then it is retried, as a resolver cut off for a while says the same of every name",
    ),
    bounceHeadersMaxBytes: z.number().int().min(1024).default(256 * 1024).describe(
      "Most header bytes returned in a DSN with RET=HDRS (and in delay notices)",
    ),
  }).prefault({}),
  client: z.strictObject({
    // RFC 5321 §4.5.3.2: the minimum timeouts an SMTP client should wait per stage.
    greetingTimeoutSeconds: seconds(300).describe(
      "Outbound: wait for the 220 (RFC 5321 §4.5.3.2.1)",
    ),
    mailTimeoutSeconds: seconds(300).describe(
      "Outbound: MAIL, EHLO, STARTTLS, AUTH replies (§4.5.3.2.2)",
    ),
    rcptTimeoutSeconds: seconds(300).describe("Outbound: RCPT replies (§4.5.3.2.3)"),
    dataInitTimeoutSeconds: seconds(120).describe("Outbound: the 354 (§4.5.3.2.4)"),
    dataBlockTimeoutSeconds: seconds(180).describe(
      "Outbound: each write, each BDAT reply (§4.5.3.2.5)",
    ),
    dataTermTimeoutSeconds: seconds(600).describe(
      "Outbound: the reply to the final dot (§4.5.3.2.6)",
    ),
    replyLineBytes: z.number().int().min(512).default(4096).describe(
      "Longest reply line accepted from a server (RFC 5321 §4.5.3.1.5 says 512)",
    ),
    replyLines: z.number().int().positive().default(100).describe(
      "Most lines in one multi-line reply",
    ),
    mimeNestingLimit: z.number().int().positive().default(100).describe(
      "Outbound 8-bit to 7-bit downgrade (RFC 6152 §3): deepest MIME nesting walked; 8-bit data deeper is refused with 5.6.3",
    ),
  }).prefault({}),
  routes: z.array(SmtpRoute).default([]).describe("Static routes; tried before MX lookup"),
  dkim: z.array(z.strictObject({
    domain: z.string().min(1).describe("The signing domain (d=): mail From: it is signed"),
    selector: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/).describe(
      "The selector (s=): the key is published at SELECTOR._domainkey.DOMAIN",
    ),
    keyFile: z.string().min(1).describe(
      "PEM private key (RSA or Ed25519), relative to dataDir; `posthorn dkim keygen` makes one",
    ),
  })).default([]).describe(
    "DKIM keys (RFC 6376): mail leaving for a remote host is signed with the key of its From: domain or nearest parent domain, else of its envelope sender's",
  ),
  smarthost: Smarthost.nullable().default(null).describe(
    "Relay every remote message through this host (with AUTH); null: MX lookup",
  ),
  maxHops: z.number().int().positive().default(50).describe(
    "Received: headers before a loop is declared",
  ),
  maxBadCommands: z.number().int().positive().default(20).describe(
    "Error replies (4xx/5xx) in one SMTP session before the client is disconnected",
  ),
});

const listenerEngine = z.strictObject({
  ...engineFields,
  listeners: z.array(Listener).default([]).describe("Listeners of this engine"),
});

export const Domain = z.strictObject({
  name: z.string().min(1).regex(/^[a-z0-9.-]+$/, "lower-case domain name").describe(
    "A local mail domain",
  ),
  catchAll: z.string().nullable().default(null).describe(
    "Local address receiving mail for unknown users",
  ),
});

export const Metabase = z.strictObject({
  $schema: z.string().optional(),
  server: z.strictObject({
    hostname: z.string().min(1).default("localhost").describe(
      "Name used in banners, Received: and HELO",
    ),
    dataDir: z.string().default(".").describe("Relative to the metabase file's folder"),
    postmaster: z.string().regex(/^[^\s<>@]+@[^\s<>@]+$/, "an address like admin@example.com")
      .nullable().default(null).describe(
        "Receives mail for postmaster@<any local domain> and <postmaster> (RFC 5321 §4.5.1) where no user or alias postmaster@ that domain exists; null: the domain's catch-all, else its first enabled user in creation order",
      ),
  }).prefault({}),
  tls: z.strictObject({
    certFile: z.string().nullable().default(null).describe(
      "PEM; null: a self-signed certificate is generated",
    ),
    keyFile: z.string().nullable().default(null).describe("PEM private key matching certFile"),
    checkSeconds: z.number().min(0).default(60).describe(
      "How often certFile and keyFile are checked for a change (a renewal), applied as on SIGHUP; 0: only on SIGHUP",
    ),
  }).prefault({}),
  auth: z.strictObject({
    plaintext: z.enum(["tls", "tls-or-loopback", "always"]).default("tls-or-loopback").describe(
      "Where passwords may be sent in clear: only inside TLS, also from loopback, or anywhere",
    ),
    failuresPerMinute: z.number().int().positive().default(5).describe(
      "Per client IP, then throttled",
    ),
    // Optional after the default so option objects written before these settings still type.
    accountFailuresPerMinute: z.number().int().positive().default(10).optional().describe(
      "Per account from any IP within a sliding minute, then that account is throttled; it lifts a minute after failures stop",
    ),
    accountTrustSeconds: z.number().int().min(0).default(86400).optional().describe(
      "A client IP that logged in to an account is exempt from that account's throttle this long (0: never), so failures from elsewhere cannot lock the owner out",
    ),
    failureDelayMs: z.number().int().min(0).default(1000).describe(
      "Each failed login is answered this much later",
    ),
    credentialCacheSeconds: z.number().min(0).default(60).describe(
      "A verified password is remembered this long (argon2id costs ~110 ms and 64 MiB a check)",
    ),
    maxHashesInFlight: z.number().int().positive().default(4).describe(
      "argon2id checks running at once",
    ),
    hashWaitMs: z.number().int().positive().default(5000).describe(
      "How long a login waits for a free hashing slot before a temporary failure",
    ),
  }).prefault({}),
  domains: z.array(Domain).default([]).describe("Local mail domains (posthorn domain add|remove)"),
  store: z.strictObject({
    dir: z.string().default("store").describe("SQLite database and page file; relative to dataDir"),
    durability: z.enum(["always", "group", "off"]).default("group").describe(
      "always: fsync each delivery; group: share fsyncs between concurrent deliveries; off: tests only",
    ),
    groupCommitMs: z.number().min(0).max(100).default(0).describe(
      "Extra wait before a group commit; 0: batch whatever arrived while the disk was busy",
    ),
    pageBytes: z.number().int().refine(
      (n) => n >= 512 && (n & (n - 1)) === 0,
      "a power of two ≥ 512",
    ).default(4096).describe("Page size of the page file; fixed when the store is created"),
    quotaBytes: z.number().int().positive().nullable().default(null).describe(
      "Default mailbox quota in bytes (null: none); per-user quotas override it",
    ),
    quotaMessages: z.number().int().positive().nullable().default(null).describe(
      "Default mailbox quota in messages (null: none)",
    ),
    maxUploads: z.number().int().positive().default(1000).describe(
      "Messages being received at once, across every engine",
    ),
    indexBytes: z.number().int().min(0).default(16 * 1024).describe(
      "Text per message in the full-text index (decoded text parts; attachments by name); 0: none",
    ),
    indexBacklog: z.number().int().min(128).default(16384).describe(
      "Messages waiting for the full-text index before it is built even while mail keeps arriving (a burst is taken at full speed and indexed once quiet; a search indexes its folder first)",
    ),
    maxPrefixBytes: z.number().int().positive().default(16 * 1024).describe(
      "Largest per-recipient prefix (Return-Path, Received) added at delivery",
    ),
    maxImportMessageBytes: z.number().int().min(1024 * 1024).default(100 * 1024 * 1024).describe(
      "Largest message `posthorn import` takes (an mbox message is held in memory while it is stored); a larger one stops the import with an error",
    ),
    inlineBytes: z.number().int().min(0).max(1024 * 1024).default(8 * 1024).describe(
      "Bodies up to this size are stored inside the database (one fsync per commit, no page-file I/O); 0: every body in the page file",
    ),
  }).prefault({}),
  ipc: z.strictObject({
    heapBytes: z.number().int().min(1 << 20).default(64 * 1024 * 1024).describe(
      "Shared-memory heap between the engines and the store (full: temporary failures, never growth)",
    ),
    ringSlots: z.number().int().min(16).default(1024).describe(
      "Slots per ring (entries in flight per binding); a slot is 256 bytes and carries a small call or result itself",
    ),
    chunkBytes: z.number().int().min(1024).default(64 * 1024).describe(
      "Bytes per chunk of a streamed body",
    ),
    streamWindowChunks: z.number().int().min(1).max(1024).default(8).describe(
      "Stream chunks in flight per store stream (credit window): bounds memory per stream",
    ),
    callTimeoutMs: z.number().int().min(1000).default(120_000).describe(
      "A store call (or stream chunk) not answered in this time fails with a temporary error, so a wedged store handler never hangs a session",
    ),
  }).prefault({}),
  limits: z.strictObject({
    lineBytes: z.number().int().min(512).default(4096).describe("Longest command line accepted"),
    dataLineBytes: z.number().int().min(1000).default(64 * 1024).describe(
      "Longest line inside a message",
    ),
    connectionsPerIp: z.number().int().positive().default(20).describe(
      "Open sessions per client address, per listener",
    ),
    maxConnections: z.number().int().positive().default(2000).describe("Per engine worker"),
    pipelineDepth: z.number().int().positive().default(100).describe(
      "Commands buffered before reading stops",
    ),
    connectionBufferBytes: z.number().int().min(16 * 1024).default(256 * 1024).describe(
      "Bytes buffered per connection in each direction before backpressure applies",
    ),
  }).prefault({}),
  supervisor: z.strictObject({
    restartMinMs: z.number().int().min(0).default(100).describe(
      "First restart delay of a crashed worker; doubles per crash",
    ),
    restartMaxMs: z.number().int().positive().default(30_000).describe("Longest restart delay"),
    shutdownGraceSeconds: z.number().positive().default(10).describe(
      "Time sessions get to finish their transaction at shutdown or when their listener changes",
    ),
    healthIntervalSeconds: z.number().positive().default(60).describe(
      "A health line in the event log this often",
    ),
    storeWatchdogSeconds: z.number().min(0).default(30).describe(
      "The store must answer a ping within this long, twice running, or it is restarted (0: off)",
    ),
  }).prefault({}),
  logging: z.strictObject({
    level: z.enum(["debug", "info", "warn", "error"]).default("info").describe(
      "Least severe event logged",
    ),
    file: z.string().nullable().default("log/events.jsonl").describe(
      "Event log as JSON lines, relative to dataDir (null: none)",
    ),
    stderr: z.enum(["pretty", "json", "off"]).default("pretty").describe(
      "The event log on standard error",
    ),
  }).prefault({}),
  smtp: SmtpSection.prefault({}),
  pop3: listenerEngine.prefault({}),
  imap: listenerEngine.prefault({}),
  nntp: listenerEngine.prefault({}),
  http: listenerEngine.prefault({}),
}).superRefine((mb, ctx) => {
  // Two listeners on one address and port can never both bind; say so before serve does.
  const seen = new Map<string, string>();
  const names = new Set<string>();
  const visit = (l: { name: string; bind: string; port: number }, path: (string | number)[]) => {
    if (names.has(l.name)) {
      ctx.addIssue({
        code: "custom",
        path: [...path, "name"],
        message: `listener name "${l.name}" is used twice`,
      });
    }
    names.add(l.name);
    if (l.port === 0) return;
    const wildcard = l.bind === "0.0.0.0" || l.bind === "::";
    for (const [key, other] of seen) {
      const [b, p] = [
        key.slice(0, key.lastIndexOf(":")),
        Number(key.slice(key.lastIndexOf(":") + 1)),
      ];
      if (p === l.port && (b === l.bind || wildcard || b === "0.0.0.0" || b === "::")) {
        ctx.addIssue({
          code: "custom",
          path: [...path, "port"],
          message: `port ${l.port} on ${l.bind} is already used by listener "${other}"`,
        });
      }
    }
    seen.set(`${l.bind}:${l.port}`, l.name);
  };
  mb.smtp.connectors.forEach((c, i) => visit(c, ["smtp", "connectors", i]));
  for (const engine of ["pop3", "imap", "nntp", "http"] as const) {
    mb[engine].listeners.forEach((l, i) => visit(l, [engine, "listeners", i]));
  }
  const domains = new Set<string>();
  mb.domains.forEach((d, i) => {
    if (domains.has(d.name)) {
      ctx.addIssue({
        code: "custom",
        path: ["domains", i, "name"],
        message: `domain ${d.name} is listed twice`,
      });
    }
    domains.add(d.name);
  });
});

export type Metabase = z.infer<typeof Metabase>;
export type MetabaseInput = z.input<typeof Metabase>;
export type EngineName = "smtp" | "pop3" | "imap" | "nntp" | "http";
export const ENGINES: EngineName[] = ["smtp", "pop3", "imap", "nntp", "http"];
