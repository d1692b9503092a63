/**
 * The HTTP-aware relay for restricted roles: each request is read (head always, body when the
 * policy must inspect it), decided, and only then forwarded; responses are read far enough to
 * keep requests and responses in step and to see the switch to a raw stream.
 *
 * One connection, in order: client bytes -> request head (strict, `http.ts`) -> target path
 * (`api_path.ts`) -> body: streamed, or collected (capped) and read as strict JSON -> decision
 * (`api_policy.ts`) -> forwarded, or answered here (403 keeps the connection, 400/413 close
 * it). The target's answers come back in order, with the gate's own answers slotted in at the
 * place of the request they refuse. After `101 Switching Protocols` (or attach's raw-stream
 * answer) the connection is a raw relay for the rest of its life; that head is written as a
 * TLS record of its own first (docker-py reads it through a buffered reader and loses stream
 * bytes that arrive in the same read, docker/docker-py#425).
 *
 * @module
 */

import { Buffer } from "node:buffer";
import type { Duplex } from "node:stream";
import { setImmediate } from "node:timers";
import {
  type BodyFraming,
  ChunkedReader,
  findHeadEnd,
  gateResponse,
  HttpError,
  parseRequestHead,
  parseResponseHead,
  type RequestHead,
  responseFraming,
  type ResponseHead,
  serializeRequestHead,
  valuesOf,
} from "./http.ts";
import type { ApiTarget } from "./api_path.ts";
import {
  type ApiDecision,
  decideBody,
  decideRequest,
  type Role,
  routeRequest,
} from "./api_policy.ts";
import type { AuditRecord, AuditSink } from "../observe/audit.ts";
import { DaemonClient } from "./daemon_client.ts";
import {
  type AnswerRule,
  filterAnswer,
  type IsolationPlan,
  IsolationRefusal,
  type IsolationSettings,
  planIsolation,
} from "./isolation.ts";
import { checkOwners } from "./owner_check.ts";
import { hijacks } from "./routes.ts";
import { liftedShields, shieldProblem } from "./shields.ts";
import {
  contentTypeProblem,
  isArchiveUpload,
  mediaTypeOf,
  TAR_BLOCK,
  tarPrefixProblem,
} from "./request_body.ts";
import { JsonDocument } from "./strict_json.ts";
import type { HeldInput, RelayHandle, RelayResult } from "../net/relay.ts";
import { type FlowControl, runtimeFlowControl } from "../net/relay.ts";

/** What the relay needs to know, besides the two sockets. */
export interface ApiRelayOptions {
  /** The identity's role now (re-read for every request: a reload applies to the next one). */
  role: () => Role | undefined;
  /** `enforce` refuses what the policy denies; `audit` forwards it and records `would_deny`. */
  mode: "enforce" | "audit";
  /** Who, for the refusal message and the audit record; `owner` is its `ownerKey` (isolation). */
  who: { identity: string; serial: string; peer: string; owner: string };
  /** Where request records go. Default: nowhere. */
  audit?: AuditSink;
  /** The largest body read for inspection; bigger ones get 413. Default: 1 MiB. */
  maxBodyBytes?: number;
  /** Resolve symlinks in bind sources (the target is on this host). Default: false. */
  resolveSymlinks?: boolean;
  /**
   * Open a connection to the daemon for the owner checks of isolated roles. Without it an
   * isolated role's requests that name objects are refused (502).
   */
  connectDaemon?: () => Promise<Duplex>;
  /** The daemon's version, for the shields (`shields.ts`); undefined: unknown, all active. */
  daemonVersion?: () => string | undefined;
}

/** Pieces this big are bulk (an upload): gathered per event-loop turn before writing. */
const BULK_PIECE = 16 * 1024;
/** Gathered bulk is written at once from this size on. */
const BULK_MAX = 256 * 1024;

/** One buffer of `pieces` (no copy for one). */
function joined(pieces: Buffer[]): Buffer {
  return pieces.length === 1 ? pieces[0] : pieces.length === 0 ? EMPTY : Buffer.concat(pieces);
}
const EMPTY = Buffer.alloc(0);

/** The default cap of an inspected body. */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;
/** Requests in flight (pipelined) before the gate stops reading the client. */
const MAX_IN_FLIGHT = 32;
/** Bytes held while waiting for an answer that may switch to a raw stream. */
const MAX_HELD_BYTES = 256 * 1024;

/** One request in flight, from its head to the end of its answer. */
interface Exchange {
  method: string;
  path: string;
  decision: ApiDecision;
  role: string;
  started: number;
  bytesIn: number;
  bytesOut: number;
  /** The gate's own answer (a refusal), sent when this exchange reaches the head of the line. */
  local?: { response: Buffer; status: number; close: boolean };
  /** The answer may switch the connection to a raw stream. */
  mayUpgrade: boolean;
  /** The status of the target's answer, once its head was read. */
  status?: number;
  /** The owner decision, for the audit record. */
  owner?: string;
  /** The role's lifted shields that applied (`shields.ts` `liftedShields`), for the audit. */
  shield?: string;
  /** The answer is filtered or checked before the client sees it. */
  answer?: { rule: AnswerRule; owner: string; own: ReadonlySet<string> };
}

