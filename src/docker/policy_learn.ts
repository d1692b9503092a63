/**
 * A policy learned from the audit log (`dockgate policy learn`): per identity, the smallest
 * role that allows every request it made. The preset is the least that covers the routes used
 * (`read-only`, with `allowDownloads` if a download was used; `no-escape` once a write was;
 * `full` only for a route that can reach the host), its `allow` entries the requests no route
 * of the table knows, and its `deny` entries every route the preset allows that the identity
 * never used, so the learned role refuses them.
 *
 * Why deny entries are exact: a deny entry is a route's own pattern (`routes.ts`), and a path
 * matches it only when the route is among those `matchRoutes` gives for the path; a used path
 * makes each of its routes used, so no deny entry can refuse a request of the log.
 *
 * What the log cannot tell: request bodies are not in it, so no body allowance
 * (`allowBindMounts`, `allowCapabilities`, …) is learned; {@linkcode policyDifference} says
 * which routes with a body the identity used. A `full` role gets no deny entries (with its
 * default `audit`, connections, it is relayed raw: nothing would read them).
 *
 * @module
 */

import { type ApiTarget, parseApiTarget } from "./api_path.ts";
import {
  type ApiPolicy,
  type ApiPolicySpec,
  decideRequest,
  type Role,
  roleFor,
  type RoleSpec,
} from "./api_policy.ts";
import { matchRoutes, type Route, ROUTES } from "./routes.ts";

/** One request of the log, as the record names it (canonical path, no query). */
export interface LoggedRequest {
  /** The method. */
  method: string;
  /** The canonical path. */
  path: string;
}

/** What {@linkcode readAuditRequests} found. */
export interface AuditRequests {
  /** Each identity's distinct requests, in the order first seen. */
  byIdentity: Map<string, LoggedRequest[]>;
  /** Lines that were no JSON record (a torn last line of a log being written). */
  skipped: number;
  /** Records of requests the gate refused (`decision: "deny"`), not learned. */
  refused: number;
  /**
   * Requests no route knows whose method or path an allow entry cannot name exactly (a `*`
   * method, a path with `*`, `**` or `{…}`, which entries read as patterns): not learned.
   */
  unlearnable: string[];
}

/**
 * The allow entry that names exactly `method path` (a request no route knows), or undefined
 * when there is none: allow entries are patterns (method `*` any, `*`/`**`/`{name}` in the
 * path match other segments), so such a request learned as an entry would allow requests the
 * log never had.
 *
 * @example
 * ```ts
 * import { exactAllowEntry } from "./policy_learn.ts";
 * if (exactAllowEntry("GET", "/x/y") !== "GET /x/y") throw new Error();
 * if (exactAllowEntry("*", "/x") || exactAllowEntry("GET", "/x/**") || exactAllowEntry("GET", "/x/{name}")) {
 *   throw new Error();
 * }
 * ```
 */
export function exactAllowEntry(method: string, path: string): string | undefined {
  if (!/^[A-Z]+$/.test(method) || !/^\/[^\s*{}]*$/.test(path)) return undefined;
  return `${method} ${path}`;
}

/**
 * The request records of an audit log (`observe/audit.ts` JSON lines), per identity, for
 * `identities` (all when empty). Connection records are not requests. A request the gate
 * refused (`deny`) is not learned: it never reached the daemon, so nothing the client did
 * needed it, and one refused probe of an escape route would otherwise make the learned role
 * `full`. Audit mode's `would_deny` was forwarded and counts. A request no route knows that no
 * allow entry names exactly ({@linkcode exactAllowEntry}) is not learned either.
 *
 * @example
 * ```ts
 * import { readAuditRequests } from "./policy_learn.ts";
 * const log = '{"event":"request","identity":"ci","method":"GET","path":"/_ping"}\n{"event":"connection","identity":"ci"}\n';
 * const r = readAuditRequests(log, []);
 * if (r.byIdentity.get("ci")?.[0].path !== "/_ping" || r.skipped !== 0 || r.refused !== 0) {
 *   throw new Error();
 * }
 * ```
 */
