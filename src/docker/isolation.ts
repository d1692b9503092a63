/**
 * Owner isolation for shared Docker hosts: what a request of an isolated role must have
 * changed or checked before it is forwarded. Pure: {@linkcode planIsolation} reads the
 * request and says what to do; `owner_check.ts` does the daemon lookups it asks for.
 *
 * - Creates (containers, volumes, networks) get the label `dockgate.owner=<identity>`; a
 *   client that sets a `dockgate.` label itself is refused.
 * - Lists, events and prunes get `label=dockgate.owner=<identity>` merged into `filters`
 *   (the client's filters stay, and the daemon ANDs label filters).
 * - Every object a request names (in the path, the query or the body) is a reference the
 *   gate resolves with a fresh inspect; the request is forwarded with the full ID the check
 *   saw, so that the daemon cannot resolve the name to anything else in between.
 * - Answers that list objects the filters cannot reach (`/system/df`, a shared network's
 *   containers) are filtered; answers that would name another owner's object are replaced.
 *
 * @module
 */

import { type ApiTarget, versionBelow } from "./api_path.ts";
import { HttpError } from "./http.ts";
import { matchRoutes } from "./routes.ts";
import { isJsonObject, JsonDocument, type JsonObject, type JsonValue } from "./strict_json.ts";
import { JsonError, parseStrictJson } from "./strict_json.ts";
import { namedVolumes } from "./volume_check.ts";

/** The label that says who owns an object. */
export const OWNER_LABEL = "dockgate.owner";

/** Owner keys that are not a bare common name begin with one of these. */
const OWNER_KEY_PREFIXES = ["cn:", "sha256:", "key:", "uri:"];

/**
 * The owner key of an identity, the value of its objects' {@linkcode OWNER_LABEL}: its
 * certificate's common name, or for a certificate without one `sha256:` and the first 16 hex
 * digits of its fingerprint (the name logs show). A common name that begins like a key of
 * another kind (`cn:`, `sha256:`, `key:`, `uri:`) is written `cn:<CN>`, so that no certificate
 * can choose a CN that makes it another identity's owner. Ordinary CNs stay bare, as the
 * labels of objects created before this rule have them. With `kind` `"uri"` (a role's
 * `owner: "uri"`) it is `uri:` and the certificate's one URI SAN, or `undefined` when it has
 * none or several (such a certificate is refused: see {@linkcode ownerProblem}).
 *
 * @example
 * ```ts
 * import { ownerKey } from "./isolation.ts";
 * if (ownerKey({ commonName: "ci-a", fingerprint: "ab" }) !== "ci-a") throw new Error();
 * const fp = "0123456789abcdef".repeat(4);
 * if (ownerKey({ fingerprint: fp }) !== "sha256:0123456789abcdef") throw new Error();
 * if (ownerKey({ commonName: "sha256:0123456789abcdef", fingerprint: "ab" }) !== "cn:sha256:0123456789abcdef") throw new Error();
 * const spiffe = { commonName: "r", fingerprint: "ab", uris: ["spiffe://example.org/ci"] };
 * if (ownerKey(spiffe, "uri") !== "uri:spiffe://example.org/ci") throw new Error();
 * if (ownerKey({ commonName: "uri:spiffe://example.org/ci", fingerprint: "ab" }) !== "cn:uri:spiffe://example.org/ci") throw new Error();
 * ```
 */
export function ownerKey(peer: OwnerPeer): string;
export function ownerKey(peer: OwnerPeer, kind: "cn" | "uri"): string | undefined;
export function ownerKey(peer: OwnerPeer, kind: "cn" | "uri" = "cn"): string | undefined {
  if (kind === "uri") return peer.uris?.length === 1 ? `uri:${peer.uris[0]}` : undefined;
  const cn = peer.commonName;
  if (cn === undefined) return `sha256:${peer.fingerprint.slice(0, 16)}`;
  return OWNER_KEY_PREFIXES.some((p) => cn.startsWith(p)) ? `cn:${cn}` : cn;
}

/** What {@linkcode ownerKey} reads of an identity. */
export interface OwnerPeer {
  /** The subject common name. */
  commonName?: string;
  /** SHA-256 of the certificate, hex. */
  fingerprint: string;
  /** The URI SANs. */
  uris?: readonly string[];
}

/**
 * Why an identity cannot have an owner key of `kind`, or `undefined`: the refusal of a
 * certificate that a role with `owner: "uri"` cannot name.
 *
 * @example
 * ```ts
 * import { ownerProblem } from "./isolation.ts";
 * if (ownerProblem({ uris: [] }, "uri") === undefined) throw new Error();
 * if (ownerProblem({ uris: ["spiffe://x/y"] }, "uri") !== undefined) throw new Error();
 * ```
 */
export function ownerProblem(
  peer: { uris?: readonly string[] },
  kind: "cn" | "uri",
): string | undefined {
  if (kind !== "uri") return undefined;
  const n = peer.uris?.length ?? 0;
  return n === 1
    ? undefined
    : `the role names owners by URI SAN and this certificate has ${n} (needs exactly one)`;
}

/** The daemon's own networks, shared by every owner. */
export const BUILTIN_NETWORKS: readonly string[] = ["bridge", "host", "none"];

/** How an isolated role is isolated. */
export interface IsolationSettings {
  /** The owner: the identity's {@linkcode ownerKey}. */
  owner: string;
  /** The answer for another owner's object: 404 (as if missing, the default) or 403. */
  othersStatus: 404 | 403;
  /** Volumes every isolated identity may use (not remove). */
  sharedVolumes: readonly string[];
  /** Networks every isolated identity may use, besides the built-in ones. */
  sharedNetworks: readonly string[];
  /** Containers the role's `allowVolumesFrom` names: usable without an owner check. */
  allowVolumesFrom: readonly string[];
  /** The gate's record of the containers it created; without it no container is anyone's. */
  containers?: ContainerRecord;
  /**
   * The stored-volume rule (`volume_check.ts` `storedVolumeProblem` with the role's
   * allowances): a volume a container mounts must be one the role could have created, as the
   * daemon stored it. Without it (tests of the owner rules alone) stored volumes are not read.
   */
  volumeProblem?: (stored: JsonValue) => string | undefined;
  /**
   * A label scope (role option `scope`) instead of ownership: the containers with this label
   * are the ones seen, volumes and networks are all shared (see {@linkcode containerSeen}).
   */
  scope?: LabelScope;
}

