/**
 * Byte-exact bidirectional relay between two stream sockets, with backpressure and
 * half-close.
 *
 * Why hand-written and not `a.pipe(b)`: we need byte counts for the audit log, one place that
 * tears both sides down on the first error, and control over how chunks are handed from one
 * runtime's socket to the other (flow control per runtime).
 *
 * @module
 */

import { RUNTIME } from "./runtime.ts";
import { type FlowControl, type FlowControlFactory, pauseFlowControl } from "./flow_control.ts";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { setImmediate } from "node:timers";
import { Buffer } from "node:buffer";

// The relay's options name these types, so its importers (api_relay.ts) find them here too.
export type { FlowControl, FlowControlFactory } from "./flow_control.ts";

/** What a finished relay moved, and why it ended. */
export interface RelayResult {
  /** Bytes copied from the first socket (the client) to the second (the target). */
  bytesIn: number;
  /** Bytes copied from the second socket back to the first. */
  bytesOut: number;
  /** The first error seen on either side, if the relay did not end cleanly. */
  error?: Error;
}

/** Options for {@linkcode relay}. */
export interface RelayOptions {
  /**
   * How to stop and restart reading from a source socket under backpressure. Default:
   * {@linkcode runtimeFlowControl}, the runtime's (`pause()`/`resume()` on Node; on Deno,
   * where pausing a TLS socket is unsafe, see `runtime_deno.ts`).
   */
  flowControl?: FlowControlFactory;
  /**
   * When a chunk from the second socket (the target) starts with an `HTTP/1.1 101` head and
   * carries stream bytes after it, write the head on its own first (its own TLS record) and
   * the rest once it was handed over. Why: docker-py reads that head through a buffered
   * reader and loses stream bytes that arrive in the same read (docker/docker-py#425);
   * dockerd's own TLS sends them apart. Costs a byte compare per chunk. Default: false.
   */
  splitSwitchingHead?: boolean;
}

const SWITCHING = Buffer.from("HTTP/1.1 101 ");
/** Stands for the source's end among held chunks. */
const END_MARK = new Uint8Array(0);
const HEAD_END = Buffer.from("\r\n\r\n");

/** Where a `101 Switching Protocols` head at the start of `chunk` ends, if stream bytes follow. */
function switchingHeadEnd(chunk: Uint8Array): number {
  if (chunk.byteLength <= SWITCHING.length || chunk[9] !== 0x31 || chunk[0] !== 0x48) return -1;
  const b = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (b.compare(SWITCHING, 0, SWITCHING.length, 0, SWITCHING.length) !== 0) return -1;
  const end = b.indexOf(HEAD_END);
  return end === -1 || end + 4 >= b.length ? -1 : end + 4;
}

/**
 * The flow control of the runtime this process runs on (chosen once, in `runtime.ts`): the
 * one route by which it reaches both {@linkcode HeldInput} and {@linkcode relay}.
 *
 * @example
 * ```ts
 * import { PassThrough } from "node:stream";
 * import { runtimeFlowControl } from "./relay.ts";
 * const fc = runtimeFlowControl(new PassThrough());
 * fc.stop();
 * fc.start();
 * ```
 */
export function runtimeFlowControl(socket: Duplex): FlowControl {
  return (RUNTIME.relay.flowControl ?? pauseFlowControl)(socket);
}

/**
 * Bytes read from a socket before its relay started: a socket is consumed from the moment
 * its handshake completes, and what arrives while the decision and the target connection
 * are pending is held here (up to a limit) and replayed first.
 *
 * Why not just leave the socket unread: on Deno 2.9 a TLS socket whose read buffer fills
 * stops reading, and an EOF arriving in that state is lost.
 */
export class HeldInput {
  /** Chunks read so far, in order. */
  readonly chunks: Uint8Array[] = [];
  /** Whether the peer already ended its side. */
  ended = false;
  /** The flow control used on the socket (the relay reuses it). */
  readonly flowControl: FlowControl;
  #bytes = 0;
  #socket: Duplex;
  #onData: (chunk: Uint8Array) => void;
  #onEnd: () => void;

