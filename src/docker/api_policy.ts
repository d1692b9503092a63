/**
 * Per-identity Docker API rules: roles (a preset plus allowed and denied operations and
 * allowances), identities mapped to roles, and the one decision for a request.
 *
 * Presets: `full` is everything (and keeps the raw byte relay, unless `"audit": "requests"`
 * asks for a record per request); `read-only` is the GET/HEAD
 * routes that only read state (no file downloads unless `allowDownloads`); `no-escape` is
 * every route except those that can reach the host, with request bodies read field by field
 * (`no_escape.ts`). Extra `allow` operations never lift the no-escape body checks: only a
 * `full` role can escape.
 *
 * @module
 */

import { matchName, sanMatches } from "../access/policy.ts";
import type { PeerIdentity } from "../access/identity.ts";
import { type ApiTarget, MIN_API_VERSION, parseApiTarget, versionBelow } from "./api_path.ts";
import { compilePattern, type Inspection, matchRoutes, type Route } from "./routes.ts";
import { checkBody, cleanPath, type EscapeAllowances } from "./no_escape.ts";
import { isJsonObject, JsonError, type JsonValue, parseStrictJson } from "./strict_json.ts";
import { reservedLabels } from "./isolation.ts";
import { queryProblem } from "./route_params.ts";
import { authBodyProblem } from "./auth_body.ts";
import { commitBodyProblem } from "./image_changes.ts";
import { SHIELD_IDS } from "./shields.ts";
import { parseSubnet } from "./subnets.ts";
import { imageNameProblem, imagePatternProblem } from "./image_names.ts";
import { limitProblem, type RateSpec, rawLimitProblem, scopeProblem } from "./limit_spec.ts";

/** What names an isolated identity's owner key: its common name or its one URI SAN. */
export type OwnerKind = "cn" | "uri";

/** The presets a role starts from. */
export type Preset = "read-only" | "no-escape" | "full";

/** A role as written in the policy file. */
export interface RoleSpec extends EscapeAllowances {
  /** What the role starts from. */
  preset: Preset;
  /** Extra operations, `METHOD /path/pattern` (`*` one segment, `**` several). */
  allow?: readonly string[];
  /** Operations refused even if the preset allows them (checked first). */
  deny?: readonly string[];
  /** Let a read-only role download files (`archive`, `export`, image `get`). Default: false. */
  allowDownloads?: boolean;
  /**
   * Isolate per owner: the identity sees and touches only the containers, volumes and
   * networks it created (see `isolation.ts`). Not with `full`. Default: false.
   */
  isolate?: boolean;
  /** The answer for another owner's object: 404 (as if missing) or 403. Default: 404. */
  othersStatus?: 404 | 403;
  /**
   * What names the owner under `isolate`: `"cn"` the subject common name, `"uri"` the
   * certificate's one URI SAN (a SPIFFE ID such as `spiffe://example.org/ci/runner`; a
   * certificate with none or several is refused). Owner keys of the two kinds never collide
   * (see `isolation.ts` `ownerKey`). Default: `"cn"`.
   */
  owner?: OwnerKind;
  /**
   * Let dockerd fetch from loopback, link-local, private or unqualified hosts: image
   * references (`fromImage`, push, `/distribution`), `build?remote=` and
   * `images/create?fromSrc=` URLs. Default: false (only public DNS names).
   */
  allowPrivateAddresses?: boolean;
  /**
   * Shields (`shields.ts`) this role goes without, by CVE id: the routes they guard are
   * allowed on affected daemons too (the audit record says `lifted <CVE>`). Default: none.
   */
  liftShields?: readonly string[];
  /**
   * Image names the role may write (tag, push, remove), glob patterns (`*` any characters)
   * matched against the familiar name with its tag (`ci/app:1`, `bb:latest`); prune and
   * load need `"*"`. Default: none (see `image_names.ts`).
   */
  allowImageNames?: readonly string[];
  // ---- issue 24, reads and limits (secret_redaction.ts); kept apart for merges ----
  /**
   * Let a read-only role see environment values and secret/config data in inspect answers.
   * Default: false (the values are replaced by a marker, see `secret_redaction.ts`).
   */
  allowSecrets?: boolean;
  /** Requests a second per identity, with a burst (`request_limits.ts`). Default: none. */
  rate?: RateSpec;
  /** Requests of one identity in flight at once (`request_limits.ts`). Default: none. */
  maxInFlight?: number;
  /**
   * See only the containers with this label (`{"label": "com.example.team=web"}`): lists
   * filtered, other containers 404, as isolation does (`isolation.ts` `containerSeen`).
   * read-only only. Default: every container.
   */
  scope?: { label: string };
  /**
   * What the audit log records for the role: `requests` (a record per request, with what an
   * exec, attach or container create asked for) or `connections` (one record per connection).
   * A `full` role with `requests` is relayed through the HTTP-aware relay with everything
   * allowed instead of the raw relay. Restricted roles are always `requests` (each request is
   * decided). Default: `connections` for `full`, `requests` for the others.
   */
  audit?: AuditLevel;
  /**
   * Record the role's exec and attach sessions (`serve --record-sessions DIR`, asciicast v2):
   * `true` records when it can, `"required"` refuses an exec start or attach whose recording
   * cannot be written (so no unrecorded session exists). A `full` role needs
   * `"audit": "requests"` (the raw relay sees no sessions). Default: false.
   */
  record?: boolean | "required";
}

