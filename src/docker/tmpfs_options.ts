/**
 * `HostConfig.Tmpfs` (`--tmpfs /run:size=64m,noexec`) as an allow-list. dockerd checks only the
 * targets and hands each options string, split at commas, to the runtime as mount options; runc
 * reads `bind`/`rbind` there as a bind mount of a host path (relative to the container's bundle
 * directory) instead of a tmpfs. So each option must be a size, mode, owner or inode count, or
 * one of the plain mount flags, nothing else.
 *
 * @module
 */

import { isJsonObject, type JsonValue } from "./strict_json.ts";

/** Mount flags a tmpfs may take (all container-local). */
const FLAGS: ReadonlySet<string> = new Set([
  "ro",
  "rw",
  "exec",
  "noexec",
  "suid",
  "nosuid",
  "dev",
  "nodev",
  "sync",
  "async",
  "dirsync",
  "atime",
  "noatime",
  "diratime",
  "nodiratime",
  "relatime",
  "norelatime",
  "strictatime",
  "nostrictatime",
]);

/** tmpfs's own `key=value` options, with plain values. */
const VALUED =
  /^(?:size=[0-9]+[kmgKMG%]?|mode=[0-7]{1,4}|uid=[0-9]+|gid=[0-9]+|nr_inodes=[0-9]+[kmgKMG]?|nr_blocks=[0-9]+[kmgKMG]?)$/;

/**
 * Why `value` (a `Tmpfs` map of target to options) may not be forwarded, or `undefined`. `at`
 * names it in the message.
 *
 * @example
 * ```ts
 * import { tmpfsProblem } from "./tmpfs_options.ts";
 * if (tmpfsProblem({ "/run": "rw,noexec,size=64m" }, "Tmpfs")) throw new Error();
 * if (!tmpfsProblem({ "/x": "rbind" }, "Tmpfs")) throw new Error();
 * ```
 */
export function tmpfsProblem(value: JsonValue, at: string): string | undefined {
  if (value === null) return undefined;
  if (!isJsonObject(value)) return `${at} is not an object`;
  for (const [target, options] of Object.entries(value)) {
    if (typeof options !== "string") return `${at}.${target} is not a string`;
    const bad = options.split(",").find((o) => o !== "" && !FLAGS.has(o) && !VALUED.test(o));
    if (bad !== undefined) {
      return `${at}.${target}: tmpfs option ${JSON.stringify(bad)} not allowed (size=, mode=, ` +
        "uid=, gid=, nr_inodes=, nr_blocks= and plain mount flags only)";
    }
  }
  return undefined;
}
