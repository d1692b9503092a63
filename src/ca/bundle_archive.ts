/**
 * A client bundle packed for copying to another machine: a gzip'd POSIX tar (ustar) of
 * `NAME/ca.pem`, `NAME/cert.pem` and `NAME/key.pem` (and `NAME/host`, the gate's `HOST:PORT`,
 * when it is known), written 0600 and never over an existing file. The key keeps mode 0600
 * inside the archive too, so `tar -xpf` restores it private. `dockgate use` reads it on the
 * client (`bundle_unpack.ts`).
 *
 * Why our own tar writer: three small files need 512-byte headers and padding, no more; a
 * dependency (or a `tar` binary that may not be there) is not worth that.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { closeSync, constants, openSync, writeSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import { bundlePaths } from "./layout.ts";
import { HOST_FILE } from "./bundle_unpack.ts";
import { gzipSync } from "node:zlib";

/** One file of an archive. */
export interface ArchiveEntry {
  /** Path inside the archive (`alice/key.pem`). */
  name: string;
  /** Contents. */
  data: Uint8Array;
  /** Unix mode bits. */
  mode: number;
}

/**
 * The ustar bytes of `entries` (with the two zero blocks at the end).
 *
 * @example
 * ```ts
 * import { tarArchive } from "./bundle_archive.ts";
 * const t = tarArchive([{ name: "a/x.pem", data: new TextEncoder().encode("hi"), mode: 0o600 }], 0);
 * if (t.length !== 512 * 4 || new TextDecoder().decode(t.subarray(257, 262)) !== "ustar") throw new Error();
 * ```
 */
export function tarArchive(entries: ArchiveEntry[], mtime: number): Uint8Array {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    if (Buffer.byteLength(e.name) > 100) throw new RangeError(`Archive name too long: ${e.name}`);
    const h = Buffer.alloc(512);
    h.write(e.name, 0, 100, "utf8");
    h.write(octal(e.mode & 0o7777, 8), 100, "ascii");
    h.write(octal(0, 8), 108, "ascii"); // uid
    h.write(octal(0, 8), 116, "ascii"); // gid
    h.write(octal(e.data.length, 12), 124, "ascii");
    h.write(octal(mtime, 12), 136, "ascii");
    h.fill(" ", 148, 156); // checksum field counts as spaces
    h.write("0", 156, "ascii"); // a regular file
    h.write("ustar\u000000", 257, "binary");
    let sum = 0;
    for (const b of h) sum += b;
    h.write(octal(sum, 7) + "\0", 148, "ascii");
    blocks.push(h, Buffer.from(e.data), Buffer.alloc((512 - (e.data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

/** `n` as zero-padded octal with a NUL, in a field of `width` bytes. */
function octal(n: number, width: number): string {
  return n.toString(8).padStart(width - 1, "0") + "\0";
}

/**
 * Pack the client bundle in `bundleDir` as `file` (gzip'd tar, created 0600; an existing
 * file is an error, never replaced). Entries are `name/ca.pem`, `name/cert.pem`,
 * `name/key.pem`, and with `host` (the gate as the client reaches it, `HOST:PORT`)
 * `name/host`, so that `dockgate use` on the client needs no `--host`.
 *
 * @example
 * ```ts ignore
 * await writeBundleArchive("pki/clients/alice", "alice", "alice.tar.gz", "gate.example:2376");
 * ```
 */
export async function writeBundleArchive(
  bundleDir: string,
  name: string,
  file: string,
  host?: string,
): Promise<void> {
  const entries: ArchiveEntry[] = [];
  const paths = bundlePaths(bundleDir);
  for (
    const [path, mode] of [[paths.ca, 0o644], [paths.cert, 0o644], [paths.key, 0o600]] as const
  ) {
    const f = basename(path);
    const data = await readFile(path).catch((err) => {
      throw new Error(`Cannot read "${path}": ${(err as Error).message}`);
    });
    entries.push({ name: `${name}/${f}`, data, mode });
  }
  if (host !== undefined) {
    entries.push({ name: `${name}/${HOST_FILE}`, data: Buffer.from(`${host}\n`), mode: 0o644 });
  }
  const bytes = gzipSync(tarArchive(entries, Math.floor(Date.now() / 1000)));
  let fd: number;
  try {
    // O_EXCL: never over a file that is there (a bundle holds a private key).
    fd = openSync(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(
      `Cannot write bundle "${file}": ${
        code === "EEXIST" ? "file exists (remove it first)" : (err as Error).message
      }`,
    );
  }
  try {
    writeSync(fd, bytes);
  } finally {
    closeSync(fd);
  }
}
