/**
 * One request in flight through the API relay, from its head to the end of its answer, and
 * the audit record it becomes. Shared by the request reader, the answer reader and the
 * coordinator (`api_relay.ts`); it imports none of them.
 *
 * @module
 */

import type { Buffer } from "node:buffer";
import type { ApiDecision } from "./api_policy.ts";
import type { AuditDetail, AuditRecord } from "../observe/audit.ts";
import type { AnswerRule, ContainerRecord, LabelScope } from "./isolation.ts";
import type { SessionRecording } from "./session_record.ts";

/** One request in flight, from its head to the end of its answer. */
export interface Exchange {
  /** The request's method. */
  method: string;
  /** The canonical path (`api_path.ts`), for the record. */
  path: string;
  /** The decision (`undecided` until made). */
  decision: ApiDecision;
  /** The role's name, for the record. */
  role: string;
  /** `Date.now()` when its head was read. */
  started: number;
  /** Bytes the client sent for it. */
  bytesIn: number;
  /** Bytes of its answer. */
  bytesOut: number;
  /** The gate's own answer (a refusal), sent when this exchange reaches the head of the line. */
  local?: { response: Buffer; status: number; close: boolean };
  /** The answer may switch the connection to a raw stream. */
  mayUpgrade: boolean;
  /**
   * The request was the connection's last (`Connection: close`, or HTTP/1.0 without
   * keep-alive): once its answer is out the gate closes the client connection.
   */
  last?: boolean;
  /** The status of the target's answer, once its head was read. */
  status?: number;
  /** The owner decision, for the audit record. */
  owner?: string;
  /** The role's lifted shields that applied (`shields.ts` `liftedShields`), for the audit. */
  shield?: string;
  /** What it asked for or acts in (`attribution.ts`), for the audit record. */
  detail?: AuditDetail;
  /** An exec start's `Tty` (its stream's framing), from its body. */
  streamTty?: boolean;
  /** The session's recording was opened, or its absence decided (`session_step.ts`). */
  sessionOpened?: boolean;
  /** The session's recording, fed with the raw stream both ways (`session_record.ts`). */
  recording?: SessionRecording;
  /** The role requires the recording: the session ends when it cannot be recorded whole. */
  recordRequired?: boolean;
  /** Ends the volume holds its owner check took (`volume_holds.ts`), once it is answered. */
  release?: () => void;
  /** Ends its slot of the identity's `maxInFlight` (`request_limits.ts`), once it is answered. */
  endSlot?: () => void;
  /** The answer's secret values are replaced before the client sees it (`secret_redaction.ts`). */
  redact?: boolean;
  /** The answer is filtered or checked before the client sees it. */
  answer?: {
    rule: AnswerRule;
    owner: string;
    own: ReadonlySet<string>;
    /** The gate's record of the containers it created (`isolation.ts` `containerOwner`). */
    record?: ContainerRecord;
    /** A scoped role's label (`isolation.ts` `containerSeen`), instead of the owner. */
    scope?: LabelScope;
  };
}

/** What follows a request's body: the next head, a wait for a possible upgrade, or nothing. */
export type Next = "head" | "wait-upgrade" | "closing";

/** Who is relayed, as the records and refusal messages name them. */
export interface Who {
  /** The identity's name. */
  identity: string;
  /** The certificate's serial. */
  serial: string;
  /** The peer's address. */
  peer: string;
  /** Its `ownerKey` (isolation). */
  owner: string;
}

/**
 * A fresh, undecided exchange.
 *
 * @example
 * ```ts
 * import { newExchange } from "./relay_exchange.ts";
 * const e = newExchange("GET", "/containers/json", "ro", false);
 * if (e.decision.allow || e.bytesIn !== 0) throw new Error();
 * ```
 */
export function newExchange(
  method: string,
  path: string,
  role: string,
  mayUpgrade: boolean,
): Exchange {
  return {
    method,
    path,
    decision: { allow: false, rule: "undecided" },
    role,
    started: Date.now(),
    bytesIn: 0,
    bytesOut: 0,
    mayUpgrade,
  };
}

/**
 * The refusal message of a denied request: who may not do what, and the rule.
 *
 * @example
 * ```ts
 * import { denialMessage, newExchange } from "./relay_exchange.ts";
 * const m = denialMessage("alice", newExchange("POST", "/build", "ro", false), "read-only");
 * if (m !== "dockgate: alice may not POST /build: read-only") throw new Error();
 * ```
 */
export function denialMessage(identity: string, exchange: Exchange, rule: string): string {
  return `dockgate: ${identity} may not ${exchange.method} ${exchange.path}: ${rule}`;
}

/**
 * The audit record of a finished exchange answered with `status`.
 *
 * @example
 * ```ts
 * import { auditRecordOf, newExchange } from "./relay_exchange.ts";
 * const who = { identity: "a", serial: "1", peer: "p", owner: "a" };
 * const r = auditRecordOf(newExchange("GET", "/info", "ro", false), 200, who, "audit");
 * if (r.decision !== "would_deny") throw new Error();
 * ```
 */
export function auditRecordOf(
  exchange: Exchange,
  status: number,
  who: Who,
  mode: "enforce" | "audit",
): AuditRecord {
  const denied = !exchange.decision.allow;
  return {
    event: "request",
    identity: who.identity,
    serial: who.serial,
    peer: who.peer,
    role: exchange.role,
    method: exchange.method,
    path: exchange.path,
    decision: !denied ? "allow" : exchange.local || mode === "enforce" ? "deny" : "would_deny",
    rule: exchange.decision.rule,
    ...(exchange.owner ? { owner: exchange.owner } : {}),
    ...(exchange.shield ? { shield: exchange.shield } : {}),
    ...exchange.detail,
    status,
    bytes_in: exchange.bytesIn,
    bytes_out: exchange.bytesOut,
    ms: Date.now() - exchange.started,
  };
}
