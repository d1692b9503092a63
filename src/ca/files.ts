/**
 * How `dockgate keygen` writes: private keys 0600, certificates 0644, created directories 0700
 * (set explicitly, whatever the umask), each file through a temporary file moved into place,
 * never over an existing one unless asked, and never into a directory that is a symlink or
 * writable by others. Also what every keygen step reports ({@linkcode KeygenReport}) and the
 * error for "that already exists" ({@linkcode AlreadyExistsError}).
 *
 * @module
 */

import { chmod, lstat, mkdir, open } from "node:fs/promises";
import process from "node:process";
import { unsafeMode } from "../pki/trust_files.ts";
import { fsErrorText, pathExists, writeFileAtomic } from "../util/fs_util.ts";

/** keygen never follows a symlink when asking what is there: a dangling one is not "absent". */
export const NO_FOLLOW = { follow: false } as const;

/** The mode of a private key keygen writes. */
export const KEY_MODE = 0o600;
/** The mode of a certificate (or CRL, or CA copy) keygen writes. */
export const CERT_MODE = 0o644;
/** The mode of a directory keygen creates. */
export const DIR_MODE = 0o700;

/** What a keygen operation did, as file paths. */
export interface KeygenReport {
  /** Files written. */
  created: string[];
  /** Existing files left untouched. */
  kept: string[];
  /** Things the user should know (e.g. options that had no effect on kept files). */
  notes?: string[];
  /** Serials revoked by the operation (`--revoke-old`). */
  revoked?: string[];
}

/**
 * Thrown when a key or certificate already exists and `force` was not given.
 *
 * @example
 * ```ts
 * import { AlreadyExistsError } from "./files.ts";
 * const error = new AlreadyExistsError("/pki/server/key.pem", 'Server bundle "/pki/server" already exists');
 * if (error.path !== "/pki/server/key.pem" || error.name !== "AlreadyExistsError") {
 *   throw new Error("unexpected");
 * }
 * ```
 */
export class AlreadyExistsError extends Error {
  /** The existing path. */
  readonly path: string;

  /** Create the error for `path`; `message` defaults to one naming it. */
  constructor(path: string, message?: string, options?: ErrorOptions) {
    super(message ?? `"${path}" already exists: use --force to replace it`, options);
    this.name = "AlreadyExistsError";
    this.path = path;
  }
}

/** Whether a part (a certificate and its key) is absent, half there, or whole. */
export type PartState = "missing" | "partial" | "present";

/**
 * Whether `cert` and `key` exist (symlinks not followed).
 *
 * @example
 * ```ts ignore
 * if (await partState("pki/ca/ca.pem", "pki/ca/ca-key.pem") === "partial") throw new Error();
 * ```
 */
export async function partState(cert: string, key: string): Promise<PartState> {
  const count = Number(await pathExists(cert, NO_FOLLOW)) +
    Number(await pathExists(key, NO_FOLLOW));
  return count === 0 ? "missing" : count === 2 ? "present" : "partial";
}

/**
 * {@linkcode writeFileAtomic} with `mode`, recorded in `report.created`; an existing file
 * without `force` is an {@linkcode AlreadyExistsError}.
 *
 * @example
 * ```ts ignore
 * await writeFileSafely("pki/ca/ca.pem", pem, CERT_MODE, false, report);
 * ```
 */
export async function writeFileSafely(
  path: string,
  data: string,
  mode: number,
  force: boolean,
  report: KeygenReport,
): Promise<void> {
  try {
    await writeFileAtomic(path, data, { mode, replace: force });
  } catch (error) {
    if (errorCode(error) === "EEXIST") {
      throw new AlreadyExistsError(path, `"${path}" already exists: use --force to replace it`);
    }
    throw error;
  }
  report.created.push(path);
}

/**
 * Create directory `path` (0700), or check the one there: a real directory (not a symlink),
 * ours or root's, not writable by others. With `recursive` its parents are created too.
 *
 * @example
 * ```ts ignore
 * await ensureDir("pki/clients");
 * ```
 */
export async function ensureDir(path: string, recursive = false): Promise<void> {
  try {
    await mkdir(path, { mode: DIR_MODE, recursive: false });
    await chmod(path, DIR_MODE);
    return;
  } catch (error) {
    const code = errorCode(error);
    if (code === "ENOENT" && recursive) {
      await mkdir(path, { mode: DIR_MODE, recursive: true });
      await chmod(path, DIR_MODE);
      return;
    }
    if (code !== "EEXIST") {
      throw new Error(`Cannot create directory "${path}": ${fsErrorText(error)}`, { cause: error });
    }
  }
  // lstat, not stat: a symlinked directory could point anywhere, including into a tree
  // someone else controls. And a directory we did not create must be ours (or root's) and
  // not writable by others, or whoever can write it can swap the keys we are about to trust.
  const info = await lstat(path);
  if (info.isSymbolicLink()) {
    throw new Error(
      `Cannot use "${path}": it is a symlink, and keygen does not follow symlinked directories ` +
        `(use the real path)`,
    );
  }
  if (!info.isDirectory()) {
    throw new Error(`Cannot use "${path}": it exists and is not a directory`);
  }
  const bad = process.getuid
    ? unsafeMode(path, { mode: info.mode, uid: info.uid, isDirectory: true }, process.getuid())
    : undefined;
  if (bad) throw new Error(`Cannot use "${path}": it is ${bad.problem}: run ${bad.fix}`);
}

function errorCode(error: unknown): string | undefined {
  return (error as { code?: string } | null)?.code;
}

/**
 * Sync directory `dir`, so that a file just created (or renamed) in it survives a crash: a
 * file's own sync does not make its directory entry durable.
 *
 * @example
 * ```ts
 * import { syncDirectory } from "./files.ts";
 * const dir = await Deno.makeTempDir();
 * await syncDirectory(dir);
 * await Deno.remove(dir);
 * ```
 */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
