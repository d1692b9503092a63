/**
 * Reading a client bundle archive (`dockgate env NAME --bundle NAME.tar.gz`) on the client
 * machine, where it came from a copy we cannot vouch for: a gzip'd tar read strictly, in
 * memory, before anything is written. Only regular files named `NAME/ca.pem`,
 * `NAME/cert.pem`, `NAME/key.pem` (and `NAME/host`, the gate's address) are taken, plus the
 * directory entry `NAME/` that `tar` itself writes; every other entry (a `..` path, an
 * absolute path, a symlink or hard link, a device, a PAX or GNU long-name header, a second
 * copy of a file, another directory, a file larger than a bundle's) refuses the whole archive.
 *
 * Why our own reader: the rules above are the point, and a general tar library's job is to
 * accept what these rules refuse.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { gunzipSync } from "node:zlib";

/** The files of a client bundle archive, as text. */
export interface BundleArchive {
  /** The bundle's name (the archive's one directory; the Docker context's name). */
  name: string;
  /** `ca.pem`: the CA(s) the client trusts for the gate. */
  ca: string;
  /** `cert.pem`: the client's certificate (and any intermediates after it). */
  cert: string;
  /** `key.pem`: the client's private key. */
  key: string;
  /** `host`: the gate's `HOST:PORT` as recorded by `env --bundle --host`, if it was. */
  host?: string;
}

/** A refused archive: the message is one line that says why. */
export class BundleArchiveError extends Error {
  /** `why`: what is wrong with the archive. */
  constructor(why: string) {
    super(why);
    this.name = "BundleArchiveError";
  }
}

/** The file beside the bundle's PEM files that records the gate's `HOST:PORT`. */
export const HOST_FILE = "host";
/** The files an archive may hold, inside its one directory. */
const FILES = ["ca.pem", "cert.pem", "key.pem", HOST_FILE] as const;
/** A bundle's files are a few KiB; anything larger is not one. */
const MAX_FILE = 64 * 1024;
/** Decompressed size cap: a gzip bomb stops here. */
const MAX_TAR = 1024 * 1024;
/** Docker's rule for a context name, which the bundle's name becomes. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.+-]*$/;

/**
 * Read a client bundle archive (gzip'd tar bytes); throws {@linkcode BundleArchiveError}
 * with the reason for anything but exactly a bundle's files.
 *
 * @example
 * ```ts
 * import { gzipSync } from "node:zlib";
 * import { tarArchive } from "./bundle_archive.ts";
 * import { readBundleArchive } from "./bundle_unpack.ts";
 * const file = (name: string) => ({ name, data: new TextEncoder().encode("x"), mode: 0o600 });
 * const tgz = gzipSync(tarArchive(["alice/ca.pem", "alice/cert.pem", "alice/key.pem"].map(file), 0));
 * if (readBundleArchive(tgz).name !== "alice") throw new Error();
 * const bad = gzipSync(tarArchive([file("alice/../x")], 0));
 * let refused = false;
 * try { readBundleArchive(bad); } catch { refused = true; }
 * if (!refused) throw new Error("a .. path is refused");
 * ```
 */
export function readBundleArchive(gzipped: Uint8Array): BundleArchive {
  let tar: Buffer;
  try {
    tar = gunzipSync(gzipped, { maxOutputLength: MAX_TAR });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new BundleArchiveError(
      code === "ERR_BUFFER_TOO_LARGE"
        ? `larger than ${MAX_TAR} bytes unpacked: not a client bundle`
        : `not a gzip'd tar (${(err as Error).message})`,
    );
  }
  const files = new Map<string, string>();
  let name: string | undefined;
  for (const entry of tarEntries(tar)) {
    const slash = entry.path.indexOf("/");
    const dir = slash < 0 ? entry.path : entry.path.slice(0, slash);
    const rest = slash < 0 ? "" : entry.path.slice(slash + 1);
    if (!NAME.test(dir)) throw unexpected(entry, "outside one NAME/ directory");
    if (name !== undefined && dir !== name) throw unexpected(entry, `outside ${name}/`);
    name = dir;
    if (entry.type === "directory") {
      if (rest !== "") throw unexpected(entry, "a directory");
      continue;
    }
    if (entry.type !== "file") throw unexpected(entry, entry.type);
    if (!(FILES as readonly string[]).includes(rest)) {
      throw unexpected(entry, `not one of ${FILES.join(", ")}`);
    }
    if (files.has(rest)) throw unexpected(entry, "a second copy");
    files.set(rest, entry.data.toString("utf8"));
  }
  if (name === undefined) throw new BundleArchiveError("empty: no bundle in it");
  for (const f of ["ca.pem", "cert.pem", "key.pem"]) {
    if (!files.has(f)) throw new BundleArchiveError(`${name}/${f} is missing`);
  }
  const host = files.get("host")?.trim();
  return {
    name,
    ca: files.get("ca.pem")!,
    cert: files.get("cert.pem")!,
    key: files.get("key.pem")!,
    ...(host ? { host } : {}),
  };
}