/** What the audit log records for a role (`RoleSpec.audit`). */
export type AuditLevel = "requests" | "connections";

/** One identity entry: exactly one of `cn`, `san`, `ou`, matched as the allow-lists match. */
export interface IdentitySpec {
  /** Subject common name (exact, `*` label globs). */
  cn?: string;
  /** Subject alternative name (DNS ASCII-folded with globs, URI exact, IP by value). */
  san?: string;
  /** Organizational unit (exact). */
  ou?: string;
  /** The role's name. */
  role: string;
}

/** The policy file's content. */
export interface ApiPolicySpec {
  /** Roles by name. */
  roles: Record<string, RoleSpec>;
  /** Identities in order; the first that matches decides the role. */
  identities: IdentitySpec[];
  /** Volumes and networks every isolated identity may use (not remove). */
  shared?: { volumes?: string[]; networks?: string[] };
}

/** An operation pattern of a role's `allow` or `deny`, compiled. */
export interface Operation {
  /** As written, `METHOD /path/pattern`. */
  text: string;
  /** The method, or `*` for any. */
  method: string;
  /** The compiled path pattern. */
  regex: RegExp;
}

/** A role, validated and compiled. */
export interface Role {
  /** Its name. */
  name: string;
  /** Its preset. */
  preset: Preset;
  /** The spec it came from. */
  spec: RoleSpec;
  /** Extra operations the role may perform. */
  allow: Operation[];
  /** Operations refused whatever the preset says. */
  deny: Operation[];
  /** Whether it is isolated per owner. */
  isolate: boolean;
  /** The answer for another owner's object. */
  othersStatus: 404 | 403;
  /** What names the owner (see {@linkcode RoleSpec.owner}). */
  owner: OwnerKind;
  /** The policy's shared volumes and networks. */
  shared: { volumes: readonly string[]; networks: readonly string[] };
  /** The shields the role goes without (CVE ids of `shields.ts`). */
  liftShields: readonly string[];
  /** What the audit log records (`RoleSpec.audit`, its default filled in). */
  audit: AuditLevel;
  /** Whether its sessions are recorded (`RoleSpec.record`). */
  record: boolean | "required";
}

/** A validated policy, ready for decisions. */
export interface ApiPolicy {
  /** Roles by name. */
  roles: ReadonlyMap<string, Role>;
  /** Identities in order. */
  identities: readonly IdentitySpec[];
}

