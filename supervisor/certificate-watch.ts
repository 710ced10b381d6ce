// Noticing that the certificate or key file changed on disk (a certbot renewal), so a running
// server presents the new pair without a SIGHUP; and reading a pair only when it is whole and
// matches, so a renewal caught mid-write never replaces the pair being served. A stat poll
// rather than inotify: renewals replace files by rename or re-point symlinks
// (/etc/letsencrypt/live), which a watch on one path can miss; a stat of each file every
// tls.checkSeconds costs nothing.
import { readFileSync, statSync } from "node:fs";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { createSecureContext } from "node:tls";
import type { TlsMaterial } from "../protocols/engine.ts";

/** Identity of the files' current contents: inode, size and mtime of each (or "missing"). */
function stampOf(files: string[]): string {
  return files.map((f) => {
    try {
      const s = statSync(f); // follows symlinks: a re-pointed link is a change
      return `${s.ino}:${s.size}:${s.mtimeMs}`;
    } catch {
      return "missing";
    }
  }).join("|");
}

/**
 * Reads a certificate (chain) and its private key, and throws unless they make a pair a
 * listener can use: a file caught half-written (a cut PEM), an empty one, or a key that is not
 * the certificate's would otherwise replace the working pair, and every implicit-TLS listener
 * re-bound with it would fail to bind.
 */
export function readCertificatePair(certFile: string, keyFile: string): TlsMaterial {
  const cert = readFileSync(certFile, "utf8");
  const key = readFileSync(keyFile, "utf8");
  try {
    createSecureContext({ cert, key }); // what Bun.listen will do with them
    const leaf = new X509Certificate(cert); // an empty file passes the line above
    if (!leaf.checkPrivateKey(createPrivateKey(key))) throw new Error("key values mismatch");
  } catch (err) {
    throw new Error(
      `${certFile} and ${keyFile} are not a usable certificate and key: ${(err as Error).message}`,
    );
  }
  return { cert, key };
}

export class CertificateWatch {
  #stamp: string;
  #timer: ReturnType<typeof setInterval>;
  #applying = false;

  /**
   * Calls `onChange` once the files differ from the last pair applied and have held still for
   * one check (a renewal writes the key and the certificate one after the other). `onChange`
   * says whether the new pair was applied: if not (half-written, mismatched, unreadable), it
   * is tried again at each check until it is, or until the files change again.
   */
  constructor(
    readonly files: string[],
    readonly intervalMs: number,
    private readonly onChange: () => boolean | Promise<boolean>,
  ) {
    this.#stamp = stampOf(files);
    let seen = this.#stamp;
    this.#timer = setInterval(async () => {
      if (this.#applying) return;
      const now = stampOf(this.files);
      if (now === this.#stamp) return;
      if (now !== seen) {
        seen = now; // still moving: look again next time
        return;
      }
      // Taken before the files are read: a change made while they are read is seen next time.
      this.#applying = true;
      try {
        if (await this.onChange()) this.#stamp = now;
      } catch {
        // Not applied: tried again at the next check.
      } finally {
        this.#applying = false;
      }
    }, intervalMs);
    this.#timer.unref?.();
  }

  close(): void {
    clearInterval(this.#timer);
  }
}