/** One tar entry as read. */
interface TarEntry {
  path: string;
  type: "file" | "directory" | string;
  data: Buffer;
}

function unexpected(entry: TarEntry, why: string): BundleArchiveError {
  return new BundleArchiveError(`unexpected entry "${printable(entry.path)}" (${why})`);
}

/** A name as a log line may show it (control characters escaped). */
function printable(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\x${c.charCodeAt(0).toString(16)}`);
}

/** The type flags we name in a refusal; anything else is refused as "type X". */
const TYPES: Record<string, string> = {
  "0": "file",
  "\0": "file",
  "1": "a hard link",
  "2": "a symlink",
  "3": "a character device",
  "4": "a block device",
  "5": "directory",
  "6": "a FIFO",
  "7": "a contiguous file",
  "x": "a PAX header",
  "g": "a PAX global header",
  "L": "a GNU long name",
  "K": "a GNU long link name",
};

/** The entries of an uncompressed tar, each header's checksum and fields checked. */
function* tarEntries(tar: Buffer): Generator<TarEntry> {
  let at = 0;
  while (true) {
    if (at + 512 > tar.length) throw new BundleArchiveError("truncated tar (no end blocks)");
    const h = tar.subarray(at, at + 512);
    if (h.every((b) => b === 0)) return;
    if (!checksumOk(h)) throw new BundleArchiveError(`bad tar header checksum at byte ${at}`);
    const size = octalField(h, 124, 12);
    if (size === undefined || size > MAX_FILE) {
      throw new BundleArchiveError(`tar entry at byte ${at} has a bad or oversized length`);
    }
    const flag = String.fromCharCode(h[156]);
    const path = tarPath(h);
    const type = TYPES[flag] ?? `type ${JSON.stringify(flag)}`;
    const start = at + 512;
    if (start + size > tar.length) throw new BundleArchiveError("truncated tar entry");
    yield { path, type, data: Buffer.from(tar.subarray(start, start + size)) };
    at = start + Math.ceil(size / 512) * 512;
  }
}

/** The entry's path: POSIX ustar's prefix and name (GNU tar uses that field for times). */
function tarPath(h: Buffer): string {
  const name = cString(h, 0, 100);
  const posix = h.subarray(257, 263).toString("latin1") === "ustar\u0000";
  const prefix = posix ? cString(h, 345, 155) : "";
  return prefix ? `${prefix}/${name}` : name;
}

function cString(h: Buffer, offset: number, length: number): string {
  const field = h.subarray(offset, offset + length);
  const end = field.indexOf(0);
  return field.subarray(0, end < 0 ? length : end).toString("utf8");
}

/** An octal number field (NUL- or space-terminated); `undefined` when it is not one. */
function octalField(h: Buffer, offset: number, length: number): number | undefined {
  const text = h.subarray(offset, offset + length).toString("latin1").replace(/[\0 ]+$/, "")
    .replace(/^ +/, "");
  return /^[0-7]{1,11}$/.test(text) ? parseInt(text, 8) : undefined;
}

/** The header checksum: the unsigned sum of its bytes, the checksum field counted as spaces. */
function checksumOk(h: Buffer): boolean {
  const stored = octalField(h, 148, 8);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : h[i];
  return stored === sum;
}
