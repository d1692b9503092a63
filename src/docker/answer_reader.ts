/**
 * The target side of the API relay: the daemon's answers read in request order, each head
 * and its framing, passed on as they come, read whole when the exchange has an answer rule
 * (isolation's filters), or the switch to a raw stream seen (`101`, or attach's raw-stream
 * answer on the routes dockerd hijacks). The coordinator (`api_relay.ts`) owns the line of
 * exchanges; this reader tells it through {@linkcode AnswerHost}.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import {
  ChunkedReader,
  findHeadEnd,
  gateResponse,
  parseResponseHead,
  responseFraming,
  type ResponseHead,
  responseHeadWith,
  valuesOf,
} from "./http.ts";
import { RedactionError, redactSecrets } from "./secret_redaction.ts";
import { mediaTypeOf } from "./request_body.ts";
import { filterAnswer, keepEvent } from "./isolation.ts";
import type { Exchange } from "./relay_exchange.ts";

/** The largest answer the gate reads whole to filter it for an owner. */
const MAX_FILTERED_ANSWER = 16 * 1024 * 1024;

type AnswerPhase =
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
  | { kind: "raw" }
  /** An answer read whole waits for its rule (a create being recorded); nothing else is read. */
  | { kind: "waiting" }
  /** A chunked stream of JSON lines passed on line by line, each kept or dropped by its rule. */
  | { kind: "lines"; chunked: ChunkedReader; pending: Buffer };

/** What the answer reader asks of the coordinator. */
export interface AnswerHost {
  /** The exchange at the head of the line (whose answer comes next). */
  current(): Exchange | undefined;
  /** Whether the connection is ending (what else the target sends is dropped). */
  ending(): boolean;
  /** Bytes for the client. */
  toClient(bytes: Buffer): void;
  /** The answer to `exchange` is complete. */
  answered(exchange: Exchange): void;
  /** The answer to `exchange` switched protocols; `rest` are the stream's first bytes. */
  switchToRaw(exchange: Exchange, headBytes: Buffer, rest: Buffer): void;
  /**
   * Run `fn` later, as a socket event would run (an answer whose rule waited is sent then,
   * and the answers held behind it are read on). Default: at once.
   */
  later?(fn: () => void): void;
}

/**
 * The answer side of one relayed connection. `pump` throws for an answer it cannot frame.
 *
 * @example
 * ```ts
 * import { Buffer } from "node:buffer";
 * import { AnswerReader } from "./answer_reader.ts";
 * import { newExchange } from "./relay_exchange.ts";
 * const line = [newExchange("GET", "/info", "ro", false)];
 * const out: Buffer[] = [];
 * const r = new AnswerReader({
 *   current: () => line[0], ending: () => false, toClient: (b) => void out.push(b),
 *   answered: () => void line.shift(), switchToRaw: () => {}, later: (fn) => fn(),
 * });
 * r.feed(Buffer.from("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"));
 * r.pump();
 * if (line.length !== 0 || Buffer.concat(out).length !== 40) throw new Error();
 * ```
 */
export class AnswerReader {
  readonly #host: AnswerHost;
  #phase: AnswerPhase = { kind: "head" };
  #buffer: Buffer = Buffer.alloc(0);

  /** Read for `host`. */
  constructor(host: AnswerHost) {
    this.#host = host;
  }

  /** Whether the connection is a raw stream now. */
  get raw(): boolean {
    return this.#phase.kind === "raw";
  }

  /** Whether an answer read whole waits for its rule (a container create being recorded). */
  get waiting(): boolean {
    return this.#phase.kind === "waiting";
  }

  /** Bytes from the target not read yet. */
  get bufferedBytes(): number {
    return this.#buffer.length;
  }

  /** More bytes from the target. */
  feed(chunk: Buffer): void {
    this.#buffer = this.#buffer.length ? Buffer.concat([this.#buffer, chunk]) : chunk;
  }

  /**
   * The target ended its side: true when that ended an answer delimited by the close (the
   * answer is complete now).
   */
  endOfStream(): boolean {
    const r = this.#phase;
    if (r.kind !== "body" || !r.close) return false;
    this.#phase = { kind: "head" };
    return true;
  }

