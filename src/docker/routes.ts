/**
 * The Docker Engine API's routes (dockerd's router, API 1.24 to 1.5x), each with what it
 * does to the host: read, download files, write, or reach past the container boundary. A
 * request that matches no route here matches no preset (a new endpoint is denied until
 * someone decides).
 *
 * Patterns follow dockerd's router: `{name}` stands for a container, image or plugin name and
 * may span segments (image names have `/`), `{id}` for exactly one segment.
 *
 * @module
 */

/** What a route does, for the presets. */
export type RouteClass =
  /** Reads state: allowed to read-only roles. */
  | "read"
  /** Reads files out of containers or images (archive, export, image save). */
  | "download"
  /** Changes state without reaching the host: allowed to no-escape roles. */
  | "write"
  /** Can reach the host (or cannot be inspected): only `full` roles. */
  | "escape";

/** Which body or query check a route needs under a restricted role. */
export type Inspection =
  | "create"
  | "exec"
  | "update"
  | "volume"
  | "network"
  | "connect"
  | "disconnect"
  | "service"
  | "start"
  | "build"
  | "auth"
  | "commit";

/** One route of the API. */
export interface Route {
  /** The method (`GET`, `POST`, …). */
  method: string;
  /** The pattern as written in the table. */
  pattern: string;
  /** The compiled pattern. */
  regex: RegExp;
  /** What it does. */
  kind: RouteClass;
  /** The check it needs before it may be forwarded for a restricted role. */
  inspect?: Inspection;
}

/** `METHOD pattern kind [inspection]`, one per line, in dockerd's registration order. */
const TABLE = `
GET /_ping read
HEAD /_ping read
GET /version read
GET /info read
GET /events read
GET /system/df read
POST /auth write auth
GET /containers/json read
POST /containers/create write create
POST /containers/prune write
GET /containers/{name}/json read
GET /containers/{name}/top read
GET /containers/{name}/logs read
GET /containers/{name}/changes read
GET /containers/{name}/stats read
GET /containers/{name}/export download
GET /containers/{name}/archive download
HEAD /containers/{name}/archive download
PUT /containers/{name}/archive write
GET /containers/{name}/attach/ws write
POST /containers/{name}/attach write
POST /containers/{name}/start write start
POST /containers/{name}/stop write
POST /containers/{name}/restart write
POST /containers/{name}/kill write
POST /containers/{name}/pause write
POST /containers/{name}/unpause write
POST /containers/{name}/wait write
POST /containers/{name}/resize write
POST /containers/{name}/rename write
POST /containers/{name}/update write update
POST /containers/{name}/exec write exec
GET /containers/{name}/checkpoints read
POST /containers/{name}/checkpoints escape
DELETE /containers/{name}/checkpoints/{id} write
DELETE /containers/{name} write
POST /containers/{name}/copy escape
GET /exec/{name}/json read
POST /exec/{name}/start write
POST /exec/{name}/resize write
GET /images/json read
GET /images/search read
GET /images/get download
POST /images/create write
POST /images/load write
POST /images/prune write
GET /images/{name}/json read
GET /images/{name}/history read
GET /images/{name}/get download
POST /images/{name}/push write
POST /images/{name}/tag write
DELETE /images/{name} write
POST /commit write commit
POST /build write build
POST /build/prune write
POST /build/cancel write
POST /session escape
POST /grpc escape
GET /networks read
GET /networks/{id} read
POST /networks/create write network
POST /networks/prune write
POST /networks/{id}/connect write connect
POST /networks/{id}/disconnect write disconnect
DELETE /networks/{id} write
GET /volumes read
GET /volumes/{name} read
POST /volumes/create write volume
POST /volumes/prune write
DELETE /volumes/{name} write
GET /distribution/{name}/json read
GET /plugins read
GET /plugins/privileges read
GET /plugins/{name}/json read
POST /plugins/pull escape
POST /plugins/create escape
POST /plugins/{name}/enable escape
POST /plugins/{name}/upgrade escape
POST /plugins/{name}/set escape
POST /plugins/{name}/disable write
POST /plugins/{name}/push write
DELETE /plugins/{name} write
GET /swarm read
GET /swarm/unlockkey escape
POST /swarm/init escape
POST /swarm/join escape
POST /swarm/leave write
POST /swarm/update escape
POST /swarm/unlock escape
GET /nodes read
GET /nodes/{id} read
POST /nodes/{id}/update write
DELETE /nodes/{id} write
GET /services read
GET /services/{id} read
GET /services/{id}/logs read
POST /services/create write service
POST /services/{id}/update write service
DELETE /services/{id} write
GET /tasks read
GET /tasks/{id} read
GET /tasks/{id}/logs read
GET /secrets read
GET /secrets/{id} read
POST /secrets/create write
POST /secrets/{id}/update write
DELETE /secrets/{id} write
GET /configs read
GET /configs/{id} read
POST /configs/create write
POST /configs/{id}/update write
DELETE /configs/{id} write
`;

