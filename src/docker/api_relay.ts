/**
 * The HTTP-aware relay for restricted roles: each request is read (head always, body when the
 * policy must inspect it), decided, and only then forwarded; responses are read far enough to
 * keep requests and responses in step and to see the switch to a raw stream.
 *
 * This file is the coordinator: it owns the two sockets and the line of exchanges (requests
 * in flight, in order), and hands bytes to the parts that read them:
 *
 * - `request_reader.ts`: client bytes -> request head (strict, `http.ts`) -> target path
 *   (`api_path.ts`) -> body: streamed, or collected (capped) and read as strict JSON ->
 *   decision (`api_policy.ts`) -> forwarded, or answered here (403 keeps the connection,
 *   400/413 close it);
 * - `isolation_step.ts`: for isolated roles, between the decision and the forward: plan,
 *   owner checks, the edited request or the refusal;
 * - `answer_reader.ts`: the target's answers, in order, filtered where a rule says so; the
 *   gate's own answers are slotted in at the place of the request they refuse;
 * - `relay_writer.ts`: what one event produces goes out in one write per socket.
 *
 * After `101 Switching Protocols` (or attach's raw-stream answer) the connection is a raw
 * relay for the rest of its life; that head is written as a TLS record of its own first
 * (docker-py reads it through a buffered reader and loses stream bytes that arrive in the
 * same read, docker/docker-py#425).
 *
 * @module
 */

import { Buffer } from "node:buffer";
import type { Duplex } from "node:stream";
import type { Role } from "./api_policy.ts";
import type { ContainerRecord } from "./isolation.ts";
import type { AuditSink } from "../observe/audit.ts";
import type { HeldInput, RelayHandle, RelayResult } from "../net/relay.ts";
import { type FlowControl, runtimeFlowControl } from "../net/relay.ts";
import { flowSwitch } from "../net/flow_control.ts";
import { auditRecordOf, type Exchange } from "./relay_exchange.ts";
import { MAX_HELD_BYTES, MAX_IN_FLIGHT, RequestReader } from "./request_reader.ts";
import { AnswerReader } from "./answer_reader.ts";
import type { RequestLimits } from "./request_limits.ts";
import { IsolationStep } from "./isolation_step.ts";
import { RelayWriter } from "./relay_writer.ts";
import { SessionStep } from "./session_step.ts";
import type { SessionRecorder } from "./session_record.ts";

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
  /** The gate's record of the containers it created (isolation); without it none is owned. */
  containers?: ContainerRecord;
  /** The gate-wide per-identity limits (roles' `rate`, `maxInFlight`). Default: none. */
  limits?: RequestLimits;
  /** Where the sessions of roles with `record` are written. Default: none (not recorded). */
  recorder?: SessionRecorder;
}

/** The default cap of an inspected body. */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

