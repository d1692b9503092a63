/**
 * `--print-config`: every setting of serve or connect, its value and where it came from. A
 * default is shown as its value (or what leaving it out means: `off`, `from --certs`), never
 * as "unset"; a duration written as a bare number is said to be seconds.
 *
 * @module
 */

import type { Setting } from "./args.ts";

/**
 * `name = value  (source)`.
 *
 * @example
 * ```ts
 * import { formatSetting } from "./print_config.ts";
 * const s = formatSetting({ name: "metrics", value: undefined, source: "default", defaultText: "off", type: "address" });
 * if (s !== "metrics = off  (default)") throw new Error(s);
 * ```
 */
export function formatSetting(s: Setting): string {
  const value = s.value === undefined || (Array.isArray(s.value) && s.value.length === 0)
    ? s.defaultText ?? (Array.isArray(s.value) ? "none" : "off")
    : Array.isArray(s.value)
    ? s.value.join(",")
    : String(s.value);
  const seconds = s.type === "duration" && typeof s.value === "string" &&
      /^\d+(\.\d+)?$/.test(s.value.trim())
    ? ` (a bare number is seconds: ${s.value.trim()}s)`
    : "";
  return `${s.name} = ${value}${seconds}  (${s.source})`;
}
