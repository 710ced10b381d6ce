// Noticing that the certificate or key file changed on disk (a certbot renewal), so a running
// server presents the new pair without a SIGHUP. A stat poll rather than inotify: renewals
// replace files by rename or re-point symlinks (/etc/letsencrypt/live), which a watch on one
// path can miss; a stat of each file every tls.checkSeconds costs nothing.
import { statSync } from "node:fs";

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

export class CertificateWatch {
  #stamp: string;
  #timer: ReturnType<typeof setInterval>;

  /** Calls `onChange` once the files differ from now and have held still for one check (a
   * renewal writes the key and the certificate one after the other). */
  constructor(
    private readonly files: string[],
    intervalMs: number,
    private readonly onChange: () => void,
  ) {
    this.#stamp = stampOf(files);
    let seen = this.#stamp;
    this.#timer = setInterval(() => {
      const now = stampOf(this.files);
      if (now === this.#stamp) return;
      if (now !== seen) {
        seen = now; // still moving: look again next time
        return;
      }
      this.#stamp = now;
      this.onChange();
    }, intervalMs);
    this.#timer.unref?.();
  }

  close(): void {
    clearInterval(this.#timer);
  }
}
