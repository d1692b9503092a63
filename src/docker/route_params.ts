/**
 * The query parameters of every route a restricted role may use, each with a value rule: an
 * allow-list, read from dockerd's routers (moby `api/server/router/**`, 20.10 and 26.1). A
 * parameter the table does not list, a value outside its rule, or a second copy of a
 * parameter whose value matters is refused, naming the parameter.
 *
 * Why a list per route: dockerd acts on parameters a proxy never looks at (checkpoint `dir=`
 * is a host directory, `top?ps_args=` goes to the host's `ps`, `build?networkmode=host` runs
 * build steps in the host's network, `images/create?fromSrc=http://127.0.0.1:…` makes the
 * daemon fetch from a service bound to the host's loopback).
 *
 * Go reads a query key exactly (case-sensitive) and `r.Form.Get` returns the first value;
 * keys read as lists (`r.Form["t"]`) may repeat, every other key may appear once.
 *
 * @module
 */

import type { ApiTarget } from "./api_path.ts";
import { isJsonObject, JsonError, type JsonValue, parseStrictJson } from "./strict_json.ts";
import { sharesNamespace } from "./no_escape.ts";
import { changeProblem } from "./image_changes.ts";

/** What a value rule may consult. */
export interface ParamContext {
  /** The role lets dockerd fetch from private, loopback or link-local addresses. */
  allowPrivateAddresses?: boolean;
  /**
   * Filled with the DNS names the request makes dockerd contact (when private addresses are
   * not allowed): the gate resolves them before forwarding (`host_check.ts`).
   */
  hosts?: string[];
}

/** A value rule: the reason `value` is refused, or `undefined`. */
export type ParamRule = (value: string, ctx: ParamContext) => string | undefined;

/** One route's parameters. */
interface RouteParams {
  /**
   * Parameter name (a trailing `*` in the table: may repeat) to rule; `first`: dockerd reads
   * only its first value (`r.FormValue`) and nothing reads the others, so only that is checked.
   */
  params: ReadonlyMap<string, { rule: ParamRule; repeat: boolean; first?: boolean }>;
  /** The path's `{name}` is an image or plugin reference dockerd contacts a registry for. */
  pathRef?: RegExp;
}

// Values as Go's strconv.ParseBool and httputils.BoolValue both read them the same way
// (BoolValue takes "f" or "F" as true, ParseBool as false: neither is allowed).
const BOOLS = new Set(["", "0", "1", "true", "false", "True", "False", "TRUE", "FALSE"]);
const bool: ParamRule = (v) => BOOLS.has(v) ? undefined : "is not 0, 1, true or false";
const int: ParamRule = (v) =>
  /^-?[0-9]{1,18}$/.test(v) || v === "" ? undefined : "is not an integer";
/** Free text dockerd only stores or compares (names, messages, tags). */
const text: ParamRule = (v) =>
  // deno-lint-ignore no-control-regex
  v.length <= 4096 && !/[\x00-\x1f\x7f]/.test(v) ? undefined : "is not printable text";
/** A name, tag, platform, signal or time: no spaces, no shell or path tricks. */
const word: ParamRule = (v) =>
  /^[A-Za-z0-9_.:+@\/-]{0,512}$/.test(v) ? undefined : "is not a plain name";
const oneOf = (...values: string[]): ParamRule => (v) =>
  values.includes(v) ? undefined : `is not one of ${values.map((x) => `"${x}"`).join(", ")}`;
const refused = (why: string): ParamRule => () => why;
const emptyOnly = (why: string): ParamRule => (v) => v === "" ? undefined : why;

/** A JSON value parsed strictly (no duplicate keys), then `check`ed. */
const json = (check: (v: JsonValue) => string | undefined): ParamRule => (v) => {
  if (v === "") return undefined;
  try {
    return check(parseStrictJson(new TextEncoder().encode(v)));
  } catch (err) {
    if (err instanceof JsonError) return `is not strict JSON: ${err.message}`;
    throw err;
  }
};
const filters = json((v) => isJsonObject(v) ? undefined : "is not a JSON object");
const stringMap = (labels: boolean) =>
  json((v) => {
    if (v === null) return undefined;
    if (!isJsonObject(v)) return "is not a JSON object";
    for (const [k, x] of Object.entries(v)) {
      if (x !== null && typeof x !== "string") return `.${k} is not a string`;
      // Ownership labels are the gate's to set (isolation.ts).
      if (labels && k.toLowerCase().startsWith("dockgate.")) {
        return `.${k}: the dockgate. labels are the gate's to set`;
      }
    }
    return undefined;
  });
