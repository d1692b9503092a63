/**
 * dockgate's traits on Node.js (see `runtime.ts`).
 *
 * @module
 */

import process from "node:process";
import type { RuntimeTraits } from "./runtime_traits.ts";

/**
 * The traits on Node.js: its sockets need no workarounds.
 *
 * @example
 * ```ts
 * import { nodeTraits } from "./runtime_node.ts";
 * if (nodeTraits().name !== "node") throw new Error("unexpected");
 * ```
 */
export function nodeTraits(): RuntimeTraits {
  return {
    name: "node",
    description: `Node.js ${process.version}`,
    relay: {},
  };
}
