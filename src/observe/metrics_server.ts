/**
 * The operator's HTTP endpoint: `/metrics` (Prometheus text) and `/healthz` (200, or 503
 * with the reason). Plain HTTP on its own address, loopback unless the operator says
 * otherwise: it names every identity that connects, so it is not for the network at large.
 *
 * @module
 */

import http from "node:http";
import type { TcpAddress } from "../net/address.ts";
import type { PrometheusMetrics } from "./metrics.ts";

/** The health of the gate: `ok`, or why not. */
export interface Health {
  /** Whether the gate can do its job now. */
  ok: boolean;
  /** Why not (the target does not answer, the last reload failed). */
  reason?: string;
}

/** Options for {@linkcode startMetricsServer}. */
export interface MetricsServerOptions {
  /** Where to listen (the CLI refuses a non-loopback address without `--unsafe-metrics`). */
  address: TcpAddress;
  /** The metrics to serve. */
  metrics: PrometheusMetrics;
  /** The health check `/healthz` runs (at most once a second; answers in between are reused). */
  health: () => Promise<Health>;
}

/** A running metrics endpoint. */
export interface MetricsServer {
  /** The bound address (port 0 resolved). */
  address: TcpAddress;
  /** Stop listening. */
  close(): Promise<void>;
}

/**
 * Serve `/metrics` and `/healthz` on `address`.
 *
 * @example
 * ```ts
 * import { startMetricsServer } from "./metrics_server.ts";
 * import { PrometheusMetrics } from "./metrics.ts";
 * const m = await startMetricsServer({
 *   address: { transport: "tcp", host: "127.0.0.1", port: 0 },
 *   metrics: new PrometheusMetrics({ version: "0", runtime: "deno" }),
 *   health: () => Promise.resolve({ ok: true }),
 * });
 * const r = await fetch(`http://127.0.0.1:${m.address.port}/healthz`);
 * if (r.status !== 200 || (await r.text()) !== "ok\n") throw new Error();
 * await m.close();
 * ```
 */
export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  let last: { at: number; health: Promise<Health> } | undefined;
  const health = () => {
    const now = Date.now();
    if (!last || now - last.at >= 1000) {
      last = { at: now, health: options.health().catch((e) => ({ ok: false, reason: String(e) })) };
    }
    return last.health;
  };
  const server = http.createServer((req, res) => {
    const path = (req.url ?? "").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    if (path === "/metrics") {
      options.metrics.text().then((text) => {
        res.writeHead(200, { "content-type": options.metrics.contentType }).end(text);
      }, () => res.writeHead(500).end());
      return;
    }
    if (path === "/healthz") {
      void health().then((h) => {
        res.writeHead(h.ok ? 200 : 503, { "content-type": "text/plain; charset=utf-8" })
          .end(h.ok ? "ok\n" : `unhealthy: ${h.reason ?? "unknown"}\n`);
      });
      return;
    }
    res.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end(
      "not found (try /metrics or /healthz)\n",
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once(
      "error",
      (err: Error) =>
        reject(
          new Error(
            `Cannot serve metrics on ${options.address.host}:${options.address.port}: ${err.message}`,
          ),
        ),
    );
    server.listen(options.address.port, options.address.host, () => resolve());
  });
  const bound = server.address() as { address: string; port: number };
  return {
    address: { transport: "tcp", host: bound.address, port: bound.port },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections?.();
      }),
  };
}