/**
 * Compile a path pattern: `{id}` and `*` are one segment, `{name}` and `**` one or more
 * (dockerd's `{name:.*}`), everything else literal.
 *
 * @example
 * ```ts
 * import { compilePattern } from "./routes.ts";
 * if (!compilePattern("/images/{name}/json").test("/images/library/busybox/json")) throw new Error();
 * if (compilePattern("/nodes/{id}").test("/nodes/a/b")) throw new Error();
 * ```
 */
export function compilePattern(pattern: string): RegExp {
  if (!pattern.startsWith("/")) throw new TypeError(`Path pattern must start with "/": ${pattern}`);
  const parts = pattern.split(/(\{name\}|\{id\}|\*\*|\*)/);
  const body = parts.map((p) => {
    if (p === "{name}" || p === "**") return "[^]+";
    if (p === "{id}" || p === "*") return "[^/]+";
    return p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  }).join("");
  return new RegExp(`^${body}$`);
}

/** Every route, compiled once. */
export const ROUTES: readonly Route[] = TABLE.trim().split("\n").map((line) => {
  const [method, pattern, kind, inspect] = line.trim().split(/\s+/);
  return {
    method,
    pattern,
    regex: compilePattern(pattern),
    kind: kind as RouteClass,
    inspect: inspect as Inspection | undefined,
  };
});

/**
 * Every route that `method` and the canonical `path` match (usually one; a container named
 * `a/exec/b` makes some paths match two, and the stricter one then decides).
 *
 * @example
 * ```ts
 * import { matchRoutes } from "./routes.ts";
 * const [r] = matchRoutes("POST", "/containers/create");
 * if (r.inspect !== "create") throw new Error();
 * if (matchRoutes("GET", "/debug/pprof/").length !== 0) throw new Error();
 * ```
 */
export function matchRoutes(method: string, path: string): readonly Route[] {
  // Remembered for the last few hundred method and path pairs: one request asks for its
  // routes several times (policy, redaction, isolation, volumes), each a dozen regexes, and a
  // client repeats the same few requests. The answer depends on nothing else (the table is
  // fixed), and it is frozen: no caller can change what the next one gets.
  const key = `${method} ${path}`;
  const hit = MATCHED.get(key);
  if (hit) return hit;
  const buckets = BY_METHOD.get(method);
  const candidates = buckets && (buckets.bySegment.get(firstSegment(path)) ?? buckets.anySegment);
  const routes = Object.freeze(candidates ? candidates.filter((r) => r.regex.test(path)) : []);
  if (MATCHED.size >= MATCHED_MAX) MATCHED.clear();
  MATCHED.set(key, routes);
  return routes;
}
const MATCHED = new Map<string, readonly Route[]>();
const MATCHED_MAX = 1024;

