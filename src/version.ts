/**
 * The dockgate version, kept in step with `deno.json` (the npm build checks they match).
 *
 * @example
 * ```ts
 * import { VERSION } from "./version.ts";
 * if (!/^\d+\.\d+\.\d+/.test(VERSION)) throw new Error(VERSION);
 * ```
 *
 * @module
 */

/** Semantic version of this release. */
export const VERSION = "0.2.0";
