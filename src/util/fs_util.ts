/**
 * File-system answers shared by keygen, revoke, credentials and serve's CRL: "is there
 * something at this path?" and a one-line reason for an fs error.
 *
 * Why one `pathExists`: "absent" decides whether keygen writes a key, whether revoke finds a client
 * by name and whether serve may run without a CRL, so only ENOENT may mean "absent"; an
 * unreadable directory (EACCES), a symlink loop or an I/O error is an error, said as such.
 *
 * @module
 */

import { chmod, link, lstat, open, readFile, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { errorMessage } from "../observe/errors.ts";

/** Options for {@linkcode pathExists}. */
export interface PathExistsOptions {
  /**
   * Follow a symlink to its target. Default `true`. With `false` a dangling symlink counts as
   * present (what a writer that must not clobber anything needs).
   */
  follow?: boolean;
  /** What the path is, for the error message (`Cannot access CRL "…": …`). Default: none. */
  what?: string;
}

/**
 * Whether something exists at `path`: `false` only when it does not (ENOENT, or ENOTDIR for a
 * parent that is a file); throws `Cannot access "path": …` for anything else.
 *
 * @example
 * ```ts
 * import { pathExists } from "./fs_util.ts";
 * const dir = await Deno.makeTempDir();
 * if (!(await pathExists(dir)) || await pathExists(`${dir}/nope`)) throw new Error();
 * await Deno.remove(dir);
 * ```
 */
export async function pathExists(path: string, options: PathExistsOptions = {}): Promise<boolean> {
  try {
    await (options.follow === false ? lstat(path) : stat(path));
    return true;
  } catch (error) {
    const code = (error as { code?: string } | null)?.code;
    if (code === "ENOENT" || code === "ENOTDIR") return false;
    const what = options.what ? `${options.what} ` : "";
    throw new Error(`Cannot access ${what}"${path}": ${fsErrorText(error)}`, { cause: error });
  }
}

/**
 * A Node fs error's message without its trailing `, open '/path'`: our messages quote the
 * path themselves, as in `Cannot read CA certificate "x": ENOENT: no such file or directory`.
 *
 * @example
 * ```ts
 * import { fsErrorText } from "./fs_util.ts";
 * const err = new Error("ENOENT: no such file or directory, open '/x/ca.pem'");
 * if (fsErrorText(err) !== "ENOENT: no such file or directory") throw new Error(fsErrorText(err));
 * ```
 */
export function fsErrorText(error: unknown): string {
  return errorMessage(error).replace(/, \w+(?: '.*')?$/, "");
}

/**
 * Read a text file; rejects with `Cannot read WHAT "path": …` (the one wording every loader
 * uses), or `TypeError` for an empty path.
 *
 * @example
 * ```ts
 * import { readText } from "./fs_util.ts";
 * const err = await readText("/nonexistent/ca.pem", "CA certificate").catch((e) => e);
 * if (!err.message.startsWith('Cannot read CA certificate "/nonexistent/ca.pem": ENOENT')) throw err;
 * ```
 */
export async function readText(path: string, what: string): Promise<string> {
  if (typeof path !== "string" || path === "") {
    throw new TypeError(`Invalid ${what} path "${path}"`);
  }
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    throw new Error(`Cannot read ${what} "${path}": ${fsErrorText(error)}`, { cause: error });
  }
}

/** Options for {@linkcode writeFileAtomic}. */
export interface WriteFileAtomicOptions {
  /** The file's exact mode (set explicitly, whatever the umask). */
  mode: number;
  /**
   * Replace an existing file (rename over it). Default `false`: the move is a hard link,
   * which fails atomically with `EEXIST` if `path` appeared meanwhile.
   */
  replace?: boolean;
}

/**
 * Write `data` to `path` with exactly `mode`, never exposing partial content: write a fresh
 * temporary file in the same directory (O_EXCL, so no symlink or stale file is followed),
 * sync it, then move it into place. The one atomic write (keygen's keys, the PKI records,
 * the CRLs a running serve reads).
 *
 * @example
 * ```ts
 * import { writeFileAtomic } from "./fs_util.ts";
 * const dir = await Deno.makeTempDir();
 * await writeFileAtomic(`${dir}/key.pem`, "secret", { mode: 0o600 });
 * const again = await writeFileAtomic(`${dir}/key.pem`, "other", { mode: 0o600 }).catch((e) => e);
 * if (again?.code !== "EEXIST") throw new Error("never replaced silently");
 * await writeFileAtomic(`${dir}/key.pem`, "other", { mode: 0o600, replace: true });
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function writeFileAtomic(
  path: string,
  data: string,
  options: WriteFileAtomicOptions,
): Promise<void> {
  const { mode } = options;
  const suffix = Array.from(
    crypto.getRandomValues(new Uint8Array(6)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
  const tmp = join(dirname(path), `.${basename(path)}.${suffix}.tmp`);
  const handle = await open(tmp, "wx", mode);
  let moved = false;
  try {
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    // The open() mode is filtered by the umask; set the exact mode explicitly.
    await chmod(tmp, mode);
    if (options.replace) {
      await rename(tmp, path);
      moved = true;
      return;
    }
    try {
      await link(tmp, path);
    } catch (error) {
      if ((error as { code?: string }).code === "EEXIST") throw error;
      // Filesystems without hard links: check, then rename (a small race, still no clobber
      // of anything that existed when we checked).
      if (await pathExists(path, { follow: false })) {
        throw Object.assign(new Error(`"${path}" already exists`), { code: "EEXIST" });
      }
      await rename(tmp, path);
      moved = true;
    }
  } finally {
    if (!moved) await rm(tmp, { force: true });
  }
}
