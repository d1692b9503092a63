/**
 * The owner checks of an isolation plan: each object the request names is inspected fresh
 * (the daemon resolves names, IDs and ID prefixes its own way, so the gate asks it), its owner
 * label compared, and the full ID written back into the request. Nothing is cached beyond one
 * request: the same object named twice in one request is looked up once.
 *
 * @module
 */

import type { DaemonClient } from "./daemon_client.ts";
import type { JsonValue } from "./strict_json.ts";
import {
  BUILTIN_NETWORKS,
  containerOwner,
  containerSeen,
  type IsolationPlan,
  IsolationRefusal,
  type IsolationSettings,
  missingMessage,
  type ObjectKind,
  type ObjectRef,
  OWNER_LABEL,
  ownerOf,
  visibilityLabel,
} from "./isolation.ts";

/** An object as the daemon described it. */
interface Found {
  /** The full ID (a volume's name). */
  id: string;
  /** Its name. */
  name: string;
  /** Its owner label. */
  owner?: string;
  /** A volume as the daemon described it (inspect or create answer). */
  stored?: JsonValue;
}

/** What the checks found, for the relay. */
export interface OwnerCheckResult {
  /** What was decided, for the audit record (`own container 3f2a…`, `shared network bridge`). */
  notes: string[];
  /** The owner's container IDs, when the answer must be filtered by them. */
  ownContainers?: Set<string>;
}

/**
 * Resolve and check every reference of `plan`, then edit the request (full IDs). Throws an
 * {@linkcode IsolationRefusal} for another owner's object (404 or 403 by the role), a
 * missing one (404), or a shared one being removed (403); an `Error` when the daemon cannot
 * be asked (the relay then refuses with 502).
 */
