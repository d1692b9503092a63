/**
 * Relay strategies: what runs for a connection once its identity is decided.
 *
 * Identities without a restricted role get the raw byte relay here; restricted ones get the
 * HTTP-aware relay of `docker/strategy.ts`. Neither touches the handshake or the policy code.
 *
 * @module
 */

import net from "node:net";
import type { TLSSocket } from "node:tls";
import type { Address } from "./address.ts";
import type { PeerIdentity } from "../access/identity.ts";
import { type HeldInput, relay, type RelayHandle, type RelayOptions } from "./relay.ts";

/** One authorized connection, handed to a strategy. */
export interface AuthorizedConnection {
  /** The verified client socket; what it sent so far is in `held`. */
  client: TLSSocket;
  /** Who the client is. */
  identity: PeerIdentity;
  /** Where to relay to. */
  target: Address;
  /** Give up connecting to the target after this many milliseconds. */
  connectTimeoutMs: number;
  /** What the client sent before the relay started (replayed first). */
  held?: HeldInput;
}

/** A relay strategy: starts relaying and returns a handle, or throws if the target fails. */
export interface RelayStrategy {
  /** Short name for the log (`raw`, later `docker-api`). */
  name: string;
  /** Connect to the target and relay. */
  start(conn: AuthorizedConnection): Promise<RelayHandle>;
}

/**
 * Open a stream connection to `target` with half-close enabled. Rejects with a readable
 * error if the target is missing, refuses, or does not answer within `timeoutMs`.
 *
 * @example
 * ```ts
 * import { connectTarget } from "./strategy.ts";
 * const err = await connectTarget({ transport: "unix", path: "/nonexistent/x.sock" }, 1000)
 *   .then(() => null, (e) => e as Error);
 * if (!err || !err.message.includes("/nonexistent/x.sock")) throw new Error("expected failure");
 * ```
 */
export function connectTarget(target: Address, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const where = target.transport === "unix" ? target.path : `${target.host}:${target.port}`;
    const socket = target.transport === "unix"
      ? net.connect({ path: target.path, allowHalfOpen: true })
      : net.connect({ host: target.host, port: target.port, allowHalfOpen: true });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`Cannot connect to target "${where}": timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once("connect", () => {
      clearTimeout(timer);
      socket.removeAllListeners("error");
      socket.setNoDelay?.(true);
      resolve(socket);
    });
    socket.once("error", (err: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(new Error(`Cannot connect to target "${where}": ${err.message}`));
    });
  });
}

/**
 * The raw strategy: a byte-exact relay between the client and the target.
 *
 * @example
 * ```ts
 * import { rawStrategy } from "./strategy.ts";
 * if (rawStrategy().name !== "raw") throw new Error();
 * ```
 */
export function rawStrategy(options: RelayOptions = {}): RelayStrategy {
  return {
    name: "raw",
    async start(conn) {
      const upstream = await connectTarget(conn.target, conn.connectTimeoutMs);
      return relay(conn.client, upstream, options, conn.held);
    },
  };
}
