/**
 * The isolation step of the API relay (isolated roles only): an allowed request is planned
 * (`isolation.ts` `planIsolation`: the owner label, the owner filter, the objects it names),
 * the owners of the named objects are checked over the gate's own daemon connection
 * (`owner_check.ts`), and the outcome is the request to forward as edited or the refusal to
 * answer in its place. The request reader (`request_reader.ts`) acts on the outcome.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import type { Duplex } from "node:stream";
import { type RequestHead, serializeRequestHead } from "./http.ts";
import type { ApiTarget } from "./api_path.ts";
import type { ApiDecision, Role } from "./api_policy.ts";
import { DaemonClient } from "./daemon_client.ts";
import {
  type ContainerRecord,
  type IsolationPlan,
  IsolationRefusal,
  type IsolationSettings,
  planIsolation,
} from "./isolation.ts";
import { checkOwners } from "./owner_check.ts";
import { scopeOf } from "./limit_spec.ts";
import { JsonDocument } from "./strict_json.ts";
import { denialMessage, type Exchange } from "./relay_exchange.ts";
import { namesToBeNew } from "./image_names.ts";
import {
  checkContainerAccess,
  checkNamesNew,
  containerAccess,
  type DaemonDefaults,
  daemonDefaults,
} from "./container_check.ts";
import {
  checkStoredVolumes,
  type NamedVolume,
  requestVolumes,
  storedVolumeProblem,
} from "./volume_check.ts";
import { matchRoutes } from "./routes.ts";
import { parseStrictJson } from "./strict_json.ts";
import {
  GATE_VOLUME_HOLDS,
  type Release,
  type VolumeHolds,
  type VolumeNames,
} from "./volume_holds.ts";

/** Owner checks that take longer than this are refused (502): a hung daemon stalls no client. */
const OWNER_CHECK_MS = 30_000;

/** An allowed request of an isolated role, read whole (a body only when it was inspected). */
export interface IsolationInput {
  /** Its exchange (the owner notes and the answer rule are written to it). */
  exchange: Exchange;
  /** The role's decision (allowed). */
  decision: ApiDecision;
  /** The request head as read. */
  head: RequestHead;
  /** The canonical target. */
  target: ApiTarget;
  /** The role. */
  role: Role;
  /** The collected body, or undefined when it streams (or there is none). */
  body: Buffer | undefined;
}

/** What to do with the request: forward these bytes, or answer here (audit mode: forward). */
export type IsolationOutcome =
  | {
    kind: "forward";
    bytes: () => Buffer;
    /** The decision to record, when the step added to it (what it checked). */
    decision?: ApiDecision;
  }
  | {
    kind: "refuse";
    decision: ApiDecision;
    refusal: { status: number; message: string };
    /** The request as the client sent it (audit mode forwards it). */
    bytes: () => Buffer;
  };

/** The volume holds `plan` needs, or undefined when it names no volume and prunes none. */
function holdNeed(plan: IsolationPlan, method: string, path: string): HoldNeed | undefined {
  if (method === "POST" && path === "/volumes/prune") return { use: [], remove: "all" };
  const volumes = plan.refs.filter((r) => r.kind === "volume");
  if (volumes.length === 0) return undefined;
  const remove = volumes.filter((r) => r.remove).map((r) => r.name);
  const use = volumes.filter((r) => !r.remove).map((r) => r.name);
  return remove.length > 0 ? { use, remove } : { use };
}

/**
 * Whether `method target` is a route whose body may mount named volumes: a container create
 * (`"create"`) or a service create or update (`"service"`); else undefined.
 */
function mountsVolumes(method: string, target: ApiTarget): "create" | "service" | undefined {
  for (const route of matchRoutes(method, target.path)) {
    if (route.inspect === "create" || route.inspect === "service") return route.inspect;
  }
  return undefined;
}

/**
 * The volume names `method target` removes: one (`DELETE /volumes/{name}`), every one
 * (`POST /volumes/prune`), or undefined for any other route.
 */