/** The outcome of a decision. */
export interface ApiDecision {
  /** Whether the request may be forwarded. */
  allow: boolean;
  /** The rule that decided (for the log and the refusal message). */
  rule: string;
  /**
   * An allowed request that makes dockerd contact these DNS names: forwarded only once each
   * resolves to public addresses (`host_check.ts`; the role does not allow private ones).
   */
  hosts?: readonly string[];
}

/** A request as the policy sees it. */
export interface ApiRequest {
  /** The method. */
  method: string;
  /** The parsed target. */
  target: ApiTarget;
  /** The parsed JSON body, for routes that need one inspected. */
  body?: JsonValue;
  /** Whether a body was sent at all (a non-empty one). */
  hasBody?: boolean;
}

const PRESETS: readonly Preset[] = ["read-only", "no-escape", "full"];
const LIST_KEYS = [
  "allow",
  "deny",
  "allowBindMounts",
  "allowCapabilities",
  "allowSysctls",
  "allowRuntimes",
  "allowVolumesFrom",
  "allowLogDrivers",
  "allowVolumeDrivers",
  "allowNetworkDrivers",
  "allowSubnets",
  "liftShields",
  "allowImageNames",
] as const;
// ---- issue 24, reads and limits: the options of this block are checked in viewProblem ----
const VIEW_KEYS = ["allowSecrets", "rate", "maxInFlight", "scope"] as const;

/** The problem with a role's issue-24 view options, if any: `[where, what]`. */
function viewProblem(r: Record<string, unknown>): [string, string] | undefined {
  if (r.allowSecrets !== undefined && typeof r.allowSecrets !== "boolean") {
    return [".allowSecrets", "must be true or false"];
  }
  if (r.allowSecrets !== undefined && r.preset !== "read-only") {
    return [
      ".allowSecrets",
      "only means something with preset read-only (others are not redacted)",
    ];
  }
  return limitProblem(r) ?? scopeProblem(r);
}
// ---- end of the issue 24 block ----

const ROLE_KEYS = new Set<string>([
  "preset",
  ...LIST_KEYS,
  "allowDownloads",
  "nonRootUser",
  "isolate",
  "othersStatus",
  "owner",
  "allowPrivateAddresses",
  ...VIEW_KEYS,
  "audit",
  "record",
]);
const AUDIT_LEVELS: readonly AuditLevel[] = ["requests", "connections"];

/**
 * Validate a policy (parsed from JSON or YAML) and compile it. Throws a `TypeError` naming
 * the exact rule and field at fault: `Policy "p.json": roles.ci.allowBindMounts[0]: …`.
 *
 * @example
 * ```ts
 * import { compileApiPolicy } from "./api_policy.ts";
 * const p = compileApiPolicy({
 *   roles: { monitor: { preset: "read-only" } },
 *   identities: [{ cn: "grafana", role: "monitor" }],
 * }, "example");
 * if (p.roles.get("monitor")?.preset !== "read-only") throw new Error();
 * ```
 */
