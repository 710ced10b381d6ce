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
  name: z.string().min(1).regex(/^[A-Za-z0-9_.-]+$/, "letters, digits, _ . - only"),
  bind: ipAddress.default("127.0.0.1"),
  port,
  tls: tlsMode.default("none"),
  state: listenerState.default("started"),
};

export const SmtpConnector = z.strictObject({
  ...listenerFields,
  role: z.enum(["mx", "submission"]).default("mx").describe(
    "mx: accepts mail for local domains from anyone; submission: for authenticated users",
  ),
  auth: z.enum(["none", "optional", "required"]).default("optional"),
  relayNetworks: z.array(cidr).default([]).describe(
    "Client addresses allowed to relay without AUTH",
  ),
  maxMessageBytes: z.number().int().positive().default(50 * 1024 * 1024),
  maxRecipients: z.number().int().positive().default(100),
  banner: z.string().max(200).default("Posthorn ESMTP"),
  commandTimeoutSeconds: seconds(300), // RFC 5321 §4.5.3.2.7: at least 5 minutes
  dataTimeoutSeconds: seconds(600), // RFC 5321 §4.5.3.2.6: 10 minutes
});
export type SmtpConnector = z.infer<typeof SmtpConnector>;

export const Listener = z.strictObject({
  ...listenerFields,
  idleTimeoutSeconds: seconds(600),
});
export type Listener = z.infer<typeof Listener>;

const engineFields = {
  enabled: z.boolean().default(true),
  poolSize: z.number().int().min(1).max(64).default(1).describe(
    "Workers sharing this engine's ports (reusePort)",
  ),
};

export const SmtpRoute = z.strictObject({
  domain: z.string().min(1).describe("Recipient domain, or * for every remote domain"),
  host: z.string().min(1),
  port: port.default(25),
  tls: z.enum(["none", "opportunistic", "required"]).default("opportunistic"),
  verifyCertificate: z.boolean().default(false).describe(
    "Refuse a TLS certificate that does not verify (otherwise it is accepted and logged)",
  ),
});

export const Smarthost = z.strictObject({
  host: z.string().min(1),
  port: port.default(587),
  tls: z.enum(["none", "opportunistic", "required", "implicit"]).default("required"),
  verifyCertificate: z.boolean().default(false).describe(
    "Refuse a TLS certificate that does not verify (otherwise it is accepted and logged)",
  ),
  username: z.string().nullable().default(null),
  passwordFile: z.string().nullable().default(null).describe(
    "File holding the password (never inline)",
  ),
});

export const SmtpSection = z.strictObject({
  ...engineFields,
  connectors: z.array(SmtpConnector).default([]),
  queue: z.strictObject({
    lifetimeHours: z.number().positive().default(120),
    delayNoticeHours: z.number().positive().default(4),
    retryBaseSeconds: z.number().positive().default(60),
    retryMaxSeconds: z.number().positive().default(3600),
    concurrency: z.number().int().positive().default(8),
    connectTimeoutSeconds: seconds(30),
    pollSeconds: seconds(30).describe("How often the queue runner looks for due entries"),
    batchSize: z.number().int().positive().default(200).describe("Due entries fetched per look"),
    recipientsPerTransaction: z.number().int().positive().default(50).describe(
      "RCPT commands in one outbound SMTP transaction",
    ),
    dnsTimeoutSeconds: seconds(10),
    dnsTries: z.number().int().positive().default(2),
    bounceHeadersMaxBytes: z.number().int().min(1024).default(256 * 1024).describe(
      "Most header bytes returned in a DSN with RET=HDRS (and in delay notices)",
    ),
  }).prefault({}),
  client: z.strictObject({
    // RFC 5321 §4.5.3.2: the minimum timeouts an SMTP client should wait per stage.
    greetingTimeoutSeconds: seconds(300), // §4.5.3.2.1
    mailTimeoutSeconds: seconds(300), // §4.5.3.2.2 (also EHLO, STARTTLS, AUTH, RSET, QUIT)
    rcptTimeoutSeconds: seconds(300), // §4.5.3.2.3
    dataInitTimeoutSeconds: seconds(120), // §4.5.3.2.4
    dataBlockTimeoutSeconds: seconds(180), // §4.5.3.2.5 (each write, each BDAT reply)
    dataTermTimeoutSeconds: seconds(600), // §4.5.3.2.6
    replyLineBytes: z.number().int().min(512).default(4096).describe(
      "Longest reply line accepted from a server (RFC 5321 §4.5.3.1.5 says 512)",
    ),
    replyLines: z.number().int().positive().default(100).describe(
      "Most lines in one multi-line reply",
    ),
  }).prefault({}),
  routes: z.array(SmtpRoute).default([]).describe("Static routes; tried before MX lookup"),
  smarthost: Smarthost.nullable().default(null),
  maxHops: z.number().int().positive().default(50).describe(
    "Received: headers before a loop is declared",
  ),
  maxBadCommands: z.number().int().positive().default(20).describe(
    "Error replies (4xx/5xx) in one SMTP session before the client is disconnected",
  ),
});

