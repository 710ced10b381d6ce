// The contract between the protocol engines and the store: every method the store serves,
// with its request and response types. Both sides import only this file (and `StoreClient`),
// so an engine never learns whether SQLite, PostgreSQL or an object store is underneath, and
// whether the call crossed a SharedArrayBuffer ring or stayed in-process (tests, CLI).
//
// Bulk bytes are always `Uint8Array`: the ring transport moves them through heap blocks by
// handle, never through JSON. Large reads are streams of chunks (see `StoreStreams`).

/** A stable identifier of a stored message (row id); never reused. */
export type MessageId = number;
export type UserId = number;
export type FolderId = number;

// ---------------------------------------------------------------- errors

/** Error codes every store call may fail with; engines map them to protocol replies. */
export type StoreErrorCode =
  | "busy" // heap/ring full, too many hashes in flight: temporary (SMTP 451, POP3 -ERR [SYS/TEMP])
  | "unavailable" // the store worker is gone or restarting: temporary
  | "not_found"
  | "exists"
  | "invalid"
  | "in_use" // e.g. POP3 maildrop already locked (POP3 -ERR [IN-USE])
  | "quota" // over quota (SMTP 552 5.2.2, IMAP NO [OVERQUOTA])
  | "denied" // ACL forbids
  | "internal";

export class StoreError extends Error {
  constructor(readonly code: StoreErrorCode, message: string) {
    super(message);
    this.name = "StoreError";
  }
  /** Temporary failures: the client should retry later. */
  get temporary(): boolean {
    return this.code === "busy" || this.code === "unavailable";
  }
}

// ---------------------------------------------------------------- shared shapes

export interface AccountInfo {
  userId: UserId;
  /** Canonical address, lower-case local part and domain: "alice@example.com". */
  address: string;
  displayName: string;
  quotaBytes: number | null;
  quotaMessages: number | null;
  usedBytes: number;
  usedMessages: number;
}

export type AuthResult =
  | { ok: true; account: AccountInfo }
  | { ok: false; reason: "bad_credentials" | "throttled" | "disabled" };

/** What the categorizer made of one RCPT TO address (RFC 5321 §3.3). */
export type Recipient =
  | {
    kind: "local";
    address: string;
    userIds: UserId[];
    via: "mailbox" | "alias" | "plus" | "catchall" | "list";
    /** Remote addresses an alias or list also forwards to (queued at delivery). */
    forward?: string[];
    /**
     * Present only when a quota limits this recipient: the largest message (bytes, local
     * prefix included) it can still take; 0 when its mailbox is full (bytes or message count).
     * Checked at RCPT so most over-quota mail is refused up front (552 5.2.2).
     */
    roomBytes?: number;
  }
  | { kind: "public"; address: string; folderId: FolderId }
  | { kind: "remote"; address: string; domain: string }
  | { kind: "unknown"; address: string };

export interface FolderInfo {
  folderId: FolderId;
  /** Full hierarchical name with "/" as separator; "INBOX" for the inbox. */
  name: string;
  specialUse: "\\Sent" | "\\Drafts" | "\\Trash" | "\\Junk" | "\\Archive" | null;
  uidValidity: number;
  uidNext: number;
  highestModseq: number;
  messages: number;
  unseen: number;
  subscribed: boolean;
}

export interface MessageSummary {
  messageId: MessageId;
  uid: number;
  /** Exact byte count of what `message.read` streams (prefix + body). */
  size: number;
  flags: string[];
  internalDate: number; // ms since epoch
  modseq: number;
  /** Stable across sessions and restarts: used as POP3 UIDL. */
  uniqueId: string;
}

/**
 * A POP3 maildrop lock. The maildrop is the folder's messages with uids below
 * `folder.uidNext` as the lock saw it (RFC 1939 §8: mail that arrives later is not part of
 * the session); list them with the `folder.messages` stream, which any folder size fits.
 */
export interface MailboxLock {
  lockId: string;
  folder: FolderInfo;
}

/** A change pushed to subscribers (IMAP IDLE, NNTP, webmail). */
export interface MailboxEvent {
  folderId: FolderId;
  userId: UserId | null; // null for public folders
  kind: "exists" | "expunge" | "flags" | "folder";
  uids: number[];
  modseq: number;
}