export function compileApiPolicy(value: unknown, source: string): ApiPolicy {
  const fail = (where: string, what: string): never => {
    throw new TypeError(`Policy "${source}": ${where}: ${what}`);
  };
  if (!isPlainObject(value)) fail("top level", "must be an object with roles and identities");
  const top = value as Record<string, unknown>;
  for (const k of Object.keys(top)) {
    if (!["roles", "identities", "shared"].includes(k)) {
      fail(k, "unknown key (expected roles, identities, shared)");
    }
  }
  const shared = compileShared(top.shared, fail);
  if (!isPlainObject(top.roles)) fail("roles", "must be an object of named roles");
  const roles = new Map<string, Role>();
  for (const [name, raw] of Object.entries(top.roles as Record<string, unknown>)) {
    roles.set(name, compileRole(name, raw, shared, (w, m) => fail(`roles.${name}${w}`, m)));
  }
  if (!Array.isArray(top.identities)) fail("identities", "must be a list");
  const identities = (top.identities as unknown[]).map((raw, i) => {
    const at = `identities[${i}]`;
    if (!isPlainObject(raw)) fail(at, "must be an object like {cn, role}");
    const e = raw as Record<string, unknown>;
    for (const k of Object.keys(e)) {
      if (!["cn", "san", "ou", "role"].includes(k)) fail(`${at}.${k}`, "unknown key");
    }
    const keys = ["cn", "san", "ou"].filter((k) => e[k] !== undefined);
    if (keys.length !== 1) fail(at, "needs exactly one of cn, san, ou");
    const key = keys[0];
    if (typeof e[key] !== "string" || e[key] === "") fail(`${at}.${key}`, "must be a name");
    if (typeof e.role !== "string") fail(`${at}.role`, "must be a role name");
    if (!roles.has(e.role as string)) fail(`${at}.role`, `no role named "${e.role}"`);
    return { [key]: e[key], role: e.role } as IdentitySpec;
  });
  return { roles, identities };
}

/** The policy's `shared` names: `{volumes: [...], networks: [...]}`. */
function compileShared(
  raw: unknown,
  fail: (where: string, what: string) => never,
): Role["shared"] {
  if (raw === undefined) return { volumes: [], networks: [] };
  if (!isPlainObject(raw)) fail("shared", "must be an object like {volumes: [], networks: []}");
  const r = raw as Record<string, unknown>;
  for (const k of Object.keys(r)) {
    if (k !== "volumes" && k !== "networks") {
      fail(`shared.${k}`, "unknown key (expected volumes, networks)");
    }
  }
  const names = (k: "volumes" | "networks"): string[] => {
    if (r[k] === undefined) return [];
    if (!Array.isArray(r[k])) fail(`shared.${k}`, "must be a list of names");
    return (r[k] as unknown[]).map((v, i) => {
      if (typeof v !== "string" || !/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(v)) {
        fail(`shared.${k}[${i}]`, "must be a volume or network name");
      }
      return v as string;
    });
  };
  return { volumes: names("volumes"), networks: names("networks") };
}

function compileRole(
  name: string,
  raw: unknown,
  shared: Role["shared"],
  fail: (where: string, what: string) => never,
): Role {
  if (!isPlainObject(raw)) fail("", "must be an object with a preset");
  const r = raw as Record<string, unknown>;
  checkRoleShape(r, fail);
  const audit = checkRoleOptions(r, fail);
  checkRoleLists(r, fail);
  const view = viewProblem(r);
  if (view) fail(...view);
  const ops = (key: "allow" | "deny") =>
    ((r[key] ?? []) as string[]).map((text, i) => {
      const m = /^([A-Z]+|\*) (\/\S*)$/.exec(text);
      if (!m) fail(`.${key}[${i}]`, `must be "METHOD /path/pattern", got "${text}"`);
      return { text, method: m![1], regex: compilePattern(m![2]) };
    });
  const spec = { ...r } as unknown as RoleSpec;
  const role: Role = {
    name,
    preset: r.preset as Preset,
    spec,
    allow: ops("allow"),
    deny: ops("deny"),
    isolate: r.isolate === true,
    othersStatus: (r.othersStatus as 404 | 403 | undefined) ?? 404,
    owner: (r.owner as OwnerKind | undefined) ?? "cn",
    shared,
    liftShields: (r.liftShields ?? []) as string[],
    audit,
    record: (r.record as boolean | "required" | undefined) ?? false,
  };
  const unread = rawLimitProblem(r, relaysRaw(role));
  if (unread) fail(...unread);
  if (role.record !== false && relaysRaw(role)) {
    fail(".record", 'a full role is relayed raw: recording its sessions needs "audit": "requests"');
  }
  return role;
}

