/**
 * What a restricted role's request may carry besides its head and query: a body the gate
 * forwards only when it knows how dockerd will read it.
 *
 * - The content type, from an allow-list. Go's `r.ParseForm` (dockerd's
 *   `httputils.ParseForm`) reads an `application/x-www-form-urlencoded` POST/PUT/PATCH body
 *   *before* the query, so a form body carries parameters the gate never saw (`/build`'s
 *   `networkmode`, a prune's `filters`); `multipart/form-data` reaches `r.FormValue` the same
 *   way. No Docker client sends either, so rather than reading them the gate refuses every
 *   type but the few real clients send.
 * - A container archive upload (`PUT /containers/{name}/archive`) is plain tar only: dockerd
 *   detects gzip, bzip2, xz (and zstd since 25) by their first bytes and decompresses them,
 *   on Docker 25.0–29.5.0 with the container's own `unpigz`/`xz` as host root
 *   (CVE-2026-41567). The CLI always sends plain tar.
 *
 * @module
 */

import { type RequestHead, valuesOf } from "./http.ts";

/**
 * The media types a restricted role's request may declare: JSON bodies, tar streams (the
 * CLI's `application/x-tar`, docker-py's `application/tar`), opaque bytes, and `text/plain`
 * (the Go client's type for a POST without a body). An absent type is fine too: Go then reads
 * the body as `application/octet-stream`.
 */
export const FORWARDED_MEDIA_TYPES: readonly string[] = [
  "application/json",
  "application/x-tar",
  "application/tar",
  "application/octet-stream",
  "text/plain",
];

