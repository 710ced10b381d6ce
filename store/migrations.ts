// The SQLite schema as a list of versioned migrations. `PRAGMA user_version` records how many
// have run; a migration is only ever appended, never edited once released.

export const MIGRATIONS: readonly string[] = [
  // 1: accounts, folders, bodies, messages, queue, free-space map
  `
  CREATE TABLE meta(key TEXT PRIMARY KEY, value ANY) WITHOUT ROWID;
  CREATE TABLE users(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    address TEXT NOT NULL UNIQUE,
    local TEXT NOT NULL,
    domain TEXT NOT NULL,
    display_name TEXT NOT NULL DEFAULT '',
    password_hash TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    quota_bytes INTEGER,
    quota_messages INTEGER,
    used_bytes INTEGER NOT NULL DEFAULT 0,
    used_messages INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
  );
  CREATE INDEX users_local ON users(local);
  -- kind 'alias': address forwards to target; kind 'list': target is one member
  CREATE TABLE aliases(
    address TEXT NOT NULL,
    target TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('alias', 'list')),
    PRIMARY KEY (address, target)
  ) WITHOUT ROWID;
  -- owner_id NULL: a public folder (shared by IMAP and NNTP)
  CREATE TABLE folders(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    owner_id INTEGER,
    name TEXT NOT NULL,
    special_use TEXT,
    uid_validity INTEGER NOT NULL,
    uid_next INTEGER NOT NULL DEFAULT 1,
    highest_modseq INTEGER NOT NULL DEFAULT 1,
    address TEXT UNIQUE,
    newsgroup TEXT UNIQUE,
    article_next INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL
  );
  CREATE UNIQUE INDEX folders_owner_name ON folders(ifnull(owner_id, 0), name);
  CREATE TABLE subscriptions(
    user_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (user_id, name)
  ) WITHOUT ROWID;
  -- identifier: a user's address, "anyone" (every user) or "anonymous" (no login)
  CREATE TABLE acl(
    folder_id INTEGER NOT NULL,
    identifier TEXT NOT NULL,
    rights TEXT NOT NULL,
    PRIMARY KEY (folder_id, identifier)
  ) WITHOUT ROWID;
  CREATE TABLE bodies(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    refcount INTEGER NOT NULL,
    extents TEXT NOT NULL,
    envelope TEXT,
    structure TEXT,
    created_at INTEGER NOT NULL
  );
  CREATE INDEX bodies_sha ON bodies(sha256);
  CREATE TABLE messages(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    folder_id INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    body_id INTEGER NOT NULL,
    prefix BLOB,
    size INTEGER NOT NULL,
    flags TEXT NOT NULL DEFAULT '',
    internal_date INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    article INTEGER,
    message_id TEXT,
    origin TEXT,
    UNIQUE (folder_id, uid)
  );
  CREATE INDEX messages_body ON messages(body_id);
  CREATE INDEX messages_msgid ON messages(message_id);
  CREATE UNIQUE INDEX messages_article ON messages(folder_id, article) WHERE article IS NOT NULL;
  CREATE TABLE queue(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    body_id INTEGER NOT NULL,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    next_hop TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    last_error TEXT,
    dsn_notify TEXT,
    orcpt TEXT,
    envid TEXT,
    ret TEXT,
    body_type TEXT,
    smtputf8 INTEGER NOT NULL DEFAULT 0,
    delay_notified INTEGER NOT NULL DEFAULT 0
  );
  CREATE INDEX queue_due ON queue(next_attempt_at);
  CREATE INDEX queue_body ON queue(body_id);
  -- the persistent free-space map: coalesced runs of free pages below meta 'pages'
  CREATE TABLE free_extents(start INTEGER PRIMARY KEY, count INTEGER NOT NULL);
  `,
  // 2: full-text index of headers and text parts (rowid = body id: indexed once per body)
  `
  CREATE VIRTUAL TABLE body_fts USING fts5(
    headers, text, tokenize = 'unicode61 remove_diacritics 2'
  );
  `,
  // 3: a queue entry delivery.commit recorded as failed for good (a local recipient over quota
  // or gone while others got the message): its RFC 3463 status; the reason is in last_error.
  // The transport only bounces such an entry, it never attempts it.
  `
  ALTER TABLE queue ADD COLUMN failed_status TEXT;
  `,
  // 4: a small body's bytes in its row (then extents is '[]'): committed by the WAL alone, no
  // page-file write or fsync. NULL: the body is in the page file, as every body before this.
  `
  ALTER TABLE bodies ADD COLUMN inline BLOB;
  `,
  // 5: bodies stored but not yet in body_fts: the full-text index is filled in batches behind
  // the deliveries (store/fts.ts), and whatever a crash left here is indexed after restart.
  `
  CREATE TABLE fts_pending(body_id INTEGER PRIMARY KEY);
  `,
  // 6: the full-text index keeps no copy of the text it indexed (contentless: a search needs
  // only the body ids, and the copy doubled what every indexed message wrote). Rebuilt behind
  // the deliveries: every body is queued for indexing again.
  `
  DROP TABLE body_fts;
  CREATE VIRTUAL TABLE body_fts USING fts5(
    headers, text, tokenize = 'unicode61 remove_diacritics 2',
    content = '', contentless_delete = 1
  );
  INSERT OR IGNORE INTO fts_pending(body_id) SELECT id FROM bodies;
  `,
];
