/**
 * The `nonRootUser` rule: the `User` of a container, exec or service task, as an allow-list of
 * what the gate can read completely. dockerd (runc's `user.GetExecUser`) reads the user part
 * with Go's `strconv.Atoi`, which takes a sign (`+0` and `-0` are uid 0), and looks anything
 * that is not a number up in the image's `/etc/passwd`, which the gate never reads (an image
 * the role builds or loads may call uid 0 anything). So only a decimal uid that is not 0,
 * without sign or leading zeros, passes, with an optional decimal gid after a `:`.
 *
 * @module
 */

/** The largest id runc accepts (`maxID`, 2^31 - 1). */
const MAX_ID = 2 ** 31 - 1;

/** A decimal id as written: no sign, no leading zeros. */
const DECIMAL = /^(?:0|[1-9][0-9]{0,9})$/;

/**
 * Why `user` (a `User` field: `uid` or `uid:gid`) may not be run by a role that runs nothing
 * as root, or `undefined` when it is a numeric uid other than 0.
 *
 * @example
 * ```ts
 * import { nonRootUserProblem } from "./non_root_user.ts";
 * for (const u of ["1000", "1000:1000", "65534:0"]) if (nonRootUserProblem(u)) throw new Error(u);
 * for (const u of ["", "0", "+0", "-0", "00", "root", "nobody", "1000:", "01000"]) {
 *   if (!nonRootUserProblem(u)) throw new Error(u);
 * }
 * ```
 */
export function nonRootUserProblem(user: string): string | undefined {
  const colon = user.indexOf(":");
  const uid = colon === -1 ? user : user.slice(0, colon);
  const gid = colon === -1 ? undefined : user.slice(colon + 1);
  const id = (s: string) => DECIMAL.test(s) && Number(s) <= MAX_ID;
  if (id(uid) && uid !== "0" && (gid === undefined || id(gid))) return undefined;
  return "the role runs nothing as root: give a numeric uid other than 0 (uid or uid:gid, " +
    "decimal; a name is looked up in the image's /etc/passwd, which the gate does not read)";
}
