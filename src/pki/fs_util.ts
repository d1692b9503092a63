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

import { lstat, stat } from "node:fs/promises";

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
  return (error instanceof Error ? error.message : String(error)).replace(/, \w+(?: '.*')?$/, "");
}
