// Password checks. argon2id costs ~110 ms and 64 MiB per hash here, so: a short-lived cache
// of verified credentials (a client opening five connections pays once), a cap on hashes in
// flight with a bounded wait (a flood gets "busy", never exhausts memory), and per-IP failure
// throttling (auth.failuresPerMinute).
import { type AuthResult, StoreError } from "../ipc/store-api.ts";
import { accountInfo, userByAddress, type UserRow } from "./accounts.ts";
import { parseAddress } from "./addresses.ts";
import type { Core } from "./core.ts";

const MAX_TRACKED_IPS = 100_000;
const MAX_CACHED = 10_000;

export class Authenticator {
  /** address → {digest of the verified password, expiry, hash it was checked against} */
  private cache = new Map<string, { digest: string; until: number; hash: string }>();
  private failures = new Map<string, number[]>();
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

  private throttled(ip: string, now: number): boolean {
    const list = this.failures.get(ip);
    if (!list) return false;
    while (list.length > 0 && list[0]! <= now - 60_000) list.shift();
    if (list.length === 0) this.failures.delete(ip);
    return list.length >= this.cfg.failuresPerMinute;
  }

  private fail(ip: string, now: number): void {
    if (this.failures.size >= MAX_TRACKED_IPS && !this.failures.has(ip)) {
      // Forget the oldest entry: memory stays bounded under a spray of source addresses.
      const first = this.failures.keys().next().value;
      if (first !== undefined) this.failures.delete(first);
    }
    const list = this.failures.get(ip) ?? [];
    list.push(now);
    this.failures.set(ip, list);
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
    const now = Date.now();
    const ip = String(remoteIp);
    if (this.throttled(ip, now)) return { ok: false, reason: "throttled" };
    if (typeof password !== "string" || password.length === 0 || password.length > 1024) {
      this.fail(ip, now);
      return { ok: false, reason: "bad_credentials" };
    }
    const user = this.findUser(username);
    const digest = this.digest(password);
    if (user) {
      const hit = this.cache.get(user.address);
      if (hit && hit.until > now && hit.digest === digest && hit.hash === user.password_hash) {
        return user.disabled
          ? { ok: false, reason: "disabled" }
          : { ok: true, account: accountInfo(this.core, user) };
      }
    }
    const ok = user
      ? await this.hashVerify(password, user.password_hash)
      : (await this.hashVerify(password, await this.dummy()), false);
    if (!ok || !user) {
      this.fail(ip, Date.now());
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