export async function checkOwners(
  plan: IsolationPlan,
  settings: IsolationSettings,
  client: DaemonClient,
  method: string,
): Promise<OwnerCheckResult> {
  const seen = new Map<string, Promise<Found | undefined>>();
  const notes: string[] = [];
  const result: OwnerCheckResult = { notes };
  if (plan.containerPrune) {
    await pruneCheck(client, settings);
    notes.push("every labelled container recorded");
  }
  for (const ref of plan.refs) {
    const key = `${ref.kind} ${ref.name}`;
    if (!seen.has(key)) seen.set(key, lookup(client, ref.kind, ref.name, settings));
    let found = await seen.get(key)!;
    if (!found && ref.volume && !settings.sharedVolumes.includes(ref.name)) {
      found = await createVolume(client, ref, settings.owner);
      if (found?.owner === settings.owner) notes.push(`created volume ${ref.name}`);
      seen.set(key, Promise.resolve(found));
    }
    if (!found) throw new IsolationRefusal(404, missingMessage(ref.kind, ref.name));
    const verdict = judge(ref, found, settings);
    if (verdict === "other") {
      // "Another owner's" only for what the client named exactly: for an ID prefix it would
      // tell the other owners' IDs, a digit at a time.
      const exact = found.id === ref.name || found.name === ref.name.replace(/^\//, "");
      const status = exact && !ref.asMissing ? settings.othersStatus : 404;
      throw new IsolationRefusal(
        status,
        status === 404
          ? missingMessage(ref.kind, ref.name)
          : `${ref.kind} ${ref.name} belongs to another owner`,
      );
    }
    if (verdict === "shared" && ref.remove) {
      throw new IsolationRefusal(
        403,
        `${ref.kind} ${ref.name} is shared: only an admin removes it`,
      );
    }
    if (ref.volume && settings.volumeProblem) {
      // A volume the container mounts, as the daemon stored it (made elsewhere, or just now).
      const problem = settings.volumeProblem(found.stored ?? null);
      if (problem) throw new IsolationRefusal(403, `${ref.at}: ${problem}`);
    }
    notes.push(`${verdict} ${ref.kind} ${short(found.id)}`);
    ref.rewrite?.(found.id);
    if (verdict === "shared" && ref.kind === "network" && ref.at === "path" && method === "GET") {
      plan.answer = { kind: "network-containers" };
      result.ownContainers = await ownContainers(client, settings);
    }
  }
  return result;
}

function short(id: string): string {
  return /^[0-9a-f]{64}$/.test(id) ? id.slice(0, 12) : id;
}

/** Whose the object is, for this request. */
function judge(
  ref: ObjectRef,
  found: Found,
  settings: IsolationSettings,
): "own" | "shared" | "other" {
  if (found.owner === settings.owner) return "own";
  // A scope limits containers only (a container not seen is another's, whatever its labels).
  if (settings.scope) return ref.kind === "container" || ref.kind === "exec" ? "other" : "shared";
  if (found.owner !== undefined) return "other";
  if (ref.kind === "network") {
    if (BUILTIN_NETWORKS.includes(found.name) || settings.sharedNetworks.includes(found.name)) {
      return "shared";
    }
  }
  if (ref.kind === "volume" && settings.sharedVolumes.includes(found.name)) return "shared";
  return "other";
}

/** A fresh inspect of one object; `undefined` when the daemon has no such object. */
async function lookup(
  client: DaemonClient,
  kind: ObjectKind,
  name: string,
  settings: IsolationSettings,
): Promise<Found | undefined> {
  // dockerd reads a container's name with or without its leading '/' (the CLI and compose send
  // `/other:alias` in Links and VolumesFrom); in a path a '/' would be another segment (301).
  const plain = kind === "container" && name.startsWith("/") ? name.slice(1) : name;
  if (kind === "container" && plain.includes("/")) return undefined;
  const id = encodeURIComponent(plain);
  if (kind === "exec") {
    const exec = await get(client, `/exec/${id}/json`);
    if (!exec || typeof exec.ContainerID !== "string") return undefined;
    const container = await lookup(client, "container", exec.ContainerID, settings);
    return container && { ...container, id: String(exec.ID ?? name) };
  }
  const path = kind === "container"
    ? `/containers/${id}/json`
    : kind === "volume"
    ? `/volumes/${id}`
    : `/networks/${id}`;
  let body;
  try {
    body = await get(client, path);
  } catch (err) {
    // dockerd answers 500 for a container ID prefix that several containers share: as missing
    // (it is not one object the gate could check), once the list confirms the ambiguity.
    if (kind === "container" && await ambiguousPrefix(client, plain)) return undefined;
    throw err;
  }
  if (!body) return undefined;
  const labels = kind === "container" ? body.Config?.Labels : body.Labels;
  const fullId = kind === "volume" ? body.Name : body.Id;
  if (typeof fullId !== "string" || fullId === "") {
    throw new Error(`inspect of ${kind} ${name}: no ID`);
  }
  // A container's label may come from its image: it is the owner's only by the gate's record.
  const { owner: who, containers, scope } = settings;
  const owner = kind !== "container"
    ? ownerOf(labels)
    : scope
    ? (containerSeen(labels, fullId, who, containers, scope) ? who : undefined)
    : containerOwner(labels, fullId, containers);
  const plainName = String(body.Name ?? "").replace(/^\//, "");
  return { id: fullId, name: plainName, owner, ...(kind === "volume" ? { stored: body } : {}) };
}

/** Whether `prefix` is an ID prefix of more than one container. */
async function ambiguousPrefix(client: DaemonClient, prefix: string): Promise<boolean> {
  if (!/^[0-9a-f]{1,63}$/.test(prefix)) return false;
  const answer = await client.request("GET", "/containers/json?all=1");
  if (answer.status !== 200) return false;
  const list = JSON.parse(answer.body.toString("utf8")) as { Id: string }[];
  return list.filter((c) => c.Id.startsWith(prefix)).length > 1;
}

/** GET a JSON object; `undefined` for 404 (and the 4xx of a name the daemon cannot read). */
// deno-lint-ignore no-explicit-any
async function get(client: DaemonClient, path: string): Promise<any | undefined> {
  const answer = await client.request("GET", path);
  if (answer.status === 200) return JSON.parse(answer.body.toString("utf8"));
  if (answer.status >= 400 && answer.status < 500) return undefined;
  throw new Error(`owner check ${path}: the daemon answered ${answer.status}`);
}

/** Create a named volume a container mounts, for the owner (the daemon would, without a label). */
async function createVolume(
  client: DaemonClient,
  ref: ObjectRef,
  owner: string,
): Promise<Found | undefined> {
  const spec = ref.volume!;
  const answer = await client.request("POST", "/volumes/create", {
    Name: ref.name,
    ...(spec.Driver ? { Driver: spec.Driver } : {}),
    ...(spec.DriverOpts ? { DriverOpts: spec.DriverOpts } : {}),
    Labels: { ...(spec.Labels ?? {}), [OWNER_LABEL]: owner },
  });
  if (answer.status !== 201 && answer.status !== 200) {
    throw new IsolationRefusal(answer.status, `volume ${ref.name} could not be created`);
  }
  const body = JSON.parse(answer.body.toString("utf8"));
  // Created meanwhile by someone else: the daemon returns that volume, with its labels.
  return { id: body.Name, name: body.Name, owner: ownerOf(body.Labels), stored: body };
}

/** The containers with the owner's label, as the daemon lists them. */
async function labelled(
  client: DaemonClient,
  settings: IsolationSettings,
): Promise<{ Id: string; Labels?: unknown }[]> {
  const label = visibilityLabel(settings);
  const filters = encodeURIComponent(JSON.stringify({ label: { [label]: true } }));
  const answer = await client.request("GET", `/containers/json?all=1&filters=${filters}`);
  if (answer.status !== 200) throw new Error(`listing the owner's containers: ${answer.status}`);
  return JSON.parse(answer.body.toString("utf8"));
}

/** The owner's container IDs (label and record). */
async function ownContainers(
  client: DaemonClient,
  settings: IsolationSettings,
): Promise<Set<string>> {
  const list = await labelled(client, settings);
  const { owner, containers, scope } = settings;
  return new Set(
    list.filter((c) => containerSeen(c.Labels, c.Id, owner, containers, scope)).map((c) => c.Id),
  );
}

/**
 * Refuse a container prune while a container has the owner's label without being the owner's
 * (its image gave it the label): dockerd prunes by label, and would remove it. (A container
 * made so between this check and the prune is not seen: docs/policy.md says so.)
 */
async function pruneCheck(client: DaemonClient, settings: IsolationSettings): Promise<void> {
  const list = await labelled(client, settings);
  const foreign = list.filter((c) =>
    containerOwner(c.Labels, c.Id, settings.containers) !== settings.owner
  );
  if (foreign.length > 0) {
    throw new IsolationRefusal(
      403,
      `container prune: ${foreign.length} container(s) carry your owner label without being ` +
        "in the gate's record (the label came from an image): remove your containers by name",
    );
  }
}
