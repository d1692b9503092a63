/**
 * dockgate's traits on Deno (see `runtime.ts`).
 *
 * @module
 */

import type { RuntimeTraits } from "./runtime.ts";

/**
 * The traits on Deno `version`. Deno 2.9: see `RelayOptions.maxQueuedBytes` for why a paused
 * TLS socket must be avoided.
 *
 * @example
 * ```ts
 * import { denoTraits } from "./runtime_deno.ts";
 * if (denoTraits("2.9.5").description !== "Deno 2.9.5") throw new Error("unexpected");
 * ```
 */
export function denoTraits(version: string): RuntimeTraits {
  return {
    name: "deno",
    description: `Deno ${version}`,
    // Handing Deno's unix socket a fresh copy is much faster than the TLS socket's own chunk.
    relay: { copyChunks: true, maxQueuedBytes: 16 * 1024 * 1024 },
  };
}