/** A role's label scope, `{"label": "key=value"}` as parsed: it sees containers so labelled. */
export interface LabelScope {
  /** The label's key. */
  key: string;
  /** Its value. */
  value: string;
}

/**
 * The label filter that picks what `settings` sees: the owner label, or the scope's label.
 *
 * @example
 * ```ts
 * import { visibilityLabel } from "./isolation.ts";
 * const base = { owner: "a", othersStatus: 404 as const, sharedVolumes: [], sharedNetworks: [], allowVolumesFrom: [] };
 * if (visibilityLabel(base) !== "dockgate.owner=a") throw new Error();
 * if (visibilityLabel({ ...base, scope: { key: "team", value: "web" } }) !== "team=web") throw new Error();
 * ```
 */
export function visibilityLabel(settings: Pick<IsolationSettings, "owner" | "scope">): string {
  return settings.scope
    ? `${settings.scope.key}=${settings.scope.value}`
    : `${OWNER_LABEL}=${settings.owner}`;
}

/**
 * Whether a container (its labels and full ID) is seen by `owner`: by its owner label and the
 * gate's record ({@linkcode containerOwner}), or with a `scope` by the scope's label alone.
 * The one rule for lists, events, `/system/df`, a network's containers and every reference.
 *
 * @example
 * ```ts
 * import { containerSeen } from "./isolation.ts";
 * const scope = { key: "team", value: "web" };
 * if (!containerSeen({ team: "web" }, "x", "a", undefined, scope)) throw new Error();
 * if (containerSeen({ team: "db" }, "x", "a", undefined, scope)) throw new Error();
 * if (containerSeen({ "dockgate.owner": "a" }, "x", "a", undefined)) throw new Error();
 * ```
 */
export function containerSeen(
  labels: unknown,
  id: unknown,
  owner: string,
  record: ContainerRecord | undefined,
  scope?: LabelScope,
): boolean {
  if (!scope) return containerOwner(labels, id, record) === owner;
  if (typeof labels !== "object" || labels === null) return false;
  return Object.hasOwn(labels, scope.key) &&
    (labels as Record<string, unknown>)[scope.key] === scope.value;
}

/** The kinds of object an owner has. */
export type ObjectKind = "container" | "exec" | "volume" | "network";

/** An object a request names, to be resolved and checked by the gate. */
export interface ObjectRef {
  /** What kind of object. */
  kind: ObjectKind;
  /** The name, ID or ID prefix as the client wrote it. */
  name: string;
  /** Where the request names it (for the log). */
  at: string;
  /** The request removes it (a shared object may be used, not removed). */
  remove?: boolean;
  /** Put the full ID the check resolved where the client's name was. */
  rewrite?: (id: string) => void;
  /** A named volume a container mounts: created with the owner label when it is missing. */
  volume?: { Driver?: string; DriverOpts?: JsonObject; Labels?: JsonObject };
  /**
   * Another owner's object answers as a missing one whatever the role's `othersStatus` (a
   * reference in a list's filters: the list itself would never show the object).
   */
  asMissing?: boolean;
}

/** What to do with the daemon's answer. */
export type AnswerRule =
  /**
   * Keep only the owner's containers and volumes, and count an image's containers and a
   * volume's references among the owner's containers; `dropContainers`: the client did not
   * ask for the containers (the gate did, to count them).
   */
  | { kind: "system-df"; dropContainers?: boolean }
  /** Keep only the owner's containers in a network's `Containers`. */
  | { kind: "network-containers" }
  /** A created (or existing, same name) volume must be the owner's. */
  | { kind: "volume-owner"; name: string }
  /** A name conflict on create or rename must not name the other container. */
  | { kind: "create-conflict"; name: string }
  /** A container create: recorded for the owner when created; a conflict as above. */
  | { kind: "container-create"; name: string }
  /** A container list: only the owner's (label and record, {@linkcode containerOwner}). */
  | { kind: "container-list" }
  /** The event stream: container events only of the owner's containers ({@linkcode keepEvent}). */
  | { kind: "event-stream" };

/** What {@linkcode planIsolation} decided for one request. */
export interface IsolationPlan {
  /** Objects to resolve and check. */
  refs: ObjectRef[];
  /** The target, edited in place as references resolve. */
  target: TargetEditor;
  /** The body, when it is edited (labels, full IDs). */
  body?: JsonDocument;
  /** The answer's treatment, if any. */
  answer?: AnswerRule;
  /** What was done, for the audit record. */
  notes: string[];
  /**
   * A container prune: dockerd prunes by label, so it goes ahead only when every container
   * with the owner's label is the owner's by the record (`owner_check.ts`).
   */
  containerPrune?: boolean;
}

/** A request refused by the isolation rules. */
export class IsolationRefusal extends Error {
  /** The status to answer with. */
  readonly status: number;
  /** Make one. */
  constructor(status: number, message: string) {
    super(message);
    this.name = "IsolationRefusal";
    this.status = status;
  }
}

/**
 * A request target that can be changed (a path segment, a query value) and serialized again.
 * Unchanged, it serializes to exactly what the client sent.
 */
export class TargetEditor {
  readonly #raw: string;
  readonly #target: ApiTarget;
  #segments: string[];
  #query: [string, string][];
  #changed = false;