type ClientPhase =
  | { kind: "head" }
  | { kind: "stream"; framing: BodyFraming; left: number; chunked?: ChunkedReader; next: Next }
  | { kind: "collect"; collect: Collector }
  | { kind: "peek"; peek: Peek }
  | { kind: "discard"; left: number; chunked?: ChunkedReader; next: Next }
  | { kind: "wait-upgrade" }
  | { kind: "resolving" }
  | { kind: "raw" }
  | { kind: "closing" };

/** What follows a body: the next head, a wait for a possible upgrade, or nothing. */
type Next = "head" | "wait-upgrade" | "closing";

interface Collector {
  head: RequestHead;
  target: ApiTarget;
  role: Role;
  exchange: Exchange;
  left: number;
  chunked?: ChunkedReader;
  data: Buffer[];
  size: number;
  next: Next;
}

/** An archive upload whose first tar block is read (not consumed) before it is decided. */
interface Peek {
  exchange: Exchange;
  framing: BodyFraming;
  next: Next;
  headBytes: Buffer;
  /** What happens when the block is plain tar: the usual decision. */
  then: () => void;
}

type ResponsePhase =
  | { kind: "head" }
  | { kind: "body"; left: number; chunked?: ChunkedReader; close: boolean }
  | {
    kind: "filter";
    head: ResponseHead;
    left: number;
    chunked?: ChunkedReader;
    data: Buffer[];
    size: number;
  }
  | { kind: "raw" };

/** Owner checks that take longer than this are refused (502): a hung daemon stalls no client. */
const OWNER_CHECK_MS = 30_000;

/** `promise`, or a rejection after `ms`. */
function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer from the daemon in ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** The largest answer the gate reads whole to filter it for an owner. */
const MAX_FILTERED_ANSWER = 16 * 1024 * 1024;

/**
 * Relay `client` (TLS, already authorized) and `upstream` (the daemon) through the policy.
 * Returns the same handle as the raw relay.
 */
export function apiRelay(
  client: Duplex,
  upstream: Duplex,
  options: ApiRelayOptions,
  held?: HeldInput,
): RelayHandle {
  return new ApiRelay(client, upstream, options, held).handle;
}

class ApiRelay {
  readonly handle: RelayHandle;
  readonly #client: Duplex;
  readonly #upstream: Duplex;
  readonly #options: ApiRelayOptions;
  readonly #maxBody: number;
  readonly #clientFlow: FlowControl;
  readonly #upstreamFlow: FlowControl;
  readonly #result: RelayResult = { bytesIn: 0, bytesOut: 0 };
  readonly #queue: Exchange[] = [];
  #phase: ClientPhase = { kind: "head" };
  #response: ResponsePhase = { kind: "head" };
  #pending: Buffer = Buffer.alloc(0);
  #responseBuf: Buffer = Buffer.alloc(0);
  #clientEnded = false;
  /** What the current event's processing writes, sent in one piece per socket at its end. */
  #batch: { client: Buffer[]; upstream: Buffer[] } | undefined;
  /** Bulk body pieces waiting for the check phase. */
  #bulk: Buffer[] = [];
  #bulkBytes = 0;
  #bulkScheduled = false;
  #closeAfterWrite = false;
  #upstreamEnded = false;
  /** Stream bytes that wait while the switching head is handed to TLS. */
  #rawHold: Buffer[] | undefined;
  #upstreamBlocked = false;
  #clientBlocked = false;
  #clientStopped = false;
  #closed = 0;
  #resolve!: (r: RelayResult) => void;
  /** The owner checks' own connection to the daemon, opened when first needed. */
  #daemon: DaemonClient | undefined;
  /** The client's bytes can no longer be read: the target's side ends like at a half-close. */
  #endUpstream = false;
  /** The request whose head or body is being read (for the record of a refusal). */
  #reading: { method: string; path: string } | undefined;

