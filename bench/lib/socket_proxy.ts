/**
 * The filtering proxy users pick instead of a policy gate: Tecnativa's docker-socket-proxy,
 * whose rules are an HAProxy configuration in `mode http` switched on and off by environment
 * variables (`CONTAINERS=1`, `POST=1`, …). The bench runs the same rules on Debian's HAProxy,
 * with mutual TLS on the bind, in workload 6 next to dockgate's raw and policy relays.
 *
 * @module
 */

/**
 * The API sections docker-socket-proxy switches one by one, in the order of its rules: one
 * `http-request allow` per section, each a path regex under an optional `/vX.Y` prefix and
 * guarded by the environment variable of the same name.
 */
const SECTIONS: [env: string, path: string][] = [
  ["AUTH", "auth"],
  ["BUILD", "build"],
  ["COMMIT", "commit"],
  ["CONFIGS", "configs"],
  ["CONTAINERS", "containers"],
  ["DISTRIBUTION", "distribution"],
  ["EVENTS", "events"],
  ["EXEC", "exec"],
  ["GRPC", "grpc"],
  ["IMAGES", "images"],
  ["INFO", "info"],
  ["NETWORKS", "networks"],
  ["NODES", "nodes"],
  ["PING", "_ping"],
  ["PLUGINS", "plugins"],
  ["SECRETS", "secrets"],
  ["SERVICES", "services"],
  ["SESSION", "session"],
  ["SWARM", "swarm"],
  ["SYSTEM", "system"],
  ["TASKS", "tasks"],
  ["VERSION", "version"],
  ["VOLUMES", "volumes"],
];

/** Container sub-routes refused unless their own `ALLOW_*` switch is set, even with CONTAINERS=1. */
const CONTAINER_DENIES: [env: string, route: string][] = [
  ["ALLOW_EXEC", "exec"],
  ["ALLOW_KILL", "kill"],
  ["ALLOW_ATTACH", "attach"],
  ["ALLOW_ARCHIVE", "archive"],
  ["ALLOW_EXPORT", "export"],
  ["ALLOW_LOGS", "logs"],
];

/** Container actions allowed by their own switch before the section rules. */
const CONTAINER_ALLOWS: [env: string, route: string][] = [
  ["ALLOW_RESTARTS", "((stop)|(restart)|(kill))"],
  ["ALLOW_START", "start"],
  ["ALLOW_STOP", "stop"],
  ["ALLOW_PAUSE", "pause"],
  ["ALLOW_UNPAUSE", "unpause"],
];

/**
 * The switches the bench sets: docker-socket-proxy's documented defaults (EVENTS, PING and
 * VERSION on, everything else off) plus what a CI runner doing `docker ps` and `docker load`
 * would be given (CONTAINERS, IMAGES, INFO and POST), the nearest this proxy comes to the
 * no-escape role it is compared with. Passed to HAProxy as environment, as the image does.
 */
export const SOCKET_PROXY_ENV: Record<string, string> = {
  ...Object.fromEntries(
    [...SECTIONS, ...CONTAINER_DENIES, ...CONTAINER_ALLOWS].map(([env]) => [env, "0"]),
  ),
  EVENTS: "1",
  PING: "1",
  VERSION: "1",
  CONTAINERS: "1",
  IMAGES: "1",
  INFO: "1",
  POST: "1",
  DELETE: "0",
  PUT: "0",
  PATCH: "0",
};

/** Where the proxy listens, with which certificates, relaying to which socket. */
export interface SocketProxyConfig {
  /** TCP port on 127.0.0.1. */
  port: number;
  /** Server certificate followed by its key (HAProxy's `crt`). */
  crt: string;
  /** CA file the client certificate must chain to. */
  caFile: string;
  /** The Docker socket (or the bench's target). */
  socket: string;
  /** `maxconn` for global and defaults. */
  maxConn: number;
}

/**
 * `haproxy.cfg` with docker-socket-proxy's rules behind a mutual-TLS bind.
 *
 * Written for the bench from what the docker-socket-proxy project documents (its README's
 * environment switches and the structure of the `haproxy.cfg.template` its image ships: a
 * method gate, the `ALLOW_*` denies on container sub-routes, one allow per API section, a
 * final deny; `mode http` with `option http-server-close`, one request log line each), and
 * the bind of its open mTLS pull request (Tecnativa/docker-socket-proxy#174: `ssl crt …
 * ca-file … verify required`). It is not their file: the image's paths (error pages, server
 * state, pid file) are left out, and the bind is loopback.
 *
 * @example
 * ```ts
 * import { socketProxyConfig } from "./socket_proxy.ts";
 * const cfg = socketProxyConfig({
 *   port: 2376,
 *   crt: "/pki/server-combined.pem",
 *   caFile: "/pki/server/ca.pem",
 *   socket: "/run/docker.sock",
 *   maxConn: 3000,
 * });
 * if (!cfg.includes("verify required")) throw new Error("no mTLS");
 * ```
 */
export function socketProxyConfig(c: SocketProxyConfig): string {
  if (!Number.isInteger(c.port) || c.port <= 0 || c.port > 65535) {
    throw new RangeError(`port ${c.port} is not a TCP port`);
  }
  const under = (route: string) => `^(/v[\\d\\.]+)?/${route}`;
  const onContainer = (route: string) => under(`containers/[a-zA-Z0-9_.-]+/${route}`);
  const rule = (verb: string, re: string, cond: string) =>
    `  http-request ${verb} if { path,url_dec -m reg -i ${re} } ${cond}`;
  return [
    "global",
    "  log stdout format raw daemon info",
    `  maxconn ${c.maxConn}`,
    "  ssl-default-bind-options ssl-min-ver TLSv1.2",
    "defaults",
    "  mode http",
    "  log global",
    "  option httplog",
    "  option dontlognull",
    "  option http-server-close",
    "  option redispatch",
    "  retries 3",
    "  timeout http-request 10s",
    "  timeout queue 1m",
    "  timeout connect 10s",
    "  timeout client 10m",
    "  timeout server 10m",
    "  timeout http-keep-alive 10s",
    `  maxconn ${c.maxConn}`,
    "backend dockerbackend",
    `  server dockersocket unix@${c.socket}`,
    "backend docker-events",
    `  server dockersocket unix@${c.socket}`,
    "  timeout server 0",
    "frontend dockerfrontend",
    `  bind 127.0.0.1:${c.port} ssl crt ${c.crt} ca-file ${c.caFile} verify required`,
    "  http-request deny unless METH_GET || METH_POST { env(POST) -m bool } || " +
    "{ method DELETE } { env(DELETE) -m bool } || { method PUT } { env(PUT) -m bool } || " +
    "{ method PATCH } { env(PATCH) -m bool }",
    ...CONTAINER_DENIES.map(([env, r]) => rule("deny", onContainer(r), `!{ env(${env}) -m bool }`)),
    ...CONTAINER_ALLOWS.map(([env, r]) => rule("allow", onContainer(r), `{ env(${env}) -m bool }`)),
    ...SECTIONS.map(([env, p]) => rule("allow", under(p), `{ env(${env}) -m bool }`)),
    "  http-request deny",
    "  default_backend dockerbackend",
    `  use_backend docker-events if { path,url_dec -m reg -i ${under("events")} }`,
    "",
  ].join("\n");
}
