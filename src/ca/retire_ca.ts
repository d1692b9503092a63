/**
 * Keep a copy of a CA that `keygen --force` is about to replace, so that a re-key by mistake
 * (or one that must be undone) never loses the only copy of the old key.
 *
 * @module
 */

import { chmod, lstat, mkdir, readFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { fsErrorText, pathExists, writeFileAtomic } from "../util/fs_util.ts";
import { retiredCasDir } from "./layout.ts";

/** The CA files to keep. */
export interface CaFiles {
  /** `DIR/ca`. */
  caDir: string;
  /** The CA certificate. */
  caCert: string;
  /** The CA key. */
  caKey: string;
}

/**
 * Copy the CA's certificate and key (those that exist) into a new `DIR/ca/retired/TIME/`
 * (0700; key 0600, certificate 0644) and return that directory. Never overwrites: an existing
 * directory of the same time gets a `-N` suffix, and each file is written only if absent.
 *
 * @example
 * ```ts ignore
 * import { retireCa } from "./retire_ca.ts";
 * const kept = await retireCa({ caDir: "pki/ca", caCert: "pki/ca/ca.pem", caKey: "pki/ca/ca-key.pem" });
 * ```
 */
export async function retireCa(files: CaFiles, now: Date = new Date()): Promise<string> {
  const parent = retiredCasDir(files.caDir);
  await mkdir(parent, { mode: 0o700 }).catch((err) => {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  });
  // Never write keys through a symlink planted in place of the directory.
  if ((await lstat(parent)).isSymbolicLink()) {
    throw new Error(`Cannot retire the CA into "${parent}": it is a symlink (remove it)`);
  }
  const stamp = now.toISOString().replace(/:/g, "-");
  for (let n = 0;; n++) {
    const dir = join(parent, n === 0 ? stamp : `${stamp}-${n}`);
    try {
      await mkdir(dir, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EEXIST") continue;
      throw new Error(`Cannot create "${dir}": ${fsErrorText(err)}`, { cause: err });
    }
    await chmod(dir, 0o700);
    for (const [file, mode] of [[files.caCert, 0o644], [files.caKey, 0o600]] as const) {
      if (!(await pathExists(file, { follow: false }))) continue;
      await writeFileAtomic(join(dir, basename(file)), await readFile(file, "utf8"), { mode });
    }
    return dir;
  }
}