  constructor(client: Duplex, upstream: Duplex, options: ApiRelayOptions, held?: HeldInput) {
    this.#client = client;
    this.#upstream = upstream;
    this.#options = options;
    this.#maxBody = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    held?.release();
    this.#clientFlow = held?.flowControl ?? runtimeFlowControl(client);
    this.#upstreamFlow = runtimeFlowControl(upstream);
    const done = new Promise<RelayResult>((r) => (this.#resolve = r));
    this.handle = { done, abort: (reason) => this.#abort(reason) };
    for (const s of [client, upstream]) {
      s.once("error", (err: Error) => this.#abort(err));
      s.once("close", () => this.#onClose(s));
      (s as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
    }
    client.on("data", (chunk: Buffer) => this.#onClientData(chunk));
    client.once("end", () => this.#onClientEnd());
    upstream.on("data", (chunk: Buffer) => this.#onUpstreamData(chunk));
    upstream.once("end", () => this.#onUpstreamEnd());
    for (const chunk of held?.chunks ?? []) this.#onClientData(Buffer.from(chunk));
    if (held?.ended) this.#onClientEnd();
    this.#clientFlow.start();
    client.resume();
    upstream.resume();
  }

  // ------------------------------------------------------------ client -> target

  #onClientData(chunk: Buffer): void {
    this.#result.bytesIn += chunk.length;
    if (this.#phase.kind === "raw") return this.#toUpstream(chunk);
    if (this.#phase.kind === "closing") return;
    this.#pending = this.#pending.length ? Buffer.concat([this.#pending, chunk]) : chunk;
    this.#corked(() => this.#pump());
  }

  /**
   * Run `fn` gathering what it writes: what one incoming chunk produces (a head and its body,
   * several answers) goes out in one write per socket, one TLS record, not one per piece.
   * (Why not cork(): on Node a corked TLS socket's writev cost ~4x the CPU of one write.)
   */
  #corked(fn: () => void): void {
    if (this.#batch) return fn();
    this.#batch = { client: [], upstream: [] };
    try {
      fn();
    } finally {
      const batch = this.#batch;
      this.#batch = undefined;
      this.#sendUpstream(batch.upstream);
      this.#writeClient(joined(batch.client));
      if (this.#closeAfterWrite) this.#closeNow();
      else this.#finishClientEnd();
    }
  }

  /** After the gate's closing answer: end the client, drop the target. */
  #closeNow(): void {
    this.#closeAfterWrite = false;
    this.#client.end();
    this.#upstream.destroy();
  }

  /**
   * Write to the target; bulk pieces (16 KiB or more: an upload streaming through) are
   * gathered until the event loop's check phase and written together, as the raw relay does.
   */
  #sendUpstream(pieces: Buffer[]): void {
    const bytes = joined(pieces);
    if (bytes.length >= BULK_PIECE) {
      this.#bulk.push(bytes);
      this.#bulkBytes += bytes.length;
      if (this.#bulkBytes >= BULK_MAX) this.#flushBulk();
      else if (!this.#bulkScheduled) {
        this.#bulkScheduled = true;
        setImmediate(() => {
          this.#bulkScheduled = false;
          this.#flushBulk();
        });
      }
      return;
    }
    this.#flushBulk();
    this.#writeUpstream(bytes);
  }

  #flushBulk(): void {
    if (this.#bulk.length === 0) return;
    const pieces = this.#bulk;
    this.#bulk = [];
    this.#bulkBytes = 0;
    // One writev (the target is a plain socket: no copy into one buffer needed).
    this.#upstream.cork();
    for (const piece of pieces) this.#writeUpstream(piece);
    this.#upstream.uncork();
    this.#finishClientEnd();
  }

  /** Work through the held client bytes as far as the current phase allows. */
  #pump(): void {
    try {
      while (this.#pending.length > 0 || this.#phase.kind === "collect") {
        const before = this.#pending.length;
        const phase = this.#phase;
        if (phase.kind === "head") {
          if (!this.#readHead()) break;
        } else if (phase.kind === "stream" || phase.kind === "discard") {
          this.#passBody(phase);
        } else if (phase.kind === "collect") {
          if (!this.#collect(phase.collect)) break;
        } else if (phase.kind === "peek") {
          if (!this.#peek(phase.peek)) break;
        } else if (phase.kind === "raw") {
          const rest = this.#pending;
          this.#pending = Buffer.alloc(0);
          this.#toUpstream(rest);
        } else if (phase.kind === "closing") {
          this.#pending = Buffer.alloc(0);
        } else break; // wait-upgrade: hold until the answer says what comes next
        if (this.#pending.length === before && this.#phase === phase) break;
      }
    } catch (err) {
      this.#protocolError(err);
    }
    this.#finishClientEnd();
    this.#updateClientFlow();
  }

  /** Read one request head; false when more bytes are needed (or reading must pause). */
  #readHead(): boolean {
    if (this.#queue.length >= MAX_IN_FLIGHT) return false;
    this.#reading = undefined;
    const end = findHeadEnd(this.#pending);
    if (end === -1) return false;
    const headBytes = this.#pending.subarray(0, end);
    const head = parseRequestHead(headBytes);
    this.#reading = { method: head.method, path: head.target.split("?")[0] };
    this.#pending = this.#pending.subarray(end);
    const role = this.#options.role();
    if (!role) throw new HttpError(403, "the identity has no role in the policy any more");
    const routed = routeRequest(role, head.method, head.target);
    const { target, inspection } = routed;
    this.#reading.path = target.path;
    const hasBody = head.framing.kind === "chunked" ||
      (head.framing.kind === "length" && head.framing.length > 0);
    const exchange = this.#exchange(head, target, role);
    exchange.bytesIn = end;
    exchange.shield = liftedShields(
      head.method,
      target.path,
      this.#options.daemonVersion?.(),
      role.liftShields,
    );
    const next: Next = head.close ? "closing" : exchange.mayUpgrade ? "wait-upgrade" : "head";
    const forwardHead = () => this.#toUpstream(headBytes);
    const early = role.preset === "full"
      ? undefined
      : headProblem(head, target, this.#options.daemonVersion?.(), role.liftShields);
    if (early) {
      this.#decided(
        exchange,
        { allow: false, rule: `${role.preset}: ${early}` },
        head.framing,
        next,
        forwardHead,
      );
      return true;
    }
    if (inspection && hasBody) {
      const length = head.framing.kind === "length" ? head.framing.length : 0;
      if (length > this.#maxBody) {
        throw new HttpError(413, `body over ${this.#maxBody} bytes cannot be inspected`);
      }
      this.#phase = {
        kind: "collect",
        collect: {
          head,
          target,
          role,
          exchange,
          left: length,
          chunked: head.framing.kind === "chunked" ? new ChunkedReader() : undefined,
          data: [],
          size: 0,
          next,
        },
      };
      return true;
    }
    const decision = routed.decision ??
      decideRequest(role, { method: head.method, target, hasBody }, {
        resolveSymlinks: this.#options.resolveSymlinks,
      });
    // The head is forwarded as sent: every byte of it was checked above, and a head that two
    // parsers could read differently was refused (an inspected body is re-framed, see #collect).
    const then = () => {
      if (role.isolate && decision.allow) {
        return this.#isolate(exchange, decision, head.framing, next, head, target, role, undefined);
      }
      this.#decided(exchange, decision, head.framing, next, forwardHead);
    };
    if (
      decision.allow && hasBody && role.preset !== "full" &&
      isArchiveUpload(head.method, target.path)
    ) {
      this.#phase = {
        kind: "peek",
        peek: { exchange, framing: head.framing, next, headBytes, then },
      };
      return true;
    }
    then();
    return true;
  }

  /**
   * An archive upload: wait (consuming nothing) until its first tar block is here, then let
   * it on only when it is plain tar. False while more bytes are needed.
   */
  #peek(p: Peek): boolean {
    const prefix = bodyPrefix(this.#pending, p.framing, TAR_BLOCK);
    if (prefix === undefined) {
      if (this.#pending.length > MAX_HELD_BYTES) {
        throw new HttpError(400, "an archive upload's first tar block did not arrive in time");
      }
      return false;
    }
    const problem = tarPrefixProblem(prefix);
    if (!problem) {
      p.then();
      return true;
    }
    const role = this.#options.role()?.preset ?? "restricted";
    this.#decided(
      p.exchange,
      { allow: false, rule: `${role}: ${problem}` },
      p.framing,
      p.next,
      () => this.#toUpstream(p.headBytes),
    );
    return true;
  }

  #exchange(head: RequestHead, target: ApiTarget, role: Role): Exchange {
    return {
      method: head.method,
      path: target.path,
      decision: { allow: false, rule: "undecided" },
      role: role.name,
      started: Date.now(),
      bytesIn: 0,
      bytesOut: 0,
      // Only the routes dockerd hijacks may switch: a stream content type on any other answer
      // (logs since Docker 23) is an ordinary response.
      mayUpgrade: hijacks(head.method, target.path),
    };
  }

  /** Act on a decision: forward (and stream the body), or answer here (and drop the body). */
  #decided(
    exchange: Exchange,
    decision: ApiDecision,
    framing: BodyFraming,
    next: Next,
    forward: () => void,
    refusal?: { status: number; message: string },
  ): void {
    exchange.decision = decision;
    const pass = decision.allow || this.#options.mode === "audit";
    const left = framing.kind === "length" ? framing.length : 0;
    const chunked = framing.kind === "chunked" ? new ChunkedReader() : undefined;
    if (pass) {
      this.#queue.push(exchange);
      forward();
      this.#phase = left > 0 || chunked
        ? { kind: "stream", framing, left, chunked, next }
        : this.#after(next);
      return;
    }
    this.#refuse(
      exchange,
      refusal?.status ?? 403,
      refusal?.message ?? this.#denial(exchange, decision.rule),
      false,
    );
    this.#phase = left > 0 || chunked
      ? { kind: "discard", left, chunked, next: next === "wait-upgrade" ? "head" : next }
      : this.#after(next === "wait-upgrade" ? "head" : next);
  }

  #after(next: Next): ClientPhase {
    return { kind: next };
  }

  #denial(exchange: Exchange, rule: string): string {
    return `dockgate: ${this.#options.who.identity} may not ${exchange.method} ${exchange.path}: ${rule}`;
  }

  /** Forward (stream) or drop (discard) body bytes of the current request. */
  #passBody(phase: Extract<ClientPhase, { kind: "stream" | "discard" }>): void {
    let used: number;
    if (phase.chunked) used = phase.chunked.feed(this.#pending);
    else used = Math.min(phase.left, this.#pending.length);
    const bytes = this.#pending.subarray(0, used);
    this.#pending = this.#pending.subarray(used);
    if (phase.kind === "stream") {
      const ex = this.#queue[this.#queue.length - 1];
      if (ex) ex.bytesIn += used;
      this.#toUpstream(bytes);
    }
    if (!phase.chunked) phase.left -= used;
    if (phase.chunked ? phase.chunked.done : phase.left === 0) {
      this.#phase = this.#after(phase.next);
    }
  }

  /** Collect an inspected body; once complete, decide on it. False while more is needed. */
  #collect(c: Collector): boolean {
    if (!c.chunked || !c.chunked.done) {
      if (this.#pending.length === 0 && (c.chunked || c.left > 0)) return false;
      let used: number;
      if (c.chunked) {
        used = c.chunked.feed(this.#pending, (d) => {
          c.data.push(Buffer.from(d));
          c.size += d.length;
        });
      } else {
        used = Math.min(c.left, this.#pending.length);
        c.data.push(this.#pending.subarray(0, used));
        c.size += used;
        c.left -= used;
      }
      this.#pending = this.#pending.subarray(used);
      c.exchange.bytesIn += used;
      if (c.size > this.#maxBody) {
        throw new HttpError(413, `body over ${this.#maxBody} bytes cannot be inspected`);
      }
      const complete = c.chunked ? c.chunked.done : c.left === 0;
      if (!complete) return false;
    }
    const body = Buffer.concat(c.data);
    const decision = this.#inspect(c, body);
    if (c.role.isolate && decision.allow) {
      this.#isolate(c.exchange, decision, { kind: "none" }, c.next, c.head, c.target, c.role, body);
      return true;
    }
    this.#decided(c.exchange, decision, { kind: "none" }, c.next, () => {
      this.#toUpstream(Buffer.concat([serializeRequestHead(c.head, body.length), body]));
    });
    return true;
  }

  /**
   * An isolated role's allowed request: plan the isolation (labels, filters, references),
   * check the owners of the objects it names (asynchronously: the client's further bytes wait
   * meanwhile), then forward it as edited, or refuse it (404 or 403).
   */
  #isolate(
    exchange: Exchange,
    decision: ApiDecision,
    framing: BodyFraming,
    next: Next,
    head: RequestHead,
    target: ApiTarget,
    role: Role,
    body: Buffer | undefined,
  ): void {
    const settings: IsolationSettings = {
      owner: this.#options.who.owner,
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
      return this.#refuseIsolated(exchange, err, framing, next, head, body);
    }
    const forward = (own: ReadonlySet<string>, notes: string[]) => {
      exchange.owner = [...plan.notes, ...notes].join(", ") || undefined;
      if (plan.answer) exchange.answer = { rule: plan.answer, owner: settings.owner, own };
      const newTarget = plan.target.changed ? plan.target.toString() : undefined;
      const edited = plan.body?.edited ? Buffer.from(plan.body.result()) : body;
      this.#decided(exchange, decision, framing, next, () => {
        if (edited === undefined && newTarget === undefined) {
          return this.#toUpstream(serializeRequestHead(head));
        }
        const headBytes = serializeRequestHead(head, edited?.length, newTarget);
        this.#toUpstream(edited ? Buffer.concat([headBytes, edited]) : headBytes);
      });
    };
    if (plan.refs.length === 0) return forward(new Set(), []);
    this.#phase = { kind: "resolving" };
    this.#daemon ??= this.#options.connectDaemon
      ? new DaemonClient(this.#options.connectDaemon)
      : undefined;
    const checks = this.#daemon
      ? withTimeout(checkOwners(plan, settings, this.#daemon, head.method), OWNER_CHECK_MS)
      : Promise.reject(new Error("no connection to the daemon for owner checks"));
    checks.then(
      (result) =>
        this.#corked(() => {
          forward(result.ownContainers ?? new Set(), result.notes);
          this.#pump();
        }),
      (err) =>
        this.#corked(() => {
          if (!(err instanceof IsolationRefusal)) {
            // A daemon connection that failed or hung is not used again.
            this.#daemon?.close();
            this.#daemon = undefined;
          }
          const refusal = err instanceof IsolationRefusal
            ? err
            : new IsolationRefusal(502, `owner check failed: ${(err as Error).message}`);
          this.#refuseIsolated(exchange, refusal, framing, next, head, body);
          this.#pump();
        }),
    );
  }

  /** Refuse for isolation: 404 in the daemon's words (nothing to tell apart), else 403/400/502. */
  #refuseIsolated(
    exchange: Exchange,
    refusal: IsolationRefusal,
    framing: BodyFraming,
    next: Next,
    head: RequestHead,
    body: Buffer | undefined,
  ): void {
    exchange.owner = `refused: ${refusal.message}`;
    const decision = { allow: false, rule: `isolate: ${refusal.message}` };
    const status = refusal.status;
    const message = status === 404 ? refusal.message : this.#denial(exchange, decision.rule);
    this.#decided(exchange, decision, framing, next, () => {
      // Audit mode: the request goes on as the client sent it.
      const bytes = serializeRequestHead(head, body?.length);
      this.#toUpstream(body ? Buffer.concat([bytes, body]) : bytes);
    }, { status, message });
  }

