/**
 * Durations on the command line: `500ms`, `10s`, `5m`, `2h` (a bare number is seconds).
 *
 * @module
 */

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * Parse a duration into milliseconds. Throws `TypeError` naming the input when malformed.
 *
 * @example
 * ```ts
 * import { parseDuration } from "./duration.ts";
 * if (parseDuration("500ms") !== 500 || parseDuration("10s") !== 10_000 || parseDuration("5m") !== 300_000) {
 *   throw new Error();
 * }
 * ```
 */
export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) {
    throw new TypeError(`Invalid duration "${text}": use a number with ms, s, m or h, as in 10s`);
  }
  const ms = Number(m[1]) * UNITS[m[2] ?? "s"];
  if (!Number.isFinite(ms)) throw new TypeError(`Invalid duration "${text}"`);
  return Math.round(ms);
}
