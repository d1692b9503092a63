/**
 * The client side of the API relay: the client's bytes read request by request, in phases
 * (head, peek at an archive's first tar block, collect an inspected body, stream or discard
 * a body, wait for a possible upgrade, resolve owners), each request decided before a byte
 * of it is forwarded. The coordinator (`api_relay.ts`) owns the line of exchanges and the
 * sockets; this reader tells it through {@linkcode RequestHost}.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import {
  type BodyFraming,
  ChunkedReader,
  findHeadEnd,
  gateResponse,
  HttpError,
  parseRequestHead,
  type RequestHead,
  serializeRequestHead,
  valuesOf,
} from "./http.ts";
import type { ApiTarget } from "./api_path.ts";
import {
  type ApiDecision,
  decideBody,
  decideRequest,
  type Role,
  type RoutedRequest,
  routeRequest,
} from "./api_policy.ts";
import { asksUpgrade, hijacks, type Inspection } from "./routes.ts";
import { bodyBytesAttribution, pathAttribution, startTty } from "./attribution.ts";
import type { SessionStep } from "./session_step.ts";
import { liftedShields, shieldProblem } from "./shields.ts";
import { hostProblem } from "./host_check.ts";
import {
  contentTypeProblem,
  isArchiveUpload,
  mediaTypeOf,
  TAR_BLOCK,
  tarPrefixProblem,
} from "./request_body.ts";
import { denialMessage, type Exchange, newExchange, type Next } from "./relay_exchange.ts";
import type { IsolationInput, IsolationOutcome, IsolationStep } from "./isolation_step.ts";
import { redactsSecrets } from "./secret_redaction.ts";
import type { AuditDetail } from "../observe/audit.ts";

/** Requests in flight (pipelined) before the gate stops reading the client. */
export const MAX_IN_FLIGHT = 32;
/** Bytes held while waiting for an answer that may switch to a raw stream. */
export const MAX_HELD_BYTES = 256 * 1024;

/** What the reader is doing with the client's bytes (see {@linkcode RequestReader.phase}). */
export type PhaseKind =
  | "head"
  | "stream"
  | "collect"
  | "peek"
  | "discard"
  | "wait-upgrade"
  | "resolving"
  | "raw"
  | "closing";

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

interface Collector {
  head: RequestHead;
  inspection?: Inspection;
  target: ApiTarget;
  role: Role;
  exchange: Exchange;
  left: number;
  chunked?: ChunkedReader;
  data: Buffer[];
  size: number;
  next: Next;
}

