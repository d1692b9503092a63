/**
 * Deno's traits. Two known runtime defects are worked around here, and only here.
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
 * Deno 2.9's `node:tls` server reports every refused client chain as
 * `UNABLE_TO_VERIFY_LEAF_SIGNATURE`, an expired certificate of our own CA as much as one of a
 * foreign CA (Node says `CERT_HAS_EXPIRED`). Its handshake completes before the verdict is
 * acted on (the socket is destroyed on its `secure` event), so the presented certificates can
 * be read then, from a listener put before the runtime's own; the gate's chain check on them
 * tells the two cases apart (`tls_reason.ts`). Only read for the refusal line: the verdict
 * stays the runtime's.
 *
 * @module
 */

import type net from "node:net";
import type { Duplex } from "node:stream";
import tls from "node:tls";
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
 * A reader of the certificates (DER, leaf first) the client of TLS server socket `raw`
 * presents, captured when its handshake completes; empty before that, and when Deno's
 * internals differ from what this relies on (the TLS socket is its TCP handle's owner).
 *
 * @example
 * ```ts
 * import net from "node:net";
 * import { denoPresentedCertificates } from "./runtime_deno.ts";
 * if (denoPresentedCertificates(new net.Socket())().length !== 0) throw new Error();
 * ```
 */
export function denoPresentedCertificates(raw: net.Socket): () => Uint8Array[] {
  let certs: Uint8Array[] = [];
  const handle = (raw as { _handle?: object })._handle;
  const owner = handle && Object.getOwnPropertySymbols(handle)
    .map((s) => (handle as Record<symbol, unknown>)[s])
    .find((v): v is tls.TLSSocket => v instanceof tls.TLSSocket);
  owner?.prependListener("secure", () => {
    try {
      // Only a chain the runtime is about to refuse is read (when its verdict can be asked).
      const verdict = (owner as { _handle?: { verifyError?: () => unknown } })._handle;
      if (typeof verdict?.verifyError === "function" && !verdict.verifyError()) return;
      certs = chainOf(owner.getPeerCertificate(true));
    } catch { /* a refusal line without the detail, never a failure */ }
  });
  return () => certs;
}

/** The DER certificates of a detailed peer certificate, leaf first (the issuer loop ends it). */
function chainOf(peer: tls.DetailedPeerCertificate | undefined): Uint8Array[] {
  const out: Uint8Array[] = [];
  const seen = new Set<object>();
  for (let c = peer; c?.raw && !seen.has(c) && out.length < 10; c = c.issuerCertificate) {
    seen.add(c);
    out.push(new Uint8Array(c.raw));
  }
  return out;
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
    presentedCertificates: denoPresentedCertificates,
  };
}