const stringList = json((v) =>
  v === null || (Array.isArray(v) && v.every((x) => typeof x === "string"))
    ? undefined
    : "is not a JSON list of strings"
);
const ulimits = json((v) =>
  v === null || (Array.isArray(v) && v.every((x) => isJsonObject(x)))
    ? undefined
    : "is not a JSON list of ulimits"
);

/** A Dockerfile instruction for commit or import: no `dockgate.` label, one line. */
// A Dockerfile line for commit and import, read as an allow-list (image_changes.ts).
const change: ParamRule = (v, ctx) => text(v, ctx) ?? changeProblem(v);

/**
 * A host dockerd would connect to: a DNS name with an alphabetic top-level label (so no IP
 * literal) that is not `localhost`, unless the role allows private addresses. The name goes
 * to `ctx.hosts`, which the relay resolves before forwarding (`host_check.ts`).
 *
 * @example
 * ```ts
 * import { publicHost } from "./route_params.ts";
 * const hosts: string[] = [];
 * if (publicHost("registry.example.com:5000", { hosts }) || hosts[0] !== "registry.example.com") throw new Error();
 * if (!publicHost("127.0.0.1:5000", {}) || !publicHost("localhost", {})) throw new Error();
 * ```
 */
export function publicHost(host: string, ctx: ParamContext): string | undefined {
  if (ctx.allowPrivateAddresses) return undefined;
  const name = host.replace(/:[0-9]{1,5}$/, "");
  const labels = name.split(".");
  const ok = labels.length >= 2 &&
    labels.every((l) => /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(l)) &&
    /^[a-z]{2,63}$/.test(labels[labels.length - 1]) && labels[labels.length - 1] !== "localhost";
  if (!ok) return `names host "${host}", not a public DNS name (allowPrivateAddresses)`;
  if (!ctx.hosts?.includes(name)) ctx.hosts?.push(name);
  return undefined;
}

/**
 * An image reference: its registry (the first component when it has `.` or `:`, is
 * `localhost` or has an upper-case letter, as the reference parser splits it) must be public.
 */
export function imageRefProblem(ref: string, ctx: ParamContext): string | undefined {
  if (!/^[A-Za-z0-9._:\/@\[\]-]{0,512}$/.test(ref)) return "is not an image reference";
  const slash = ref.indexOf("/");
  if (slash === -1) return undefined;
  const first = ref.slice(0, slash);
  const isDomain = /[.:]/.test(first) || first === "localhost" || first !== first.toLowerCase();
  return isDomain ? publicHost(first, ctx) : undefined;
}
const imageRef: ParamRule = imageRefProblem;