export interface QueueEntry {
  queueId: number;
  sender: string;
  recipient: string;
  nextHop: string;
  attempts: number;
  nextAttemptAt: number;
  createdAt: number;
  lastError: string | null;
  size: number;
  // Added for the transport (RFC 3461 DSN, RFC 6152, RFC 6531). Optional so a store that does
  // not know them yet still type-checks; the transport treats "absent" as "not given".
  /** RFC 3461 §4.1 NOTIFY for this recipient, upper-case: ["NEVER"] or any of SUCCESS, FAILURE, DELAY. */
  dsnNotify?: string[] | null;
  /** RFC 3461 §4.3 RET of the message. */
  dsnRet?: "FULL" | "HDRS" | null;
  /** RFC 3461 §4.4 ENVID, xtext-decoded. */
  envid?: string | null;
  /** RFC 3461 §4.2 ORCPT as "addr-type;address", xtext-decoded. */
  orcpt?: string | null;
  /** The single-instance body: entries sharing body and sender go out in one SMTP transaction. */
  bodyId?: number | null;
  /** RFC 6152 BODY= declared when the message was received. */
  bodyType?: "7BIT" | "8BITMIME" | null;
  /** RFC 6531: the message was received with SMTPUTF8. */
  smtputf8?: boolean;
  /** A delay DSN was sent (set by `queue.report` or `queue.delayNotified`); at most one is sent. */
  delayNotified?: boolean;
  /**
   * Set when delivery.commit could not deliver to this (local) recipient while it delivered to
   * others: the RFC 3463 status (e.g. "5.2.2"), with the reason in `lastError`. The transport
   * never attempts such an entry: it sends the failure DSN with `queue.report` (which fails it).
   */
  failedStatus?: string | null;
}

/**
 * The new state of one queue entry after an attempt (`queue.settle`, `queue.report`):
 * "done" and "failed" remove it (releasing its body reference), "deferred" counts an attempt
 * and makes it due again at `nextAttemptAt`.
 */
export type QueueSettlement =
  | { queueId: number; outcome: "done" }
  | { queueId: number; outcome: "failed"; error: string }
  | { queueId: number; outcome: "deferred"; error: string; nextAttemptAt: number };

// ---------------------------------------------------------------- parsed messages

/** RFC 3501 §7.4.2 address; group start: mailbox set, host null; group end: all null. */
export interface EnvelopeAddress {
  name: string | null;
  mailbox: string | null;
  host: string | null;
}

/** The IMAP ENVELOPE fields (raw header values, not decoded), plus References for NNTP. */
export interface Envelope {
  date: string | null;
  subject: string | null;
  from: EnvelopeAddress[];
  sender: EnvelopeAddress[];
  replyTo: EnvelopeAddress[];
  to: EnvelopeAddress[];
  cc: EnvelopeAddress[];
  bcc: EnvelopeAddress[];
  inReplyTo: string | null;
  messageId: string | null;
  references: string | null;
}

/** One MIME part, enough for IMAP BODYSTRUCTURE and BODY[section] (offsets in the body). */
export interface MimePart {
  type: string; // upper-case: "TEXT"
  subtype: string; // upper-case: "PLAIN"
  params: Record<string, string>; // keys lower-case
  id: string | null;
  description: string | null;
  encoding: string; // upper-case: "7BIT", "BASE64"
  disposition: { type: string; params: Record<string, string> } | null;
  language: string | null;
  location: string | null;
  md5: string | null;
  /** Byte offsets within the body (without the local prefix): headers, body, end. */
  headerStart: number;
  bodyStart: number;
  end: number;
  lines: number;
  children: MimePart[];
  /** message/rfc822: the encapsulated message. */
  message: { envelope: Envelope; part: MimePart } | null;
}

export interface MessageMeta {
  envelope: Envelope;
  structure: MimePart;
  /** Bytes of the local prefix: body offsets + prefixBytes = offsets in `message.read`. */
  prefixBytes: number;
  /** The top-level header block of the body, including the blank line. */
  headerBytes: number;
  lines: number;
}

/** RFC 3977 §8.3 overview fields of one article. */
export interface OverviewEntry {
  article: number;
  messageId: MessageId;
  subject: string;
  from: string;
  date: string;
  msgid: string;
  references: string;
  bytes: number;
  lines: number;
}

export interface NewsGroup {
  name: string;
  folderId: FolderId;
  low: number;
  high: number;
  count: number;
  postingAllowed: boolean;
}

