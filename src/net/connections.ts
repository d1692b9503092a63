/**
 * Connection bookkeeping shared by `serve` and `connect`: which sockets and relays are open,
 * and the graceful stop (stop accepting, drain up to a deadline, close the rest).
 *
 * Why a drain deadline and no idle timeout: `docker events` and `docker logs -f` stay silent
 * for hours and must not be cut while running; they are only cut when the process stops.
 *
 * @module
 */

import type net from "node:net";
import type { Logger } from "../observe/logger.ts";
import type { RelayHandle } from "./relay.ts";

/**
 * Open sockets and relays of one listener.
 *
 * @example
 * ```ts
 * import net from "node:net";
 * import { ConnectionSet } from "./connections.ts";
 * const set = new ConnectionSet();
 * const server = net.createServer();
 * await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
 * await set.stop(server, 0);
 * if (set.accepting || set.size !== 0) throw new Error();
 * ```
 */
export class ConnectionSet {
  /** False once a stop began; new connections are refused from then on. */
  accepting = true;
  #sockets = new Set<net.Socket>();
  #relays = new Set<RelayHandle>();
  #stopping?: Promise<void>;
  #endDrain?: () => void;

  /** Number of open sockets. */
  get size(): number {
    return this.#sockets.size;
  }

  /** Track a socket until it closes. */
  addSocket(socket: net.Socket): void {
    this.#sockets.add(socket);
    socket.once("close", () => this.#sockets.delete(socket));
  }

  /** Track a relay until it is done; resolves with its result. */
  addRelay(handle: RelayHandle): RelayHandle["done"] {
    this.#relays.add(handle);
    return handle.done.finally(() => this.#relays.delete(handle));
  }

  /**
   * Stop `server` from accepting, wait up to `drainMs` for open relays to finish, then abort
   * whatever is left and resolve once the listener is closed. Idempotent, except that a
   * later call with `drainMs` 0 (a second SIGTERM) ends a drain in progress at once.
   */
  stop(server: net.Server, drainMs: number, logger?: Logger): Promise<void> {
    if (this.#stopping) {
      if (drainMs <= 0) this.#endDrain?.();
      return this.#stopping;
    }
    this.accepting = false;
    this.#stopping = (async () => {
      const listenerClosed = new Promise<void>((r) => server.close(() => r()));
      const pending = [...this.#relays].map((h) => h.done);
      if (pending.length && drainMs > 0) {
        logger?.log("info", "draining", { connections: pending.length, deadline_ms: drainMs });
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      const deadline = new Promise<void>((r) => {
        timer = setTimeout(r, drainMs);
        this.#endDrain = r;
      });
      await Promise.race([Promise.all(pending), deadline]);
      clearTimeout(timer);
      const left = this.#relays.size;
      for (const h of this.#relays) h.abort(new Error("drain deadline reached"));
      for (const s of this.#sockets) s.destroy();
      if (left && drainMs > 0) logger?.log("warn", "drain deadline reached", { closed: left });
      await listenerClosed;
    })();
    return this.#stopping;
  }
}

/**
 * Render a socket's peer as `host:port` (IPv6 in brackets), or `local` for unix sockets.
 *
 * @example
 * ```ts
 * import { peerOf } from "./connections.ts";
 * // deno-lint-ignore no-explicit-any
 * if (peerOf({ remoteAddress: "::1", remotePort: 5 } as any) !== "[::1]:5") throw new Error();
 * ```
 */
export function peerOf(socket: Pick<net.Socket, "remoteAddress" | "remotePort">): string {
  const host = socket.remoteAddress;
  if (!host) return "local";
  return `${host.includes(":") ? `[${host}]` : host}:${socket.remotePort ?? "?"}`;
}