/** A role's keys are known, its preset one of ours, its lists strings and its switches booleans. */
function checkRoleShape(
  r: Record<string, unknown>,
  fail: (where: string, what: string) => never,
): void {
  for (const k of Object.keys(r)) if (!ROLE_KEYS.has(k)) fail(`.${k}`, "unknown option");
  if (!PRESETS.includes(r.preset as Preset)) {
    fail(".preset", `must be one of ${PRESETS.join(", ")}`);
  }
  for (const k of LIST_KEYS) {
    if (r[k] === undefined) continue;
    if (!Array.isArray(r[k])) fail(`.${k}`, "must be a list of strings");
    (r[k] as unknown[]).forEach((v, i) => {
      if (typeof v !== "string" || v === "") fail(`.${k}[${i}]`, "must be a non-empty string");
    });
  }
  for (const k of ["allowDownloads", "nonRootUser", "isolate", "allowPrivateAddresses"]) {
    if (r[k] !== undefined && typeof r[k] !== "boolean") fail(`.${k}`, "must be true or false");
  }
}

/** Options that mean something only together (isolate, owner, audit, record); the audit level. */
function checkRoleOptions(
  r: Record<string, unknown>,
  fail: (where: string, what: string) => never,
): AuditLevel {
  if (r.isolate === true && r.preset === "full") {
    fail(".isolate", "a full role is relayed raw and cannot be isolated (use no-escape)");
  }
  const audit = auditLevelOf(r, fail);
  if (r.record !== undefined && typeof r.record !== "boolean" && r.record !== "required") {
    fail(".record", `must be true, false or "required", got ${JSON.stringify(r.record)}`);
  }
  if (r.othersStatus !== undefined && r.othersStatus !== 404 && r.othersStatus !== 403) {
    fail(".othersStatus", "must be 404 or 403");
  }
  if (r.othersStatus !== undefined && r.isolate !== true) {
    fail(".othersStatus", "only means something with isolate: true");
  }
  if (r.owner !== undefined && r.owner !== "cn" && r.owner !== "uri") {
    fail(".owner", 'must be "cn" or "uri"');
  }
  if (r.owner !== undefined && r.isolate !== true) {
    fail(".owner", "only means something with isolate: true");
  }
  return audit;
}

/** Each entry of the value lists: known shields, image patterns, bind roots, subnets. */
function checkRoleLists(
  r: Record<string, unknown>,
  fail: (where: string, what: string) => never,
): void {
  ((r.liftShields ?? []) as string[]).forEach((id, i) => {
    if (!SHIELD_IDS.includes(id)) {
      fail(`.liftShields[${i}]`, `unknown shield "${id}" (known: ${SHIELD_IDS.join(", ")})`);
    }
  });
  if (r.liftShields !== undefined && r.preset === "full") {
    fail(".liftShields", "a full role has no shields (it is relayed raw)");
  }
  ((r.allowImageNames ?? []) as string[]).forEach((p, i) => {
    const bad = imagePatternProblem(p);
    if (bad) fail(`.allowImageNames[${i}]`, bad);
  });
  ((r.allowBindMounts ?? []) as string[]).forEach((p, i) => {
    if (!p.startsWith("/")) fail(`.allowBindMounts[${i}]`, "must be an absolute path");
    if (cleanPath(p) === "/") fail(`.allowBindMounts[${i}]`, "the root directory is the host");
  });
  ((r.allowSubnets ?? []) as string[]).forEach((p, i) => {
    if (!p.includes("/") || !parseSubnet(p)) {
      fail(
        `.allowSubnets[${i}]`,
        'must be a subnet in plain notation ("10.97.0.0/16", "fd00:97::/48")',
      );
    }
  });
}

/** The role's `audit` option, validated, with its default. */
function auditLevelOf(
  r: Record<string, unknown>,
  fail: (where: string, what: string) => never,
): AuditLevel {
  if (r.audit === undefined) return r.preset === "full" ? "connections" : "requests";
  if (!AUDIT_LEVELS.includes(r.audit as AuditLevel)) {
    fail(".audit", `must be one of ${AUDIT_LEVELS.join(", ")}, got ${JSON.stringify(r.audit)}`);
  }
  if (r.audit === "connections" && r.preset !== "full") {
    fail(
      ".audit",
      `a ${r.preset} role decides every request and always records each one ` +
        '(only a full role may be "connections")',
    );
  }
  return r.audit as AuditLevel;
}