/**
 * Relay `client` (TLS, already authorized) and `upstream` (the daemon) through the policy.
 * Returns the same handle as the raw relay.
 *
 * @example
 * ```ts
 * import { PassThrough } from "node:stream";
 * import { apiRelay } from "./api_relay.ts";
 * const who = { identity: "a", serial: "1", peer: "p", owner: "a" };
 * const client = new PassThrough(), upstream = new PassThrough();
 * const relay = apiRelay(client, upstream, { role: () => undefined, mode: "enforce", who });
 * relay.abort();
 * await relay.done;
 * ```
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
  readonly #clientFlow: FlowControl;
  readonly #upstreamFlow: FlowControl;
  readonly #result: RelayResult = { bytesIn: 0, bytesOut: 0 };
  /** The exchanges in flight, in request order; the first is the one being answered. */
  readonly #queue: Exchange[] = [];
  readonly #isolation: IsolationStep;
  readonly #sessions: SessionStep;
  readonly #requests: RequestReader;
  readonly #answers: AnswerReader;
  readonly #writer: RelayWriter;
  #clientEnded = false;
  #upstreamEnded = false;
  #closeAfterWrite = false;
  /**
   * The exchange that switched to a raw stream (attach, exec start): recorded when the
   * connection ends, with the stream's bytes each way.
   */
  #session: Exchange | undefined;
  /** Stream bytes that wait while the switching head is handed to TLS. */
  #rawHold: Buffer[] | undefined;
  /** Stops or restarts reading the client (`#updateClientFlow`), the target (`#updateUpstreamFlow`). */
  readonly #stopClient: (stop: boolean) => void;
  readonly #stopUpstream: (stop: boolean) => void;
  #closed = 0;
  #resolve!: (r: RelayResult) => void;
  /** The client's bytes can no longer be read: the target's side ends like at a half-close. */
  #endUpstream = false;
  /** Owner checks waiting for the line to empty (`IsolationStepOptions.whenIdle`). */
  #idleWaiters: { resolve: () => void; reject: (err: Error) => void }[] = [];

  constructor(client: Duplex, upstream: Duplex, options: ApiRelayOptions, held?: HeldInput) {
    this.#client = client;
    this.#upstream = upstream;
    this.#options = options;
    held?.release();
    this.#clientFlow = held?.flowControl ?? runtimeFlowControl(client);
    this.#upstreamFlow = runtimeFlowControl(upstream);
    this.#stopClient = flowSwitch(this.#clientFlow);
    this.#stopUpstream = flowSwitch(this.#upstreamFlow);
    this.#writer = this.#newWriter();
    this.#isolation = new IsolationStep({
      who: options.who,
      connectDaemon: options.connectDaemon,
      whenIdle: () => this.#whenIdle(),
      containers: options.containers,
      resolveSymlinks: options.resolveSymlinks,
    });
    this.#sessions = new SessionStep({
      recorder: options.recorder,
      connectDaemon: options.connectDaemon,
      who: options.who,
    });
    this.#requests = this.#newRequestReader();
    this.#answers = new AnswerReader({
      current: () => this.#queue[0],
      // A target that ended by itself still has its held answers read (one may have waited).
      ending: () => this.#closeAfterWrite || (this.#upstream.destroyed && !this.#upstreamEnded),
      toClient: (bytes) => this.#writer.toClient(bytes),
      answered: (exchange) => this.#answered(exchange),
      switchToRaw: (exchange, headBytes, rest) => this.#goRaw(exchange, headBytes, rest),
      later: (fn) => this.#later(fn),
    });
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

  #newWriter(): RelayWriter {
    return new RelayWriter(this.#client, this.#upstream, {
      clientBlocked: () => this.#updateUpstreamFlow(),
      upstreamBlocked: () => this.#updateClientFlow(),
      drained: () => this.#writer.batch(() => this.#pump()),
      batchWritten: () => this.#closeAfterWrite ? this.#closeNow() : this.#finishClientEnd(),
      bulkWritten: () => this.#finishClientEnd(),
    });
  }

  #newRequestReader(): RequestReader {
    const o = this.#options;
    return new RequestReader({
      role: o.role,
      mode: o.mode,
      identity: o.who.identity,
      maxBody: o.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES,
      resolveSymlinks: o.resolveSymlinks,
      daemonVersion: o.daemonVersion,
      isolation: this.#isolation,
      limit: o.limits && ((role, exchange) => o.limits!.admit(o.who, role, exchange)),
      sessions: this.#sessions,
    }, {
      inFlight: () => this.#queue.length,
      last: () => this.#queue.at(-1),
      enqueue: (exchange) => this.#enqueue(exchange),
      breakOff: () => this.#breakOff(),
      toUpstream: (bytes) => this.#writer.toUpstream(bytes),
      batch: (fn) => this.#writer.batch(fn),
      pump: () => this.#pump(),
    });
  }

  // ------------------------------------------------------------ the walk of one exchange

  /** 1. Client bytes: read by the request reader (raw after a switch), writes batched. */
  #onClientData(chunk: Buffer): void {
    this.#result.bytesIn += chunk.length;
    const phase = this.#requests.phase;
    if (phase === "raw") return this.#sessionIn(chunk);
    if (phase === "closing") return;
    this.#requests.feed(chunk);
    this.#writer.batch(() => this.#pump());
  }

  /** 2. Read, decide (isolate), forward or answer as far as the bytes go; then flow control. */
  #pump(): void {
    this.#requests.pump();
    this.#finishClientEnd();
    this.#updateClientFlow();
  }

  /** 3. A decided request joins the line; the gate's own answer goes out once it is first. */
  #enqueue(exchange: Exchange): void {
    // An owner check that ended after the connection did: nothing will answer it.
    if (this.#closed === 2) {
      exchange.endSlot?.();
      exchange.recording?.discard(); // opened for a session that will not start
      return void exchange.release?.();
    }
    this.#queue.push(exchange);
    if (exchange.local) this.#flushLocal();
  }

  /** 4. Target bytes: read by the answer reader, in request order (raw after a switch). */
  #onUpstreamData(chunk: Buffer): void {
    this.#result.bytesOut += chunk.length;
    if (this.#session) {
      this.#session.bytesOut += chunk.length;
      this.#session.recording?.output(chunk);
      if (!this.#recordedWhole()) return;
    }
    if (this.#rawHold) return void this.#rawHold.push(chunk);
    if (this.#answers.raw) return this.#writer.toClient(chunk);
    this.#answers.feed(chunk);
    this.#later(() => {});
  }

  /**
   * Read the target only while the client reads its answers and no answer behind one that
   * waits for its rule (a create being recorded) piles up past the bound: pipelined logs or
   * an image download would otherwise fill memory while the record is written.
   */
  #updateUpstreamFlow(): void {
    const stop = this.#writer.clientBlocked ||
      (this.#answers.waiting && this.#answers.bufferedBytes > MAX_HELD_BYTES);
    this.#stopUpstream(stop);
  }

  /**
   * 4b. Run `fn` (an answer whose rule waited, e.g. a create being recorded) and read on the
   * answers held behind it, writes batched; if the target ended meanwhile, the client's side
   * ends once they are written.
   */
  #later(fn: () => void): void {
    if (this.#closed === 2) return;
    this.#writer.batch(() => {
      try {
        fn();
        this.#answers.pump();
      } catch (err) {
        this.#abort(new Error(`target: ${(err as Error).message}`));
      }
    });
    this.#updateUpstreamFlow();
    if (this.#upstreamEnded && !this.#answers.waiting && !this.#rawHold) this.#endClient();
  }

  /**
   * 5. An exchange is complete: record it, send the gate's answers now first in line. The
   * client's last request (`Exchange.last`) ends the connection once its answer is written,
   * whether or not the daemon closes its side.
   */
  #answered(exchange: Exchange): void {
    // Out to the client now, before the record and the rest of this bookkeeping (the client
    // waits for it); answers that follow in the same bytes from the target still share the
    // write (one TLS record for what one chunk brought).
    if (this.#answers.bufferedBytes === 0) this.#writer.flushClientBatch();
    this.#finish(exchange, exchange.status ?? 0);
    if (exchange.last && !this.#answers.raw) {
      if (this.#writer.batching) this.#closeAfterWrite = true;
      else this.#closeNow();
      return;
    }
    if (!this.#answers.raw) this.#requests.answerArrived();
    this.#flushLocal();
    if (!this.#answers.raw) this.#pump();
  }

  /** The exchange first in line leaves it: its holds end, it is recorded. */
  #finish(exchange: Exchange, status: number): void {
    this.#queue.shift();
    exchange.release?.();
    exchange.status = status;
    // A raw stream holds its slot and is recorded when it ends, with its bytes (see #onClose).
    if (exchange !== this.#session) {
      exchange.endSlot?.();
      exchange.recording?.discard(); // no stream: nothing ran to record
      this.#record(exchange, status);
    }
    if (this.#queue.length === 0) { for (const w of this.#idleWaiters.splice(0)) w.resolve(); }
  }

  /** Resolves once the line is empty: the daemon acts on the next request forwarded at once. */
  #whenIdle(): Promise<void> {
    if (this.#queue.length === 0) return Promise.resolve();
    return new Promise((resolve, reject) => this.#idleWaiters.push({ resolve, reject }));
  }

  #flushLocal(): void {
    while (this.#queue[0]?.local) {
      const exchange = this.#queue[0];
      const local = exchange.local!;
      exchange.bytesOut = local.response.length;
      this.#writer.toClient(local.response);
      this.#finish(exchange, local.status);
      if (local.close) {
        if (this.#writer.batching) this.#closeAfterWrite = true;
        else this.#closeNow();
        return;
      }
    }
  }

  /**
   * 6. The answer switched protocols: write its head as a TLS record of its own (the stream's
   * bytes wait until the head was handed to TLS), then relay raw both ways (the held client
   * bytes first) for the rest of the connection.
   */
  #goRaw(exchange: Exchange, headBytes: Buffer, rest: Buffer): void {
    this.#session = exchange;
    exchange.bytesOut += rest.length;
    if (rest.length) exchange.recording?.output(rest);
    if (!this.#recordedWhole()) return;
    this.#rawHold = rest.length ? [rest] : [];
    // Answers before this one go first, then the head alone.
    this.#writer.flushClientBatch();
    this.#client.write(Buffer.from(headBytes), () => {
      const held = this.#rawHold ?? [];
      this.#rawHold = undefined;
      for (const b of held) this.#writer.toClient(b);
      if (this.#upstreamEnded) this.#endClient();
    });
    this.#answered(exchange);
    if (this.#queue.length > 0) {
      return this.#abort(new Error("target switched protocols with requests still in line"));
    }
    this.#requests.goRaw();
    const held = this.#requests.takePending();
    if (held.length) this.#sessionIn(held);
    this.#pump();
  }

  /** The client's bytes of the raw stream: counted for the session's record, relayed. */
  #sessionIn(bytes: Buffer): void {
    if (this.#session) {
      this.#session.bytesIn += bytes.length;
      this.#session.recording?.input(bytes);
      if (!this.#recordedWhole()) return;
    }
    this.#writer.toUpstream(bytes);
  }

  /**
   * False (and the connection ended) when a session whose role requires its recording can no
   * longer be recorded whole (its cap, the total cap, a failed write): what did not fit is
   * not relayed either.
   */
  #recordedWhole(): boolean {
    const s = this.#session;
    if (!s?.recordRequired || !s.recording?.truncated) return true;
    this.#abort(new Error("record: required: the session's recording is full or failed"));
    return false;
  }

  #record(exchange: Exchange, status: number): void {
    const { audit, who, mode } = this.#options;
    audit?.write(auditRecordOf(exchange, status, who, mode));
  }

  // ------------------------------------------------------------ flow control and ends

  /**
   * Read the client only while the target keeps up, the line of requests is short, and the
   * client reads its answers (a flood of refused requests must not queue answers unbounded).
   */
  #updateClientFlow(): void {
    const stop = this.#writer.upstreamBlocked || this.#queue.length >= MAX_IN_FLIGHT ||
      this.#requests.pendingBytes > MAX_HELD_BYTES || this.#writer.clientBlocked;
    this.#stopClient(stop);
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
    if (this.#writer.busy) return; // after what is still to be written
    const k = this.#requests.phase;
    const pending = this.#requests.pendingBytes;
    if (k === "wait-upgrade" || k === "resolving") return; // decided once the answer is in
    if (k === "head" && pending > 0 && this.#queue.length >= MAX_IN_FLIGHT) return;
    if (k === "raw" && pending > 0) return;
    this.#requests.dropPending();
    this.#upstream.end();
  }

  /** A forwarded body broke off: its gate answer stands in line; the target's side ends. */
  #breakOff(): void {
    // Ended once what is forwarded already is written (earlier requests may still be in a batch).
    this.#endUpstream = true;
    this.#finishClientEnd();
    this.#flushLocal();
  }

  /** After the gate's closing answer: end the client, drop the target. */
  #closeNow(): void {
    this.#closeAfterWrite = false;
    this.#client.end();
    this.#upstream.destroy();
  }

  #onUpstreamEnd(): void {
    this.#upstreamEnded = true;
    const exchange = this.#queue[0];
    // Checked first: an answer delimited by the close is complete now.
    if (exchange && !exchange.local && this.#answers.endOfStream()) {
      this.#finish(exchange, exchange.status ?? 0);
    }
    // An answer waiting for its rule (a create being recorded) ends the client when it is sent.
    if (!this.#rawHold && !this.#answers.waiting) this.#endClient();
  }

  #endClient(): void {
    if (!this.#client.destroyed && !this.#client.writableEnded) this.#client.end();
  }

  #abort(reason?: Error): void {
    if (reason && !this.#result.error) this.#result.error = reason;
    this.#client.destroy();
    this.#upstream.destroy();
  }

  #onClose(s: Duplex): void {
    const other = s === this.#client ? this.#upstream : this.#client;
    if (!other.destroyed) {
      // An answer waiting for its rule ends the client once it is sent (`#later`).
      if (s === this.#upstream && !other.writableEnded) {
        if (!this.#answers.waiting) other.end();
      } else if (s === this.#client) other.destroy();
    }
    if (++this.#closed === 2) {
      // What is still in line gets no answer: its holds end, waiting checks are refused.
      for (const exchange of this.#queue.splice(0)) {
        exchange.release?.();
        exchange.endSlot?.();
        if (exchange !== this.#session) exchange.recording?.discard();
      }
      // An Error captures a stack (~10 µs): made only when someone waits for it.
      const waiters = this.#idleWaiters.splice(0);
      const closed = waiters.length > 0 ? new Error("the connection ended") : undefined;
      for (const w of waiters) w.reject(closed!);
      this.#isolation.close();
      this.#requests.close();
      this.#sessions.close();
      this.#session?.endSlot?.();
      this.#session?.recording?.close();
      if (this.#session) this.#record(this.#session, this.#session.status ?? 0);
      this.#resolve(this.#result);
    }
  }
}
