/**
 * The few places where Deno and Node differ, behind one small interface. Everything else in
 * dockgate uses `node:` APIs that behave the same on both.
 *
 * @module
 */

import process from "node:process";
import type { RelayOptions } from "./relay.ts";

/** What dockgate needs to know about the runtime it runs on. */
export interface RuntimeTraits {
  /** `"deno"` or `"node"`. */
  name: "deno" | "node";
  /** Human-readable name and version, e.g. `Deno 2.9.5`. */
  description: string;
  /** Relay tuning for this runtime's sockets. */
  relay: RelayOptions;
}

/** Deno 2.9: see `RelayOptions.maxQueuedBytes` for why a paused TLS socket must be avoided. */
const DENO: Omit<RuntimeTraits, "description"> = {
  name: "deno",
  // Handing Deno's unix socket a fresh copy is much faster than the TLS socket's own chunk.
  relay: { copyChunks: true, maxQueuedBytes: 16 * 1024 * 1024 },
};

const NODE: Omit<RuntimeTraits, "description"> = {
  name: "node",
  relay: { copyChunks: false, maxQueuedBytes: 0 },
};

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
  if (deno?.version?.deno) return { ...DENO, description: `Deno ${deno.version.deno}` };
  return { ...NODE, description: `Node.js ${process.version}` };
}
