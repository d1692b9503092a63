/**
 * An exclusive lock beside a file that several processes read, change and rewrite (a record
 * of the PKI that two gates sharing the directory, or a gate and `keygen`, update at once):
 * `PATH.lock`, made with `O_EXCL`, removed when the change is written. Without it, two
 * writers that read the same list each write their own entry only, and one is lost.
 *
 * A lock left by a process that died holding it (it is held for one read and one write, a few
 * milliseconds) is taken over once it is {@linkcode STALE_LOCK_MS} old.
 *
 * @module
 */

import { open, rm, stat } from "node:fs/promises";

/** A lock older than this is a dead holder's. */
export const STALE_LOCK_MS = 10_000;

/**
 * Run `fn` while holding `path`'s lock (`path.lock`); waits for another holder up to
 * `timeoutMs` (default 15 s), then throws an `Error` naming the lock file.
 *
 * @example
 * ```ts
 * import { mkdtemp, rm } from "node:fs/promises";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import { withFileLock } from "./file_lock.ts";
 * const dir = await mkdtemp(join(tmpdir(), "dg-lock-"));
 * const order: number[] = [];
 * await Promise.all([1, 2].map((n) => withFileLock(join(dir, "f"), async () => { order.push(n); })));
 * if (order.length !== 2) throw new Error();
 * await rm(dir, { recursive: true });
 * ```
 */
export async function withFileLock<T>(
  path: string,
  fn: () => Promise<T>,
  timeoutMs = 15_000,
): Promise<T> {
  const lock = `${path}.lock`;
  const deadline = Date.now() + timeoutMs;
  for (let wait = 2;; wait = Math.min(wait * 2, 50)) {
    try {
      await (await open(lock, "wx", 0o600)).close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    const age = await stat(lock).then((s) => Date.now() - s.mtimeMs, () => 0);
    if (age > STALE_LOCK_MS) {
      await rm(lock, { force: true });
      continue;
    }
    if (Date.now() > deadline) {
      throw new Error(`Cannot lock "${path}": "${lock}" is held (remove it if nothing runs)`);
    }
    await new Promise((r) => setTimeout(r, wait));
  }
  try {
    return await fn();
  } finally {
    await rm(lock, { force: true });
  }
}
