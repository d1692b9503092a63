/**
 * The options a restricted role may give a log driver it does not name on `allowLogDrivers`.
 * A `LogConfig` without a `Type` is the daemon's default driver (moby `mergeAndVerifyLogConfig`),
 * and the request's `Config` is laid over that default's options: on a daemon that logs to
 * gelf, syslog, fluentd or splunk by default, an address in them makes dockerd connect, from
 * the host, wherever the role says. So unless the driver is named and on the role's list (whose
 * options are then the driver's), the options are an allow-list: those of the local drivers
 * (json-file, local, journald) and the ones every driver takes, none of which names a place.
 *
 * @module
 */

import { isJsonObject, type JsonValue } from "./strict_json.ts";

/** json-file's, local's and journald's options, and the generic `mode` and `max-buffer-size`. */
const LOCAL_LOG_OPTIONS: ReadonlySet<string> = new Set([
  "max-size",
  "max-file",
  "compress",
  "labels",
  "labels-regex",
  "env",
  "env-regex",
  "tag",
  "mode",
  "max-buffer-size",
]);

/**
 * Why `options` may not go with log driver `driver` for a role whose `allowLogDrivers` is
 * `allowed`, or `undefined`. `at` names the options in the message.
 *
 * @example
 * ```ts
 * import { logOptionsProblem } from "./log_options.ts";
 * if (logOptionsProblem("", { "max-size": "1m" }, [], "Config")) throw new Error();
 * if (!logOptionsProblem("", { "gelf-address": "tcp://10.0.0.1:1" }, [], "Config")) throw new Error();
 * if (logOptionsProblem("gelf", { "gelf-address": "tcp://x:1" }, ["gelf"], "Config")) throw new Error();
 * ```
 */
export function logOptionsProblem(
  driver: JsonValue | undefined,
  options: JsonValue | undefined,
  allowed: readonly string[] | undefined,
  at: string,
): string | undefined {
  // A driver the role's list names is trusted with its own options.
  if (typeof driver === "string" && driver !== "" && allowed?.includes(driver)) return undefined;
  if (options === null || options === undefined) return undefined;
  if (!isJsonObject(options)) return `${at} is not an object`;
  const key = Object.keys(options).find((k) => !LOCAL_LOG_OPTIONS.has(k));
  return key === undefined ? undefined : `${at}.${key}: log option not allowed (only ` +
    `${[...LOCAL_LOG_OPTIONS].join(", ")}, unless the driver is named and on allowLogDrivers; ` +
    "without a driver it is the daemon's default, which may send logs anywhere)";
}
