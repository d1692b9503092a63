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
  type IsolationPlan,
  IsolationRefusal,
  type IsolationSettings,
  planIsolation,
} from "./isolation.ts";
import { checkOwners } from "./owner_check.ts";
import { JsonDocument } from "./strict_json.ts";
import { denialMessage, type Exchange } from "./relay_exchange.ts";

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
  | { kind: "forward"; bytes: () => Buffer }
  | {
    kind: "refuse";
    decision: ApiDecision;
    refusal: { status: number; message: string };
    /** The request as the client sent it (audit mode forwards it). */
    bytes: () => Buffer;
  };

/** `promise`, or a rejection after `ms`. */
function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer from the daemon in ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/**
 * The isolation step of one relayed connection; holds its owner-check daemon connection.
 *
 * @example
 * ```ts
 * import { IsolationStep } from "./isolation_step.ts";
 * const step = new IsolationStep({ identity: "a", owner: "a" });
 * step.close();
 * ```
 */
export class IsolationStep {
  readonly #who: { identity: string; owner: string };
  readonly #connectDaemon: (() => Promise<Duplex>) | undefined;
  /** The owner checks' own connection to the daemon, opened when first needed. */
  #daemon: DaemonClient | undefined;

  /** Checks for `who`, asking the daemon through `connectDaemon` (none: refused, 502). */
  constructor(who: { identity: string; owner: string }, connectDaemon?: () => Promise<Duplex>) {
    this.#who = who;
    this.#connectDaemon = connectDaemon;
  }

  /**
   * The outcome for `input`: at once when it names no object (or its plan is refused), else
   * once the owners were checked. Throws only for a fault that is not a refusal.
   */
  run(input: IsolationInput): IsolationOutcome | Promise<IsolationOutcome> {
    const { head, target, role, body } = input;
    const settings: IsolationSettings = {
      owner: this.#who.owner,
      othersStatus: role.othersStatus,
      sharedVolumes: role.shared.volumes,
      sharedNetworks: role.shared.networks,
      allowVolumesFrom: role.spec.allowVolumesFrom ?? [],
    };
    let plan: IsolationPlan;
    try {
      const doc = body && body.length > 0 ? new JsonDocument(body) : undefined;
      plan = planIsolation(settings, head.method, head.target, target, doc);
    } catch (err) {
      if (!(err instanceof IsolationRefusal)) throw err;
      return this.#refused(input, err);
    }
    if (plan.refs.length === 0) return this.#forward(input, plan, settings, new Set(), []);
    this.#daemon ??= this.#connectDaemon ? new DaemonClient(this.#connectDaemon) : undefined;
    const checks = this.#daemon
      ? withTimeout(checkOwners(plan, settings, this.#daemon, head.method), OWNER_CHECK_MS)
      : Promise.reject(new Error("no connection to the daemon for owner checks"));
    return checks.then(
      (result) =>
        this.#forward(input, plan, settings, result.ownContainers ?? new Set(), result.notes),
      (err) => {
        if (err instanceof IsolationRefusal) return this.#refused(input, err);
        // A daemon connection that failed or hung is not used again.
        this.#daemon?.close();
        this.#daemon = undefined;
        const message = `owner check failed: ${(err as Error).message}`;
        return this.#refused(input, new IsolationRefusal(502, message));
      },
    );
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
    if (plan.answer) exchange.answer = { rule: plan.answer, owner: settings.owner, own };
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
  #refused(input: IsolationInput, refusal: IsolationRefusal): IsolationOutcome {
    const { exchange, head, body } = input;
    exchange.owner = `refused: ${refusal.message}`;
    const decision = { allow: false, rule: `isolate: ${refusal.message}` };
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