  /** Read the answers held, as far as they are complete. */
  pump(): void {
    // Once the gate's own last answer closed the connection, what the target sent after it
    // (an answer to a request the gate answered itself) is dropped, not an error that would
    // cut the answers already written.
    while (
      this.#buffer.length > 0 && this.#phase.kind !== "raw" && this.#phase.kind !== "waiting" &&
      !this.#host.ending()
    ) {
      const exchange = this.#host.current();
      if (!exchange || exchange.local) throw new Error("answer without a request");
      if (this.#phase.kind === "head") {
        if (!this.#readHead(exchange)) return;
      } else if (this.#phase.kind === "filter") {
        this.#filter(exchange, this.#phase);
      } else if (this.#phase.kind === "lines") {
        this.#lines(exchange, this.#phase);
      } else {
        this.#passBody(exchange, this.#phase);
      }
    }
  }

  /** Read one answer head; false when more bytes are needed or the stream went raw. */
  #readHead(exchange: Exchange): boolean {
    const end = findHeadEnd(this.#buffer);
    if (end === -1) return false;
    const head = parseResponseHead(this.#buffer.subarray(0, end));
    const headBytes = this.#buffer.subarray(0, end);
    this.#buffer = this.#buffer.subarray(end);
    exchange.bytesOut += end;
    if (switchesToRaw(exchange, head)) {
      exchange.status = head.status;
      const rest = this.#buffer;
      this.#phase = { kind: "raw" };
      this.#buffer = Buffer.alloc(0);
      this.#host.switchToRaw(exchange, headBytes, rest);
      return false;
    }
    const framing = responseFraming(head, exchange.method);
    if (
      exchange.answer?.rule.kind === "event-stream" && head.status === 200 &&
      framing.kind === "chunked"
    ) {
      // The event stream never ends by itself: passed on line by line, not read whole.
      exchange.status = head.status;
      this.#host.toClient(headBytes);
      this.#phase = { kind: "lines", chunked: new ChunkedReader(), pending: Buffer.alloc(0) };
      return true;
    }
    // Redaction reads only a 200 whole (an error answer carries no secret and passes as sent).
    const reads = exchange.answer ? head.status >= 200 : exchange.redact && head.status === 200;
    if (reads && framing.kind !== "none") {
      if (framing.kind === "close") throw new Error("an answer to filter has no length");
      exchange.status = head.status;
      const left = framing.kind === "length" ? framing.length : 0;
      const chunked = framing.kind === "chunked" ? new ChunkedReader() : undefined;
      const filter = { kind: "filter" as const, head, left, chunked, data: [], size: 0 };
      this.#phase = filter;
      // An empty body is complete now: no further byte may come to finish it.
      if (!filter.chunked && filter.left === 0) this.#filter(exchange, filter);
      return true;
    }
    this.#host.toClient(headBytes);
    if (head.status < 200) return true; // 100 Continue: the final answer follows
    exchange.status = head.status;
    if (framing.kind === "none" || (framing.kind === "length" && framing.length === 0)) {
      this.#phase = { kind: "head" };
      this.#host.answered(exchange);
      return true;
    }
    this.#phase = framing.kind === "length"
      ? { kind: "body", left: framing.length, close: false }
      : framing.kind === "chunked"
      ? { kind: "body", left: 0, chunked: new ChunkedReader(), close: false }
      : { kind: "body", left: 0, close: true };
    return true;
  }

  /** Pass on body bytes of the current answer. */
  #passBody(exchange: Exchange, r: Extract<AnswerPhase, { kind: "body" }>): void {
    let used: number;
    if (r.close) used = this.#buffer.length;
    else if (r.chunked) used = r.chunked.feed(this.#buffer);
    else used = Math.min(r.left, this.#buffer.length);
    this.#host.toClient(this.#buffer.subarray(0, used));
    this.#buffer = this.#buffer.subarray(used);
    exchange.bytesOut += used;
    if (!r.close && !r.chunked) r.left -= used;
    if (!r.close && (r.chunked ? r.chunked.done : r.left === 0)) {
      this.#phase = { kind: "head" };
      this.#host.answered(exchange);
    }
  }

  /**
   * Pass on the complete lines of a chunked event stream that the owner may see, each as a
   * chunk of its own; a line longer than the filter's cap ends the connection.
   */
  #lines(exchange: Exchange, r: Extract<AnswerPhase, { kind: "lines" }>): void {
    const data: Buffer[] = [r.pending];
    const used = r.chunked.feed(this.#buffer, (d) => void data.push(Buffer.from(d)));
    this.#buffer = this.#buffer.subarray(used);
    exchange.bytesOut += used;
    let text = Buffer.concat(data);
    const a = exchange.answer!;
    const out: Buffer[] = [];
    for (let nl = text.indexOf(0x0a); nl !== -1; nl = text.indexOf(0x0a)) {
      const line = text.subarray(0, nl + 1);
      text = text.subarray(nl + 1);
      if (keepEvent(line.toString("utf8"), a.owner, a.record, a.scope)) {
        out.push(Buffer.from(`${line.length.toString(16)}\r\n`), line, Buffer.from("\r\n"));
      }
    }
    if (text.length > MAX_FILTERED_ANSWER) throw new Error("an event line is too long");
    r.pending = Buffer.from(text);
    if (r.chunked.done) out.push(Buffer.from("0\r\n\r\n")); // a torn last line is dropped
    if (out.length) this.#host.toClient(Buffer.concat(out));
    if (r.chunked.done) {
      this.#phase = { kind: "head" };
      this.#host.answered(exchange);
    }
  }

  /** Read an answer to filter whole, then send the owner's view of it. */
  #filter(exchange: Exchange, r: Extract<AnswerPhase, { kind: "filter" }>): void {
    let used: number;
    if (r.chunked) {
      used = r.chunked.feed(this.#buffer, (d) => {
        r.data.push(Buffer.from(d));
        r.size += d.length;
      });
    } else {
      used = Math.min(r.left, this.#buffer.length);
      r.data.push(this.#buffer.subarray(0, used));
      r.size += used;
      r.left -= used;
    }
    this.#buffer = this.#buffer.subarray(used);
    exchange.bytesOut += used;
    if (r.size > MAX_FILTERED_ANSWER) throw new Error("an answer to filter is too big");
    if (r.chunked ? !r.chunked.done : r.left > 0) return;
    const a = exchange.answer;
    const body = Buffer.concat(r.data);
    const out = a &&
      filterAnswer(a.rule, r.head.status, body, a.owner, a.own, a.record, a.scope);
    if (!(out instanceof Promise)) return this.#send(exchange, r.head, body, out);
    // Recorded off the event loop: this answer, and every one behind it, waits for the record.
    this.#phase = { kind: "waiting" };
    const later = this.#host.later ?? ((fn: () => void) => fn());
    out.then((o) => later(() => this.#send(exchange, r.head, body, o)));
  }

  /**
   * Send `exchange`'s answer as its rule made it (`out`; undefined: as the daemon sent it),
   * with its secrets replaced when the role reads redacted.
   */
  #send(
    exchange: Exchange,
    head: ResponseHead,
    body: Buffer,
    out: { status: number; body: Uint8Array } | undefined,
  ): void {
    this.#phase = { kind: "head" };
    // The connection ended while the rule waited: nobody is left to answer.
    if (this.#host.current() !== exchange) return;
    let status = out?.status ?? head.status;
    let data: Buffer = out ? Buffer.from(out.body) : body;
    let answer: Buffer | undefined;
    if (exchange.redact && status === 200) {
      const redacted = redactedAnswer(head, data);
      if (typeof redacted === "string") {
        status = 502;
        answer = gateResponse(status, `dockgate: not passed on: ${redacted}`, false);
      } else data = redacted;
    }
    answer ??= Buffer.concat([responseHeadWith(head, status, data.length), data]);
    this.#host.toClient(answer);
    exchange.status = status;
    this.#host.answered(exchange);
  }
}

/**
 * `data` with its secret values replaced (`secret_redaction.ts`), or why it cannot be: an
 * encoded or unreadable answer is refused (502) rather than passed on with its secrets.
 */
function redactedAnswer(head: ResponseHead, data: Buffer): Buffer | string {
  const encoding = valuesOf(head, "content-encoding");
  if (encoding.length > 0) return `an answer to redact is encoded (${encoding.join(", ")})`;
  try {
    return Buffer.from(redactSecrets(data));
  } catch (err) {
    if (err instanceof RedactionError) return err.message;
    throw err;
  }
}

/** Whether `head`, the answer to `exchange`, switches the connection to a raw stream. */
function switchesToRaw(exchange: Exchange, head: ResponseHead): boolean {
  if (!exchange.mayUpgrade) return false;
  if (head.status === 101) return true;
  if (head.status !== 200) return false;
  // The one media-type rule (request_body.ts); an answer it cannot read ends the connection.
  const type = mediaTypeOf(head);
  return type === "application/vnd.docker.raw-stream" ||
    type === "application/vnd.docker.multiplexed-stream";
}