export function readAuditRequests(text: string, identities: readonly string[]): AuditRequests {
  const byIdentity = new Map<string, LoggedRequest[]>();
  const seen = new Set<string>();
  let skipped = 0;
  let refused = 0;
  const unlearnable: string[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    let r: Record<string, unknown>;
    try {
      r = JSON.parse(line);
    } catch {
      skipped++;
      continue;
    }
    if (r?.event !== "request") continue;
    const { identity, method, path } = r;
    if (typeof identity !== "string" || typeof method !== "string" || typeof path !== "string") {
      skipped++;
      continue;
    }
    if (identities.length > 0 && !identities.includes(identity)) continue;
    if (r.decision === "deny") {
      refused++;
      continue;
    }
    const key = JSON.stringify([identity, method, path]);
    if (seen.has(key)) continue;
    seen.add(key);
    if (!learnable({ method, path })) {
      unlearnable.push(`${identity}: ${method} ${path}`);
      continue;
    }
    if (!byIdentity.has(identity)) byIdentity.set(identity, []);
    byIdentity.get(identity)!.push({ method, path });
  }
  return { byIdentity, skipped, refused, unlearnable };
}

/** Whether a request is one a route knows, or one an allow entry names exactly. */
function learnable({ method, path }: LoggedRequest): boolean {
  const target = targetOf(path);
  if (target && matchRoutes(method, target.path).length > 0) return true;
  return exactAllowEntry(method, target?.path ?? path) !== undefined;
}

/** The route table's text of a route (`GET /containers/{name}/json`). */
function routeText(r: Route): string {
  return `${r.method} ${r.pattern}`;
}

/** The canonical target of a logged path, or undefined for one the gate cannot read. */
function targetOf(path: string): ApiTarget | undefined {
  try {
    return parseApiTarget(path);
  } catch {
    return undefined;
  }
}

/**
 * The smallest role that allows every one of `requests` (see the module's rules).
 *
 * @example
 * ```ts
 * import { learnRole } from "./policy_learn.ts";
 * const role = learnRole([{ method: "GET", path: "/_ping" }, { method: "GET", path: "/containers/json" }]);
 * if (role.preset !== "read-only" || !role.deny?.includes("GET /info")) throw new Error();
 * if (role.deny?.includes("GET /containers/json")) throw new Error();
 * ```
 */
export function learnRole(requests: readonly LoggedRequest[]): RoleSpec {
  const used = new Set<string>();
  const allow = new Set<string>();
  const kinds = new Set<string>();
  for (const { method, path } of requests) {
    const target = targetOf(path);
    const routes = target ? matchRoutes(method, target.path) : [];
    if (routes.length === 0) {
      // Only an entry naming the request exactly (readAuditRequests leaves the others out).
      const entry = exactAllowEntry(method, target?.path ?? path);
      if (entry) allow.add(entry);
    }
    for (const r of routes) {
      used.add(routeText(r));
      kinds.add(r.kind);
    }
  }
  if (kinds.has("escape")) return { preset: "full" };
  const preset = kinds.has("write") ? "no-escape" : "read-only";
  const downloads = preset === "read-only" && kinds.has("download");
  const allows = (r: Route) =>
    preset === "no-escape" ? r.kind !== "escape" : r.kind === "read" ||
      (downloads && r.kind === "download");
  const deny = [
    ...new Set(ROUTES.filter((r) => allows(r) && !used.has(routeText(r))).map(routeText)),
  ];
  return {
    preset,
    ...(downloads ? { allowDownloads: true } : {}),
    ...(allow.size ? { allow: [...allow] } : {}),
    deny,
  };
}

/** A role name for an identity's learned role (`learned-ci-runner`). */
function roleName(identity: string): string {
  return `learned-${identity.replace(/[^A-Za-z0-9_.-]+/g, "_")}`;
}

/**
 * The learned policy: a role per identity, each identity by its common name (the name the
 * audit record gives; an identity without one, `sha256:…`, has no `cn` to match and is left
 * out).
 *
 * @example
 * ```ts
 * import { learnPolicy } from "./policy_learn.ts";
 * const p = learnPolicy(new Map([["ci", [{ method: "GET", path: "/_ping" }]]]));
 * if (p.identities[0].cn !== "ci" || p.roles[p.identities[0].role].preset !== "read-only") throw new Error();
 * ```
 */
export function learnPolicy(
  byIdentity: ReadonlyMap<string, readonly LoggedRequest[]>,
): ApiPolicySpec {
  const roles: Record<string, RoleSpec> = {};
  const identities: ApiPolicySpec["identities"] = [];
  for (const [identity, requests] of byIdentity) {
    if (identity.startsWith("sha256:")) continue;
    const name = roleName(identity);
    roles[name] = learnRole(requests);
    identities.push({ cn: identity, role: name });
  }
  return { roles, identities };
}

