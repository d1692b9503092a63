/**
 * The few places where Deno and Node differ, behind one small interface. Everything else in
 * dockgate uses `node:` APIs that behave the same on both. The traits of each runtime live in
 * `runtime_deno.ts` and `runtime_node.ts`; this module only picks one.
 *
 * @module
 */

import type { RelayOptions } from "./relay.ts";
import { denoTraits } from "./runtime_deno.ts";
import { nodeTraits } from "./runtime_node.ts";

/** What dockgate needs to know about the runtime it runs on. */
export interface RuntimeTraits {
  /** `"deno"` or `"node"`. */
  name: "deno" | "node";
  /** Human-readable name and version, e.g. `Deno 2.9.5`. */
  description: string;
  /** Relay tuning for this runtime's sockets. */
  relay: RelayOptions;
}

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