/** What a request head means to the policy before its body (`RequestReader.#planOf`). */
interface HeadPlan {
  routed: RoutedRequest;
  mayUpgrade: boolean;
  redact: boolean;
  detail: Readonly<AuditDetail> | undefined;
  shield: string | undefined;
  /** What the head may not carry whatever the route (`headProblem`), if anything. */
  early: string | undefined;
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

/** What the reader asks of the coordinator. */
export interface RequestHost {
  /** Exchanges in line (forwarded or answered here) whose answer was not sent yet. */
  inFlight(): number;
  /** The last exchange in line (the one whose body is streaming). */
  last(): Exchange | undefined;
  /** Put `exchange` in line (its `local` answer, if any, goes out when it is first). */
  enqueue(exchange: Exchange): void;
  /** A forwarded body broke off: `last()` carries the gate's answer; end the target's side. */
  breakOff(): void;
  /** Bytes for the target. */
  toUpstream(bytes: Buffer): void;
  /** Run `fn` with its writes batched (for work resumed outside a socket event). */
  batch(fn: () => void): void;
  /** Read on as far as the phase allows (after an owner check). */
  pump(): void;
}

/** What the reader needs to decide. */
export interface RequestReaderOptions {
  /** The identity's role now (re-read for every request). */
  role: () => Role | undefined;
  /** `audit` forwards what `enforce` refuses. */
  mode: "enforce" | "audit";
  /** The identity's name, for refusal messages. */
  identity: string;
  /** The largest body read for inspection. */
  maxBody: number;
  /** Resolve symlinks in bind sources. */
  resolveSymlinks?: boolean;
  /** The daemon's version, for the shields. */
  daemonVersion?: () => string | undefined;
  /** The isolation step (isolated roles). */
  isolation: IsolationStep;
  /** The identity's limits: the rule a request is over (answered 429), or undefined. */
  limit?: (role: Role, exchange: Exchange) => string | undefined;
  /** The recording step (roles with `record`). Default: none (nothing recorded). */
  sessions?: SessionStep;
}

/**
 * The request side of one relayed connection.
 *
 * @example
 * ```ts
 * import { Buffer } from "node:buffer";
 * import { IsolationStep } from "./isolation_step.ts";
 * import { RequestReader } from "./request_reader.ts";
 * const sent: Buffer[] = [];
 * const r = new RequestReader({
 *   role: () => undefined, mode: "enforce", identity: "a", maxBody: 1024,
 *   isolation: new IsolationStep({ who: { identity: "a", owner: "a" }, whenIdle: async () => {} }),
 * }, {
 *   inFlight: () => 0, last: () => undefined, enqueue: () => {}, breakOff: () => {},
 *   toUpstream: (b) => void sent.push(b), batch: (fn) => fn(), pump: () => {},
 * });
 * r.feed(Buffer.from("GET /info HTTP/1.1\r\nHost: d\r\n\r\n"));
 * r.pump(); // no role: answered 403 here, nothing forwarded
 * if (sent.length !== 0 || r.phase !== "closing") throw new Error();
 * ```
 */
export class RequestReader {
  readonly #options: RequestReaderOptions;
  readonly #host: RequestHost;
  #phase: ClientPhase = { kind: "head" };
  #pending: Buffer = Buffer.alloc(0);
  /** The request whose head or body is being read (for the record of a refusal). */
  #reading: { method: string; path: string } | undefined;
  /**
   * The exchange read (its head) and not yet in line: when it never gets there (its body is
   * cut short or unreadable) its `maxInFlight` slot ends here, or it would never end.
   */
  #unplaced: Exchange | undefined;
  /** The last head parsed, by its text (see `#parseHead`). */
  #lastHead: { text: string; head: RequestHead } | undefined;
  /** The last head's plan, for its role and daemon version (see `#planOf`). */
  #lastPlan:
    | { head: RequestHead; role: Role; version: string | undefined; plan: HeadPlan }
    | undefined;

  /** Read for `host` under `options`. */
  constructor(options: RequestReaderOptions, host: RequestHost) {
    this.#options = options;
    this.#host = host;
  }

  /** The current phase. */
  get phase(): PhaseKind {
    return this.#phase.kind;
  }

  /** Client bytes received and not yet read. */
  get pendingBytes(): number {
    return this.#pending.length;
  }

  /** More client bytes. */
  feed(chunk: Buffer): void {
    this.#pending = this.#pending.length ? Buffer.concat([this.#pending, chunk]) : chunk;
  }

  /** Forget the held bytes (the client's side ends; what is incomplete is never forwarded). */
  dropPending(): void {
    this.#pending = Buffer.alloc(0);
  }

  /** The connection switched to a raw stream: every further byte goes straight through. */
  goRaw(): void {
    this.#phase = { kind: "raw" };
  }

  /** The connection ended: a request read only in part will never be in line. */
  close(): void {
    this.#dropUnplaced();
  }

  /** The client bytes held so far (after a switch: the raw stream's first bytes), taken. */
  takePending(): Buffer {
    const held = this.#pending;
    this.#pending = Buffer.alloc(0);
    return held;
  }

  /** An answer arrived that did not switch protocols: the held next request may be read. */
  answerArrived(): void {
    if (this.#phase.kind === "wait-upgrade") this.#phase = { kind: "head" };
  }

  /** Work through the held client bytes as far as the current phase allows. */
  pump(): void {
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
          this.#host.toUpstream(rest);
        } else if (phase.kind === "closing") {
          this.#pending = Buffer.alloc(0);
        } else break; // wait-upgrade, resolving: hold until the answer says what comes next
        if (this.#pending.length === before && this.#phase === phase) break;
      }
    } catch (err) {
      this.#protocolError(err);
    }
  }