/**
 * What the learned policy lets through beyond the route table's restricted presets, one line
 * per role: a `full` role (root on the host) and `allow` entries (paths no route knows, which
 * the gate then forwards unread). Both deserve a look before the policy is used.
 *
 * @example
 * ```ts
 * import { learnedWarnings } from "./policy_learn.ts";
 * const lines = learnedWarnings({ roles: { r: { preset: "full" } }, identities: [] });
 * if (!lines[0]?.includes("r is full")) throw new Error(lines.join());
 * ```
 */
export function learnedWarnings(policy: ApiPolicySpec): string[] {
  const out: string[] = [];
  for (const [name, role] of Object.entries(policy.roles)) {
    if (role.preset === "full") {
      out.push(`warning: ${name} is full (an escape route was used): root on the host`);
    }
    if (role.allow?.length) {
      out.push(`warning: ${name} allows paths no route knows: ${role.allow.join(", ")}`);
    }
  }
  return out;
}

/** A sample path of a route pattern (`{name}` and `{id}` as `x`), for a decision on the route. */
function samplePath(pattern: string): string {
  return pattern.replace(/\{(name|id)\}/g, "x").replace(/\*\*?/g, "x");
}

/** The policy's decision on `method path` for `role`, a body-inspected route with `{}`. */
function decides(role: Role, method: string, target: ApiTarget): { allow: boolean; rule: string } {
  const body = matchRoutes(method, target.path).some((r) => r.inspect && r.inspect !== "build");
  return decideRequest(role, { method, target, ...(body ? { body: {}, hasBody: true } : {}) });
}

/**
 * How the identities' requests compare with `current`: per identity a head line, `+` for a
 * request of the log the current role refuses (with its rule), `-` for a route the current
 * role allows that the identity never used, `~` for a used route with a body (its allowances
 * are not in the log).
 *
 * @example
 * ```ts
 * import { compileApiPolicy } from "./api_policy.ts";
 * import { policyDifference } from "./policy_learn.ts";
 * const current = compileApiPolicy({ roles: { m: { preset: "read-only" } }, identities: [{ cn: "ci", role: "m" }] }, "p");
 * const lines = policyDifference(current, new Map([["ci", [{ method: "POST", path: "/containers/web/restart" }]]]));
 * if (!lines.some((l) => l.startsWith("+ POST /containers/{name}/restart"))) throw new Error(lines.join("\n"));
 * if (!lines.some((l) => l.startsWith("- GET /info"))) throw new Error(lines.join("\n"));
 * ```
 */
export function policyDifference(
  current: ApiPolicy,
  byIdentity: ReadonlyMap<string, readonly LoggedRequest[]>,
): string[] {
  const out: string[] = [];
  for (const [identity, requests] of byIdentity) {
    const role = roleFor(current, {
      commonName: identity,
      organizationalUnits: [],
      dnsNames: [],
      uris: [],
      ips: [],
    });
    const learned = learnRole(requests);
    out.push(
      `${identity}: ${
        role ? `role ${role.name} (${role.preset})` : "no role"
      }, learned ${learned.preset}`,
    );
    const used = new Set<string>();
    for (const { method, path } of requests) {
      const target = targetOf(path);
      const routes = target ? matchRoutes(method, target.path) : [];
      const text = routes.length ? routes.map(routeText).join(", ") : `${method} ${path}`;
      routes.forEach((r) => used.add(routeText(r)));
      const d = role && target ? decides(role, method, target) : undefined;
      if (!d?.allow) out.push(`+ ${text}  used, refused now: ${d?.rule ?? "no role"}`);
      if (routes.some((r) => r.inspect && r.inspect !== "build")) {
        out.push(`~ ${text}  used with a body: its allowances are not in the audit log`);
      }
    }
    if (!role) continue;
    const unused = new Set<string>();
    for (const r of ROUTES) {
      if (used.has(routeText(r)) || unused.has(routeText(r))) continue;
      if (decides(role, r.method, parseApiTarget(samplePath(r.pattern))).allow) {
        unused.add(routeText(r));
        out.push(`- ${routeText(r)}  allowed now, never used`);
      }
    }
  }
  return out;
}
