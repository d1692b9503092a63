/**
 * The few places where Deno and Node differ, behind one small interface. Everything else in
 * dockgate uses `node:` APIs that behave the same on both. The traits of each runtime live in
 * `runtime_deno.ts` and `runtime_node.ts`; this module only picks one.
 *
 * @module
 */

import { denoTraits } from "./runtime_deno.ts";
import { nodeTraits } from "./runtime_node.ts";
import type { RuntimeTraits } from "./runtime_traits.ts";

export type { RuntimeRelayTuning, RuntimeTraits } from "./runtime_traits.ts";

/**
 * Detect the runtime.
 *
 * @example
 * ```ts
 * import { currentRuntime } from "./runtime.ts";
 * const rt = currentRuntime();
 * if (rt.name !== "deno" && rt.name !== "node") throw new Error(rt.name);
 * ```
 */
export function currentRuntime(): RuntimeTraits {
  const deno = (globalThis as { Deno?: { version?: { deno?: string } } }).Deno;
  return deno?.version?.deno ? denoTraits(deno.version.deno) : nodeTraits();
}

/** The runtime this process runs on, detected once at load. */
export const RUNTIME: RuntimeTraits = currentRuntime();
