/**
 * The API relay's writes, batched: what one incoming chunk produces goes out in one write per
 * socket (one TLS record), bulk upload pieces are gathered per event-loop turn, and a socket
 * that does not keep up is reported so the coordinator (`api_relay.ts`) stops the other side.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import type { Duplex } from "node:stream";
import { setImmediate } from "node:timers";

/** Pieces this big are bulk (an upload): gathered per event-loop turn before writing. */
const BULK_PIECE = 16 * 1024;
/** Gathered bulk is written at once from this size on; also the write buffer that blocks. */
export const BULK_MAX = 256 * 1024;

/** What the writer tells the coordinator. */
export interface WriterEvents {
  /** The client's write buffer filled up (`true`) or drained (`false`). */
  clientBlocked(blocked: boolean): void;
  /** The target's write buffer filled up or drained: read the client again or not. */
  upstreamBlocked(): void;
  /** A socket drained: go on with what waits. */
  drained(): void;
  /** A batch was written (both sockets). */
  batchWritten(): void;
  /** Gathered bulk was written to the target. */
  bulkWritten(): void;
}

/** One buffer of `pieces` (no copy for one). */
export function joined(pieces: Buffer[]): Buffer {
  return pieces.length === 1 ? pieces[0] : pieces.length === 0 ? EMPTY : Buffer.concat(pieces);
}
const EMPTY = Buffer.alloc(0);

/**
 * Batched, back-pressured writes to the client and the target of one relayed connection.
 *
 * @example
 * ```ts
 * import { PassThrough } from "node:stream";
 * import { Buffer } from "node:buffer";
 * import { RelayWriter } from "./relay_writer.ts";
 * const client = new PassThrough(), upstream = new PassThrough();
 * const noop = () => {};
 * const w = new RelayWriter(client, upstream, {
 *   clientBlocked: noop, upstreamBlocked: noop, drained: noop, batchWritten: noop, bulkWritten: noop,
 * });
 * w.batch(() => { w.toClient(Buffer.from("a")); w.toClient(Buffer.from("b")); });
 * if (client.read().toString() !== "ab") throw new Error();
 * ```
 */
export class RelayWriter {
  readonly #client: Duplex;
  readonly #upstream: Duplex;
  readonly #events: WriterEvents;
  /** What the current event's processing writes, sent in one piece per socket at its end. */
  #batch: { client: Buffer[]; upstream: Buffer[] } | undefined;
  /** Bulk body pieces waiting for the check phase. */
  #bulk: Buffer[] = [];
  #bulkBytes = 0;
  #bulkScheduled = false;
  /** The target's write buffer is full: the client is not read. */
  upstreamBlocked = false;
  /** The client's write buffer is full: the target is not read. */
  clientBlocked = false;

  /** Write to `client` and `upstream`, telling `events`. */
  constructor(client: Duplex, upstream: Duplex, events: WriterEvents) {
    this.#client = client;
    this.#upstream = upstream;
    this.#events = events;
  }

  /** Whether writes are still gathered (a batch open, or bulk waiting). */
  get busy(): boolean {
    return this.#batch !== undefined || this.#bulk.length > 0;
  }

  /** Whether a batch is open. */
  get batching(): boolean {
    return this.#batch !== undefined;
  }

  /**
   * Run `fn` gathering what it writes: what one incoming chunk produces (a head and its body,
   * several answers) goes out in one write per socket, one TLS record, not one per piece.
   * (Why not cork(): on Node a corked TLS socket's writev cost ~4x the CPU of one write.)
   */
  batch(fn: () => void): void {
    if (this.#batch) return fn();
    this.#batch = { client: [], upstream: [] };
    try {
      fn();
    } finally {
      const batch = this.#batch;
      this.#batch = undefined;
      this.#sendUpstream(batch.upstream);
      this.writeClient(joined(batch.client));
      this.#events.batchWritten();
    }
  }

  /** Write what the open batch holds for the client now (before a head of its own). */
  flushClientBatch(): void {
    if (this.#batch) this.writeClient(joined(this.#batch.client.splice(0)));
  }

  /** Bytes for the target (in the batch when one is open). */
  toUpstream(bytes: Buffer): void {
    if (bytes.length === 0) return;
    if (this.#batch) return void this.#batch.upstream.push(bytes);
    this.#sendUpstream([bytes]);
  }

  /** Bytes for the client (in the batch when one is open). */
  toClient(bytes: Buffer): void {
    if (bytes.length === 0) return;
    if (this.#batch) return void this.#batch.client.push(bytes);
    this.writeClient(bytes);
  }

  /** Write to the client now; a full write buffer stops the target's side until it drains. */
  writeClient(bytes: Buffer): void {
    if (bytes.length === 0 || this.#client.destroyed) return;
    if (
      !this.#client.write(bytes) && this.#client.writableLength >= BULK_MAX && !this.clientBlocked
    ) {
      this.clientBlocked = true;
      this.#events.clientBlocked(true);
      this.#client.once("drain", () => {
        this.clientBlocked = false;
        this.#events.clientBlocked(false);
        this.#events.drained();
      });
    }
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
    this.#events.bulkWritten();
  }

  #writeUpstream(bytes: Buffer): void {
    if (bytes.length === 0 || this.#upstream.destroyed) return;
    // Held back only once a good deal waits (as the raw relay does): stopping the client at
    // every full 16 KiB write buffer cost a third of an upload's throughput on Node.
    if (
      !this.#upstream.write(bytes) && this.#upstream.writableLength >= BULK_MAX &&
      !this.upstreamBlocked
    ) {
      this.upstreamBlocked = true;
      this.#events.upstreamBlocked(); // raw streams too (stdin to a container that does not read)
      this.#upstream.once("drain", () => {
        this.upstreamBlocked = false;
        this.#events.upstreamBlocked();
        this.#events.drained();
      });
    }
  }
}