function removesVolumes(method: string, target: ApiTarget): VolumeNames | undefined {
  if (method === "POST" && target.path === "/volumes/prune") return "all";
  if (method !== "DELETE") return undefined; // asked for every request: no split for the rest
  const segs = target.path.split("/").slice(1);
  if (segs.length === 2 && segs[0] === "volumes") return [segs[1]];
  return undefined;
}

/** `promise`, or a rejection after `ms`. */
function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer from the daemon in ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** What the isolation step of one connection needs. */
export interface IsolationStepOptions {
  /** The identity (refusal messages) and its owner key. */
  who: { identity: string; owner: string };
  /** A connection to the daemon for the owner checks (none: such requests are refused, 502). */
  connectDaemon?: () => Promise<Duplex>;
  /**
   * Resolves once no earlier request of this connection waits for its answer: the daemon
   * acts on the next request at once, so it is checked then (rejects when the connection ends).
   */
  whenIdle: () => Promise<void>;
  /** The gate-wide volume holds. Default: {@linkcode GATE_VOLUME_HOLDS}. */
  holds?: VolumeHolds;
  /**
   * The gate's record of the containers it created: a container is the owner's by its label
   * and this record (none: no container is anyone's).
   */
  containers?: ContainerRecord;
  /** Resolve symlinks in bind sources, as the body checks do (the daemon is on this host). */
  resolveSymlinks?: boolean;
}

/** The volume holds a request needs: names it uses, or names it removes (`"all"`: a prune). */
interface HoldNeed {
  use: string[];
  remove?: VolumeNames;
}

/**
 * The isolation step of one relayed connection; holds its owner-check daemon connection.
 *
 * @example
 * ```ts
 * import { IsolationStep } from "./isolation_step.ts";
 * const step = new IsolationStep({ who: { identity: "a", owner: "a" }, whenIdle: async () => {} });
 * step.close();
 * ```
 */
export class IsolationStep {
  readonly #who: { identity: string; owner: string };
  readonly #connectDaemon: (() => Promise<Duplex>) | undefined;
  readonly #whenIdle: () => Promise<void>;
  readonly #holds: VolumeHolds;
  readonly #containers: ContainerRecord | undefined;
  /** The owner checks' own connection to the daemon, opened when first needed. */
  #daemon: DaemonClient | undefined;
  readonly #resolveSymlinks: boolean;
  readonly #defaults: () => Promise<DaemonDefaults>;

  /** The step for one connection (see {@linkcode IsolationStepOptions}). */
  constructor(options: IsolationStepOptions) {
    this.#who = options.who;
    this.#connectDaemon = options.connectDaemon;
    this.#whenIdle = options.whenIdle;
    this.#holds = options.holds ?? GATE_VOLUME_HOLDS;
    this.#containers = options.containers;
    this.#resolveSymlinks = options.resolveSymlinks ?? false;
    this.#defaults = daemonDefaults(() => this.#client()!);
  }

  /**
   * Whether an allowed request of `role` takes this step: every request of an isolated role,
   * one that writes an image name the role's `allowImageNames` does not cover (it must not
   * exist yet), and, for the other restricted roles, those that act inside a container
   * (`container_check.ts`: another identity's container must be no way out) and those that may
   * mount named volumes (`volume_check.ts`: a volume made elsewhere must be no way out).
   *
   * @example
   * ```ts
   * import { IsolationStep } from "./isolation_step.ts";
   * import { compileApiPolicy } from "./api_policy.ts";
   * import { parseApiTarget } from "./api_path.ts";
   * const role = compileApiPolicy({ roles: { ci: { preset: "no-escape" } }, identities: [] }, "x").roles.get("ci")!;
   * const step = new IsolationStep({ who: { identity: "a", owner: "a" }, whenIdle: async () => {} });
   * if (!step.takes(role, "POST", parseApiTarget("/containers/web/exec"))) throw new Error();
   * if (step.takes(role, "GET", parseApiTarget("/containers/web/json"))) throw new Error();
   * ```
   */
  takes(role: Role, method: string, target: ApiTarget): boolean {
    if (role.isolate || role.spec.scope) return true;
    if (role.preset === "full") return false;
    if (namesToBeNew(role.spec.allowImageNames, method, target).length > 0) return true;
    if (mountsVolumes(method, target) || removesVolumes(method, target)) return true;
    try {
      return containerAccess(method, target) !== undefined;
    } catch {
      return true; // refused in run()
    }
  }

