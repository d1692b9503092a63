/**
 * The request target as dockerd routes it: percent-decoded once, the `/vN.NN` prefix split
 * off, the query string apart. A path whose decoded form is not canonical is refused rather
 * than guessed at: the daemon's router (gorilla/mux) cleans and decodes paths its own way, and
 * a rule must never match a different path than the one the daemon runs.
 *
 * @module
 */

import { HttpError } from "./http.ts";

/** Requests below this API version are refused for restricted roles (API < 1.24 applied a
 * `HostConfig` sent with `start`). */
export const MIN_API_VERSION = "1.24";

/** A parsed request target. */
export interface ApiTarget {
  /** The decoded, canonical path without the version prefix, e.g. `/containers/create`. */
  path: string;
  /** The API version from the `/vN.NN` prefix, if there was one. */
  version?: string;
  /** Query parameters in order (decoded as Go's `url.ParseQuery` does). */
  query: [string, string][];
}

/**
 * Parse `target` (origin-form). Throws an {@linkcode HttpError} (400) for a path that is not
 * canonical once decoded: dot segments, `//`, a trailing `/`, encoded `/` `\` NUL or `%`,
 * control characters, or invalid percent-encoding in path or query.
 *
 * @example
 * ```ts
 * import { parseApiTarget } from "./api_path.ts";
 * const t = parseApiTarget("/v1.41/containers/json?all=1");
 * if (t.path !== "/containers/json" || t.version !== "1.41" || t.query[0][1] !== "1") throw new Error();
 * let refused = false;
 * try { parseApiTarget("/containers/x/../create"); } catch { refused = true; }
 * if (!refused) throw new Error("dot segments must be refused");
 * ```
 */
export function parseApiTarget(target: string): ApiTarget {
  const q = target.indexOf("?");
  const rawPath = q === -1 ? target : target.slice(0, q);
  const rawQuery = q === -1 ? "" : target.slice(q + 1);
  if (/%(2f|5c|00|25)/i.test(rawPath)) {
    throw new HttpError(400, "encoded '/', '\\', NUL or '%' in the path");
  }
  const decoded = percentDecode(rawPath, false);
  // deno-lint-ignore no-control-regex
  if (/[\x00-\x1f\x7f\\]/.test(decoded)) throw new HttpError(400, "control character in the path");
  if (decoded.includes("//")) throw new HttpError(400, "empty path segment ('//')");
  const segments = decoded.split("/").slice(1);
  if (segments.some((s) => s === "." || s === "..")) {
    throw new HttpError(400, "dot segment in the path");
  }
  if (decoded.length > 1 && decoded.endsWith("/")) {
    throw new HttpError(400, "trailing '/' in the path");
  }
  const version = /^\/v([0-9.]+)(?=\/|$)/.exec(decoded);
  let path = decoded;
  let v: string | undefined;
  if (version) {
    v = version[1];
    if (!/^[0-9]{1,3}\.[0-9]{1,3}$/.test(v)) throw new HttpError(400, "malformed API version");
    path = decoded.slice(version[0].length) || "/";
  }
  return { path, version: v, query: parseQuery(rawQuery) };
}

/** Whether API version `a` is older than `b` (`"1.9" < "1.24"`). */
export function versionBelow(a: string, b: string): boolean {
  const [am, an] = a.split(".").map(Number);
  const [bm, bn] = b.split(".").map(Number);
  return am < bm || (am === bm && an < bn);
}

/** Decode `%XX` (and `+` in a query); invalid escapes or invalid UTF-8 are refused. */
function percentDecode(text: string, plusIsSpace: boolean): string {
  const s = plusIsSpace ? text.replaceAll("+", " ") : text;
  if (!s.includes("%")) return s;
  if (/%(?![0-9a-fA-F]{2})/.test(s)) throw new HttpError(400, "invalid percent-encoding");
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] === "%") {
      bytes.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(s.charCodeAt(i));
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(new Uint8Array(bytes));
  } catch {
    throw new HttpError(400, "percent-encoding is not UTF-8");
  }
}

/** `a=1&b=2` as Go's `url.ParseQuery` reads it (`;` is refused, as Go ≥ 1.17 does). */
function parseQuery(raw: string): [string, string][] {
  if (raw === "") return [];
  if (raw.includes(";")) throw new HttpError(400, "';' in the query string");
  const out: [string, string][] = [];
  for (const part of raw.split("&")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    const key = percentDecode(eq === -1 ? part : part.slice(0, eq), true);
    const value = eq === -1 ? "" : percentDecode(part.slice(eq + 1), true);
    out.push([key, value]);
  }
  return out;
}

/**
 * The values of query parameter `name` (exact, as Go compares keys).
 *
 * @example
 * ```ts
 * import { parseApiTarget, queryValues } from "./api_path.ts";
 * const t = parseApiTarget("/build?networkmode=host&t=x");
 * if (queryValues(t, "networkmode")[0] !== "host") throw new Error();
 * ```
 */
export function queryValues(target: ApiTarget, name: string): string[] {
  return target.query.filter(([k]) => k === name).map(([, v]) => v);
}
