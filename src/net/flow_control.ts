/**
 * How a relay stops and restarts reading from a socket under backpressure: the interface, and
 * the ordinary `pause()`/`resume()` one. Its own module so that the runtime traits
 * (`runtime_deno.ts`, `runtime_node.ts`) and the relay both import it, and neither the other.
 *
 * @module
 */

import type { Duplex } from "node:stream";

/** Stops and restarts reading from one socket. */
export interface FlowControl {
  /** Stop reading (the peer is held back by TCP flow control). */
  stop(): void;
  /** Read again. */
  start(): void;
}

/** Makes the {@linkcode FlowControl} for a socket. */
export type FlowControlFactory = (socket: Duplex) => FlowControl;

/**
 * The ordinary flow control: `pause()` and `resume()` the stream.
 *
 * @example
 * ```ts
 * import { PassThrough } from "node:stream";
 * import { pauseFlowControl } from "./flow_control.ts";
 * const s = new PassThrough();
 * s.on("data", () => {});
 * const fc = pauseFlowControl(s);
 * fc.stop();
 * if (!s.isPaused()) throw new Error();
 * fc.start();
 * ```
 */
export const pauseFlowControl: FlowControlFactory = (socket) => ({
  stop: () => socket.pause(),
  start: () => socket.resume(),
});

/**
 * A switch over `flow`: `set(true)` stops reading and `set(false)` starts it again, each only
 * when it changes the state, so that several conditions can be re-evaluated as often as they
 * like (a relay decides from its current state, not from counting calls).
 *
 * @example
 * ```ts
 * import { flowSwitch } from "./flow_control.ts";
 * const calls: string[] = [];
 * const set = flowSwitch({ stop: () => calls.push("stop"), start: () => calls.push("start") });
 * set(true); set(true); set(false); set(false);
 * if (calls.join() !== "stop,start") throw new Error(calls.join());
 * ```
 */
export function flowSwitch(flow: FlowControl): (stop: boolean) => void {
  let stopped = false;
  return (stop) => {
    if (stop === stopped) return;
    stopped = stop;
    if (stop) flow.stop();
    else flow.start();
  };
}
