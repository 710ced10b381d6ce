// Password checks. argon2id costs ~110 ms and 64 MiB per hash here, so: a short-lived cache
// of verified credentials (a client opening five connections pays once), a cap on hashes in
// flight with a bounded wait (a flood gets "busy", never exhausts memory), and failure
// throttling per client IP (auth.failuresPerMinute) and per account from any IP
// (auth.accountFailuresPerMinute).
//
// The account limit must not become a way to lock the owner out: it is a sliding minute, and
// throttled attempts are refused without a hash and without counting, so it lifts a minute
// after the failures stop; and an IP that logged in to the account recently
// (auth.accountTrustSeconds) is exempt from it (that IP's own limit still applies). Unknown
// user names are counted the same way as real ones, so "throttled" never tells which exist.
import { type AuthResult, StoreError } from "../ipc/store-api.ts";
import { accountInfo, userByAddress, type UserRow } from "./accounts.ts";
import { parseAddress } from "./addresses.ts";
import type { Core } from "./core.ts";

const MAX_TRACKED_IPS = 100_000;
const MAX_TRACKED_ACCOUNTS = 100_000;
const MAX_TRUSTED_IPS_PER_ACCOUNT = 16;
const MAX_CACHED = 10_000;
const WINDOW_MS = 60_000;
const DEFAULT_ACCOUNT_FAILURES = 10;
const DEFAULT_TRUST_SECONDS = 86_400;

/** Failure times per key (an IP, an account) within the last minute, for bounded key counts. */
class FailureWindow {
  private readonly times = new Map<string, number[]>();
  constructor(private readonly maxKeys: number) {}

  /** Failures of `key` in the minute before `now`. */
  count(key: string, now: number): number {
    const list = this.times.get(key);
    if (!list) return 0;
    while (list.length > 0 && list[0]! <= now - WINDOW_MS) list.shift();
    if (list.length === 0) this.times.delete(key);
    return list.length;
  }

  /** Record a failure; only the last `limit` matter, so no key holds more. Returns the count. */
  add(key: string, now: number, limit: number): number {
    let list = this.times.get(key);
    if (!list) {
      if (this.times.size >= this.maxKeys) {
        // Forget the oldest key: memory stays bounded under a spray of addresses or names.
        const first = this.times.keys().next().value;
        if (first !== undefined) this.times.delete(first);
      }
      this.times.set(key, list = []);
    }
    list.push(now);
    if (list.length > limit) list.splice(0, list.length - limit);
    return this.count(key, now);
  }
}

export class Authenticator {
  /** address → {digest of the verified password, expiry, hash it was checked against} */
  private cache = new Map<string, { digest: string; until: number; hash: string }>();
  private ipFailures = new FailureWindow(MAX_TRACKED_IPS);
  private accountFailures = new FailureWindow(MAX_TRACKED_ACCOUNTS);
  /** account key → IP → until when a login from there is exempt from the account limit. */
  private trusted = new Map<string, Map<string, number>>();
  /** The last verification queued per "ip:…" / "account:…" key (see exclusive). */
  private running = new Map<string, Promise<void>>();
  private inFlight = 0;
  private waiting: (() => void)[] = [];
  private readonly pepper = crypto.randomUUID();
  /** A hash to verify against when the user does not exist, so timing does not tell. */
  private dummyHash: Promise<string> | null = null;

  constructor(private core: Core) {}

  private get cfg() {
    return this.core.opts.auth;
  }

  private digest(password: string): string {
    return new Bun.CryptoHasher("sha256").update(this.pepper).update(password).digest("hex");
  }

  private get accountLimit(): number {
    return this.cfg.accountFailuresPerMinute ?? DEFAULT_ACCOUNT_FAILURES;
  }

  private throttled(ip: string, account: string, now: number): boolean {
    if (this.ipFailures.count(ip, now) >= this.cfg.failuresPerMinute) return true;
    if (this.isTrusted(account, ip, now)) return false;
    return this.accountFailures.count(account, now) >= this.accountLimit;
  }

  /**
   * Runs `fn` once no other verification for the same IP or account is running. Parallel
   * guesses would otherwise all pass the throttle check before the first failure is recorded;
   * serialised, each sees the ones before it. A client opening five connections at once pays
   * one hash: the others find the verified credential in the cache when their turn comes.
   */
  private async exclusive<T>(keys: string[], fn: () => Promise<T>): Promise<T> {
    const before = keys.map((k) => this.running.get(k) ?? Promise.resolve());
    let done!: () => void;
    const mine = new Promise<void>((r) => (done = r));
    for (const k of keys) this.running.set(k, mine);
    try {
      await Promise.all(before);
      return await fn();
    } finally {
      done();
      for (const k of keys) if (this.running.get(k) === mine) this.running.delete(k);
    }
  }

