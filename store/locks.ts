// POP3 maildrop locks (RFC 1939 §8: exclusive access for the session's duration). In memory
// only: a lock dies with the store, with `unlock`, or with its peer (`peerGone`).
import { StoreError } from "../ipc/store-api.ts";

interface Lock {
  lockId: string;
  key: string;
  peer: string;
  owner: string;
}

export class Locks {
  private byKey = new Map<string, Lock>();
  private byId = new Map<string, Lock>();

  acquire(userId: number, folderId: number, peer: string, owner: string): string {
    const key = `${userId}:${folderId}`;
    const held = this.byKey.get(key);
    if (held) throw new StoreError("in_use", `maildrop locked by ${held.owner}`);
    const lock = { lockId: crypto.randomUUID(), key, peer, owner: String(owner) };
    this.byKey.set(key, lock);
    this.byId.set(lock.lockId, lock);
    return lock.lockId;
  }

  release(lockId: string): boolean {
    const l = this.byId.get(lockId);
    if (!l) return false;
    this.byId.delete(lockId);
    this.byKey.delete(l.key);
    return true;
  }

  /** Every lock `peer` took for `owner` (a session). */
  releaseOwner(peer: string, owner: string): number {
    let n = 0;
    for (const l of [...this.byId.values()]) {
      if (l.peer === peer && l.owner === owner) n += this.release(l.lockId) ? 1 : 0;
    }
    return n;
  }

  releasePeer(peer: string): number {
    let n = 0;
    for (const l of [...this.byId.values()]) {
      if (l.peer === peer) n += this.release(l.lockId) ? 1 : 0;
    }
    return n;
  }

  get count(): number {
    return this.byId.size;
  }
}