// ---------------------------------------------------------------- calls

/** The most messages one `message.readMany` call may ask for. */
export const READ_MANY_MAX_IDS = 256;

/** Request/response pairs. Keys are `room.verb`. */
export interface StoreCalls {
  // accounts
  "auth.verify": {
    req: { username: string; password: string; remoteIp: string; protocol: string };
    res: AuthResult;
  };
  "account.get": { req: { address: string }; res: AccountInfo | null };
  /**
   * May this (authenticated) account use `address` as its reverse-path (RFC 6409 §6.1)? True
   * for its own address, its plus-addresses and aliases that reach it alone; never for a list.
   */
  "account.ownsAddress": { req: { userId: UserId; address: string }; res: boolean };
  // categorizer
  "recipient.resolve": { req: { address: string }; res: Recipient };
  "domain.isLocal": { req: { domain: string }; res: boolean };

  // delivery: reserve pages, stream the body in, then commit it to every recipient in one
  // fsynced transaction (single-instance: stored once, reference-counted).
  "body.begin": {
    /** `chunk`: the first bytes, appended at once (one crossing less than begin + append). */
    req: { sizeHint?: number; chunk?: Uint8Array };
    res: { uploadId: number };
  };
  "body.append": { req: { uploadId: number; chunk: Uint8Array }; res: { size: number } };
  "body.abort": { req: { uploadId: number }; res: null };
  "delivery.commit": {
    req: {
      uploadId: number;
      /** The last bytes of the body, appended before the commit (one crossing less). */
      chunk?: Uint8Array;
      sender: string; // "" for the null reverse-path
      /** Local recipients get the message in their INBOX (or folder), remote ones are queued. */
      recipients: { address: string; folder?: string; dsnNotify?: string[]; orcpt?: string }[];
      /** Bytes prepended for local copies only (e.g. "Return-Path: <a@b>\r\n"). */
      localPrefix?: Uint8Array;
      envid?: string;
      ret?: "FULL" | "HDRS";
      /** RFC 6152 / RFC 6531 parameters of MAIL FROM, kept on queue entries for the relay. */
      bodyType?: "7BIT" | "8BITMIME";
      smtputf8?: boolean;
    };
    res: {
      delivered: { address: string; messageId: MessageId }[];
      queued: { address: string; queueId: number }[];
      /**
       * Recipients the store could not take. When others in the same call succeeded and the
       * sender is not null, each failure is also queued as an entry failed for good
       * (`QueueEntry.failedStatus`, `bounceQueueId` here), in the same transaction, so the
       * transport bounces it to the sender (RFC 3464): nothing acknowledged is lost silently.
       */
      failed: { address: string; code: StoreErrorCode; reason: string; bounceQueueId?: number }[];
    };
  };
  /**
   * delivery.commit of a message that fits one chunk (ipc.chunkBytes), sent whole: no upload
   * to open and fill first, so one crossing instead of three (body.begin, body.append, commit).
   */
  "delivery.commitWhole": {
    req: Omit<StoreCalls["delivery.commit"]["req"], "uploadId" | "chunk"> & { body: Uint8Array };
    res: StoreCalls["delivery.commit"]["res"];
  };

  // folders (POP3 uses INBOX only; IMAP uses the rest)
  "folder.list": { req: { userId: UserId }; res: FolderInfo[] };
  "folder.status": { req: { userId: UserId; name: string }; res: FolderInfo };
  "folder.create": {
    req: { userId: UserId; name: string; specialUse?: FolderInfo["specialUse"] };
    res: FolderInfo;
  };
  "folder.delete": { req: { userId: UserId; name: string }; res: null };
  "folder.rename": { req: { userId: UserId; from: string; to: string }; res: null };
  "folder.subscribe": { req: { userId: UserId; name: string; subscribed: boolean }; res: null };

  // POP3 maildrop (RFC 1939 §8: exclusive access for the session)
  "mailbox.lock": { req: { userId: UserId; folder: string; owner: string }; res: MailboxLock };
  /**
   * Releases a lock by its id, or every lock this caller (this binding) took for `owner`: a
   * session whose mailbox.lock call failed on its side (deadline) cannot know the lock id,
   * and the store may still take the lock after it gave up.
   */
  "mailbox.unlock": { req: { lockId: string } | { owner: string }; res: null };
  /** Permanently remove messages (POP3 UPDATE state, IMAP EXPUNGE). */
  "mailbox.expunge": {
    req: { userId: UserId; folderId: FolderId; uids: number[] };
    res: { expunged: number[]; modseq: number };
  };

