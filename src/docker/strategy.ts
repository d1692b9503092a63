/**
 * The Docker-API strategy: what `serve` runs for an identity whose role is restricted.
 *
 * @module
 */

import { connectTarget, type RelayStrategy } from "../net/strategy.ts";
import { apiRelay, type ApiRelayOptions } from "./api_relay.ts";
import { DaemonVersion } from "./shields.ts";
import type { Address } from "../net/address.ts";

/** The daemon version per target address, for the shields (one per target, shared). */
const VERSIONS = new Map<string, DaemonVersion>();

function versionOf(target: Address, timeoutMs: number): DaemonVersion {
  const key = target.transport === "unix" ? target.path : `${target.host}:${target.port}`;
  let v = VERSIONS.get(key);
  if (!v) VERSIONS.set(key, v = new DaemonVersion(() => connectTarget(target, timeoutMs)));
  return v;
}

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
      // The shields need the daemon's version: asked once a minute at most (bounded wait).
      const version = versionOf(conn.target, conn.connectTimeoutMs);
      await version.refresh();
      const upstream = await connectTarget(conn.target, conn.connectTimeoutMs);
      // Owner checks of isolated roles ask the daemon over a connection of their own.
      const connectDaemon = options.connectDaemon ??
        (() => connectTarget(conn.target, conn.connectTimeoutMs));
      const daemonVersion = options.daemonVersion ?? (() => version.current);
      return apiRelay(
        conn.client,
        upstream,
        { ...options, connectDaemon, daemonVersion },
        conn.held,
      );
    },
  };
}
