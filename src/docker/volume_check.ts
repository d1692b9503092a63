/**
 * Named volumes are checked by what the daemon stored, not only by what a create sent: a
 * local volume made elsewhere (an admin on the daemon's socket, `docker volume create --opt
 * type=none --opt o=bind --opt device=/etc hostetc`) is a host directory under a plain name,
 * and a container create that names it in `Binds` (`hostetc:/x`) or `Mounts` (`Type: volume,
 * Source: hostetc`) mounts that directory. So before such a create is forwarded, each named
 * volume is inspected on the daemon (`GET /volumes/{name}`) and its stored `Driver` and
 * `Options` go through the rule that `POST /volumes/create` gets (`no_escape.ts`
 * `volumeProblem`, the one rule).
 *
 * A name the daemon does not have yet is created here, with what the request gives dockerd
 * for it (its driver, options and labels, all checked by the body rules), and the create's
 * answer is checked the same way: dockerd answers a create of a name that exists with the
 * volume it has (ignoring the options sent; moby `volume/service/store.go` `checkConflict`),
 * so a volume made by anyone between the inspect and this create is judged by what it is.
 * Between this check and the daemon's act on the container create, the names are held
 * (`volume_holds.ts`): a remove through the gate waits. A remove and re-create on the daemon's
 * own socket in that gap is not seen; whoever holds that socket is root on the host anyway.
 *
 * Services: a task's volume is created on the node that runs it, later; the gate can see only
 * its own daemon. A service mount that names a volume this daemon has is checked the same way;
 * a name it does not have is left to the node (created there with the spec's checked options).
 *
 * @module
 */

import type { DaemonClient } from "./daemon_client.ts";
import { type EscapeContext, type Violation, volumeProblem } from "./no_escape.ts";
import { isJsonObject, type JsonObject, type JsonValue } from "./strict_json.ts";

/** A named volume that a container (or service task) mounts, with what dockerd creates it by. */
export interface NamedVolume {
  /** Its name (a volume's name is its ID). */
  name: string;
  /** Where the request names it (`HostConfig.Binds[0]`, `HostConfig.Mounts[1]`). */
  at: string;
  /** The driver dockerd would create it with (undefined: the default, `local`). */
  driver?: string;
  /** The driver options dockerd would create it with. */
  options?: JsonObject;
  /** The labels dockerd would create it with. */
  labels?: JsonObject;
}

/**
 * The named volumes a container's `HostConfig` mounts, read as dockerd reads them (moby
 * `volume/mounts/linux_parser.go`): a `Binds` entry `src:dst[:mode]` whose source is not an
 * absolute path names a volume (created with `HostConfig.VolumeDriver`); a `Mounts` entry of
 * type `volume` with a `Source` names one (created with its `VolumeOptions.DriverConfig` and
 * `Labels`). Entries with no source are anonymous volumes: new, so nothing is stored yet.
 *
 * @example
 * ```ts
 * import { namedVolumes } from "./volume_check.ts";
 * const host = { Binds: ["data:/d", "/srv:/s", "/anon"], Mounts: [{ Type: "volume", Source: "v", Target: "/v" }] };
 * const names = namedVolumes(host).map((v) => `${v.name} ${v.at}`);
 * if (names.join() !== "data HostConfig.Binds[0],v HostConfig.Mounts[0]") throw new Error(names.join());
 * ```
 */
export function namedVolumes(host: JsonObject, at = "HostConfig"): NamedVolume[] {
  const found: NamedVolume[] = [];
  const driver = typeof host.VolumeDriver === "string" && host.VolumeDriver !== ""
    ? host.VolumeDriver
    : undefined;
  if (Array.isArray(host.Binds)) {
    host.Binds.forEach((item, i) => {
      if (typeof item !== "string") return;
      const parts = item.split(":");
      if (parts.length < 2 || parts[0] === "" || parts[0].startsWith("/")) return;
      found.push({ name: parts[0], at: `${at}.Binds[${i}]`, driver });
    });
  }
  mountVolumes(host.Mounts, `${at}.Mounts`, found);
  return found;
}

/** `Mounts` entries of type `volume` with a source (a container's, or a service task's). */
function mountVolumes(mounts: JsonValue | undefined, at: string, found: NamedVolume[]): void {
  if (!Array.isArray(mounts)) return;
  mounts.forEach((m, i) => {
    if (!isJsonObject(m) || m.Type !== "volume" || typeof m.Source !== "string" || !m.Source) {
      return;
    }
    const options = isJsonObject(m.VolumeOptions) ? m.VolumeOptions : undefined;
    const config = options && isJsonObject(options.DriverConfig) ? options.DriverConfig : undefined;
    found.push({
      name: m.Source,
      at: `${at}[${i}]`,
      driver: typeof config?.Name === "string" && config.Name ? config.Name : undefined,
      options: config && isJsonObject(config.Options) ? config.Options : undefined,
      labels: options && isJsonObject(options.Labels) ? options.Labels : undefined,
    });
  });
}

/**
 * The named volumes a request body mounts: a container create's (`HostConfig`), or a service
 * spec's (`TaskTemplate.ContainerSpec.Mounts`); none for other kinds.
 *
 * @example
 * ```ts
 * import { requestVolumes } from "./volume_check.ts";
 * const spec = { TaskTemplate: { ContainerSpec: { Mounts: [{ Type: "volume", Source: "v" }] } } };
 * if (requestVolumes("service", spec)[0]?.name !== "v") throw new Error();
 * if (requestVolumes("create", { HostConfig: { Binds: ["/a:/a"] } }).length !== 0) throw new Error();
 * ```
 */