  /** The decision on a collected body: content type, strict JSON, then the policy. */
  #inspect(c: Collector, body: Buffer): ApiDecision {
    let media: string;
    try {
      media = mediaTypeOf(c.head);
    } catch (err) {
      return { allow: false, rule: (err as Error).message };
    }
    if (media !== "application/json") {
      return {
        allow: false,
        rule: `a body to inspect must be application/json, not "${
          valuesOf(c.head, "content-type")[0] ?? ""
        }"`,
      };
    }
    return decideBody(c.role, c.head.method, c.target, body, {
      resolveSymlinks: this.#options.resolveSymlinks,
    });
  }

  /** Queue the gate's own answer in line; `close` ends the connection after it. */
  #refuse(exchange: Exchange, status: number, message: string, close: boolean): void {
    let response = gateResponse(status, message, close);
    // An answer to HEAD has no body (its Content-Length stays, as the daemon's would).
    if (exchange.method === "HEAD") response = response.subarray(0, findHeadEnd(response));
    exchange.local = { response, status, close };
    this.#queue.push(exchange);
    this.#flushLocal();
  }

  /** A request that cannot be read unambiguously: answer it (in line) and stop reading. */
  #protocolError(err: unknown): void {
    const e = err instanceof HttpError ? err : new HttpError(400, (err as Error).message);
    const exchange: Exchange = {
      method: this.#reading?.method ?? "-",
      path: this.#reading?.path ?? "-",
      decision: { allow: false, rule: e.message },
      role: this.#options.role()?.name ?? "-",
      started: Date.now(),
      bytesIn: this.#pending.length,
      bytesOut: 0,
      mayUpgrade: false,
    };
    const streamed = this.#phase.kind === "stream" ? this.#queue.at(-1) : undefined;
    this.#phase = { kind: "closing" };
    this.#pending = Buffer.alloc(0);
    const message = `dockgate: ${e.message}`;
    const status = e.status === 403 ? 403 : e.status;
    if (streamed && !streamed.local) {
      // The body being forwarded broke off: the daemon waits for the rest and will never
      // answer it, so the gate's 400 stands in that answer's place and ends the connection.
      streamed.decision = { allow: false, rule: e.message };
      streamed.local = { response: gateResponse(status, message, true), status, close: true };
      // Ended once what is forwarded already is written (earlier requests may still be in a batch).
      this.#endUpstream = true;
      this.#finishClientEnd();
      return this.#flushLocal();
    }
    this.#refuse(exchange, status, message, true);
  }

  #toUpstream(bytes: Buffer): void {
    if (bytes.length === 0) return;
    if (this.#batch) return void this.#batch.upstream.push(bytes);
    this.#sendUpstream([bytes]);
  }

  #writeUpstream(bytes: Buffer): void {
    if (bytes.length === 0 || this.#upstream.destroyed) return;
    // Held back only once a good deal waits (as the raw relay does): stopping the client at
    // every full 16 KiB write buffer cost a third of an upload's throughput on Node.
    if (
      !this.#upstream.write(bytes) && this.#upstream.writableLength >= BULK_MAX &&
      !this.#upstreamBlocked
    ) {
      this.#upstreamBlocked = true;
      this.#updateClientFlow(); // raw streams too (stdin to a container that does not read)
      this.#upstream.once("drain", () => {
        this.#upstreamBlocked = false;
        this.#updateClientFlow();
        this.#corked(() => this.#pump());
      });
    }
  }

  /**
   * Read the client only while the target keeps up, the line of requests is short, and the
   * client reads its answers (a flood of refused requests must not queue answers unbounded).
   */
  #updateClientFlow(): void {
    const stop = this.#upstreamBlocked || this.#queue.length >= MAX_IN_FLIGHT ||
      this.#pending.length > MAX_HELD_BYTES || this.#clientBlocked;
    if (stop && !this.#clientStopped) {
      this.#clientStopped = true;
      this.#clientFlow.stop();
    } else if (!stop && this.#clientStopped) {
      this.#clientStopped = false;
      this.#clientFlow.start();
    }
  }

  #onClientEnd(): void {
    this.#clientEnded = true;
    this.#finishClientEnd();
  }

  /**
   * Pass the client's half-close on once every complete request it sent has been forwarded.
   * An incomplete request (a head or an inspected body cut short) is never forwarded.
   */
  #finishClientEnd(): void {
    const ending = this.#clientEnded || this.#endUpstream;
    if (!ending || this.#upstream.destroyed || this.#upstream.writableEnded) return;
    if (this.#batch || this.#bulk.length > 0) return; // after what is still to be written
    const k = this.#phase.kind;
    if (k === "wait-upgrade" || k === "resolving") return; // decided once the answer is in
    if (k === "head" && this.#pending.length > 0 && this.#queue.length >= MAX_IN_FLIGHT) return;
    if (k === "raw" && this.#pending.length > 0) return;
    this.#pending = Buffer.alloc(0);
    this.#upstream.end();
  }

  // ------------------------------------------------------------ target -> client

  #onUpstreamData(chunk: Buffer): void {
    this.#result.bytesOut += chunk.length;
    if (this.#rawHold) return void this.#rawHold.push(chunk);
    if (this.#response.kind === "raw") return this.#toClient(chunk);
    this.#responseBuf = this.#responseBuf.length
      ? Buffer.concat([this.#responseBuf, chunk])
      : chunk;
    this.#corked(() => {
      try {
        this.#pumpResponses();
      } catch (err) {
        this.#abort(new Error(`target: ${(err as Error).message}`));
      }
    });
  }

  #pumpResponses(): void {
    // Once the gate's own last answer closed the connection, what the target sent after it
    // (an answer to a request the gate answered itself) is dropped, not an error that would
    // cut the answers already written.
    while (
      this.#responseBuf.length > 0 && this.#response.kind !== "raw" &&
      !this.#closeAfterWrite && !this.#upstream.destroyed
    ) {
      const exchange = this.#queue[0];
      if (!exchange || exchange.local) throw new Error("answer without a request");
      if (this.#response.kind === "head") {
        const end = findHeadEnd(this.#responseBuf);
        if (end === -1) return;
        const head = parseResponseHead(this.#responseBuf.subarray(0, end));
        const headBytes = this.#responseBuf.subarray(0, end);
        this.#responseBuf = this.#responseBuf.subarray(end);
        exchange.bytesOut += end;
        if (this.#switchesToRaw(exchange, head)) {
          return this.#goRaw(exchange, head.status, headBytes);
        }
        const framing = responseFraming(head, exchange.method);
        if (exchange.answer && head.status >= 200 && framing.kind !== "none") {
          if (framing.kind === "close") throw new Error("an answer to filter has no length");
          exchange.status = head.status;
          const filter: ResponsePhase = {
            kind: "filter",
            head,
            left: framing.kind === "length" ? framing.length : 0,
            chunked: framing.kind === "chunked" ? new ChunkedReader() : undefined,
            data: [],
            size: 0,
          };
          this.#response = filter;
          // An empty body is complete now: no further byte may come to finish it.
          if (!filter.chunked && filter.left === 0) this.#filterAnswer(exchange, filter);
          continue;
        }
        this.#toClient(headBytes);
        if (head.status < 200) continue; // 100 Continue: the final answer follows
        this.#response = framing.kind === "none"
          ? { kind: "head" }
          : framing.kind === "length"
          ? { kind: "body", left: framing.length, close: false }
          : framing.kind === "chunked"
          ? { kind: "body", left: 0, chunked: new ChunkedReader(), close: false }
          : { kind: "body", left: 0, close: true };
        exchange.status = head.status;
        if (framing.kind === "none" || (framing.kind === "length" && framing.length === 0)) {
          this.#response = { kind: "head" };
          this.#answered(exchange);
        }
        continue;
      }
      if (this.#response.kind === "filter") {
        this.#filterAnswer(exchange, this.#response);
        continue;
      }
      const r = this.#response;
      let used: number;
      if (r.close) used = this.#responseBuf.length;
      else if (r.chunked) used = r.chunked.feed(this.#responseBuf);
      else used = Math.min(r.left, this.#responseBuf.length);
      this.#toClient(this.#responseBuf.subarray(0, used));
      this.#responseBuf = this.#responseBuf.subarray(used);
      exchange.bytesOut += used;
      if (!r.close && !r.chunked) r.left -= used;
      if (!r.close && (r.chunked ? r.chunked.done : r.left === 0)) {
        this.#response = { kind: "head" };
        this.#answered(exchange);
      }
    }
  }

  /** Read an answer to filter whole, then send the owner's view of it. */
  #filterAnswer(exchange: Exchange, r: Extract<ResponsePhase, { kind: "filter" }>): void {
    let used: number;
    if (r.chunked) {
      used = r.chunked.feed(this.#responseBuf, (d) => {
        r.data.push(Buffer.from(d));
        r.size += d.length;
      });
    } else {
      used = Math.min(r.left, this.#responseBuf.length);
      r.data.push(this.#responseBuf.subarray(0, used));
      r.size += used;
      r.left -= used;
    }
    this.#responseBuf = this.#responseBuf.subarray(used);
    exchange.bytesOut += used;
    if (r.size > MAX_FILTERED_ANSWER) throw new Error("an answer to filter is too big");
    if (r.chunked ? !r.chunked.done : r.left > 0) return;
    const a = exchange.answer!;
    const body = Buffer.concat(r.data);
    const out = filterAnswer(a.rule, r.head.status, body, a.owner, a.own);
    const status = out?.status ?? r.head.status;
    const data = out ? Buffer.from(out.body) : body;
    this.#toClient(Buffer.concat([responseHeadWith(r.head, status, data.length), data]));
    exchange.status = status;
    this.#response = { kind: "head" };
    this.#answered(exchange);
  }

  #switchesToRaw(exchange: Exchange, head: ResponseHead): boolean {
    if (!exchange.mayUpgrade) return false;
    if (head.status === 101) return true;
    if (head.status !== 200) return false;
    const type = valuesOf(head, "content-type")[0]?.split(";")[0].trim().toLowerCase();
    return type === "application/vnd.docker.raw-stream" ||
      type === "application/vnd.docker.multiplexed-stream";
  }

  /**
   * The answer switched protocols: write its head as a TLS record of its own (the stream's
   * bytes wait until the head was handed to TLS), then relay raw both ways (the held client
   * bytes first) for the rest of the connection.
   */
  #goRaw(exchange: Exchange, status: number, headBytes: Buffer): void {
    this.#response = { kind: "raw" };
    exchange.status = status;
    this.#rawHold = this.#responseBuf.length ? [this.#responseBuf] : [];
    this.#responseBuf = Buffer.alloc(0);
    // Answers before this one go first, then the head alone.
    if (this.#batch) this.#writeClient(joined(this.#batch.client.splice(0)));
    this.#client.write(Buffer.from(headBytes), () => {
      const held = this.#rawHold ?? [];
      this.#rawHold = undefined;
      for (const b of held) this.#toClient(b);
      if (this.#upstreamEnded) this.#endClient();
    });
    this.#answered(exchange);
    if (this.#queue.length > 0) {
      return this.#abort(new Error("target switched protocols with requests still in line"));
    }
    this.#phase = { kind: "raw" };
    this.#pump();
  }

  /** An exchange is complete: record it, and send the gate's answers now at the head of the line. */
  #answered(exchange: Exchange): void {
    this.#queue.shift();
    this.#record(exchange, exchange.status ?? 0);
    if (this.#phase.kind === "wait-upgrade" && this.#response.kind !== "raw") {
      this.#phase = { kind: "head" };
    }
    this.#flushLocal();
    if (this.#response.kind !== "raw") this.#pump();
  }

  #flushLocal(): void {
    while (this.#queue[0]?.local) {
      const exchange = this.#queue.shift()!;
      const local = exchange.local!;
      exchange.bytesOut = local.response.length;
      this.#toClient(local.response);
      this.#record(exchange, local.status);
      if (local.close) {
        if (this.#batch) this.#closeAfterWrite = true;
        else this.#closeNow();
        return;
      }
    }
  }

  #record(exchange: Exchange, status: number): void {
    const { audit, who, mode } = this.#options;
    if (!audit) return;
    const denied = !exchange.decision.allow;
    const record: AuditRecord = {
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
      status,
      bytes_in: exchange.bytesIn,
      bytes_out: exchange.bytesOut,
      ms: Date.now() - exchange.started,
    };
    audit.write(record);
  }

  #toClient(bytes: Buffer): void {
    if (bytes.length === 0) return;
    if (this.#batch) return void this.#batch.client.push(bytes);
    this.#writeClient(bytes);
  }

  #writeClient(bytes: Buffer): void {
    if (bytes.length === 0 || this.#client.destroyed) return;
    if (
      !this.#client.write(bytes) && this.#client.writableLength >= BULK_MAX && !this.#clientBlocked
    ) {
      this.#clientBlocked = true;
      this.#upstreamFlow.stop();
      this.#client.once("drain", () => {
        this.#clientBlocked = false;
        this.#upstreamFlow.start();
        this.#corked(() => this.#pump());
      });
    }
  }

  #onUpstreamEnd(): void {
    this.#upstreamEnded = true;
    const r = this.#response;
    const exchange = this.#queue[0];
    if (r.kind === "body" && r.close && exchange && !exchange.local) {
      this.#response = { kind: "head" };
      this.#queue.shift();
      this.#record(exchange, exchange.status ?? 0);
    }
    if (!this.#rawHold) this.#endClient();
  }

  #endClient(): void {
    if (!this.#client.destroyed && !this.#client.writableEnded) this.#client.end();
  }

  // ------------------------------------------------------------ both

  #abort(reason?: Error): void {
    if (reason && !this.#result.error) this.#result.error = reason;
    this.#client.destroy();
    this.#upstream.destroy();
  }

  #onClose(s: Duplex): void {
    const other = s === this.#client ? this.#upstream : this.#client;
    if (!other.destroyed) {
      if (s === this.#upstream && !other.writableEnded) other.end();
      else if (s === this.#client) other.destroy();
    }
    if (++this.#closed === 2) {
      this.#daemon?.close();
      this.#resolve(this.#result);
    }
  }
}

/** A response head like `head` with `status` and a `Content-Length` of `length`. */
/**
 * What a restricted role's head may not carry whatever the route: `Upgrade` outside the routes
 * dockerd hijacks, and a content type dockerd would read as parameters (see request_body.ts).
 */
function headProblem(
  head: RequestHead,
  target: ApiTarget,
  version: string | undefined,
  lifted: readonly string[],
): string | undefined {
  if (head.upgrade && !hijacks(head.method, target.path)) {
    return "Upgrade is only for attach and exec start (dockerd hijacks no other route)";
  }
  return contentTypeProblem(head) ?? shieldProblem(head.method, target.path, version, lifted);
}

/**
 * The first `size` bytes of the body that starts `pending` (the whole body when shorter), or
 * `undefined` while they have not all arrived. Reads a copy: nothing is consumed.
 */
function bodyPrefix(pending: Buffer, framing: BodyFraming, size: number): Buffer | undefined {
  if (framing.kind === "length") {
    const want = Math.min(size, framing.length);
    return pending.length >= want ? pending.subarray(0, want) : undefined;
  }
  if (framing.kind !== "chunked") return undefined;
  const reader = new ChunkedReader();
  const data: Buffer[] = [];
  let got = 0;
  reader.feed(pending, (d) => {
    data.push(d);
    got += d.length;
  });
  if (got < size && !reader.done) return undefined;
  return Buffer.concat(data).subarray(0, size);
}

function responseHeadWith(head: ResponseHead, status: number, length: number): Buffer {
  const reasons: Record<number, string> = { 200: "OK", 201: "Created", 409: "Conflict" };
  let text = `HTTP/1.1 ${status} ${reasons[status] ?? "Status"}\r\n`;
  for (const h of head.headers) {
    const n = h.name.toLowerCase();
    if (n === "content-length" || n === "transfer-encoding") continue;
    text += `${h.name}: ${h.value}\r\n`;
  }
  return Buffer.from(`${text}Content-Length: ${length}\r\n\r\n`, "latin1");
}
