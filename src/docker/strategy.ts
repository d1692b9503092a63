/**
 * The Docker-API strategy: what `serve` runs for an identity whose role is restricted.
 *
 * @module
 */

import { connectTarget, type RelayStrategy } from "../net/strategy.ts";
import { apiRelay, type ApiRelayOptions } from "./api_relay.ts";

/**
 * The HTTP-aware relay as a strategy for `serve`.
 *
 * @example
 * ```ts
 * import { apiStrategy } from "./strategy.ts";
 * const s = apiStrategy({ role: () => undefined, mode: "enforce", who: { identity: "a", serial: "1", peer: "p", owner: "a" } });
 * if (s.name !== "docker-api") throw new Error();
 * ```
 */
export function apiStrategy(options: ApiRelayOptions): RelayStrategy {
  return {
    name: "docker-api",
    async start(conn) {
      const upstream = await connectTarget(conn.target, conn.connectTimeoutMs);
      // Owner checks of isolated roles ask the daemon over a connection of their own.
      const connectDaemon = options.connectDaemon ??
        (() => connectTarget(conn.target, conn.connectTimeoutMs));
      return apiRelay(conn.client, upstream, { ...options, connectDaemon }, conn.held);
    },
  };
}
