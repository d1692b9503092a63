/**
 * `dockgate policy check FILE --identity CN METHOD PATH [--body FILE]`: what an API policy
 * decides for one request, for CI checks of a policy. Exit 0 allow, 1 deny. For an isolated
 * role a second line says what isolation does to the request (label, filter, owner checks).
 *
 * @module
 */

import { readFile } from "node:fs/promises";
import type { PolicyCheckCommand } from "./args.ts";
import type { CliIo } from "./io.ts";
import { loadApiPolicyFile } from "../config/policy_file.ts";
import {
  type ApiDecision,
  decideBody,
  decideRequest,
  roleFor,
  routeRequest,
} from "../docker/api_policy.ts";
import { HttpError } from "../docker/http.ts";
import { parseApiTarget } from "../docker/api_path.ts";
import { IsolationRefusal, planIsolation } from "../docker/isolation.ts";
import { JsonDocument } from "../docker/strict_json.ts";
import { fsErrorText } from "../util/fs_util.ts";
import { shieldLine, shieldsGuarding } from "../docker/shields.ts";
import { containerAccess } from "../docker/container_check.ts";
import { namesToBeNew } from "../docker/image_names.ts";
import { scopeOf } from "../docker/limit_spec.ts";

/**
 * A line per shield that guards `method path`: refused on the daemon versions it names, or
 * lifted by the role (`liftShields`).
 */
function shieldLines(method: string, path: string, lifted: readonly string[]): string[] {
  let canonical: string;
  try {
    canonical = parseApiTarget(path).path;
  } catch {
    return [];
  }
  return shieldsGuarding(method, canonical).map((s) =>
    lifted.includes(s.id) ? `shield ${s.id}: lifted by the role (liftShields)` : shieldLine(s)
  );
}

/** The names a request writes that must not exist yet (`image_names.ts`). */
function newNames(patterns: readonly string[] | undefined, method: string, path: string): string[] {
  try {
    return namesToBeNew(patterns, method, parseApiTarget(path));
  } catch {
    return [];
  }
}

/** The container check a request of a restricted role gets at run time, as a line. */
function insideLine(method: string, path: string): string | undefined {
  try {
    const access = containerAccess(method, parseApiTarget(path));
    if (!access) return undefined;
    const what = access.kind === "exec"
      ? `the container of exec ${access.name}`
      : `container ${access.name}`;
    return `container check: ${what} is inspected at run time and must pass the create rules`;
  } catch (err) {
    return `container: ${(err as Error).message}`;
  }
}

type Role = NonNullable<ReturnType<typeof roleFor>>;

/** Decide, print `allow|deny <role>: <rule>` on stdout, and return the exit code. */
export async function runPolicyCheck(cmd: PolicyCheckCommand, io: CliIo): Promise<number> {
  const policy = await loadApiPolicyFile(cmd.file, { insecurePerms: true });
  const role = roleFor(policy, {
    commonName: cmd.identity,
    organizationalUnits: cmd.ous,
    dnsNames: cmd.sans.filter((s) => !s.includes(":")),
    uris: cmd.sans.filter((s) => s.includes(":") && /^[a-z][a-z0-9+.-]*:/i.test(s)),
    ips: cmd.sans,
  });
  let { decision, body } = await decide(role, cmd);
  let owner: string | undefined;
  const planned = role?.isolate ? "isolate" : role && scopeOf(role) ? "scope" : undefined;
  if (decision.allow && planned) [decision, owner] = isolation(cmd, role!, decision, body);
  io.out(`${decision.allow ? "allow" : "deny"} ${role?.name ?? "-"}: ${decision.rule}`);
  // The owner checks need the daemon: say what the gate will check when the request comes.
  if (owner) io.out(`${planned}: ${owner}`);
  if (decision.allow && role && role.preset !== "full") {
    for (const line of runTimeLines(cmd, role, planned)) io.out(line);
  }
  return decision.allow ? 0 : 1;
}

/** What a restricted role's allowed request is still checked for when it comes, as lines. */
function runTimeLines(cmd: PolicyCheckCommand, role: Role, planned?: string): string[] {
  // Shields depend on the daemon's version, which only serve knows: say which apply here.
  const lines = shieldLines(cmd.method, cmd.path, role.liftShields ?? []);
  // Acting inside a container: its stored configuration is checked when the request comes.
  const inside = planned ? undefined : insideLine(cmd.method, cmd.path);
  if (inside) lines.push(inside);
  for (const name of newNames(role.spec.allowImageNames, cmd.method, cmd.path)) {
    lines.push(`image check: ${name} is not on allowImageNames: refused at run time if it exists`);
  }
  return lines;
}

/** The isolation or scope plan of an allowed request: refused, or what it checks and adds. */
function isolation(
  cmd: PolicyCheckCommand,
  role: Role,
  allowed: ApiDecision,
  bodyBytes: Uint8Array | undefined,
): [ApiDecision, string | undefined] {
  const scope = scopeOf(role);
  const planned = role.isolate ? "isolate" : "scope";
  const settings = {
    owner: cmd.identity,
    othersStatus: role.othersStatus,
    sharedVolumes: role.shared.volumes,
    sharedNetworks: role.shared.networks,
    allowVolumesFrom: role.spec.allowVolumesFrom ?? [],
    ...(scope ? { scope } : {}),
  };
  try {
    const doc = bodyBytes?.length ? new JsonDocument(bodyBytes) : undefined;
    const plan = planIsolation(settings, cmd.method, cmd.path, parseApiTarget(cmd.path), doc);
    const what = [
      ...plan.notes,
      ...(doc?.edited ? ["owner label added"] : []),
      ...plan.refs.map((r) =>
        `${scope ? "label" : "owner"} of ${r.kind} ${r.name} (${r.at}) checked at run time`
      ),
    ];
    return [allowed, what.join("; ") || "nothing to check"];
  } catch (err) {
    if (!(err instanceof IsolationRefusal)) throw err;
    return [{ allow: false, rule: `${planned}: ${err.status}: ${err.message}` }, undefined];
  }
}

/** The role's decision on the request (and the body read for it, when one was given). */
async function decide(
  role: Role | undefined,
  cmd: PolicyCheckCommand,
): Promise<{ decision: ApiDecision; body?: Uint8Array }> {
  if (!role) {
    return {
      decision: { allow: false, rule: "no role for this identity (refused at the handshake)" },
    };
  }
  let routed;
  try {
    routed = routeRequest(role, cmd.method, cmd.path);
  } catch (err) {
    if (err instanceof HttpError) {
      return { decision: { allow: false, rule: `${err.status}: ${err.message}` } };
    }
    throw err;
  }
  const body = cmd.body === undefined ? undefined : await readBody(cmd.body);
  if (body === undefined || !routed.inspection) {
    const decision = routed.decision ??
      decideRequest(role, { method: cmd.method, target: routed.target });
    return { decision, body };
  }
  return { decision: await decideBody(role, cmd.method, routed.target, body), body };
}

async function readBody(path: string): Promise<Uint8Array> {
  try {
    return await readFile(path);
  } catch (err) {
    throw new Error(`Cannot read request body "${path}": ${fsErrorText(err)}`);
  }
}