  /**
   * Start holding `socket`'s input; past `limitBytes` the socket is paused.
   *
   * @example
   * ```ts
   * import { PassThrough } from "node:stream";
   * import { HeldInput } from "./relay.ts";
   * const s = new PassThrough();
   * const held = new HeldInput(s, 1024);
   * s.end("early");
   * await new Promise((r) => setTimeout(r, 10));
   * if (new TextDecoder().decode(held.chunks[0]) !== "early" || !held.ended) throw new Error();
   * held.release();
   * ```
   */
  constructor(
    socket: Duplex,
    limitBytes: number,
    flowControl: FlowControl = runtimeFlowControl(socket),
  ) {
    this.#socket = socket;
    this.flowControl = flowControl;
    this.#onData = (chunk) => {
      this.chunks.push(chunk);
      this.#bytes += chunk.byteLength;
      if (this.#bytes > limitBytes) flowControl.stop();
    };
    this.#onEnd = () => (this.ended = true);
    socket.on("data", this.#onData);
    socket.once("end", this.#onEnd);
  }

  /** Stop holding (the relay takes over in the same tick). */
  release(): void {
    this.#socket.off("data", this.#onData);
    this.#socket.off("end", this.#onEnd);
  }
}

/**
 * Bulk chunks (this size or more) are gathered per event-loop turn and written with one
 * `writev`. Why: Node's TLS socket hands over one 16 KiB record per 'data' event, and one
 * write syscall per record (each waking the reader) cost ~25 % of the gate's CPU on uploads
 * (bench: Node upload 270–350 → 400–430 MB/s, gate CPU 6.1 → 4.6 s per 2 GiB). Smaller
 * chunks (interactive traffic) are written at once: no added latency.
 */
const COALESCE_MIN_CHUNK = 16 * 1024;
/** While gathering, reading goes on until this much waits (then ordinary backpressure). */
const COALESCE_MAX_BYTES = 256 * 1024;

/** A live relay: its result, and a way to end it early. */
export interface RelayHandle {
  /** Resolves when both sockets are closed. Never rejects. */
  done: Promise<RelayResult>;
  /** Destroy both sockets now (used by drain deadlines and lifetime limits). */
  abort(reason?: Error): void;
}

/**
 * Relay bytes between `a` and `b` until both directions have ended.
 *
 * - Backpressure: a side is paused while the other side's write buffer is full.
 * - Half-close: the end of one direction (FIN or TLS close_notify) is passed on with
 *   `end()` while the other direction keeps flowing. Both sockets must be created with
 *   `allowHalfOpen: true`.
 * - An error or reset on either side destroys both.
 *
 * @example Relay between two socket pairs
 * ```ts
 * import net from "node:net";
 * import { relay } from "./relay.ts";
 * const echo = net.createServer({ allowHalfOpen: true }, (s) => s.pipe(s));
 * await new Promise<void>((r) => echo.listen(0, "127.0.0.1", r));
 * const { port } = echo.address() as net.AddressInfo;
 * const front = net.createServer({ allowHalfOpen: true }, (client) => {
 *   const target = net.connect({ port, host: "127.0.0.1", allowHalfOpen: true });
 *   relay(client, target);
 * });
 * await new Promise<void>((r) => front.listen(0, "127.0.0.1", r));
 * const c = net.connect({ port: (front.address() as net.AddressInfo).port, host: "127.0.0.1", allowHalfOpen: true });
 * c.end("ping");
 * let got = "";
 * for await (const chunk of c) got += chunk;
 * echo.close(); front.close();
 * if (got !== "ping") throw new Error(got);
 * ```
 */
export function relay(
  a: Duplex,
  b: Duplex,
  options: RelayOptions = {},
  heldA?: HeldInput,
): RelayHandle {
  const result: RelayResult = { bytesIn: 0, bytesOut: 0 };
  const makeFlowControl = options.flowControl ?? runtimeFlowControl;
  let closed = 0;
  let resolveDone!: (r: RelayResult) => void;
  const done = new Promise<RelayResult>((r) => (resolveDone = r));

  const abort = (reason?: Error) => {
    if (reason && !result.error) result.error = reason;
    a.destroy();
    b.destroy();
  };

  const pump = (
    src: Duplex,
    dst: Duplex,
    count: (n: number) => void,
    held?: HeldInput,
    splitHead = false,
  ) => {
    held?.release();
    const flow = held?.flowControl ?? makeFlowControl(src);
    let stopped = false;
    const restart = () => {
      stopped = false;
      flow.start();
    };
    for (const chunk of held?.chunks ?? []) {
      count(chunk.byteLength);
      dst.write(chunk);
    }
    if (held?.ended) {
      dst.end();
      return;
    }
    // Gathering bulk chunks until the event loop's check phase: every read completed in this
    // turn of the loop goes out in one writev (setImmediate, not nextTick: Node runs the tick
    // queue after each 'data' callback, which would flush after every record).
    let corked = false;
    const uncork = () => {
      corked = false;
      if (!dst.destroyed) dst.uncork();
    };
    let holding: Uint8Array[] | undefined;
    src.on("data", (chunk: Uint8Array) => {
      count(chunk.byteLength);
      if (holding) return void holding.push(chunk);
      const headEnd = splitHead ? switchingHeadEnd(chunk) : -1;
      if (headEnd > 0) {
        holding = [chunk.subarray(headEnd)];
        flow.stop();
        dst.write(chunk.subarray(0, headEnd), () => {
          const rest = holding!;
          holding = undefined;
          for (const c of rest) c === END_MARK ? passEnd() : dst.write(c);
          if (!stopped) flow.start();
        });
        return;
      }
      if (!corked && chunk.byteLength >= COALESCE_MIN_CHUNK) {
        corked = true;
        dst.cork();
        setImmediate(uncork);
      }
      if (!dst.write(chunk) && !stopped && (!corked || dst.writableLength >= COALESCE_MAX_BYTES)) {
        stopped = true;
        flow.stop();
        dst.once("drain", restart);
      }
    });
    // FIN / close_notify from src: pass the half-close on, keep the other way open.
    const passEnd = () => {
      if (!dst.destroyed && !dst.writableEnded) dst.end();
    };
    src.once("end", () => {
      if (holding) holding.push(END_MARK);
      else passEnd();
    });
  };

  const onClose = () => {
    if (++closed === 2) resolveDone(result);
  };
  for (const s of [a, b]) {
    s.once("error", (err: Error) => abort(err));
    s.once("close", () => {
      // One side gone for good: nothing more can flow to it, and whatever it was going to
      // send has been sent. Finish the other side gracefully if it is still open.
      const other = s === a ? b : a;
      if (!other.destroyed) {
        if (s.readableEnded || !result.error) {
          if (!other.writableEnded) other.end();
          // If the other side never ends on its own, the caller's deadlines abort it.
        } else {
          other.destroy();
        }
      }
      onClose();
    });
  }
  // Forward each chunk as soon as it is written: with Nagle on (Node's default for accepted
  // sockets) a reply written in two pieces waits for the peer's delayed ACK, ~40 ms per request
  // (bench: `docker version` through the gate on Node 170 → ~95 ms). No-op on unix sockets.
  for (const s of [a, b]) (s as Partial<Pick<Socket, "setNoDelay">>).setNoDelay?.(true);
  pump(a, b, (n) => (result.bytesIn += n), heldA);
  pump(b, a, (n) => (result.bytesOut += n), undefined, options.splitSwitchingHead);
  // A held socket may have been stopped at its pre-authorization limit; others may have
  // been created paused. A 'data' listener alone does not restart either.
  if (heldA) heldA.flowControl.start();
  a.resume();
  b.resume();
  return { done, abort };
}
