/**
 * What dockgate needs to know about the runtime it runs on: the type each runtime's module
 * (`runtime_deno.ts`, `runtime_node.ts`) fills in and `runtime.ts` picks from. Its own module so
 * that the picker imports the runtimes and the runtimes do not import the picker.
 *
 * @module
 */

import type net from "node:net";
import type { FlowControlFactory } from "./flow_control.ts";

/** What dockgate needs to know about the runtime it runs on. */
export interface RuntimeTraits {
  /** `"deno"` or `"node"`. */
  name: "deno" | "node";
  /** Human-readable name and version, e.g. `Deno 2.9.5`. */
  description: string;
  /** Relay tuning for this runtime's sockets. */
  relay: RuntimeRelayTuning;
  /**
   * Called once per accepted TCP socket of a TLS server: returns a reader of the certificates
   * (DER, leaf first) the client presented, for the refusal line when the runtime's TLS
   * refuses them with a verdict that does not say why (Deno's one code for every chain
   * failure). Absent where the runtime's verdict already says it (Node).
   */
  presentedCertificates?: (raw: net.Socket) => () => Uint8Array[];
}

/** The relay settings a runtime chooses for its own sockets. */
export interface RuntimeRelayTuning {
  /** How to hold back a socket of this runtime; absent: `pause()`/`resume()`. */
  flowControl?: FlowControlFactory;
}