  "message.list": {
    req: { userId: UserId; folderId: FolderId; sinceUid?: number };
    res: MessageSummary[];
  };
  "message.setFlags": {
    req: {
      userId: UserId;
      folderId: FolderId;
      uids: number[];
      mode: "add" | "remove" | "replace";
      flags: string[];
      unchangedSince?: number;
    };
    res: { modseq: number; updated: number[]; failed: number[] };
  };
  "message.copy": {
    req: {
      userId: UserId;
      fromFolderId: FolderId;
      uids: number[];
      toFolder: string;
      move: boolean;
    };
    res: { uidValidity: number; mapping: [number, number][] };
  };
  "message.search": { req: { userId: UserId; folderId: FolderId; text: string }; res: number[] };
  /**
   * Several small messages whole, in one call and one store transaction (engines that read
   * ahead: POP3 pipelined RETR). Each answer, in order, is what `message.read` would stream,
   * or why that one message cannot be read. At most READ_MANY_MAX_IDS ids; a message longer
   * than the ipc chunk size (metabase ipc.chunkBytes) is answered "invalid": stream it instead.
   */
  "message.readMany": {
    req: { userId: UserId | null; messageIds: MessageId[] };
    res: ({ bytes: Uint8Array } | { code: StoreErrorCode; message: string })[];
  };
  /** Envelope and MIME structure (parsed once per body, then cached). */
  "message.meta": { req: { userId: UserId; messageId: MessageId }; res: MessageMeta };
  /** A message appended by a client (IMAP APPEND): body from an upload, flags, date. */
  "message.append": {
    req: {
      userId: UserId;
      folderId: FolderId;
      uploadId: number;
      flags?: string[];
      internalDate?: number;
    };
    res: { uidValidity: number; uid: number; messageId: MessageId };
  };

  // public folders (owner-less, shared by IMAP and NNTP) and ACLs (RFC 4314 rights letters)
  /** Public folders this user (null: anonymous) may look up ("l" right). */
  "public.list": { req: { userId: UserId | null }; res: FolderInfo[] };
  "acl.get": {
    req: { userId: UserId; folderId: FolderId };
    res: { identifier: string; rights: string }[];
  };
  /** Needs the "a" right; an empty `rights` removes the entry. */
  "acl.set": {
    req: { userId: UserId; folderId: FolderId; identifier: string; rights: string };
    res: null;
  };
  "acl.myRights": { req: { userId: UserId | null; folderId: FolderId }; res: string };
  /** Folders of other users shared with this one (delegate access), as "owner@domain/Folder". */
  "folder.shared": { req: { userId: UserId }; res: (FolderInfo & { owner: string })[] };

  // news: newsgroups are public folders with article numbers (RFC 3977)
  "news.groups": { req: { userId: UserId | null }; res: NewsGroup[] };
  "news.overview": {
    req: { userId: UserId | null; group: string; from: number; to: number };
    res: OverviewEntry[];
  };
  /** By number in a group, or by message-id across groups; null if absent. */
  "news.article": {
    req: { userId: UserId | null; group?: string; article?: number; msgid?: string };
    res: { messageId: MessageId; group: string; article: number } | null;
  };
  /** POST / IHAVE: file an uploaded article into each listed group that exists. */
  "news.post": {
    req: { userId: UserId | null; uploadId: number; newsgroups: string[] };
    res: { posted: { group: string; article: number }[] };
  };