  private fail(ip: string, account: string, now: number): void {
    this.ipFailures.add(ip, now, this.cfg.failuresPerMinute);
    const n = this.accountFailures.add(account, now, this.accountLimit);
    if (n === this.accountLimit) {
      this.core.log.warn("auth.account_throttled", { account, failures: n, lastIp: ip });
    }
  }

  private isTrusted(account: string, ip: string, now: number): boolean {
    const until = this.trusted.get(account)?.get(ip);
    return until !== undefined && until > now;
  }

  /** A successful login: this IP may keep logging in to the account while it is throttled. */
  private trust(account: string, ip: string, now: number): void {
    const seconds = this.cfg.accountTrustSeconds ?? DEFAULT_TRUST_SECONDS;
    if (seconds <= 0) return;
    let ips = this.trusted.get(account);
    if (!ips) {
      if (this.trusted.size >= MAX_TRACKED_ACCOUNTS) {
        const first = this.trusted.keys().next().value;
        if (first !== undefined) this.trusted.delete(first);
      }
      this.trusted.set(account, ips = new Map());
    }
    ips.delete(ip); // re-insert: the map's order is least recently trusted first
    ips.set(ip, now + seconds * 1000);
    if (ips.size > MAX_TRUSTED_IPS_PER_ACCOUNT) {
      const first = ips.keys().next().value;
      if (first !== undefined) ips.delete(first);
    }
  }

  private async slot(): Promise<void> {
    if (this.inFlight < this.cfg.maxHashesInFlight) {
      this.inFlight++;
      return;
    }
    if (this.waiting.length >= this.cfg.maxHashesInFlight * 16) {
      throw new StoreError("busy", "too many authentications in progress");
    }
    await new Promise<void>((resolve, reject) => {
      const entry = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        const i = this.waiting.indexOf(entry);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(new StoreError("busy", "too many authentications in progress"));
      }, this.cfg.hashWaitMs ?? 5000);
      this.waiting.push(entry);
    });
    this.inFlight++;
  }

  private release(): void {
    this.inFlight--;
    this.waiting.shift()?.();
  }

  private async hashVerify(password: string, hash: string): Promise<boolean> {
    await this.slot();
    try {
      return await Bun.password.verify(password, hash);
    } catch {
      return false;
    } finally {
      this.release();
    }
  }

  /** Full address, or the local part alone when exactly one domain has that user. */
  private findUser(username: string): UserRow | null {
    const u = String(username).trim().toLowerCase();
    if (u.includes("@")) {
      const a = parseAddress(u);
      return a ? userByAddress(this.core, a.address) : null;
    }
    const rows = this.core.db.query("SELECT * FROM users WHERE local = ? LIMIT 2").all(
      u,
    ) as UserRow[];
    return rows.length === 1 ? rows[0]! : null;
  }

  async verify(username: string, password: string, remoteIp: string): Promise<AuthResult> {
    const ip = String(remoteIp);
    const user = this.findUser(username);
    // Names that are no account are throttled alike, under the name as typed.
    const account = user ? user.address : String(username).trim().toLowerCase().slice(0, 320);
    if (this.throttled(ip, account, Date.now())) return { ok: false, reason: "throttled" };
    return await this.exclusive(
      [`ip:${ip}`, `account:${account}`],
      () => this.verifyAlone(user, account, password, ip),
    );
  }

  private async verifyAlone(
    user: UserRow | null,
    account: string,
    password: string,
    ip: string,
  ): Promise<AuthResult> {
    const now = Date.now();
    if (this.throttled(ip, account, now)) return { ok: false, reason: "throttled" };
    if (typeof password !== "string" || password.length === 0 || password.length > 1024) {
      this.fail(ip, account, now);
      return { ok: false, reason: "bad_credentials" };
    }
    const digest = this.digest(password);
    if (user) {
      const hit = this.cache.get(user.address);
      if (hit && hit.until > now && hit.digest === digest && hit.hash === user.password_hash) {
        if (user.disabled) return { ok: false, reason: "disabled" };
        this.trust(account, ip, now);
        return { ok: true, account: accountInfo(this.core, user) };
      }
    }
    const ok = user
      ? await this.hashVerify(password, user.password_hash)
      : (await this.hashVerify(password, await this.dummy()), false);
    if (!ok || !user) {
      this.fail(ip, account, Date.now());
      return { ok: false, reason: "bad_credentials" };
    }
    if (this.cfg.credentialCacheSeconds > 0) {
      if (this.cache.size >= MAX_CACHED) this.cache.clear();
      this.cache.set(user.address, {
        digest,
        until: Date.now() + this.cfg.credentialCacheSeconds * 1000,
        hash: user.password_hash,
      });
    }
    if (user.disabled) return { ok: false, reason: "disabled" };
    this.trust(account, ip, Date.now());
    return { ok: true, account: accountInfo(this.core, user) };
  }

  private dummy(): Promise<string> {
    this.dummyHash ??= Bun.password.hash(crypto.randomUUID(), {
      algorithm: "argon2id",
      ...this.core.opts.argon2,
    });
    return this.dummyHash;
  }
}