  /** Read one request head; false when more bytes are needed (or reading must pause). */
  #readHead(): boolean {
    if (this.#host.inFlight() >= MAX_IN_FLIGHT) return false;
    this.#reading = undefined;
    const end = findHeadEnd(this.#pending);
    if (end === -1) return false;
    const headBytes = this.#pending.subarray(0, end);
    const head = this.#parseHead(headBytes);
    this.#reading = { method: head.method, path: head.target.split("?")[0] };
    this.#pending = this.#pending.subarray(end);
    const role = this.#options.role();
    if (!role) throw new HttpError(403, "the identity has no role in the policy any more");
    const version = this.#options.daemonVersion?.();
    const plan = this.#planOf(head, role, version);
    const { routed, mayUpgrade } = plan;
    const { target } = routed;
    this.#reading.path = target.path;
    const exchange = newExchange(head.method, target.path, role.name, mayUpgrade);
    exchange.bytesIn = end;
    this.#unplaced = exchange;
    if (plan.redact) exchange.redact = true;
    exchange.detail = plan.detail;
    exchange.shield = plan.shield;
    const next: Next = head.close ? "closing" : mayUpgrade ? "wait-upgrade" : "head";
    const forwardHead = () => headBytes;
    const limited = this.#options.limit?.(role, exchange);
    if (limited) {
      const refusal = {
        status: 429,
        message: denialMessage(this.#options.identity, exchange, limited),
      };
      const decision = { allow: false, rule: limited };
      this.#decided(exchange, decision, head.framing, next, forwardHead, refusal);
      return true;
    }
    const { early } = plan;
    if (early) {
      const rule = `${role.preset}: ${early}`;
      this.#decided(exchange, { allow: false, rule }, head.framing, next, forwardHead);
      return true;
    }
    const request = { head, headBytes, target, role, exchange, next };
    this.#readBody(request, routed.inspection, routed.decision);
    return true;
  }

  /**
   * What the policy makes of `head` before its body, for `role` on a daemon of `version`:
   * everything here is a function of these three alone, so the last plan is reused when the
   * same parsed head (`#parseHead` gives the same object for the same bytes) comes again
   * under the same role object (a reload makes new ones) and daemon version. A plan whose
   * making throws is not kept.
   */
  #planOf(head: RequestHead, role: Role, version: string | undefined): HeadPlan {
    const last = this.#lastPlan;
    if (last && last.head === head && last.role === role && last.version === version) {
      return last.plan;
    }
    const routed = routeRequest(role, head.method, head.target);
    const path = routed.target.path;
    const detail = pathAttribution(head.method, path);
    const plan: HeadPlan = {
      routed,
      // Only the routes dockerd hijacks may switch: a stream content type on any other answer
      // (logs since Docker 23) is an ordinary response.
      mayUpgrade: hijacks(head.method, path, role.preset === "full"),
      redact: redactsSecrets(role, head.method, path),
      // Shared by the exchanges of this plan: never changed (a record adds to a copy).
      detail: detail && Object.freeze(detail),
      shield: liftedShields(head.method, path, version, role.liftShields),
      early: role.preset === "full"
        ? undefined
        : headProblem(head, routed.target, version, role.liftShields),
    };
    this.#lastPlan = { head, role, version, plan };
    return plan;
  }

  /**
   * `bytes` parsed (`parseRequestHead`), or the previous head's parse when they are the same
   * bytes: a keep-alive client (a poller, `docker stats`) repeats its request byte for byte,
   * and the parse is a function of the bytes alone (one latin1 char per byte, so equal text is
   * equal bytes). Heads are never changed after the parse; one that fails is not kept.
   */
  #parseHead(bytes: Buffer): RequestHead {
    const text = bytes.toString("latin1");
    if (this.#lastHead?.text === text) return this.#lastHead.head;
    const head = parseRequestHead(bytes);
    this.#lastHead = { text, head };
    return head;
  }

  /** After the head: collect the body to inspect, peek at an archive, or decide now. */
  #readBody(
    r: {
      head: RequestHead;
      headBytes: Buffer;
      target: ApiTarget;
      role: Role;
      exchange: Exchange;
      next: Next;
    },
    inspection: Inspection | undefined,
    routed: ApiDecision | undefined,
  ): void {
    const { head, target, role, exchange, next } = r;
    // A recorded exec start's body says how its stream is framed: read it too.
    const recordedStart = exchange.detail?.exec_id !== undefined &&
      this.#options.sessions?.takes(role, head.method, target.path) === true;
    const inspect = inspection !== undefined || recordedStart;
    const hasBody = head.framing.kind === "chunked" ||
      (head.framing.kind === "length" && head.framing.length > 0);
    if (inspect && hasBody) {
      const length = head.framing.kind === "length" ? head.framing.length : 0;
      const max = this.#options.maxBody;
      if (length > max) throw new HttpError(413, `body over ${max} bytes cannot be inspected`);
      const chunked = head.framing.kind === "chunked" ? new ChunkedReader() : undefined;
      const collect = {
        head,
        inspection,
        target,
        role,
        exchange,
        left: length,
        chunked,
        data: [],
        size: 0,
      };
      this.#phase = { kind: "collect", collect: { ...collect, next } };
      return;
    }
    const decision = routed ??
      decideRequest(role, { method: head.method, target, hasBody }, {
        resolveSymlinks: this.#options.resolveSymlinks,
      });
    // The head is forwarded as sent: every byte of it was checked above, and a head that two
    // parsers could read differently was refused (an inspected body is re-framed, see #collect).
    const then = () =>
      this.#afterHosts(exchange, decision, head.framing, next, () => r.headBytes, () => {
        if (decision.allow && this.#options.isolation.takes(role, head.method, target)) {
          const input = { exchange, decision, head, target, role, body: undefined };
          return this.#isolate(input, head.framing, next);
        }
        this.#decided(exchange, decision, head.framing, next, () => r.headBytes);
      });
    if (
      decision.allow && hasBody && role.preset !== "full" &&
      isArchiveUpload(head.method, target.path)
    ) {
      const peek = { exchange, framing: head.framing, next, headBytes: r.headBytes, then };
      this.#phase = { kind: "peek", peek };
      return;
    }
    then();
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
    const decision = { allow: false, rule: `${role}: ${problem}` };
    this.#decided(p.exchange, decision, p.framing, p.next, () => p.headBytes);
    return true;
  }

  /** Act on a decision: forward (and stream the body), or answer here (and drop the body). */
  #decided(
    exchange: Exchange,
    decision: ApiDecision,
    framing: BodyFraming,
    next: Next,
    bytes: () => Buffer,
    refusal?: { status: number; message: string; always?: boolean },
  ): void {
    exchange.decision = decision;
    // The client's last request: nothing after it is read, and its answer ends the connection.
    if (next === "closing") exchange.last = true;
    const pass = !refusal?.always && (decision.allow || this.#options.mode === "audit");
    if (pass && !exchange.sessionOpened && this.#recorded(exchange)) {
      return this.#openSession(
        exchange,
        decision,
        () => this.#decided(exchange, decision, framing, next, bytes),
        (status, rule) =>
          this.#decided(
            exchange,
            { allow: false, rule },
            framing,
            next,
            bytes,
            {
              status,
              message: denialMessage(this.#options.identity, exchange, rule),
              always: true,
            },
          ),
      );
    }
    const left = framing.kind === "length" ? framing.length : 0;
    const chunked = framing.kind === "chunked" ? new ChunkedReader() : undefined;
    if (pass) {
      this.#enqueue(exchange);
      this.#host.toUpstream(bytes());
      this.#phase = left > 0 || chunked
        ? { kind: "stream", framing, left, chunked, next }
        : { kind: next };
      return;
    }
    const message = refusal?.message ??
      denialMessage(this.#options.identity, exchange, decision.rule);
    this.#refuse(exchange, refusal?.status ?? 403, message, next === "closing");
    const after = next === "wait-upgrade" ? "head" : next;
    this.#phase = left > 0 || chunked ? { kind: "discard", left, chunked, next: after } : {
      kind: after,
    };
  }

  /** Whether `exchange` starts a session its role records. */
  #recorded(exchange: Exchange): boolean {
    const role = this.#options.role();
    return !!role && this.#options.sessions?.takes(role, exchange.method, exchange.path) === true;
  }

  /**
   * A recorded session: its recording is opened (the client's next bytes wait) before the
   * request goes on (`go`), or it is refused (`refuse`) when the role requires the recording.
   */
  #openSession(
    exchange: Exchange,
    decision: ApiDecision,
    go: () => void,
    refuse: (status: number, rule: string) => void,
  ): void {
    exchange.sessionOpened = true;
    const role = this.#options.role()!;
    this.#phase = { kind: "resolving" };
    void this.#options.sessions!.open(role, exchange.method, exchange.path, exchange.streamTty)
      .then((o) =>
        this.#host.batch(() => {
          if (o.kind === "refuse") refuse(o.status, o.rule);
          else {
            exchange.recording = o.recording;
            exchange.recordRequired = role.record === "required";
            const note = o.recording
              ? { recording: o.recording.path }
              : { recording_error: o.problem };
            exchange.detail = { ...exchange.detail, ...note };
            exchange.decision = decision;
            go();
          }
          this.#host.pump();
        })
      );
  }

  /** Forward (stream) or drop (discard) body bytes of the current request. */
  #passBody(phase: Extract<ClientPhase, { kind: "stream" | "discard" }>): void {
    let used: number;
    if (phase.chunked) used = phase.chunked.feed(this.#pending);
    else used = Math.min(phase.left, this.#pending.length);
    const bytes = this.#pending.subarray(0, used);
    this.#pending = this.#pending.subarray(used);
    if (phase.kind === "stream") {
      const ex = this.#host.last();
      if (ex) ex.bytesIn += used;
      this.#host.toUpstream(bytes);
    }
    if (!phase.chunked) phase.left -= used;
    if (phase.chunked ? phase.chunked.done : phase.left === 0) {
      this.#phase = { kind: phase.next };
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
      const max = this.#options.maxBody;
      if (c.size > max) throw new HttpError(413, `body over ${max} bytes cannot be inspected`);
      const complete = c.chunked ? c.chunked.done : c.left === 0;
      if (!complete) return false;
    }
    const body = Buffer.concat(c.data);
    const decision = this.#inspect(c, body);
    // What an exec or container create asked for goes into its record, allowed or not.
    const asked = bodyBytesAttribution(c.inspection, body);
    if (asked) c.exchange.detail = { ...c.exchange.detail, ...asked };
    if (c.exchange.detail?.exec_id !== undefined) c.exchange.streamTty = startTty(body);
    const bytes = () => Buffer.concat([serializeRequestHead(c.head, body.length), body]);
    this.#afterHosts(c.exchange, decision, { kind: "none" }, c.next, bytes, () => {
      if (decision.allow && this.#options.isolation.takes(c.role, c.head.method, c.target)) {
        const input = {
          exchange: c.exchange,
          decision,
          head: c.head,
          target: c.target,
          role: c.role,
        };
        return this.#isolate({ ...input, body }, { kind: "none" }, c.next);
      }
      this.#decided(c.exchange, decision, { kind: "none" }, c.next, bytes);
    });
    return true;
  }

  /**
   * An allowed request that makes dockerd contact DNS names (`decision.hosts`) goes on (`go`)
   * only once each resolves to public addresses (`host_check.ts`; the client's further bytes
   * wait meanwhile); else it is refused, naming the host and the address.
   */
  #afterHosts(
    exchange: Exchange,
    decision: ApiDecision,
    framing: BodyFraming,
    next: Next,
    bytes: () => Buffer,
    go: () => void,
  ): void {
    if (!decision.allow || !decision.hosts?.length) return go();
    const role = this.#options.role()?.preset ?? "-";
    this.#phase = { kind: "resolving" };
    hostProblem(decision.hosts).then((problem) =>
      this.#host.batch(() => {
        if (problem) {
          this.#decided(
            exchange,
            { allow: false, rule: `${role}: ${problem}` },
            framing,
            next,
            bytes,
          );
        } else go();
        this.#host.pump();
      })
    );
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
      const sent = valuesOf(c.head, "content-type")[0] ?? "";
      return { allow: false, rule: `a body to inspect must be application/json, not "${sent}"` };
    }
    return decideBody(c.role, c.head.method, c.target, body, {
      resolveSymlinks: this.#options.resolveSymlinks,
    });
  }

  /**
   * An isolated role's allowed request: the isolation step plans it and checks the owners of
   * what it names (asynchronously: the client's further bytes wait meanwhile, answers to
   * earlier requests still flow), then it is forwarded as edited, or refused (404 or 403).
   */
  #isolate(input: IsolationInput, framing: BodyFraming, next: Next): void {
    const act = (o: IsolationOutcome) => {
      const refusal = o.kind === "refuse" ? o.refusal : undefined;
      const decision = o.decision ?? input.decision;
      this.#decided(input.exchange, decision, framing, next, o.bytes, refusal);
    };
    const outcome = this.#options.isolation.run(input);
    if (!(outcome instanceof Promise)) return act(outcome);
    this.#phase = { kind: "resolving" };
    outcome.then((o) =>
      this.#host.batch(() => {
        act(o);
        this.#host.pump();
      })
    );
  }

  /** Queue the gate's own answer in line; `close` ends the connection after it. */
  #refuse(exchange: Exchange, status: number, message: string, close: boolean): void {
    let response = gateResponse(status, message, close);
    // An answer to HEAD has no body (its Content-Length stays, as the daemon's would).
    if (exchange.method === "HEAD") response = response.subarray(0, findHeadEnd(response));
    exchange.local = { response, status, close };
    this.#enqueue(exchange);
  }

  /** `exchange` joins the line: the relay ends its slot from now on. */
  #enqueue(exchange: Exchange): void {
    if (this.#unplaced === exchange) this.#unplaced = undefined;
    this.#host.enqueue(exchange);
  }

  /** The request being read will not join the line: its slot ends. */
  #dropUnplaced(): void {
    this.#unplaced?.endSlot?.();
    this.#unplaced = undefined;
  }

  /** A request that cannot be read unambiguously: answer it (in line) and stop reading. */
  #protocolError(err: unknown): void {
    const e = err instanceof HttpError ? err : new HttpError(400, (err as Error).message);
    this.#dropUnplaced();
    const method = this.#reading?.method ?? "-";
    const path = this.#reading?.path ?? "-";
    const exchange = newExchange(method, path, this.#options.role()?.name ?? "-", false);
    exchange.decision = { allow: false, rule: e.message };
    exchange.bytesIn = this.#pending.length;
    const streamed = this.#phase.kind === "stream" ? this.#host.last() : undefined;
    this.#phase = { kind: "closing" };
    this.#pending = Buffer.alloc(0);
    const message = `dockgate: ${e.message}`;
    const status = e.status === 403 ? 403 : e.status;
    if (streamed && !streamed.local) {
      // The body being forwarded broke off: the daemon waits for the rest and will never
      // answer it, so the gate's 400 stands in that answer's place and ends the connection.
      streamed.decision = { allow: false, rule: e.message };
      streamed.local = { response: gateResponse(status, message, true), status, close: true };
      return this.#host.breakOff();
    }
    this.#refuse(exchange, status, message, true);
  }
}

/**
 * What a restricted role's head may not carry whatever the route: `Upgrade` (any, as dockerd
 * reads it: `routes.ts` `asksUpgrade`) outside the routes dockerd hijacks, and a content type
 * dockerd would read as parameters (see request_body.ts).
 */
function headProblem(
  head: RequestHead,
  target: ApiTarget,
  version: string | undefined,
  lifted: readonly string[],
): string | undefined {
  if (asksUpgrade(head) && !hijacks(head.method, target.path)) {
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