/**
 * The first segment of a path (`containers` of `/containers/web/json`), or of a pattern.
 * Why: a pattern whose first segment is literal only matches paths with that first segment
 * (its regex starts with `^\/segment` and then `\/` or `$`), so a path is tested against its
 * own segment's routes (and those whose first segment is a placeholder), in table order:
 * the same result as testing every route of the method, without ~70 regexes per request.
 */
function firstSegment(path: string): string {
  const slash = path.indexOf("/", 1);
  return slash === -1 ? path.slice(1) : path.slice(1, slash);
}

/** A method's routes by the literal first segment of their pattern (see `firstSegment`). */
interface MethodRoutes {
  /** For a first segment: the routes with that literal one, and the others below, in order. */
  bySegment: Map<string, Route[]>;
  /** The routes whose first segment is not literal (a placeholder): tried for every path. */
  anySegment: Route[];
}

/** Whether a pattern's first segment is literal text (no placeholder in it). */
function literalFirst(pattern: string): boolean {
  return !/[{*]/.test(firstSegment(pattern));
}

/**
 * Whether a request asks dockerd to switch protocols, as dockerd decides it: an `Upgrade`
 * header is present, whatever its value and whatever `Connection` says (attach and exec start
 * test `r.Header["Upgrade"]` and answer `101` then; moby v20.10.24 and v26.1.5,
 * `api/server/router/container`). The relay's one upgrade rule (`request_reader.ts`).
 *
 * @example
 * ```ts
 * import { Buffer } from "node:buffer";
 * import { parseRequestHead } from "./http.ts";
 * import { asksUpgrade } from "./routes.ts";
 * const head = (h: string) => parseRequestHead(Buffer.from(`POST /x HTTP/1.1\r\nHost: d\r\n${h}\r\n`));
 * if (!asksUpgrade(head("Upgrade: tcp\r\n")) || asksUpgrade(head("Connection: upgrade\r\n"))) {
 *   throw new Error();
 * }
 * ```
 */
export function asksUpgrade(head: { index: ReadonlyMap<string, string[]> }): boolean {
  return head.index.has("upgrade");
}

/** The routes of each method (a request is matched against its method's only). */
const BY_METHOD = new Map<string, MethodRoutes>();
for (const method of new Set(ROUTES.map((r) => r.method))) {
  const own = ROUTES.filter((r) => r.method === method);
  const anySegment = own.filter((r) => !literalFirst(r.pattern));
  const bySegment = new Map<string, Route[]>();
  for (const r of own) {
    if (!literalFirst(r.pattern)) continue;
    const segment = firstSegment(r.pattern);
    if (bySegment.has(segment)) continue;
    bySegment.set(
      segment,
      own.filter((o) => !literalFirst(o.pattern) || firstSegment(o.pattern) === segment),
    );
  }
  BY_METHOD.set(method, { bySegment, anySegment });
}

/**
 * Whether dockerd hijacks the connection for `method path` (canonical, without the version):
 * container attach, its websocket form, and exec start, and nothing else. Only these may
 * switch to a raw stream, whatever the request's `Upgrade` or the answer's content type says.
 * With `escapes` (a role that may use the escape routes: `full`) BuildKit's `/session` and
 * `/grpc` too, which dockerd upgrades to HTTP/2 (`docker build` with BuildKit).
 *
 * @example
 * ```ts
 * import { hijacks } from "./routes.ts";
 * if (!hijacks("POST", "/exec/3f1/start") || hijacks("GET", "/containers/web/logs")) throw new Error();
 * if (hijacks("POST", "/session") || !hijacks("POST", "/session", true)) throw new Error();
 * ```
 */
export function hijacks(method: string, path: string, escapes = false): boolean {
  return HIJACKED.some(([m, re]) => m === method && re.test(path)) ||
    (escapes && method === "POST" && (path === "/session" || path === "/grpc"));
}

const HIJACKED: readonly [string, RegExp][] = [
  ["POST", compilePattern("/containers/{name}/attach")],
  ["GET", compilePattern("/containers/{name}/attach/ws")],
  ["POST", compilePattern("/exec/{name}/start")],
];