export function requestVolumes(kind: "create" | "service", body: JsonValue): NamedVolume[] {
  if (!isJsonObject(body)) return [];
  if (kind === "create") return isJsonObject(body.HostConfig) ? namedVolumes(body.HostConfig) : [];
  const task = isJsonObject(body.TaskTemplate) ? body.TaskTemplate : undefined;
  const spec = task && isJsonObject(task.ContainerSpec) ? task.ContainerSpec : undefined;
  const found: NamedVolume[] = [];
  if (spec) mountVolumes(spec.Mounts, "TaskTemplate.ContainerSpec.Mounts", found);
  return found;
}

/**
 * The one rule for a volume the daemon has: its stored `Driver` and `Options` (an inspect or
 * create answer) must be what the role could create (`no_escape.ts` `volumeProblem`).
 *
 * @example
 * ```ts
 * import { storedVolumeProblem } from "./volume_check.ts";
 * const bind = { Name: "hostetc", Driver: "local", Options: { type: "none", o: "bind", device: "/etc" } };
 * if (!storedVolumeProblem(bind, { allow: {} })?.startsWith("volume hostetc")) throw new Error();
 * if (storedVolumeProblem({ Name: "plain", Driver: "local", Options: null }, { allow: {} })) throw new Error();
 * ```
 */
export function storedVolumeProblem(stored: JsonValue, ctx: EscapeContext): Violation | undefined {
  if (!isJsonObject(stored)) return "the daemon's description of a volume is not an object";
  const name = typeof stored.Name === "string" ? stored.Name : "?";
  const driver = stored.Driver ?? "";
  if (typeof driver !== "string") return `volume ${name}: the daemon's Driver is not a string`;
  return volumeProblem(driver, stored.Options, ctx, `volume ${name} as stored: Options`);
}

/**
 * What {@linkcode checkStoredVolumes} found: a refusal (403, or the daemon's 4xx for a create it
 * refused), or notes for the audit record.
 */
export type StoredVolumesVerdict = { problem: Violation; status: number } | { notes: string[] };

/**
 * Check each volume of `volumes` as the daemon has it (over `client`): inspected, or created
 * when missing (`create`: false for service specs, whose node creates it) and the answer
 * checked. Throws an `Error` when the daemon cannot be asked (or refuses a create).
 *
 * @example
 * ```ts ignore
 * const verdict = await checkStoredVolumes(client, volumes, ctx, true);
 * if ("problem" in verdict) refuse(403, verdict.problem);
 * ```
 */
export async function checkStoredVolumes(
  client: DaemonClient,
  volumes: readonly NamedVolume[],
  ctx: EscapeContext,
  create: boolean,
): Promise<StoredVolumesVerdict> {
  const notes: string[] = [];
  const seen = new Set<string>();
  for (const volume of volumes) {
    if (seen.has(volume.name)) continue;
    seen.add(volume.name);
    let stored = await inspectVolume(client, volume.name);
    if (stored === undefined && !create) {
      notes.push(`volume ${volume.name} new (made by the node)`);
      continue;
    }
    const made = stored === undefined;
    stored ??= await createVolume(client, volume);
    if (typeof stored === "number") {
      return {
        problem: `${volume.at}: the daemon refused to create volume ${volume.name}`,
        status: stored,
      };
    }
    const problem = storedVolumeProblem(stored, ctx);
    if (problem) return { problem: `${volume.at}: ${problem}`, status: 403 };
    notes.push(`volume ${volume.name} ${made ? "created" : "stored options checked"}`);
  }
  return { notes };
}

/** `GET /volumes/{name}`: the stored volume, or undefined when the daemon has none (404). */
async function inspectVolume(client: DaemonClient, name: string): Promise<JsonValue | undefined> {
  const answer = await client.request("GET", `/volumes/${encodeURIComponent(name)}`);
  if (answer.status === 404) return undefined;
  if (answer.status !== 200) {
    throw new Error(`inspect of volume ${name}: the daemon answered ${answer.status}`);
  }
  return JSON.parse(answer.body.toString("utf8")) as JsonValue;
}

/**
 * `POST /volumes/create` with what dockerd would create it with: the volume it answers with, or
 * the status of a 4xx refusal (a name the daemon does not take); an `Error` for anything else.
 */
async function createVolume(
  client: DaemonClient,
  volume: NamedVolume,
): Promise<JsonValue | number> {
  const answer = await client.request("POST", "/volumes/create", {
    Name: volume.name,
    ...(volume.driver ? { Driver: volume.driver } : {}),
    ...(volume.options ? { DriverOpts: volume.options } : {}),
    ...(volume.labels ? { Labels: volume.labels } : {}),
  });
  if (answer.status >= 400 && answer.status < 500) return answer.status;
  if (answer.status !== 201 && answer.status !== 200) {
    throw new Error(
      `volume ${volume.name} could not be created: the daemon answered ${answer.status}`,
    );
  }
  return JSON.parse(answer.body.toString("utf8")) as JsonValue;
}