/** `token/token`, as Go's `mime.ParseMediaType` requires of the part before `;`. */
const MEDIA_TYPE = /^[!#$%&'*+\-.^_`|~0-9a-z]+\/[!#$%&'*+\-.^_`|~0-9a-z]+$/;

/**
 * The media type of `head` as Go reads it (`Header.Get`: the first `Content-Type`, then
 * `mime.ParseMediaType`: up to `;`, trimmed, lower-cased), or `""` when absent or empty.
 * Throws a `TypeError` for anything two readers could read differently: several
 * `Content-Type` headers, a byte outside printable ASCII (Go trims Unicode spaces such as
 * U+0085 and lower-cases `İ` to `i`), or a type that is not `token/token`.
 *
 * @example
 * ```ts
 * import { Buffer } from "node:buffer";
 * import { parseRequestHead } from "./http.ts";
 * import { mediaTypeOf } from "./request_body.ts";
 * const h = parseRequestHead(Buffer.from("POST / HTTP/1.1\r\nHost: d\r\nContent-Type: Application/JSON; charset=utf-8\r\n\r\n"));
 * if (mediaTypeOf(h) !== "application/json") throw new Error();
 * ```
 */
export function mediaTypeOf(head: Pick<RequestHead, "index">): string {
  const values = valuesOf(head, "content-type");
  if (values.length === 0) return "";
  if (values.length > 1) throw new TypeError("more than one Content-Type");
  const value = values[0];
  if (!/^[\t\x20-\x7e]*$/.test(value)) {
    throw new TypeError("Content-Type has a byte outside printable ASCII");
  }
  const base = value.split(";")[0].replace(/^[ \t]+|[ \t]+$/g, "").toLowerCase();
  if (base === "") return value.trim() === "" ? "" : invalid(value);
  return MEDIA_TYPE.test(base) ? base : invalid(value);
}

function invalid(value: string): never {
  throw new TypeError(`Content-Type "${value}" is not a media type`);
}

/**
 * Why a restricted role's request may not be forwarded for its content type, or `undefined`
 * when it may: the type is absent or on {@linkcode FORWARDED_MEDIA_TYPES}.
 *
 * @example
 * ```ts
 * import { Buffer } from "node:buffer";
 * import { parseRequestHead } from "./http.ts";
 * import { contentTypeProblem } from "./request_body.ts";
 * const form = parseRequestHead(Buffer.from("POST /build HTTP/1.1\r\nHost: d\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 0\r\n\r\n"));
 * if (!contentTypeProblem(form)?.includes("form")) throw new Error();
 * ```
 */
export function contentTypeProblem(head: Pick<RequestHead, "index">): string | undefined {
  let media: string;
  try {
    media = mediaTypeOf(head);
  } catch (err) {
    return (err as Error).message;
  }
  if (media === "" || FORWARDED_MEDIA_TYPES.includes(media)) return undefined;
  if (media === "application/x-www-form-urlencoded" || media === "multipart/form-data") {
    return `a ${media} body carries parameters dockerd reads before the query (form bodies are refused)`;
  }
  return `Content-Type ${media} is not one the gate forwards (${FORWARDED_MEDIA_TYPES.join(", ")})`;
}

/**
 * Whether `method path` (canonical, without the version) uploads an archive into a container.
 *
 * @example
 * ```ts
 * import { isArchiveUpload } from "./request_body.ts";
 * if (!isArchiveUpload("PUT", "/containers/web/archive")) throw new Error();
 * if (isArchiveUpload("GET", "/containers/web/archive")) throw new Error();
 * ```
 */
export function isArchiveUpload(method: string, path: string): boolean {
  return method === "PUT" && /^\/containers\/.+\/archive$/.test(path);
}

/** The bytes of a tar block; an archive's first block decides. */
export const TAR_BLOCK = 512;

/** dockerd's `DetectCompression` magic numbers (20.10: bzip2, gzip, xz; 25 and later: zstd). */
const COMPRESSION_MAGIC: readonly [string, readonly number[]][] = [
  ["bzip2", [0x42, 0x5a, 0x68]],
  ["gzip", [0x1f, 0x8b, 0x08]],
  ["xz", [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
  ["zstd", [0x28, 0xb5, 0x2f, 0xfd]],
];

/**
 * Why an archive upload whose body starts with `prefix` (at least {@linkcode TAR_BLOCK}
 * bytes, or the whole body when shorter) is not plain tar, or `undefined` when it is: the
 * first block is the end-of-archive block (all zero) or a tar header whose checksum holds,
 * and none of dockerd's compression magic numbers (nor a zstd skippable frame) starts it.
 *
 * @example
 * ```ts
 * import { tarPrefixProblem } from "./request_body.ts";
 * if (tarPrefixProblem(new Uint8Array(1024)) !== undefined) throw new Error("empty tar is tar");
 * const gz = new Uint8Array(512); gz.set([0x1f, 0x8b, 0x08]);
 * if (!tarPrefixProblem(gz)?.includes("gzip")) throw new Error();
 * ```
 */
export function tarPrefixProblem(prefix: Uint8Array): string | undefined {
  for (const [name, magic] of COMPRESSION_MAGIC) {
    if (magic.every((b, i) => prefix[i] === b)) {
      return `an archive upload starts like ${name}: restricted roles upload plain tar only (the daemon would decompress it)`;
    }
  }
  if (
    prefix.length >= 4 && (prefix[0] & 0xf0) === 0x50 && prefix[1] === 0x2a &&
    prefix[2] === 0x4d && prefix[3] === 0x18
  ) {
    return "an archive upload starts like a zstd frame: restricted roles upload plain tar only";
  }
  if (prefix.length < TAR_BLOCK) return "an archive upload shorter than one tar block is not tar";
  const block = prefix.subarray(0, TAR_BLOCK);
  if (block.every((b) => b === 0)) return undefined;
  return tarChecksumHolds(block)
    ? undefined
    : "an archive upload must be plain tar (its first block is not a tar header)";
}

/** The header checksum: the sum of the block's bytes with the checksum field as spaces. */
function tarChecksumHolds(block: Uint8Array): boolean {
  const field = new TextDecoder("latin1").decode(block.subarray(148, 156));
  const m = /^ *([0-7]{1,8})[ \0]*$/.exec(field);
  if (!m) return false;
  let sum = 0;
  for (let i = 0; i < TAR_BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i];
  return sum === parseInt(m[1], 8);
}
