/**
 * Trust files are trusted only if nobody else could have written them: the CA bundle, the CRL,
 * the key and certificate serve uses, and every directory above them, must be owned by us or
 * by root and not writable by group or others (a world-writable directory is fine only with
 * the sticky bit, as `/tmp`, where others cannot replace our files). Like OpenSSH's
 * StrictModes. Why: another local user who owns `server/` could add their CA to `ca.pem`, or
 * swap the CRL, and be admitted at the next reload.
 *
 * @module
 */

import { realpath, stat } from "node:fs/promises";
import { dirname } from "node:path";
import process from "node:process";
import { fsErrorText } from "../util/fs_util.ts";

/** A trust file or directory that someone other than us or root could have written. */
export class UntrustedPathError extends Error {
  /** The offending path (after resolving symlinks). */
  readonly path: string;

  /** Create the error about `path`. */
  constructor(message: string, path: string) {
    super(message);
    this.name = "UntrustedPathError";
    this.path = path;
  }
}

/** One ownership/mode finding, with the command that fixes it. */
export interface UnsafeMode {
  /** What is wrong, e.g. `owned by uid 1000` or `writable by group/others (mode 0775)`. */
  problem: string;
  /** The shell command that fixes it. */
  fix: string;
}

/**
 * What is unsafe about one file or directory with `mode` and `uid`, for the user `me`, or
 * `undefined` when nothing is. Pure: the rule in one place.
 *
 * @example
 * ```ts
 * import { unsafeMode } from "./trust_files.ts";
 * if (unsafeMode("/p/ca.pem", { mode: 0o100644, uid: 0, isDirectory: false }, 0)) throw new Error();
 * const bad = unsafeMode("/p", { mode: 0o40777, uid: 0, isDirectory: true }, 0);
 * if (bad?.fix !== 'chmod go-w "/p"') throw new Error(bad?.fix);
 * if (unsafeMode("/tmp", { mode: 0o41777, uid: 0, isDirectory: true }, 1000)) throw new Error("sticky /tmp is fine");
 * if (unsafeMode("/p", { mode: 0o40700, uid: 1000, isDirectory: true }, 0)?.fix !== 'chown 0 "/p"') throw new Error();
 * ```
 */
export function unsafeMode(
  path: string,
  info: { mode: number; uid: number; isDirectory: boolean },
  me: number,
): UnsafeMode | undefined {
  if (info.uid !== me && info.uid !== 0) {
    return {
      problem: `owned by uid ${info.uid}, not by you (uid ${me}) or root`,
      fix: `chown ${me} "${path}"`,
    };
  }
  const sticky = (info.mode & 0o1000) !== 0;
  if ((info.mode & 0o022) !== 0 && !(info.isDirectory && sticky && info.uid === 0)) {
    const octal = (info.mode & 0o7777).toString(8).padStart(4, "0");
    return { problem: `writable by group/others (mode ${octal})`, fix: `chmod go-w "${path}"` };
  }
  return undefined;
}

/**
 * Check that `path` (a trust file: `what` names it in the message) and every directory above
 * it, after resolving symlinks, pass {@linkcode unsafeMode}. Throws
 * {@linkcode UntrustedPathError} with the fix otherwise, or `Error` when the path cannot be
 * resolved. Does nothing on Windows (no POSIX owners).
 *
 * @example
 * ```ts
 * import { checkTrustedPath } from "./trust_files.ts";
 * if ((await Deno.permissions.query({ name: "read" })).state === "granted") {
 *   const dir = await Deno.makeTempDir();
 *   await Deno.writeTextFile(`${dir}/ca.pem`, "x");
 *   await checkTrustedPath(`${dir}/ca.pem`, "CA certificate");
 *   await Deno.chmod(dir, 0o777);
 *   const err = await checkTrustedPath(`${dir}/ca.pem`, "CA certificate").catch((e) => e);
 *   await Deno.remove(dir, { recursive: true });
 *   if (!/chmod go-w/.test(err?.message)) throw new Error("expected a refusal");
 * }
 * ```
 */
export async function checkTrustedPath(path: string, what: string): Promise<void> {
  if (process.platform === "win32" || typeof process.getuid !== "function") return;
  const me = process.getuid();
  let real: string;
  try {
    real = await realpath(path);
  } catch (error) {
    throw new Error(`Cannot read ${what} "${path}": ${fsErrorText(error)}`, { cause: error });
  }
  for (let p = real;; p = dirname(p)) {
    const info = await stat(p);
    const bad = unsafeMode(
      p,
      { mode: info.mode, uid: info.uid, isDirectory: info.isDirectory() },
      me,
    );
    if (bad) {
      const where = p === real ? `${what} "${path}"` : `Directory "${p}" above ${what} "${path}"`;
      throw new UntrustedPathError(
        `${where} is ${bad.problem}: run ${bad.fix} (or pass --insecure-key-perms)`,
        p,
      );
    }
    if (p === dirname(p)) return;
  }
}