/** A URL dockerd fetches (`build?remote=`, `images/create?fromSrc=`): http(s) to a public host. */
const fetchUrl: ParamRule = (v, ctx) => {
  // Lower-case schemes only: the builder's URL test (urlutil.IsURL) is a case-sensitive prefix.
  const m = /^https?:\/\/([^\/?#@\\]+)(?:[\/?#][^\s\\]*)?$/.exec(v);
  if (!m) return "is not an http(s) URL without user info";
  return publicHost(m[1].toLowerCase(), ctx);
};

/** `docker top` arguments: words from a few `ps` selections and formats, nothing else. */
const PS_WORDS = new Set(["-e", "-f", "-ef", "-F", "-eF", "-A", "aux", "-aux", "-l", "-w", "-ww"]);
const psArgs: ParamRule = (v) =>
  v.split(" ").filter((w) => w !== "").every((w) => PS_WORDS.has(w))
    ? undefined
    : `may only hold the ps options ${[...PS_WORDS].join(" ")}`;

const HOST_PATH = "is a host directory (checkpoints are only for full roles)";
const LOGS = "details follow stdout stderr since until timestamps tail";
const LOG_RULES: Record<string, ParamRule> = {
  details: bool,
  follow: bool,
  stdout: bool,
  stderr: bool,
  timestamps: bool,
  since: word,
  until: word,
  tail: word,
};

/** The rule of each parameter name used in the table below. */
const RULES: Record<string, ParamRule> = {
  ...LOG_RULES,
  all: bool,
  size: bool,
  before: word,
  limit: int,
  filters,
  force: bool,
  v: bool,
  link: bool,
  t: int,
  h: int,
  w: int,
  name: word,
  platform: word,
  signal: word,
  stream: bool,
  "one-shot": bool,
  detachKeys: text, // "ctrl-p,ctrl-q": read by term.ToBytes, which refuses anything else
  logs: bool,
  stdin: bool,
  path: text,
  noOverwriteDirNonDir: bool,
  copyUIDGID: bool,
  repo: word,
  tag: word,
  author: text,
  comment: text,
  message: text,
  changes: change,
  pause: bool,
  quiet: bool,
  noprune: bool,
  digests: bool,
  // docker-py (docker-compose 1.29) sends these; no dockerd reads them.
  trunc_cmd: bool,
  only_ids: bool,
  "shared-size": bool,
  manifests: bool,
  filter: word,
  names: word,
  term: imageRef,
  fromImage: imageRef,
  remote: imageRef,
  verbose: bool,
  scope: oneOf("", "local", "swarm", "global"),
  status: bool,
  insertDefaults: bool,
  version: int,
  id: word,
  "keep-storage": int,
  "reserved-space": int,
  "max-used-space": int,
  "min-free-space": int,
};

const SHARED_NETWORKS = oneOf("", "default", "bridge", "none");

/**
 * A build's network: the rule of a no-escape container's `NetworkMode` (a named network, never
 * another namespace: `host`, `container:…`, `ns:…`). For an isolated role the named network is
 * an owner-checked reference, rewritten to its full ID (isolation.ts `planIsolation`), as a
 * container's network is.
 */
const buildNetwork: ParamRule = (v, ctx) => {
  if (SHARED_NETWORKS(v, ctx) === undefined) return undefined;
  if (sharesNamespace(v)) return "shares a namespace outside the build's containers";
  return word(v, ctx);
};

/** Build options (classic builder, `version=1`): the ones that reach the host are pinned. */
const BUILD_RULES: Record<string, ParamRule> = {
  t: word,
  extrahosts: (v) =>
    /^[A-Za-z0-9_.-]{1,255}[:=]([0-9A-Fa-f:.]{2,45}|host-gateway)$/.test(v)
      ? undefined
      : "is not name:address",
  securityopt: refused("sets security options of build containers"),
  remote: (v, ctx) => v === "" ? undefined : fetchUrl(v, ctx),
  dockerfile: text,
  q: bool,
  nocache: bool,
  rm: bool,
  forcerm: bool,
  pull: bool,
  squash: bool,
  memory: int,
  memswap: int,
  cpushares: int,
  cpuperiod: int,
  cpuquota: int,
  cpusetcpus: (v) => /^[0-9,-]{0,256}$/.test(v) ? undefined : "is not a CPU list",
  cpusetmems: (v) => /^[0-9,-]{0,256}$/.test(v) ? undefined : "is not a node list",
  shmsize: int,
  networkmode: buildNetwork,
  cgroupparent: emptyOnly("places build containers outside their cgroup"),
  isolation: oneOf("", "default"),
  target: word,
  platform: word,
  ulimits,
  buildargs: stringMap(false),
  labels: stringMap(true),
  cachefrom: stringList,
  buildid: word,
  // BuildKit (version 2) takes entitlements from a session the gate cannot inspect.
  version: (v) =>
    v === "" || v === "1"
      ? undefined
      : "asks for BuildKit, whose entitlements travel in a session the gate cannot inspect (use 1)",
  session: refused("is a BuildKit session the gate cannot inspect"),
  outputs: emptyOnly("are BuildKit exporters the gate cannot inspect"),
};

/** `METHOD pattern: names` (a `*` after a name: it may repeat; `=rule` another rule). */
const TABLE: Record<string, string> = {
  "GET /_ping": "",
  "HEAD /_ping": "",
  "GET /version": "",
  "GET /info": "",
  "GET /events": "since until filters",
  "GET /system/df": "type*",
  "POST /auth": "",
  "GET /containers/json": "all size since before limit filters trunc_cmd",
  "POST /containers/create": "name platform",
  "POST /containers/prune": "filters",
  "GET /containers/{name}/json": "size",
  "GET /containers/{name}/top": "ps_args",
  "GET /containers/{name}/logs": LOGS,
  "GET /containers/{name}/changes": "",
  "GET /containers/{name}/stats": "stream one-shot",
  "GET /containers/{name}/export": "",
  "GET /containers/{name}/archive": "path",
  "HEAD /containers/{name}/archive": "path",
  "PUT /containers/{name}/archive": "path noOverwriteDirNonDir copyUIDGID",
  "GET /containers/{name}/attach/ws": "detachKeys logs stream stdin stdout stderr",
  "POST /containers/{name}/attach": "detachKeys logs stream stdin stdout stderr",
  "POST /containers/{name}/start": "checkpoint checkpoint-dir",
  "POST /containers/{name}/stop": "t signal",
  "POST /containers/{name}/restart": "t signal",
  "POST /containers/{name}/kill": "signal",
  "POST /containers/{name}/pause": "",
  "POST /containers/{name}/unpause": "",
  "POST /containers/{name}/wait": "condition",
  "POST /containers/{name}/resize": "h w",
  "POST /containers/{name}/rename": "name",
  "POST /containers/{name}/update": "",
  "POST /containers/{name}/exec": "",
  "GET /containers/{name}/checkpoints": "dir",
  "DELETE /containers/{name}/checkpoints/{id}": "dir",
  "DELETE /containers/{name}": "force v link",
  "GET /exec/{name}/json": "",
  "POST /exec/{name}/start": "",
  "POST /exec/{name}/resize": "h w",
  "GET /images/json": "all filters filter digests shared-size manifests only_ids",
  "GET /images/search": "term limit filters",
  "GET /images/get": "names* platform",
  "POST /images/create": "fromImage fromSrc repo tag message platform changes*",
  "POST /images/load": "quiet platform",
  "POST /images/prune": "filters",
  "GET /images/{name}/json": "",
  "GET /images/{name}/history": "",
  "GET /images/{name}/get": "",
  "POST /images/{name}/push": "tag platform",
  // force: docker-py's (tag(force=False) sends force=0); no daemon reads it since API 1.24.
  "POST /images/{name}/tag": "repo tag force",
  "DELETE /images/{name}": "force noprune",
  "POST /commit": "container repo tag author comment changes* pause",
  "POST /build": "build",
  "POST /build/prune": "filters keep-storage all reserved-space max-used-space min-free-space",
  "POST /build/cancel": "id",
  "GET /networks": "filters",
  "GET /networks/{id}": "verbose scope",
  "POST /networks/create": "",
  "POST /networks/prune": "filters",
  "POST /networks/{id}/connect": "",
  "POST /networks/{id}/disconnect": "",
  "DELETE /networks/{id}": "",
  "GET /volumes": "filters",
  "GET /volumes/{name}": "",
  "POST /volumes/create": "",
  "POST /volumes/prune": "filters",
  "DELETE /volumes/{name}": "force",
  "GET /distribution/{name}/json": "",
  "GET /plugins": "filters",
  "GET /plugins/privileges": "remote",
  "GET /plugins/{name}/json": "",
  "POST /plugins/{name}/disable": "force",
  "POST /plugins/{name}/push": "",
  "DELETE /plugins/{name}": "force",
  "GET /swarm": "",
  "POST /swarm/leave": "force",
  "GET /nodes": "filters",
  "GET /nodes/{id}": "",
  "POST /nodes/{id}/update": "version",
  "DELETE /nodes/{id}": "force",
  "GET /services": "filters status",
  "GET /services/{id}": "insertDefaults",
  "GET /services/{id}/logs": LOGS,
  "POST /services/create": "",
  "POST /services/{id}/update": "version registryAuthFrom rollback",
  "DELETE /services/{id}": "",
  "GET /tasks": "filters",
  "GET /tasks/{id}": "",
  "GET /tasks/{id}/logs": LOGS,
  "GET /secrets": "filters",
  "GET /secrets/{id}": "",
  "POST /secrets/create": "",
  "POST /secrets/{id}/update": "version",
  "DELETE /secrets/{id}": "",
  "GET /configs": "filters",
  "GET /configs/{id}": "",
  "POST /configs/create": "",
  "POST /configs/{id}/update": "version",
  "DELETE /configs/{id}": "",
};

/** Rules that differ per route for a parameter name shared with other routes. */
const ROUTE_RULES: Record<string, Record<string, ParamRule>> = {
  "GET /containers/{name}/top": { ps_args: psArgs },
  "GET /containers/{name}/checkpoints": { dir: refused(HOST_PATH) },
  "DELETE /containers/{name}/checkpoints/{id}": { dir: refused(HOST_PATH) },
  "POST /containers/{name}/start": {
    checkpoint: refused("restores a checkpoint (only for full roles)"),
    "checkpoint-dir": refused(HOST_PATH),
  },
  "POST /containers/{name}/wait": { condition: oneOf("", "not-running", "next-exit", "removed") },
  "GET /system/df": { type: oneOf("container", "image", "volume", "build-cache") },
  "POST /images/create": {
    fromSrc: (v, ctx) => v === "" || v === "-" ? undefined : fetchUrl(v, ctx),
  },
  "POST /commit": { container: word },
  "POST /services/{id}/update": {
    registryAuthFrom: oneOf("", "spec", "previous-spec"),
    rollback: oneOf("", "previous"),
  },
  "POST /build": BUILD_RULES,
};

/** Routes whose `{name}` is a registry reference dockerd resolves (push, distribution). */
const PATH_REFS: Record<string, RegExp> = {
  "POST /images/{name}/push": /^\/images\/(.+)\/push$/,
  "GET /distribution/{name}/json": /^\/distribution\/(.+)\/json$/,
  "POST /plugins/{name}/push": /^\/plugins\/(.+)\/push$/,
};

/**
 * Single-valued parameters of which a second copy is what a real client sends and dockerd
 * never reads (`r.FormValue` takes the first; no handler reads the list): docker-py sends a
 * Dockerfile from outside the context as `dockerfile=NAME&dockerfile=CONTENTS`.
 */
const FIRST_READ: Record<string, readonly string[]> = { "POST /build": ["dockerfile"] };

const COMPILED = new Map<string, RouteParams>();
for (const [route, names] of Object.entries(TABLE)) {
  const own = ROUTE_RULES[route] ?? {};
  const params = new Map<string, { rule: ParamRule; repeat: boolean; first?: boolean }>();
  const list = names === "build"
    ? Object.keys(BUILD_RULES).map((n) =>
      ["t", "extrahosts", "securityopt"].includes(n) ? `${n}*` : n
    )
    : names.split(" ").filter((n) => n !== "");
  for (const entry of list) {
    const repeat = entry.endsWith("*");
    const name = repeat ? entry.slice(0, -1) : entry;
    const rule = own[name] ?? RULES[name];
    if (!rule) throw new TypeError(`route_params: no rule for ${route} ${name}`);
    params.set(name, { rule, repeat, first: FIRST_READ[route]?.includes(name) });
  }
  COMPILED.set(route, { params, pathRef: PATH_REFS[route] });
}

/**
 * The refusal for `target`'s query (and registry reference in the path) on the route
 * `method pattern` (as written in `routes.ts`), or `undefined` when every parameter is known
 * and every value is on its allow-list. A route the table does not know refuses any query.
 *
 * @example
 * ```ts
 * import { queryProblem } from "./route_params.ts";
 * import { parseApiTarget } from "./api_path.ts";
 * const ok = parseApiTarget("/containers/json?all=1&limit=5");
 * if (queryProblem("GET", "/containers/json", ok, {})) throw new Error();
 * const dir = parseApiTarget("/containers/c/checkpoints?dir=/etc");
 * if (!queryProblem("GET", "/containers/{name}/checkpoints", dir, {})?.includes("dir")) throw new Error();
 * ```
 */
export function queryProblem(
  method: string,
  pattern: string,
  target: ApiTarget,
  ctx: ParamContext,
): string | undefined {
  const route = COMPILED.get(`${method} ${pattern}`);
  const at = `${method} ${pattern}`;
  if (!route) {
    return target.query.length === 0 ? undefined : `${at} takes no query parameters the gate knows`;
  }
  const seen = new Set<string>();
  for (const [key, value] of target.query) {
    const param = route.params.get(key);
    if (!param) return `${at}: unknown query parameter "${key}"`;
    if (seen.has(key) && param.first) continue; // never read by dockerd
    if (seen.has(key) && !param.repeat) return `${at}: query parameter "${key}" given twice`;
    seen.add(key);
    const why = param.rule(value, ctx);
    if (why) return `${at}: query parameter ${key}=${JSON.stringify(value)} ${why}`;
  }
  if (route.pathRef) {
    const name = route.pathRef.exec(target.path)?.[1] ?? "";
    const why = imageRefProblem(name, ctx);
    if (why) return `${at}: the reference "${name}" ${why}`;
  }
  return undefined;
}

/**
 * Whether the table lists `method pattern` (every route a restricted role may use must be).
 *
 * @example
 * ```ts
 * import { knowsRoute } from "./route_params.ts";
 * if (!knowsRoute("POST", "/build")) throw new Error();
 * ```
 */
export function knowsRoute(method: string, pattern: string): boolean {
  return COMPILED.has(`${method} ${pattern}`);
}
