/**
 * Another identity's container is no way out: a restricted role that is not isolated may act
 * inside a container (exec, attach, copy in and out, export, commit) only when the container's
 * stored configuration is one the role's own create would have been allowed. Before such a
 * request is forwarded the container is inspected fresh (for exec start: the exec instance,
 * then its `ContainerID`), its stored `Config` and `HostConfig` are run through the create
 * check (`no_escape.ts` `checkBody("create", …)`, the one rule set), and the request is
 * rewritten to the full ID the daemon resolved, so that the check and the act are on the same
 * object.
 *
 * An inspected configuration carries what the daemon filled in, which the client never sent:
 * the default masked and read-only paths, and `CgroupnsMode: "host"` on a cgroup v1 daemon
 * (its default there). {@linkcode storedAsCreate} takes those out before the check, and only
 * those: anything else is judged as if the client had sent it.
 *
 * @module
 */

import type { ApiTarget } from "./api_path.ts";
import type { DaemonClient } from "./daemon_client.ts";
import { checkBody, type EscapeContext, type Violation } from "./no_escape.ts";
import { IsolationRefusal, missingMessage, TargetEditor } from "./isolation.ts";
import { matchRoutes } from "./routes.ts";
import { isJsonObject, type JsonObject, type JsonValue } from "./strict_json.ts";

/** The routes that act inside a container, `METHOD pattern` as in `routes.ts`. */
const INSIDE = new Set([
  "POST /containers/{name}/exec",
  "POST /containers/{name}/attach",
  "GET /containers/{name}/attach/ws",
  "GET /containers/{name}/archive",
  "HEAD /containers/{name}/archive",
  "PUT /containers/{name}/archive",
  "GET /containers/{name}/export",
  "POST /exec/{name}/start",
  "POST /commit",
]);

/** What a request acts inside: a container or an exec instance, named in the path or query. */
export interface ContainerAccess {
  /** A container, or an exec instance (whose container is checked). */
  kind: "container" | "exec";
  /** As the client named it (a name, an ID, an ID prefix). */
  name: string;
  /** Where: the path's second segment, or commit's `container` parameter. */
  at: "path" | "query";
}

/**
 * The container or exec instance `method path` acts inside, if the route is one of those; a
 * refusal (`IsolationRefusal`, 403) when it cannot be told which (a name over several
 * segments, commit without exactly one `container`).
 *
 * @example
 * ```ts
 * import { containerAccess } from "./container_check.ts";
 * import { parseApiTarget } from "./api_path.ts";
 * const a = containerAccess("POST", parseApiTarget("/v1.41/containers/web/exec"));
 * if (a?.name !== "web" || a.kind !== "container") throw new Error();
 * if (containerAccess("GET", parseApiTarget("/containers/web/logs")) !== undefined) throw new Error();
 * ```
 */
export function containerAccess(method: string, target: ApiTarget): ContainerAccess | undefined {
  const route = matchRoutes(method, target.path).find((r) =>
    INSIDE.has(`${r.method} ${r.pattern}`)
  );
  if (!route) return undefined;
  if (route.pattern === "/commit") {
    const names = target.query.filter(([k]) => k === "container").map(([, v]) => v);
    if (names.length !== 1 || names[0] === "") {
      throw new IsolationRefusal(403, "commit must name exactly one container");
    }
    return { kind: "container", name: names[0], at: "query" };
  }
  const segs = target.path.split("/").slice(1);
  if (segs.length !== route.pattern.split("/").length - 1) {
    throw new IsolationRefusal(403, `${segs.slice(1, -1).join("/")} is not one container name`);
  }
  return { kind: segs[0] === "exec" ? "exec" : "container", name: segs[1], at: "path" };
}

/** What the daemon fills in by default and the check must not read as sent. */
export interface DaemonDefaults {
  /** `/info`'s `CgroupVersion` ("1", "2"), when the daemon says. */
  cgroupVersion?: string;
}

/**
 * The paths dockerd masks and makes read-only by default, in every version since 20.10 (moby
 * `oci/defaults.go`; 25.0 and 20.10.27 add `/sys/devices/virtual/powercap` to the masked ones).
 */
const DEFAULT_MASKED = [
  "/proc/asound",
  "/proc/acpi",
  "/proc/kcore",
  "/proc/keys",
  "/proc/latency_stats",
  "/proc/timer_list",
  "/proc/timer_stats",
  "/proc/sched_debug",
  "/proc/scsi",
  "/sys/firmware",
];
const DEFAULT_READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/** Whether `value` is a list of strings holding every one of `paths` (the default, or more). */
function covers(value: JsonValue | undefined, paths: readonly string[]): boolean {
  return Array.isArray(value) && paths.every((p) => value.includes(p));
}

/**
 * A container's inspect answer as the create body it stands for: `Config` with `HostConfig`
 * in it, without what the daemon filled in itself (default masked and read-only paths, the
 * cgroup v1 default `CgroupnsMode: "host"`). Throws a `TypeError` when the answer has no
 * `Config` or `HostConfig` object.
 *
 * @example
 * ```ts
 * import { storedAsCreate } from "./container_check.ts";
 * const body = storedAsCreate({ Config: { Image: "bb" }, HostConfig: { CgroupnsMode: "host" } }, { cgroupVersion: "1" });
 * if (JSON.stringify(body) !== '{"Image":"bb","HostConfig":{}}') throw new Error(JSON.stringify(body));
 * ```
 */