/**
 * Whether `role`'s connections get the raw byte relay (no role, or a `full` role audited per
 * connection) rather than the HTTP-aware relay that records, and for restricted roles decides,
 * every request. The one rule for choosing the relay, at the connection's start and at a reload.
 *
 * @example
 * ```ts
 * import { compileApiPolicy, relaysRaw } from "./api_policy.ts";
 * const p = compileApiPolicy({ roles: { a: { preset: "full" }, b: { preset: "full", audit: "requests" } }, identities: [] }, "x");
 * if (!relaysRaw(p.roles.get("a")) || relaysRaw(p.roles.get("b")) || !relaysRaw(undefined)) throw new Error();
 * ```
 */
export function relaysRaw(role: Role | undefined): boolean {
  return role === undefined || (role.preset === "full" && role.audit === "connections");
}

function isPlainObject(v: unknown): boolean {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * The role of `identity`: the first identity entry that matches it, or `undefined` (such a
 * peer is refused at the handshake).
 *
 * @example
 * ```ts
 * import { compileApiPolicy, roleFor } from "./api_policy.ts";
 * const p = compileApiPolicy({ roles: { r: { preset: "full" } }, identities: [{ ou: "ops", role: "r" }] }, "x");
 * const peer = { commonName: "a", organizationalUnits: ["ops"], dnsNames: [], uris: [], ips: [] };
 * if (roleFor(p, peer)?.name !== "r") throw new Error();
 * ```
 */
export function roleFor(
  policy: ApiPolicy,
  identity: Pick<PeerIdentity, "commonName" | "organizationalUnits" | "dnsNames" | "uris" | "ips">,
): Role | undefined {
  for (const e of policy.identities) {
    const hit = e.cn !== undefined
      ? identity.commonName !== undefined && matchName(e.cn, identity.commonName)
      : e.san !== undefined
      ? sanMatches(e.san, identity)
      : identity.organizationalUnits.includes(e.ou!);
    if (hit) return policy.roles.get(e.role);
  }
  return undefined;
}

function opMatches(op: Operation, method: string, path: string): boolean {
  return (op.method === "*" || op.method === method) && op.regex.test(path);
}

/**
 * Which body the policy must read before deciding on `method path` for `role`, if any (for a
 * `full` role: the exec and container creates, read for their audit record).
 *
 * @example
 * ```ts
 * import { compileApiPolicy, inspectionFor } from "./api_policy.ts";
 * const p = compileApiPolicy({ roles: { r: { preset: "no-escape" } }, identities: [] }, "x");
 * if (inspectionFor(p.roles.get("r")!, "POST", "/containers/create") !== "create") throw new Error();
 * ```
 */
export function inspectionFor(role: Role, method: string, path: string): Inspection | undefined {
  for (const r of matchRoutes(method, path)) {
    // A full role's bodies decide nothing: an exec or container create is read for its record
    // (`attribution.ts`: what was run), as dockerd will read it.
    if (role.preset === "full") {
      if (r.inspect === "exec" || r.inspect === "create") return r.inspect;
      continue;
    }
    // A build's body is its context (large, a tar): only its query is checked.
    if (r.inspect && r.inspect !== "build") return r.inspect;
  }
  return undefined;
}

/**
 * The one decision for a request of `role`: deny entries first, then the preset and the
 * role's allow entries per matched route, then the no-escape body and query checks.
 *
 * @example
 * ```ts
 * import { compileApiPolicy, decideRequest } from "./api_policy.ts";
 * import { parseApiTarget } from "./api_path.ts";
 * const p = compileApiPolicy({ roles: { m: { preset: "read-only" } }, identities: [] }, "x");
 * const m = p.roles.get("m")!;
 * if (!decideRequest(m, { method: "GET", target: parseApiTarget("/v1.41/containers/json") }).allow) throw new Error();
 * if (decideRequest(m, { method: "POST", target: parseApiTarget("/containers/create") }).allow) throw new Error();
 * ```
 */
export function decideRequest(
  role: Role,
  request: ApiRequest,
  options: { resolveSymlinks?: boolean } = {},
): ApiDecision {
  const { method, target } = request;
  const path = target.path;
  for (const op of role.deny) {
    if (opMatches(op, method, path)) return { allow: false, rule: `deny ${op.text}` };
  }
  if (role.preset === "full") return { allow: true, rule: "full" };
  if (target.version !== undefined && versionBelow(target.version, MIN_API_VERSION)) {
    return {
      allow: false,
      rule:
        `API version ${target.version} is below ${MIN_API_VERSION} (it applied HostConfig at start)`,
    };
  }
  const extra = role.allow.find((op) => opMatches(op, method, path));
  const routes = matchRoutes(method, path);
  if (routes.length === 0) {
    return extra
      ? { allow: true, rule: `allow ${extra.text}` }
      : { allow: false, rule: `${role.preset}: not a Docker API route the policy knows` };
  }
  let rule = extra ? `allow ${extra.text}` : role.preset;
  const hosts: string[] = [];
  for (const route of routes) {
    const verdict = routeVerdict(role, route, extra !== undefined);
    if (verdict) return { allow: false, rule: verdict };
    const check = inspect(role, route, request, options, hosts);
    if (check) return { allow: false, rule: `${role.preset}: ${check}` };
    // The record says what was read: a build's context (a tar stream) never is.
    if (route.inspect === "build") rule = `${rule} (build query checked, context not read)`;
    else if (route.inspect) rule = `${rule} (${route.inspect} body checked)`;
  }
  return hosts.length ? { allow: true, rule, hosts } : { allow: true, rule };
}

/** Whether the role's preset (or an allow entry) permits the route; the refusal if not. */
function routeVerdict(role: Role, route: Route, extra: boolean): string | undefined {
  if (route.kind === "escape") {
    return `${role.preset}: ${route.method} ${route.pattern} can reach the host (only a full role may)`;
  }
  if (role.preset === "no-escape" || extra) return undefined;
  if (route.kind === "read") return undefined;
  if (route.kind === "download" && role.spec.allowDownloads) return undefined;
  return route.kind === "download"
    ? "read-only: downloads files (allowDownloads is off)"
    : `read-only: ${route.method} ${route.pattern} changes state`;
}

/** The body and query checks a route needs; the violation, if any. */
function inspect(
  role: Role,
  route: Route,
  request: ApiRequest,
  options: { resolveSymlinks?: boolean },
  hosts: string[],
): string | undefined {
  const ctx = {
    allow: role.spec,
    resolveSymlinks: options.resolveSymlinks,
    isolated: role.isolate,
  };
  // Every parameter of every route is on the route's list, whatever the body says.
  const query = queryProblem(route.method, route.pattern, request.target, {
    allowPrivateAddresses: role.spec.allowPrivateAddresses === true,
    hosts,
  });
  if (query) return query;
  const names = imageNameProblem(
    role.spec.allowImageNames,
    route.method,
    route.pattern,
    request.target,
  );
  if (names) return names;
  switch (route.inspect) {
    case undefined:
      return undefined;
    case "start":
      if (!request.hasBody) return undefined;
      if (
        request.body === null ||
        (isJsonObject(request.body) && Object.keys(request.body).length === 0)
      ) return undefined;
      return "a body on start (API < 1.24 applied a HostConfig sent there)";
    case "build":
      return undefined; // its query is all there is to check (above)
    case "commit":
      // A container config merged into the image's: its labels are the image's.
      return commitBodyProblem(request.body);
    case "auth":
      // The registry's host is one dockerd connects to, like a pull's.
      if (request.body === undefined) return "auth needs a JSON body to inspect";
      return authBodyProblem(request.body, {
        allowPrivateAddresses: role.spec.allowPrivateAddresses === true,
        hosts,
      });
    default:
      if (request.body === undefined) return `${route.inspect} needs a JSON body to inspect`;
      return checkBody(route.inspect, request.body, ctx) ??
        reservedLabels(route.inspect, request.body);
  }
}

/** What {@linkcode routeRequest} knows about a request before its body. */
export interface RoutedRequest {
  /** The parsed target. */
  target: ApiTarget;
  /** The body the policy must read, if any. */
  inspection?: Inspection;
  /** The decision, when no body can change it (no inspection). */
  decision?: ApiDecision;
}

/** Routed requests per role (a reload makes new roles, so old entries go with the old role). */
const ROUTED = new WeakMap<Role, Map<string, RoutedRequest>>();
const ROUTED_MAX = 512;

/**
 * Parse `rawTarget`, find the inspection `method` needs, and decide when no body can change
 * the decision: the same as {@linkcode decideRequest}, remembered per role for the last few
 * hundred method and target pairs (a client repeats `GET /v1.41/containers/json` all day).
 * Throws the target's `HttpError` (never remembered).
 *
 * @example
 * ```ts
 * import { compileApiPolicy, routeRequest } from "./api_policy.ts";
 * const p = compileApiPolicy({ roles: { m: { preset: "read-only" } }, identities: [] }, "x");
 * const r = routeRequest(p.roles.get("m")!, "GET", "/v1.41/containers/json?all=1");
 * if (!r.decision?.allow || r.target.path !== "/containers/json") throw new Error();
 * ```
 */
export function routeRequest(role: Role, method: string, rawTarget: string): RoutedRequest {
  let cache = ROUTED.get(role);
  if (!cache) ROUTED.set(role, cache = new Map());
  const key = `${method} ${rawTarget}`;
  const hit = cache.get(key);
  if (hit) return hit;
  const target = parseApiTarget(rawTarget);
  const inspection = inspectionFor(role, method, target.path);
  const routed: RoutedRequest = {
    target,
    inspection,
    decision: inspection ? undefined : decideRequest(role, { method, target }),
  };
  if (cache.size >= ROUTED_MAX) cache.clear();
  cache.set(key, routed);
  return routed;
}

/**
 * The decision on a request whose body the policy inspects: `bytes` read as strict JSON (a
 * body two readers could read differently is refused with its reason), then
 * {@linkcode decideRequest}. An empty body is no body. The one path for the relay and for
 * `dockgate policy check`.
 *
 * @example
 * ```ts
 * import { compileApiPolicy, decideBody } from "./api_policy.ts";
 * import { parseApiTarget } from "./api_path.ts";
 * const p = compileApiPolicy({ roles: { ci: { preset: "no-escape" } }, identities: [] }, "x");
 * const body = new TextEncoder().encode('{"Image":"bb","HostConfig":{"Privileged":false,"Privileged":true}}');
 * const d = decideBody(p.roles.get("ci")!, "POST", parseApiTarget("/containers/create"), body);
 * if (d.allow || !d.rule.includes("duplicate key")) throw new Error(d.rule);
 * ```
 */
export function decideBody(
  role: Role,
  method: string,
  target: ApiTarget,
  bytes: Uint8Array,
  options: { resolveSymlinks?: boolean } = {},
): ApiDecision {
  if (bytes.length === 0) return decideRequest(role, { method, target, hasBody: false }, options);
  let body: JsonValue;
  try {
    body = parseStrictJson(bytes);
  } catch (err) {
    if (err instanceof JsonError) return { allow: false, rule: `body: ${err.message}` };
    throw err;
  }
  return decideRequest(role, { method, target, body, hasBody: true }, options);
}