  // the SMTP queue (transport worker)
  "queue.due": { req: { now: number; limit: number }; res: QueueEntry[] };
  "queue.done": { req: { queueId: number }; res: null };
  "queue.defer": { req: { queueId: number; error: string; nextAttemptAt: number }; res: null };
  "queue.fail": { req: { queueId: number; error: string }; res: null };
  "queue.list": { req: Record<string, never>; res: QueueEntry[] };
  // Semantics the transport relies on: `queue.due` returns entries with nextAttemptAt <= now,
  // oldest first; `queue.defer` increments attempts; `queue.done`, `queue.fail` and
  // `queue.delete` remove the entry (and release its body reference). The transport sends
  // each DSN with `queue.report`, which settles the entries it reports on in the same
  // transaction, and everything else with `queue.settle`.
  /** Record that the one delay DSN for this entry was sent (QueueEntry.delayNotified). */
  "queue.delayNotified": { req: { queueId: number }; res: null };
  /**
   * The outcomes of one SMTP transaction (or any batch), in ONE transaction. Entries already
   * gone (deleted meanwhile) are skipped; `settled` lists those that were updated.
   */
  "queue.settle": { req: { entries: QueueSettlement[] }; res: { settled: number[] } };
  /**
   * A DSN (RFC 3464) for entries of one message AND their new state, in ONE transaction, so a
   * crash or a failure can never leave the report sent with its entries still due (a second
   * report on the next pass) nor the entries settled without it. The report is an upload
   * (body.begin/append) committed like `delivery.commit` with the null reverse-path to `to`, the
   * entries' sender (RFC 3461 §6.1): a bounce settles entries "failed", a relayed report
   * "done", a delay notice "deferred" (and marks them `delayNotified`). An entry already gone,
   * or already delay-notified for a delay notice, is skipped; when every entry is skipped the
   * call fails with not_found and stores nothing. An entry of another sender: invalid.
   */
  "queue.report": {
    req: {
      uploadId: number;
      to: string;
      /** Bytes prepended for a local copy (e.g. "Return-Path: <>\r\n"). */
      localPrefix?: Uint8Array;
      entries: QueueSettlement[];
    };
    res: StoreCalls["delivery.commit"]["res"] & { settled: number[] };
  };
  /** `posthorn queue retry`: make entries due now and publish on "queue"; returns how many. */
  "queue.retry": { req: { queueId: number } | { all: true }; res: { count: number } };
  /** `posthorn queue delete`: drop an entry without a bounce. */
  "queue.delete": { req: { queueId: number }; res: null };

  // health
  "store.stats": {
    req: Record<string, never>;
    res: {
      messages: number;
      bodies: number;
      pageFileBytes: number;
      freePages: number;
      /** Bodies stored but not yet in the full-text index (indexed in batches, soon after). */
      indexPending: number;
    };
  };
}

/**
 * Streaming reads: the result arrives as a sequence of items, each bounded in size, with
 * credit-based flow control. A byte stream's items are chunks (Uint8Array); a listing's items
 * are batches of records, so a 100,000-message folder never crosses as one value.
 */
export interface StoreStreams {
  /** The message as stored: local prefix then body, byte-exact. */
  "message.read": {
    req: {
      userId: UserId | null;
      messageId: MessageId;
      /** A byte range of what is streamed (IMAP partial fetch, BODY[section]). */
      offset?: number;
      length?: number;
    };
    item: Uint8Array;
  };
  /** The body of a queued message, for the outbound SMTP client. */
  "queue.read": { req: { queueId: number }; item: Uint8Array };
  /**
   * A folder's messages in uid order (after `sinceUid`), in batches of at most
   * FOLDER_MESSAGES_BATCH: what `message.list` answers in one value, for folders of any size.
   */
  "folder.messages": {
    req: { userId: UserId; folderId: FolderId; sinceUid?: number };
    item: MessageSummary[];
  };
  /**
   * Imports an mbox file or a Maildir (paths as the store worker sees them) into a user's
   * folder, the way `posthorn import` does with the server stopped; the items report
   * progress (messages and bytes so far), the last one the total. Breaking out stops the
   * import between two messages; what was imported stays.
   */
  "store.import": {
    req: { format: "mbox" | "maildir"; path: string; user: string; folder?: string };
    item: { messages: number; bytes: number }[];
  };
}

/** Records per batch of a listing stream (folder.messages). */
export const FOLDER_MESSAGES_BATCH = 500;

export type CallName = keyof StoreCalls;
export type CallReq<M extends CallName> = StoreCalls[M]["req"];
export type CallRes<M extends CallName> = StoreCalls[M]["res"];
export type StreamName = keyof StoreStreams;
export type StreamReq<M extends StreamName> = StoreStreams[M]["req"];
export type StreamItem<M extends StreamName> = StoreStreams[M]["item"];

/** Topics the store publishes on. */
export interface StoreTopics {
  mailbox: MailboxEvent;
  queue: { queueId: number };
}