export function storedAsCreate(inspect: JsonValue, daemon: DaemonDefaults): JsonObject {
  const config = isJsonObject(inspect) ? inspect["Config"] : undefined;
  const stored = isJsonObject(inspect) ? inspect["HostConfig"] : undefined;
  if (!isJsonObject(config) || !isJsonObject(stored)) {
    throw new TypeError("the container's inspect answer has no Config and HostConfig");
  }
  const host: JsonObject = { ...stored };
  if (covers(host["MaskedPaths"], DEFAULT_MASKED)) delete host["MaskedPaths"];
  if (covers(host["ReadonlyPaths"], DEFAULT_READONLY)) delete host["ReadonlyPaths"];
  if (host["CgroupnsMode"] === "host" && daemon.cgroupVersion === "1") {
    delete host["CgroupnsMode"];
  }
  return { ...config, HostConfig: host };
}

/**
 * The one rule: the violation the create check finds in a container's stored configuration.
 *
 * @example
 * ```ts
 * import { storedConfigProblem } from "./container_check.ts";
 * const root = { Config: { Image: "bb" }, HostConfig: { Binds: ["/:/host"] } };
 * if (!storedConfigProblem(root, { allow: {} }, {})?.includes("Binds")) throw new Error();
 * if (storedConfigProblem({ Config: {}, HostConfig: {} }, { allow: {} }, {})) throw new Error();
 * ```
 */
export function storedConfigProblem(
  inspect: JsonValue,
  ctx: EscapeContext,
  daemon: DaemonDefaults,
): Violation | undefined {
  return checkBody("create", storedAsCreate(inspect, daemon), ctx);
}

/** GET a JSON answer; `undefined` for 404; an `Error` (502) for anything else but 200. */
async function get(client: DaemonClient, path: string): Promise<JsonValue | undefined> {
  const answer = await client.request("GET", path);
  if (answer.status === 200) return JSON.parse(answer.body.toString("utf8")) as JsonValue;
  if (answer.status === 404) return undefined;
  throw new Error(`container check ${path}: the daemon answered ${answer.status}`);
}

/**
 * Check the container `access` names (fresh inspects over `client`) and return the request
 * target to forward, rewritten to the full IDs; `defaults()` says what the daemon fills in.
 * Throws an `IsolationRefusal` (404 missing, 403 with the rule) or an `Error` when the daemon
 * cannot be asked.
 *
 * @example
 * ```ts ignore
 * const target = await checkContainerAccess(access, raw, parsed, client, ctx, defaults);
 * ```
 */
export async function checkContainerAccess(
  access: ContainerAccess,
  rawTarget: string,
  target: ApiTarget,
  client: DaemonClient,
  ctx: EscapeContext,
  defaults: () => Promise<DaemonDefaults>,
): Promise<{ target: string; note: string }> {
  const editor = new TargetEditor(rawTarget, target);
  let container = access.name;
  if (access.kind === "exec") {
    const exec = await get(client, `/exec/${encodeURIComponent(access.name)}/json`);
    const id = isJsonObject(exec) ? exec["ID"] : undefined;
    const owner = isJsonObject(exec) ? exec["ContainerID"] : undefined;
    if (exec === undefined) throw new IsolationRefusal(404, missingMessage("exec", access.name));
    if (typeof id !== "string" || typeof owner !== "string") {
      throw new Error(`inspect of exec ${access.name}: no ID or ContainerID`);
    }
    editor.setSegment(1, id);
    container = owner;
  }
  const inspect = await get(client, `/containers/${encodeURIComponent(container)}/json`);
  if (inspect === undefined) {
    throw new IsolationRefusal(404, missingMessage("container", container));
  }
  const id = isJsonObject(inspect) ? inspect["Id"] : undefined;
  if (typeof id !== "string" || !/^[0-9a-f]{64}$/.test(id)) {
    throw new Error(`inspect of container ${container}: no ID`);
  }
  const problem = storedConfigProblem(inspect, ctx, await defaults());
  if (problem) {
    throw new IsolationRefusal(
      403,
      `container ${id.slice(0, 12)} was not made as this role may make containers (${problem})`,
    );
  }
  if (access.kind === "container" && access.at === "path") editor.setSegment(1, id);
  if (access.at === "query") editor.setQuery("container", id);
  return { target: editor.toString(), note: `container ${id.slice(0, 12)}: stored config checked` };
}

/**
 * Refuse (403) when an image already has one of `names` (a build, commit or pull would
 * re-point it; the role's `allowImageNames` does not cover it); an `Error` when the daemon
 * cannot be asked.
 *
 * @example
 * ```ts ignore
 * await checkNamesNew(client, ["bb:latest"]); // throws: bb:latest exists
 * ```
 */
export async function checkNamesNew(client: DaemonClient, names: readonly string[]): Promise<void> {
  for (const name of names) {
    const image = await get(client, `/images/${encodeURIComponent(name)}/json`);
    if (image !== undefined) {
      throw new IsolationRefusal(
        403,
        `image ${name} exists: re-pointing it needs the role's allowImageNames`,
      );
    }
  }
}

/**
 * What the daemon fills in, asked once (`/info`'s `CgroupVersion`); a failure is asked again
 * next time.
 */
export function daemonDefaults(client: () => DaemonClient): () => Promise<DaemonDefaults> {
  let known: DaemonDefaults | undefined;
  return async () => {
    if (known) return known;
    const info = await get(client(), "/info");
    const version = isJsonObject(info) ? info["CgroupVersion"] : undefined;
    known = { cgroupVersion: typeof version === "string" ? version : undefined };
    return known;
  };
}