const listenerEngine = z.strictObject({
  ...engineFields,
  listeners: z.array(Listener).default([]),
});

export const Domain = z.strictObject({
  name: z.string().min(1).regex(/^[a-z0-9.-]+$/, "lower-case domain name"),
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
    keyFile: z.string().nullable().default(null),
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
    failureDelayMs: z.number().int().min(0).default(1000),
    credentialCacheSeconds: z.number().min(0).default(60),
    maxHashesInFlight: z.number().int().positive().default(4),
    hashWaitMs: z.number().int().positive().default(5000).describe(
      "How long a login waits for a free hashing slot before a temporary failure",
    ),
  }).prefault({}),
  domains: z.array(Domain).default([]),
  store: z.strictObject({
    dir: z.string().default("store"),
    durability: z.enum(["always", "group", "off"]).default("group").describe(
      "always: fsync each delivery; group: share fsyncs between concurrent deliveries; off: tests only",
    ),
    groupCommitMs: z.number().min(0).max(100).default(0).describe(
      "Extra wait before a group commit; 0: batch whatever arrived while the disk was busy",
    ),
    pageBytes: z.number().int().refine(
      (n) => n >= 512 && (n & (n - 1)) === 0,
      "a power of two ≥ 512",
    ).default(
      4096,
    ),
    quotaBytes: z.number().int().positive().nullable().default(null),
    quotaMessages: z.number().int().positive().nullable().default(null),
    maxUploads: z.number().int().positive().default(1000).describe(
      "Messages being received at once, across every engine",
    ),
    indexBytes: z.number().int().min(0).default(64 * 1024).describe(
      "Bytes at the start of each message kept for the full-text index",
    ),
    maxPrefixBytes: z.number().int().positive().default(16 * 1024).describe(
      "Largest per-recipient prefix (Return-Path, Received) added at delivery",
    ),
  }).prefault({}),
  ipc: z.strictObject({
    heapBytes: z.number().int().min(1 << 20).default(64 * 1024 * 1024),
    ringSlots: z.number().int().min(16).default(1024),
    chunkBytes: z.number().int().min(1024).default(64 * 1024),
    streamWindowChunks: z.number().int().min(1).max(1024).default(8).describe(
      "Stream chunks in flight per store stream (credit window): bounds memory per stream",
    ),
  }).prefault({}),
  limits: z.strictObject({
    lineBytes: z.number().int().min(512).default(4096).describe("Longest command line accepted"),
    dataLineBytes: z.number().int().min(1000).default(64 * 1024).describe(
      "Longest line inside a message",
    ),
    connectionsPerIp: z.number().int().positive().default(20),
    maxConnections: z.number().int().positive().default(2000).describe("Per engine worker"),
    pipelineDepth: z.number().int().positive().default(100).describe(
      "Commands buffered before reading stops",
    ),
    connectionBufferBytes: z.number().int().min(16 * 1024).default(256 * 1024).describe(
      "Bytes buffered per connection in each direction before backpressure applies",
    ),
  }).prefault({}),
  supervisor: z.strictObject({
    restartMinMs: z.number().int().min(0).default(100),
    restartMaxMs: z.number().int().positive().default(30_000),
    shutdownGraceSeconds: z.number().positive().default(10),
    healthIntervalSeconds: z.number().positive().default(60),
    storeWatchdogSeconds: z.number().min(0).default(30).describe(
      "The store must answer a ping within this long, twice running, or it is restarted (0: off)",
    ),
  }).prefault({}),
  logging: z.strictObject({
    level: z.enum(["debug", "info", "warn", "error"]).default("info"),
    file: z.string().nullable().default("log/events.jsonl"),
    stderr: z.enum(["pretty", "json", "off"]).default("pretty"),
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
