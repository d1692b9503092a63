/**
 * Deno's traits. One known runtime defect is worked around here, and only here.
 *
 * Deno 2.9's `node:tls` (checked on 2.9.5 and 2.9.6): pausing a TLS socket gives no
 * backpressure (the TLS layer keeps reading the TCP socket and buffers plaintext in Rust), and
 * when the peer's close_notify or FIN arrives while paused, the EOF is dropped on resume
 * (`read_start` flushes the buffered plaintext, the JS stream calls `readStop()` from inside
 * it, and the pending EOF goes to a cleared `onread`). The Docker CLI ends `docker run -i`
 * stdin with close_notify alone, so a paused gate would hang it. Instead of pausing the TLS
 * socket we stop and start reading on the TCP handle underneath it: real backpressure, and
 * the EOF is read after the restart like any other bytes.
 *
 * @module
 */

import type { Duplex } from "node:stream";
import { type FlowControl, pauseFlowControl } from "./flow_control.ts";
import type { RuntimeTraits } from "./runtime_traits.ts";

/** The private parts of Deno's `TLSWrap` handle this workaround relies on. */
interface DenoTlsHandle {
  _nativeTcpHandle?: { readStop(): number; readStart(): number };
  emitEof?: (...args: unknown[]) => unknown;
}

/**
 * Flow control for a socket on Deno: TLS sockets are held back at their TCP handle; plain
 * sockets (and TLS over anything else) are paused as usual, which is safe for them.
 *
 * @example
 * ```ts
 * import { PassThrough } from "node:stream";
 * import { denoFlowControl } from "./runtime_deno.ts";
 * const s = new PassThrough();
 * s.on("data", () => {});
 * const fc = denoFlowControl(s); // not a TLS socket: plain pause()/resume()
 * fc.stop();
 * if (!s.isPaused()) throw new Error();
 * fc.start();
 * ```
 */
export function denoFlowControl(socket: Duplex): FlowControl {
  const handle = (socket as { _handle?: DenoTlsHandle })._handle;
  const tcp = handle?._nativeTcpHandle;
  if (
    !handle || !tcp || typeof tcp.readStop !== "function" || typeof tcp.readStart !== "function"
  ) {
    return pauseFlowControl(socket);
  }
  // Once the TCP side reached EOF, reading must not be restarted on it.
  let eof = false;
  const emitEof = handle.emitEof;
  if (typeof emitEof === "function") {
    handle.emitEof = function (this: unknown, ...args: unknown[]) {
      eof = true;
      return emitEof.apply(this, args);
    };
  }
  let stopped = false;
  return {
    stop() {
      if (!stopped && !eof && !socket.destroyed) {
        stopped = true;
        tcp.readStop();
      }
    },
    start() {
      if (!stopped) return;
      stopped = false;
      if (!eof && !socket.destroyed) tcp.readStart();
    },
  };
}

/**
 * The traits on Deno `version`.
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
    relay: { flowControl: denoFlowControl },
  };
}
