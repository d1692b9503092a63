/**
 * One answer to "is there something at this path?" for keygen, revoke and serve's CRL.
 *
 * Why one helper: "absent" decides whether keygen writes a key, whether revoke finds a client
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
 * import { pathExists } from "./fs_exists.ts";
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
    // Node's fs messages end in ", stat '/path'": we name the path ourselves.
    const reason = (error instanceof Error ? error.message : String(error)).replace(
      /, \w+(?: '.*')?$/,
      "",
    );
    throw new Error(`Cannot access ${what}"${path}": ${reason}`, { cause: error });
  }
}