  /** Wrap `target`, parsed from `raw`. */
  constructor(raw: string, target: ApiTarget) {
    this.#raw = raw;
    this.#target = target;
    this.#segments = target.path.split("/").slice(1);
    this.#query = target.query.map(([k, v]) => [k, v]);
  }

  /** The path's segments (without the version). */
  get segments(): readonly string[] {
    return this.#segments;
  }

  /** Replace path segment `index`. */
  setSegment(index: number, value: string): void {
    if (this.#segments[index] === value) return;
    this.#segments[index] = value;
    this.#changed = true;
  }

  /** The values of query parameter `name`. */
  query(name: string): string[] {
    return this.#query.filter(([k]) => k === name).map(([, v]) => v);
  }

  /** Add a value of query parameter `name` (after those the client sent). */
  addQuery(name: string, value: string): void {
    this.#query.push([name, value]);
    this.#changed = true;
  }

  /** Set query parameter `name` to the one value `value` (in place of the first). */
  setQuery(name: string, value: string): void {
    const i = this.#query.findIndex(([k]) => k === name);
    this.#query = this.#query.filter(([k], j) => k !== name || j === i);
    if (i === -1) this.#query.push([name, value]);
    else this.#query[this.#query.findIndex(([k]) => k === name)] = [name, value];
    this.#changed = true;
  }

  /** Whether anything changed. */
  get changed(): boolean {
    return this.#changed;
  }

  /** The origin-form target to forward. */
  toString(): string {
    if (!this.#changed) return this.#raw;
    const version = this.#target.version === undefined ? "" : `/v${this.#target.version}`;
    const path = this.#segments.map(encodeURIComponent).join("/");
    const query = this.#query.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
      .join("&");
    return `${version}/${path}${query ? `?${query}` : ""}`;
  }
}

/** Paths whose answers list objects: the owner filter goes into their `filters`. */
const FILTERED = new Set([
  "GET /containers/json",
  "GET /volumes",
  "GET /networks",
  "GET /events",
  "POST /containers/prune",
  "POST /volumes/prune",
  "POST /networks/prune",
]);

/** Swarm objects are not owned: an isolated role has none of their routes. */
const SWARM_OBJECTS = new Set(["nodes", "services", "tasks", "secrets", "configs"]);

/** Names as the daemon allows them for containers and volumes (and IDs, and prefixes). */
const OBJECT_NAME = /^\/?[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/**
 * Plan the isolation of one request of an isolated role: `target` parsed from `rawTarget`,
 * `body` the inspected body (a {@linkcode JsonDocument}) when the route has one. Throws an
 * {@linkcode IsolationRefusal} for a request that isolation refuses outright.
 *
 * @example
 * ```ts
 * import { planIsolation } from "./isolation.ts";
 * import { parseApiTarget } from "./api_path.ts";
 * const settings = { owner: "ci-a", othersStatus: 404 as const, sharedVolumes: [], sharedNetworks: [], allowVolumesFrom: [] };
 * const raw = "/v1.41/containers/json?all=1";
 * const plan = planIsolation(settings, "GET", raw, parseApiTarget(raw));
 * if (plan.target.toString() !== "/v1.41/containers/json?all=1&filters=%7B%22label%22%3A%7B%22dockgate.owner%3Dci-a%22%3Atrue%7D%7D") throw new Error(plan.target.toString());
 * const logs = planIsolation(settings, "GET", "/containers/web/logs", parseApiTarget("/containers/web/logs"));
 * if (logs.refs[0].kind !== "container" || logs.refs[0].name !== "web") throw new Error();
 * ```
 */
export function planIsolation(
  settings: IsolationSettings,
  method: string,
  rawTarget: string,
  target: ApiTarget,
  body?: JsonDocument,
): IsolationPlan {
  const editor = new TargetEditor(rawTarget, target);
  const plan: IsolationPlan = { refs: [], target: editor, notes: [] };
  const segs = editor.segments;
  const route = `${method} ${target.path}`;
  if (SWARM_OBJECTS.has(segs[0])) {
    throw new IsolationRefusal(
      403,
      `swarm ${segs[0]} have no owner: an isolated role may not use them`,
    );
  }
  if (settings.scope) scopeRoute(method, route, segs, target);
  // A scope limits containers only: volume and network lists stay whole.
  const filtered = FILTERED.has(route) &&
    (!settings.scope || route === "GET /containers/json" || route === "GET /events");
  if (filtered) {
    const values = editor.query("filters");
    if (values.length > 1) throw new IsolationRefusal(400, "more than one filters parameter");
    const filters = ownerFilters(values[0], visibilityLabel(settings));
    if (route === "GET /events") ownEventTypes(filters);
    if (route === "GET /containers/json") filterReferences(plan, filters);
    editor.setQuery("filters", JSON.stringify(filters));
    plan.notes.push(settings.scope ? "label filter" : "owner filter");
  }
  if (route === "GET /system/df") plan.answer = diskUsageRule(editor);
  if (route === "POST /containers/prune") plan.containerPrune = true;
  // The label filter leaves the containers whose image carries the owner's label.
  if (route === "GET /containers/json") plan.answer = { kind: "container-list" };
  if (route === "GET /events") plan.answer = { kind: "event-stream" };
  if (method === "POST" && segs.length === 3 && segs[0] === "containers" && segs[2] === "rename") {
    // dockerd's 409 names the container that has the name: maybe another owner's.
    const [name] = editor.query("name");
    plan.answer = { kind: "create-conflict", name: name ?? "" };
  }
  pathReference(plan, method, segs);
  if (route === "POST /commit") {
    const [name] = editor.query("container");
    if (name !== undefined && name !== "") {
      plan.refs.push({
        kind: "container",
        name,
        at: "query container",
        rewrite: (id) => editor.setQuery("container", id),
      });
    }
  }
  if (route === "POST /build") {
    // Build containers join the network named here: another owner's would be reached.
    const [mode] = editor.query("networkmode");
    if (mode && !["default", ...BUILTIN_NETWORKS].includes(mode)) {
      plan.refs.push({
        kind: "network",
        name: mode,
        at: "query networkmode",
        rewrite: (id) => editor.setQuery("networkmode", id),
      });
    }
  }
  if (body) bodyReferences(settings, plan, route, body);
  return plan;
}

/** The object a path names (`/containers/{name}/…`, `/exec/{id}/…`, `/volumes/{name}`, …). */
function pathReference(plan: IsolationPlan, method: string, segs: readonly string[]): void {
  const [collection, name] = segs;
  if (name === undefined) return;
  const kinds: Record<string, ObjectKind> = {
    containers: "container",
    volumes: "volume",
    networks: "network",
    exec: "exec",
  };
  const kind = kinds[collection];
  if (!kind) return;
  // Only a route with a name there makes it a reference: `POST /volumes/create` is a create,
  // `GET /volumes/create` the inspect of a volume named "create".
  const routes = matchRoutes(method, `/${segs.join("/")}`);
  const named = routes.filter((r) => /^\/[a-z]+\/\{(name|id)\}/.test(r.pattern));
  if (named.length === 0) return;
  // Container and volume names have no '/': a name spanning segments names nothing.
  const exact = named.some((r) => r.pattern.split("/").length === segs.length + 1);
  if (!exact || (kind !== "network" && !OBJECT_NAME.test(name))) {
    throw new IsolationRefusal(404, missingMessage(kind, exact ? name : segs.slice(1).join("/")));
  }
  const editor = plan.target;
  plan.refs.push({
    kind,
    name,
    at: "path",
    remove: method === "DELETE" && segs.length === 2,
    rewrite: kind === "volume" || kind === "exec" ? undefined : (id) => editor.setSegment(1, id),
  });
}

/** The daemon's message for an object that does not exist (the same for another owner's). */
export function missingMessage(kind: ObjectKind, name: string): string {
  switch (kind) {
    case "container":
      return `No such container: ${name}`;
    case "exec":
      return `No such exec instance: ${name}`;
    case "volume":
      return `get ${name}: no such volume`;
    case "network":
      return `network ${name} not found`;
  }
}

/**
 * `filters` (the query's JSON, either of the daemon's two forms) with the owner's label
 * filter added; the client's filters stay. Throws an {@linkcode IsolationRefusal} (400) for
 * filters the gate cannot read.
 *
 * @example
 * ```ts
 * import { mergeOwnerFilter } from "./isolation.ts";
 * const f = JSON.parse(mergeOwnerFilter('{"label":["app=web"],"status":["exited"]}', "ci-a"));
 * if (!f.label["app=web"] || !f.label["dockgate.owner=ci-a"] || !f.status.exited) throw new Error();
 * ```
 */
export function mergeOwnerFilter(filters: string | undefined, owner: string): string {
  return JSON.stringify(ownerFilters(filters, `${OWNER_LABEL}=${owner}`));
}

/**
 * What a scoped role may ask besides reads: only requests on one container it sees (start,
 * stop, restart, …: the path names it, and it is checked like every reference). Nothing that
 * creates, and nothing on a volume or network (those are shared, never removed through it).
 */
function scopeRoute(
  method: string,
  route: string,
  segs: readonly string[],
  target: ApiTarget,
): void {
  // Before API 1.28 the network list carries every network's containers (moby's
  // getNetworksList asks for Detailed): a scope keeps network lists whole, so not those.
  if (route === "GET /networks" && target.version && versionBelow(target.version, "1.28")) {
    throw new IsolationRefusal(403, "a scoped role lists networks with API 1.28 or later");
  }
  if (method === "GET" || method === "HEAD") return;
  const oneContainer = segs[0] === "containers" && segs.length >= 2 &&
    segs[1] !== "create" && segs[1] !== "prune";
  if (oneContainer) return;
  throw new IsolationRefusal(
    403,
    `a scoped role acts only on the containers it sees (not ${route})`,
  );
}

/** A list's filters in the daemon's map form (`key -> value -> true`). */
type Filters = Record<string, Record<string, boolean>>;

/** {@linkcode mergeOwnerFilter}'s filters before serializing (with `label`, `key=value`). */
function ownerFilters(filters: string | undefined, label: string): Filters {
  const out: Filters = Object.create(null);
  if (filters !== undefined && filters !== "" && filters !== "null") {
    let value: JsonValue;
    try {
      value = parseStrictJson(new TextEncoder().encode(filters));
    } catch (err) {
      if (err instanceof JsonError) throw new IsolationRefusal(400, `filters: ${err.message}`);
      throw err;
    }
    if (!isJsonObject(value)) throw new IsolationRefusal(400, "filters: not a JSON object");
    for (const [key, values] of Object.entries(value)) {
      const set: Record<string, boolean> = out[key] = Object.create(null);
      const items = Array.isArray(values)
        ? values
        : isJsonObject(values)
        ? Object.keys(values).filter((k) => typeof values[k] === "boolean")
        : undefined;
      if (!items || items.some((v) => typeof v !== "string")) {
        throw new IsolationRefusal(400, `filters.${key}: not a list of strings`);
      }
      if (isJsonObject(values) && items.length !== Object.keys(values).length) {
        throw new IsolationRefusal(400, `filters.${key}: values must be true or false`);
      }
      for (const v of items as string[]) set[v] = true;
    }
  }
  out.label ??= Object.create(null);
  out.label[label] = true;
  return out;
}

/**
 * `since` and `before` in a container list's filters name a container, which dockerd looks up
 * (an error for a missing one): owner-checked references, another owner's answering as a
 * missing one, forwarded as the full ID the check saw.
 */
function filterReferences(plan: IsolationPlan, filters: Filters): void {
  for (const key of ["since", "before"]) {
    const set = filters[key];
    for (const name of Object.keys(set ?? {})) {
      if (!OBJECT_NAME.test(name)) {
        throw new IsolationRefusal(404, missingMessage("container", name));
      }
      plan.refs.push({
        kind: "container",
        name,
        at: `filters.${key}`,
        asMissing: true,
        rewrite: (id) => {
          delete set[name];
          set[id] = true;
          plan.target.setQuery("filters", JSON.stringify(filters));
        },
      });
    }
  }
}

/**
 * The events an isolated role sees: those of its own containers (the owner label filter picks
 * them). Container events are the only ones whose attributes carry the object's labels, except
 * image events, which carry the image's: and an image is no one's (any `LABEL` writes one). So
 * the `type` filter is `container`; a client asking for another type is refused.
 */
function ownEventTypes(filters: Filters): void {
  const other = Object.keys(filters.type ?? {}).find((t) => t !== "container");
  if (other !== undefined) {
    throw new IsolationRefusal(
      403,
      `filters.type ${other}: an isolated role sees the events of its own containers only`,
    );
  }
  filters.type = Object.create(null);
  filters.type.container = true;
}

/**
 * The answer rule of `/system/df`. Its counts (an image's containers, a volume's references)
 * are counted again from the owner's containers, so the answer must list them: when the
 * client's `type`s (API 1.42) leave containers out, the gate asks for them and drops them.
 */
function diskUsageRule(editor: TargetEditor): AnswerRule {
  const types = editor.query("type");
  if (types.length === 0 || types.includes("container")) return { kind: "system-df" };
  editor.addQuery("type", "container");
  return { kind: "system-df", dropContainers: true };
}

/** Labels, references and answer rules of the inspected bodies. */
function bodyReferences(
  settings: IsolationSettings,
  plan: IsolationPlan,
  route: string,
  doc: JsonDocument,
): void {
  const root = doc.value;
  if (!isJsonObject(root)) return; // the policy refused it already
  plan.body = doc;
  if (route === "POST /containers/create") {
    addOwnerLabel(doc, root, settings.owner);
    const [name] = plan.target.query("name");
    plan.answer = { kind: "container-create", name: name ?? "" };
    containerReferences(settings, plan, doc, root);
  } else if (route === "POST /volumes/create") {
    const name = typeof root.Name === "string" ? root.Name : "";
    if (name && settings.sharedVolumes.includes(name)) {
      throw new IsolationRefusal(403, `volume ${name} is shared: an admin creates it`);
    }
    addOwnerLabel(doc, root, settings.owner);
    if (name) plan.answer = { kind: "volume-owner", name };
  } else if (route === "POST /networks/create") {
    const name = typeof root.Name === "string" ? root.Name : "";
    if (BUILTIN_NETWORKS.includes(name) || settings.sharedNetworks.includes(name)) {
      throw new IsolationRefusal(403, `network ${name} is shared: an admin creates it`);
    }
    // Two networks of one name make the name ambiguous for both owners: refuse duplicates.
    if (root.CheckDuplicate === false) {
      throw new IsolationRefusal(
        403,
        "CheckDuplicate=false: an isolated role may not duplicate a name",
      );
    }
    // Both members may be missing: one insertion of both (JsonDocument allows one per place).
    const extra: [string, string][] = "CheckDuplicate" in root ? [] : [["CheckDuplicate", "true"]];
    addOwnerLabel(doc, root, settings.owner, extra);
    const from = root.ConfigFrom;
    if (isJsonObject(from) && typeof from.Network === "string" && from.Network !== "") {
      plan.refs.push({
        kind: "network",
        name: from.Network,
        at: "ConfigFrom.Network",
        rewrite: (id) => doc.replaceValue(from, "Network", JSON.stringify(id)),
      });
    }
  } else if (/^POST \/networks\/[^/]+\/(connect|disconnect)$/.test(route)) {
    if (typeof root.Container === "string" && root.Container !== "") {
      plan.refs.push({
        kind: "container",
        name: root.Container,
        at: "Container",
        rewrite: (id) => doc.replaceValue(root, "Container", JSON.stringify(id)),
      });
    }
    if (isJsonObject(root.EndpointConfig)) {
      endpointReferences(plan, doc, root.EndpointConfig, "EndpointConfig");
    }
  }
}

/**
 * Add the owner label to `object.Labels` (and the `extra` members to `object`); a `dockgate.`
 * label set by the client is refused.
 */
function addOwnerLabel(
  doc: JsonDocument,
  object: JsonObject,
  owner: string,
  extra: [string, string][] = [],
): void {
  const labels = object.Labels;
  const value = JSON.stringify(owner);
  if (labels === undefined) {
    return doc.insertMembers(object, [["Labels", `{"${OWNER_LABEL}":${value}}`], ...extra]);
  }
  doc.insertMembers(object, extra);
  if (labels === null) return doc.replaceValue(object, "Labels", `{"${OWNER_LABEL}":${value}}`);
  if (!isJsonObject(labels)) throw new IsolationRefusal(400, "Labels is not an object");
  refuseOwnLabels(labels, "Labels");
  doc.insertMember(labels, OWNER_LABEL, value);
}

/**
 * The `dockgate.` labels a restricted role's create body sets (only the gate sets the owner:
 * a label set by a client could hand its object to another identity, or pose as one).
 *
 * @example
 * ```ts
 * import { reservedLabels } from "./isolation.ts";
 * if (!reservedLabels("volume", { Labels: { "dockgate.owner": "other" } })) throw new Error();
 * if (reservedLabels("volume", { Labels: { app: "x" } })) throw new Error();
 * ```
 */
export function reservedLabels(kind: string, body: JsonValue): string | undefined {
  if (!isJsonObject(body) || !["create", "volume", "network", "service"].includes(kind)) {
    return undefined;
  }
  try {
    refuseOwnLabels(body.Labels, "Labels");
    const task = isJsonObject(body.TaskTemplate) ? body.TaskTemplate : undefined;
    const spec = task && isJsonObject(task.ContainerSpec) ? task.ContainerSpec : undefined;
    refuseOwnLabels(spec?.Labels, "TaskTemplate.ContainerSpec.Labels");
    const host = isJsonObject(body.HostConfig) ? body.HostConfig : undefined;
    if (host && Array.isArray(host.Mounts)) {
      host.Mounts.forEach((m, i) => {
        if (isJsonObject(m) && isJsonObject(m.VolumeOptions)) {
          refuseOwnLabels(m.VolumeOptions.Labels, `HostConfig.Mounts[${i}].VolumeOptions.Labels`);
        }
      });
    }
  } catch (err) {
    if (err instanceof IsolationRefusal) return err.message;
    throw err;
  }
  return undefined;
}

/** Refuse labels in the gate's `dockgate.` namespace (only the gate sets the owner). */
export function refuseOwnLabels(labels: JsonValue | undefined, at: string): void {
  if (!isJsonObject(labels)) return;
  for (const key of Object.keys(labels)) {
    if (key.toLowerCase().startsWith("dockgate.")) {
      throw new IsolationRefusal(403, `${at}.${key}: the dockgate. labels are the gate's to set`);
    }
  }
}

/** References in a container's create body: volumes-from, links, networks, named volumes. */
function containerReferences(
  settings: IsolationSettings,
  plan: IsolationPlan,
  doc: JsonDocument,
  root: JsonObject,
): void {
  const host = isJsonObject(root.HostConfig) ? root.HostConfig : undefined;
  if (host) {
    const from = host.VolumesFrom;
    if (Array.isArray(from)) {
      from.forEach((item, i) => {
        if (typeof item !== "string") return;
        const [name, ...mode] = item.split(":");
        if (settings.allowVolumesFrom.includes(name)) return;
        plan.refs.push({
          kind: "container",
          name,
          at: `HostConfig.VolumesFrom[${i}]`,
          rewrite: (id) => doc.replaceItem(from, i, JSON.stringify([id, ...mode].join(":"))),
        });
      });
    }
    linkReferences(plan, doc, host.Links, "HostConfig.Links");
    const mode = host.NetworkMode;
    if (typeof mode === "string" && mode.startsWith("container:")) {
      plan.refs.push({
        kind: "container",
        name: mode.slice("container:".length),
        at: "HostConfig.NetworkMode",
        rewrite: (id) => doc.replaceValue(host, "NetworkMode", JSON.stringify(`container:${id}`)),
      });
    } else if (typeof mode === "string" && !["", "default", ...BUILTIN_NETWORKS].includes(mode)) {
      plan.refs.push({
        kind: "network",
        name: mode,
        at: "HostConfig.NetworkMode",
        rewrite: (id) => doc.replaceValue(host, "NetworkMode", JSON.stringify(id)),
      });
    }
    volumeReferences(plan, host);
    anonymousMountLabels(doc, host, settings.owner);
  }
  const net = isJsonObject(root.NetworkingConfig) ? root.NetworkingConfig : undefined;
  const endpoints = net && isJsonObject(net.EndpointsConfig) ? net.EndpointsConfig : undefined;
  for (const [name, settingsOf] of Object.entries(endpoints ?? {})) {
    if (isJsonObject(settingsOf)) {
      endpointReferences(plan, doc, settingsOf, `EndpointsConfig.${name}`);
    }
    if (name === "default" || BUILTIN_NETWORKS.includes(name)) continue;
    plan.refs.push({
      kind: "network",
      name,
      at: `NetworkingConfig.EndpointsConfig.${name}`,
      rewrite: (id) => {
        if (id !== name) doc.renameKey(endpoints!, name, id);
      },
    });
  }
}

/** `Links` entries (`name[:alias]`): container references, forwarded as `ID:alias`. */
function linkReferences(
  plan: IsolationPlan,
  doc: JsonDocument,
  links: JsonValue | undefined,
  at: string,
): void {
  if (!Array.isArray(links)) return;
  links.forEach((item, i) => {
    if (typeof item !== "string") return;
    const [name, alias] = item.split(":");
    const keep = alias ?? name.replace(/^\//, "");
    plan.refs.push({
      kind: "container",
      name,
      at: `${at}[${i}]`,
      rewrite: (id) => doc.replaceItem(links, i, JSON.stringify(`${id}:${keep}`)),
    });
  });
}

/**
 * The objects an endpoint's settings name: its `Links`, and its `NetworkID`, which dockerd
 * joins in place of the network the path or the `EndpointsConfig` key names (for a user
 * defined one). The NetworkID is checked whatever the key, and forwarded as the full ID.
 */
function endpointReferences(
  plan: IsolationPlan,
  doc: JsonDocument,
  endpoint: JsonObject,
  at: string,
): void {
  linkReferences(plan, doc, endpoint.Links, `${at}.Links`);
  const id = endpoint.NetworkID;
  if (id === undefined || id === null || id === "") return; // dockerd reads "" and null as unset
  if (typeof id !== "string") throw new IsolationRefusal(400, `${at}.NetworkID: not a string`);
  plan.refs.push({
    kind: "network",
    name: id,
    at: `${at}.NetworkID`,
    rewrite: (full) => doc.replaceValue(endpoint, "NetworkID", JSON.stringify(full)),
  });
}

/**
 * The owner label for the anonymous volumes of `Mounts` entries of type volume without a
 * `Source`: dockerd creates them with the entry's `VolumeOptions.Labels`. (The anonymous
 * volumes of a create's `Volumes` and of an image's `VOLUME` carry no labels: they belong to
 * no owner, so no isolated role can name, list or remove them; `rm -v` removes them.)
 */
function anonymousMountLabels(doc: JsonDocument, host: JsonObject, owner: string): void {
  if (!Array.isArray(host.Mounts)) return;
  const labels = `{"Labels":{"${OWNER_LABEL}":${JSON.stringify(owner)}}}`;
  host.Mounts.forEach((m, i) => {
    if (!isJsonObject(m) || m.Type !== "volume") return;
    if (m.Source !== undefined && m.Source !== null && m.Source !== "") return;
    const options = m.VolumeOptions;
    if (options === undefined) doc.insertMember(m, "VolumeOptions", labels);
    else if (options === null) doc.replaceValue(m, "VolumeOptions", labels);
    else if (isJsonObject(options)) addOwnerLabel(doc, options, owner);
    else throw new IsolationRefusal(400, `HostConfig.Mounts[${i}].VolumeOptions is not an object`);
  });
}

/**
 * Named volumes in `Binds` and `Mounts` (`volume_check.ts` `namedVolumes`, read as dockerd reads
 * them): owned ones, shared ones, or created for the owner.
 */
function volumeReferences(plan: IsolationPlan, host: JsonObject): void {
  for (const volume of namedVolumes(host)) {
    const mount = volume.at.startsWith("HostConfig.Mounts");
    if (mount) refuseOwnLabels(volume.labels, `${volume.at}.VolumeOptions.Labels`);
    plan.refs.push({
      kind: "volume",
      name: volume.name,
      at: volume.at,
      volume: { Driver: volume.driver, DriverOpts: volume.options, Labels: volume.labels },
    });
  }
}

/** The owner label of an object's labels, if any. */
export function ownerOf(labels: unknown): string | undefined {
  if (typeof labels !== "object" || labels === null) return undefined;
  const v = (labels as Record<string, unknown>)[OWNER_LABEL];
  return typeof v === "string" ? v : undefined;
}

/** The gate's record of the containers it created for each owner (`owner_record.ts`). */
export interface ContainerRecord {
  /** Whether the gate created container `id` (a full ID) for `owner`. */
  has(owner: string, id: string): boolean;
  /**
   * Record a create durably: the answer is sent once this resolves; it rejects (or throws)
   * when the create cannot be recorded.
   */
  add(owner: string, id: string): Promise<void>;
}

/**
 * The owner of a container: its owner label, when the gate's record says that the gate created
 * it (full ID `id`) for that owner; `undefined` otherwise. The one rule for containers (lists,
 * `/system/df`, every reference): a label alone can come from the container's image (dockerd
 * merges an image's labels into the containers it creates from it, and gives a build's RUN
 * containers only the image's), and an image's labels are anyone's to write.
 *
 * @example
 * ```ts
 * import { containerOwner } from "./isolation.ts";
 * const id = "c".repeat(64);
 * const record = { has: (o: string, i: string) => o === "b" && i === id, add: async () => {} };
 * if (containerOwner({ "dockgate.owner": "b" }, id, record) !== "b") throw new Error();
 * if (containerOwner({ "dockgate.owner": "b" }, "d".repeat(64), record) !== undefined) throw new Error();
 * if (containerOwner({ "dockgate.owner": "b" }, id, undefined) !== undefined) throw new Error();
 * ```
 */
export function containerOwner(
  labels: unknown,
  id: unknown,
  record: ContainerRecord | undefined,
): string | undefined {
  const owner = ownerOf(labels);
  if (owner === undefined || typeof id !== "string" || !record) return undefined;
  return record.has(owner, id) ? owner : undefined;
}

/**
 * A `/system/df` answer as the owner's: its containers (by `mineContainer`, the record's
 * rule) and volumes (by label: only their own create labels them), and counts of them.
 * Images stay, with their container counts the owner's: images are shared by every identity
 * (`/images/json` lists them all alike), so listing them here tells nothing more. The build
 * cache goes, all of it: BuildKit's records carry no owner (no label, no creator), and each
 * names a step of someone's build (`[2/2] COPY secret.txt /`, a `RUN` command line), so none
 * can be told to be the owner's (fail closed: `BuildCache: []`, `BuilderSize: 0`).
 */
function ownDiskUsage(
  // deno-lint-ignore no-explicit-any
  df: any,
  owner: string,
  dropContainers: boolean | undefined,
  mineContainer: (c: { Id?: unknown; Labels?: unknown }) => boolean,
  allVolumes = false,
): unknown {
  // A scope limits containers only: every volume is seen.
  const mine = (o: { Labels?: unknown }) => allVolumes || ownerOf(o?.Labels) === owner;
  // Without the list (not asked for, or a daemon that left it out) no count can be told:
  // -1, the daemon's own "not computed".
  const own: { ImageID?: unknown; Mounts?: unknown }[] | undefined = Array.isArray(df.Containers)
    ? df.Containers = df.Containers.filter(mineContainer)
    : undefined;
  const count = (pick: (c: { ImageID?: unknown; Mounts?: unknown }) => boolean) =>
    own ? own.filter(pick).length : -1;
  if (Array.isArray(df.Volumes)) df.Volumes = df.Volumes.filter(mine);
  // Left as the daemon sent it only when absent or null (not asked for: `type=` of API 1.42).
  if (df.BuildCache !== undefined && df.BuildCache !== null) df.BuildCache = [];
  if (typeof df.BuilderSize === "number") df.BuilderSize = 0;
  for (const image of Array.isArray(df.Images) ? df.Images : []) {
    if (typeof image?.Containers === "number" && image.Containers >= 0) {
      image.Containers = count((c) => c.ImageID === image.Id);
    }
  }
  for (const volume of Array.isArray(df.Volumes) ? df.Volumes : []) {
    const usage = volume?.UsageData;
    if (typeof usage?.RefCount === "number" && usage.RefCount >= 0) {
      usage.RefCount = count((c) =>
        Array.isArray(c.Mounts) &&
        c.Mounts.some((m: { Type?: unknown; Name?: unknown }) =>
          m?.Type === "volume" && m.Name === volume.Name
        )
      );
    }
  }
  if (dropContainers) delete df.Containers;
  return df;
}

/** The answer an answer rule made: its status and body. */
export interface FilteredAnswer {
  /** The status to send. */
  status: number;
  /** The body to send. */
  body: Uint8Array;
}

/**
 * The answer a rule makes of the daemon's `status` and JSON `body` for `owner`; `undefined`
 * keeps it as it is; a promise of either for a container create's 201, which is sent only
 * once the create is recorded (`ContainerRecord.add`). `ownContainers` are the owner's container IDs (for a network's list),
 * `record` the gate's record of the containers it created ({@linkcode containerOwner}; a
 * container create's answer is recorded there before it is sent).
 *
 * @example
 * ```ts
 * import { filterAnswer } from "./isolation.ts";
 * const record = { has: (o: string, i: string) => o === "x" && i === "a", add: async () => {} };
 * const body = new TextEncoder().encode(JSON.stringify({ Containers: [{ Id: "a", Labels: { "dockgate.owner": "x" } }, { Id: "b", Labels: { "dockgate.owner": "x" } }], Volumes: [] }));
 * const out = await filterAnswer({ kind: "system-df" }, 200, body, "x", new Set(), record);
 * if (JSON.parse(new TextDecoder().decode(out!.body)).Containers.length !== 1) throw new Error();
 * ```
 */
export function filterAnswer(
  rule: AnswerRule,
  status: number,
  body: Uint8Array,
  owner: string,
  ownContainers: ReadonlySet<string>,
  record?: ContainerRecord,
  scope?: LabelScope,
): FilteredAnswer | undefined | Promise<FilteredAnswer | undefined> {
  const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v) + "\n");
  const parsed = () => {
    try {
      return JSON.parse(new TextDecoder().decode(body));
    } catch {
      throw new HttpError(502, "the daemon's answer is not JSON");
    }
  };
  const mine = (c: { Id?: unknown; Labels?: unknown }) =>
    containerSeen(c?.Labels, c?.Id, owner, record, scope);
  switch (rule.kind) {
    case "system-df": {
      if (status !== 200) return undefined;
      const df = parsed();
      return { status, body: json(ownDiskUsage(df, owner, rule.dropContainers, mine, !!scope)) };
    }
    case "container-list": {
      if (status !== 200) return undefined;
      const list = parsed();
      if (!Array.isArray(list)) {
        // Answered in line (a throw here would cut the connection and the answers before it).
        return { status: 502, body: json({ message: "the daemon's container list is no list" }) };
      }
      return { status, body: json(list.filter(mine)) };
    }
    case "container-create":
      if (status === 201) return recordCreate(parsed(), owner, record);
      return conflictAnswer(status, rule.name);
    case "network-containers": {
      if (status !== 200) return undefined;
      const n = parsed();
      if (n.Containers && typeof n.Containers === "object") {
        for (const id of Object.keys(n.Containers)) {
          if (!ownContainers.has(id)) delete n.Containers[id];
        }
      }
      return { status, body: json(n) };
    }
    case "volume-owner": {
      if (status !== 201 && status !== 200) return undefined;
      if (ownerOf(parsed().Labels) === owner) return undefined;
      return { status: 409, body: json({ message: `volume name ${rule.name} is already in use` }) };
    }
    case "create-conflict":
      return conflictAnswer(status, rule.name);
    case "event-stream": {
      // A stream with a length (an answer with `until`) is read whole: the same line rule.
      if (status !== 200) return undefined;
      const lines = new TextDecoder().decode(body).split("\n").filter((l) => l !== "");
      const kept = lines.filter((l) => keepEvent(l, owner, record, scope));
      return { status, body: new TextEncoder().encode(kept.map((l) => l + "\n").join("")) };
    }
  }
}

/**
 * Whether one line of the daemon's event stream goes to `owner`: the daemon filtered it by
 * the owner label already, and a container's event (an exec's too: its actor is the
 * container) goes only when the container is the owner's by {@linkcode containerOwner} (its
 * image may have given it the label). Other events stay; a line that is no event is dropped.
 *
 * @example
 * ```ts
 * import { keepEvent } from "./isolation.ts";
 * const id = "c".repeat(64);
 * const record = { has: (o: string, i: string) => o === "b" && i === id, add: async () => {} };
 * const ev = (i: string) => JSON.stringify({ Type: "container", Actor: { ID: i, Attributes: { "dockgate.owner": "b" } } });
 * if (!keepEvent(ev(id), "b", record) || keepEvent(ev("d".repeat(64)), "b", record)) throw new Error();
 * ```
 */
export function keepEvent(
  line: string,
  owner: string,
  record: ContainerRecord | undefined,
  scope?: LabelScope,
): boolean {
  let ev;
  try {
    ev = JSON.parse(line);
  } catch {
    return false;
  }
  if (typeof ev !== "object" || ev === null || Array.isArray(ev)) return false;
  if (ev.Type !== "container") return true;
  return containerSeen(ev.Actor?.Attributes, ev.Actor?.ID, owner, record, scope);
}

/** A 409 on create or rename, without the name of the container that has the name. */
function conflictAnswer(
  status: number,
  name: string,
): { status: number; body: Uint8Array } | undefined {
  if (status !== 409) return undefined;
  const message = `Conflict. The container name "/${name.replace(/^\//, "")}" is already in use.`;
  return { status, body: new TextEncoder().encode(JSON.stringify({ message }) + "\n") };
}

/**
 * A created container, recorded for its owner before the client hears of it; when it cannot
 * be recorded the client gets a 500 saying so (the container exists, and has no owner).
 */
async function recordCreate(
  answer: { Id?: unknown },
  owner: string,
  record: ContainerRecord | undefined,
): Promise<FilteredAnswer | undefined> {
  try {
    if (!record) throw new Error("the gate has no owner record (serve --state-dir)");
    if (typeof answer?.Id !== "string") throw new Error("the daemon's answer has no Id");
    await record.add(owner, answer.Id);
    return undefined;
  } catch (err) {
    const message = `dockgate could not record the new container's owner: ${
      (err as Error).message
    }`;
    return { status: 500, body: new TextEncoder().encode(JSON.stringify({ message }) + "\n") };
  }
}