  /** The daemon connection, opened when first needed (undefined: none configured). */
  #client(): DaemonClient | undefined {
    this.#daemon ??= this.#connectDaemon ? new DaemonClient(this.#connectDaemon) : undefined;
    return this.#daemon;
  }

  /**
   * The outcome for `input`: at once when it names no object (or its plan is refused), else
   * once the owners were checked. Throws only for a fault that is not a refusal.
   */
  run(input: IsolationInput): IsolationOutcome | Promise<IsolationOutcome> {
    const { head, target, role } = input;
    const names = role.preset === "full"
      ? []
      : namesToBeNew(role.spec.allowImageNames, head.method, target);
    if (names.length === 0) return this.#run(input);
    return this.#namesNew(input, names);
  }

  /**
   * The names a build, commit or pull would write must not exist yet: asked once no earlier
   * request of this connection is unanswered, then the isolation or container check.
   */
  async #namesNew(input: IsolationInput, names: string[]): Promise<IsolationOutcome> {
    try {
      await this.#whenIdle();
      const client = this.#client();
      if (!client) throw new Error("no connection to the daemon for image name checks");
      await withTimeout(checkNamesNew(client, names), OWNER_CHECK_MS);
    } catch (err) {
      return this.#failed(input, err, "image check");
    }
    return await this.#run(input);
  }

  /** After the image name check: isolation, or the container check. */
  #run(input: IsolationInput): IsolationOutcome | Promise<IsolationOutcome> {
    const { head, target, role, body } = input;
    const scope = scopeOf(role);
    if (!role.isolate && !scope) {
      const kind = mountsVolumes(head.method, target);
      if (kind) return this.#storedVolumes(input, kind);
      const removed = removesVolumes(head.method, target);
      return removed ? this.#removing(input, removed) : this.#inside(input);
    }
    const settings: IsolationSettings = {
      owner: this.#who.owner,
      othersStatus: role.othersStatus,
      sharedVolumes: role.shared.volumes,
      sharedNetworks: role.shared.networks,
      allowVolumesFrom: role.spec.allowVolumesFrom ?? [],
      containers: this.#containers,
      volumeProblem: (stored) =>
        storedVolumeProblem(stored, {
          allow: role.spec,
          resolveSymlinks: this.#resolveSymlinks,
          isolated: true,
        }),
      ...(scope ? { scope } : {}),
    };
    let plan: IsolationPlan;
    try {
      const doc = body && body.length > 0 ? new JsonDocument(body) : undefined;
      plan = planIsolation(settings, head.method, head.target, target, doc);
    } catch (err) {
      if (!(err instanceof IsolationRefusal)) throw err;
      return this.#refused(input, err);
    }
    const need = holdNeed(plan, head.method, target.path);
    if (plan.refs.length === 0 && !need && !plan.containerPrune) {
      return this.#forward(input, plan, settings, new Set(), []);
    }
    return this.#checked(input, plan, settings, need);
  }

  /**
   * Check and act on the same objects: the owners are checked only once no earlier request of
   * this connection is unanswered (a pipelined blocking `wait` would otherwise hold the gap
   * open between check and act), and the volume names it checked are held gate-wide until the
   * daemon answered it (a remove or prune of them through the gate waits meanwhile).
   */
  async #checked(
    input: IsolationInput,
    plan: IsolationPlan,
    settings: IsolationSettings,
    need: HoldNeed | undefined,
  ): Promise<IsolationOutcome> {
    let release: Release | undefined;
    try {
      await this.#whenIdle();
      if (need) release = await this.#hold(need);
      let result: { ownContainers?: Set<string>; notes: string[] } = { notes: [] };
      if (plan.refs.length > 0 || plan.containerPrune) {
        const client = this.#client();
        if (!client) throw new Error("no connection to the daemon for owner checks");
        const checks = checkOwners(plan, settings, client, input.head.method);
        result = await withTimeout(checks, OWNER_CHECK_MS);
      }
      const outcome = this.#forward(input, plan, settings, result.ownContainers ?? new Set(), [
        ...result.notes,
      ]);
      input.exchange.release = release;
      return outcome;
    } catch (err) {
      release?.();
      if (err instanceof IsolationRefusal) return this.#refused(input, err);
      // A daemon connection that failed or hung is not used again.
      this.#daemon?.close();
      this.#daemon = undefined;
      const message = `owner check failed: ${(err as Error).message}`;
      return this.#refused(input, new IsolationRefusal(502, message));
    }
  }

  #hold(need: HoldNeed): Promise<Release> {
    if (need.remove === "all") return this.#holds.remove("all");
    if (need.remove) return this.#holds.remove([...need.remove, ...need.use]);
    return this.#holds.use(need.use);
  }

  /** A refusal, or the daemon's failure as 502 (that connection is not used again). */
  #failed(input: IsolationInput, err: unknown, what: string): IsolationOutcome {
    if (err instanceof IsolationRefusal) return this.#refused(input, err, what);
    this.#daemon?.close();
    this.#daemon = undefined;
    const message = `${what} failed: ${(err as Error).message}`;
    return this.#refused(input, new IsolationRefusal(502, message), what);
  }

  /**
   * A restricted role that is not isolated, acting inside a container: the container's stored
   * configuration is checked with the create rules, the request forwarded by its full ID (the
   * container's configuration cannot change under that ID, so no wait for the line is needed).
   */
  #inside(input: IsolationInput): IsolationOutcome | Promise<IsolationOutcome> {
    const { head, target, role, body, decision } = input;
    const what = "container check";
    const forward = (newTarget?: string) => () => {
      const headBytes = serializeRequestHead(head, body?.length, newTarget);
      return body ? Buffer.concat([headBytes, body]) : headBytes;
    };
    let access;
    try {
      access = containerAccess(head.method, target);
    } catch (err) {
      return this.#failed(input, err, what);
    }
    if (!access) return { kind: "forward", bytes: forward() };
    const ctx = { allow: role.spec, resolveSymlinks: this.#resolveSymlinks, isolated: false };
    const client = this.#client();
    const check = client
      ? withTimeout(
        checkContainerAccess(access, head.target, target, client, ctx, this.#defaults),
        OWNER_CHECK_MS,
      )
      : Promise.reject(new Error("no connection to the daemon for container checks"));
    return check.then(({ target: newTarget, note }) => ({
      kind: "forward" as const,
      decision: { ...decision, rule: `${decision.rule} (${note})` },
      bytes: forward(newTarget),
    }), (err) => this.#failed(input, err, what));
  }

  /**
   * A restricted role that is not isolated, creating a container (or a service): each named
   * volume it mounts is checked as the daemon stored it (`volume_check.ts`), once no earlier
   * request of this connection is unanswered, and held gate-wide until the daemon answered
   * (a remove of it through the gate waits), so that the check and the mount are on one volume.
   */
  #storedVolumes(
    input: IsolationInput,
    kind: "create" | "service",
  ): IsolationOutcome | Promise<IsolationOutcome> {
    const { head, body } = input;
    const bytes = () => {
      const headBytes = serializeRequestHead(head, body?.length);
      return body ? Buffer.concat([headBytes, body]) : headBytes;
    };
    let volumes: NamedVolume[];
    try {
      volumes = body && body.length > 0 ? requestVolumes(kind, parseStrictJson(body)) : [];
    } catch (err) {
      return this.#failed(input, new IsolationRefusal(400, (err as Error).message), "volume check");
    }
    if (volumes.length === 0) return { kind: "forward", bytes };
    return this.#checkVolumes(input, volumes, kind === "create", bytes);
  }

  async #checkVolumes(
    input: IsolationInput,
    volumes: NamedVolume[],
    create: boolean,
    bytes: () => Buffer,
  ): Promise<IsolationOutcome> {
    const { role, decision } = input;
    const ctx = { allow: role.spec, resolveSymlinks: this.#resolveSymlinks, isolated: false };
    let release: Release | undefined;
    try {
      await this.#whenIdle();
      release = await this.#holds.use(volumes.map((v) => v.name));
      const client = this.#client();
      if (!client) throw new Error("no connection to the daemon for volume checks");
      const verdict = await withTimeout(
        checkStoredVolumes(client, volumes, ctx, create),
        OWNER_CHECK_MS,
      );
      if ("problem" in verdict) throw new IsolationRefusal(verdict.status, verdict.problem);
      input.exchange.release = release;
      const rule = `${decision.rule} (${verdict.notes.join(", ")})`;
      return { kind: "forward", decision: { ...decision, rule }, bytes };
    } catch (err) {
      release?.();
      return this.#failed(input, err, "volume check");
    }
  }

  /**
   * A volume remove or prune of a role that is not isolated: it holds the names (a prune all
   * of them) until the daemon answered, after the holds of the creates that checked them end,
   * so that a volume checked as stored is not swapped under its name through the gate.
   */
  async #removing(input: IsolationInput, names: VolumeNames): Promise<IsolationOutcome> {
    const { head, body } = input;
    try {
      input.exchange.release = await this.#holds.remove(names);
    } catch (err) {
      return this.#failed(input, err, "volume hold");
    }
    const bytes = serializeRequestHead(head, body?.length);
    return { kind: "forward", bytes: () => body ? Buffer.concat([bytes, body]) : bytes };
  }

  /** Close the daemon connection (the relayed connection ended). */
  close(): void {
    this.#daemon?.close();
  }

  /** Forward the request as the plan edited it (full IDs, owner label, owner filter). */
  #forward(
    input: IsolationInput,
    plan: IsolationPlan,
    settings: IsolationSettings,
    own: ReadonlySet<string>,
    notes: string[],
  ): IsolationOutcome {
    const { exchange, head, body } = input;
    exchange.owner = [...plan.notes, ...notes].join(", ") || undefined;
    if (plan.answer) {
      exchange.answer = {
        rule: plan.answer,
        owner: settings.owner,
        own,
        record: settings.containers,
        ...(settings.scope ? { scope: settings.scope } : {}),
      };
    }
    const newTarget = plan.target.changed ? plan.target.toString() : undefined;
    const edited = plan.body?.edited ? Buffer.from(plan.body.result()) : body;
    return {
      kind: "forward",
      bytes: () => {
        if (edited === undefined && newTarget === undefined) return serializeRequestHead(head);
        const headBytes = serializeRequestHead(head, edited?.length, newTarget);
        return edited ? Buffer.concat([headBytes, edited]) : headBytes;
      },
    };
  }

  /** Refuse for isolation: 404 in the daemon's words (nothing to tell apart), else 403/400/502. */
  #refused(
    input: IsolationInput,
    refusal: IsolationRefusal,
    what = "owner check",
  ): IsolationOutcome {
    const { exchange, head, body } = input;
    const isolation = what === "owner check";
    if (isolation) exchange.owner = `refused: ${refusal.message}`;
    const rule = isolation
      ? `${input.role.spec.scope ? "scope" : "isolate"}: ${refusal.message}`
      : `${input.role.preset}: ${refusal.message}`;
    const decision = { allow: false, rule };
    const status = refusal.status;
    const message = status === 404
      ? refusal.message
      : denialMessage(this.#who.identity, exchange, decision.rule);
    return {
      kind: "refuse",
      decision,
      refusal: { status, message },
      bytes: () => {
        // Audit mode: the request goes on as the client sent it.
        const bytes = serializeRequestHead(head, body?.length);
        return body ? Buffer.concat([bytes, body]) : bytes;
      },
    };
  }
}
