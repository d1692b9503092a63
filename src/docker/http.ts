/**
 * HTTP/1.1 message heads and chunked framing, parsed strictly: whatever two parsers could
 * read differently (a proxy and dockerd's Go `net/http`) is refused, never guessed at.
 *
 * Why hand-written: the gate must see exactly the requests dockerd will see. Every ambiguity
 * below has been a request-smuggling or authorization bypass somewhere (duplicate
 * `Content-Length`, `Content-Length` with `Transfer-Encoding`, obs-fold, bare LF, odd
 * transfer codings), so each one is an error here with its own message.
 *
 * @module
 */

import { Buffer } from "node:buffer";

/** The longest request or response head accepted (request line and headers). */
export const MAX_HEAD_BYTES = 64 * 1024;

/** One header line, as sent. */
export interface HeaderField {
  /** The name as sent (compare with {@linkcode headerName}). */
  name: string;
  /** The value with surrounding whitespace removed. */
  value: string;
}

/** How a message body is delimited. */
export type BodyFraming =
  | { kind: "none" }
  | { kind: "length"; length: number }
  | { kind: "chunked" }
  | { kind: "close" };

/** A parsed request head. */
export interface RequestHead {
  /** The method token, e.g. `POST`. */
  method: string;
  /** The request target as sent (origin-form, `/path?query`). */
  target: string;
  /** `"1.1"` or `"1.0"`. */
  version: "1.1" | "1.0";
  /** The header lines, in order. */
  headers: HeaderField[];
  /** How the body is delimited. */
  framing: BodyFraming;
  /**
   * `Connection: Upgrade` and `Upgrade` (the HTTP spelling). Not dockerd's rule: dockerd looks
   * at `Upgrade` alone, see `routes.ts` `asksUpgrade`, which the relay uses.
   */
  upgrade: boolean;
  /** Whether the connection ends after this request (`Connection: close`, or HTTP/1.0). */
  close: boolean;
  /** Length of the head in bytes, including the final blank line. */
  headBytes: number;
  /** Header values by lower-case name (see {@linkcode valuesOf}). */
  index: ReadonlyMap<string, string[]>;
}

/** A parsed response head. */
export interface ResponseHead {
  /** The status code. */
  status: number;
  /** The header lines, in order. */
  headers: HeaderField[];
  /** Length of the head in bytes, including the final blank line. */
  headBytes: number;
  /** Header values by lower-case name (see {@linkcode valuesOf}). */
  index: ReadonlyMap<string, string[]>;
}

/**
 * The values of header `name` (lower case) in a parsed head, in order.
 *
 * @example
 * ```ts
 * import { Buffer } from "node:buffer";
 * import { parseRequestHead, valuesOf } from "./http.ts";
 * const h = parseRequestHead(Buffer.from("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nx-a: 2\r\n\r\n"));
 * if (valuesOf(h, "x-a").join() !== "1,2") throw new Error();
 * ```
 */
export function valuesOf(head: { index: ReadonlyMap<string, string[]> }, name: string): string[] {
  return head.index.get(name) ?? NONE;
}
const NONE: string[] = [];

/** A request or response that cannot be read unambiguously; `status` is what to answer. */
export class HttpError extends Error {
  /** The HTTP status to answer with (400, 403, 413, 502). */
  readonly status: number;
  /** Make one; the message says exactly what was wrong. */
  constructor(status: number, message: string) {
    super(message);
    this.name = "HttpError";
    this.status = status;
  }
}

/** Lower-case ASCII form of a header name (names are case-insensitive tokens). */
export function headerName(name: string): string {
  return name.toLowerCase();
}

const CRLF2 = Buffer.from("\r\n\r\n");
/** The bytes {@linkcode findHeadEnd} first looks at as text: most heads are shorter. */
const PREFIX_BYTES = 2048;
/** RFC 9110 token characters. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** A field value: visible ASCII, space, tab and obs-text; never CR, LF or NUL. */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
/** An origin-form target: visible ASCII only, no fragment. */
const ORIGIN_FORM = /^\/[\x21-\x22\x24-\x7e]*$/;

/**
 * Where the head in `buffer` ends (just after its blank line), `-1` if it is not complete
 * yet. Throws an {@linkcode HttpError} as soon as the bytes so far cannot be a valid head:
 * a bare CR or LF, a NUL, or more than {@linkcode MAX_HEAD_BYTES} without an end.
 *
 * @example
 * ```ts
 * import { Buffer } from "node:buffer";
 * import { findHeadEnd } from "./http.ts";
 * if (findHeadEnd(Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\nrest")) !== 27) throw new Error();
 * if (findHeadEnd(Buffer.from("GET / HTTP/1.1\r\n")) !== -1) throw new Error();
 * ```
 */
export function findHeadEnd(buffer: Buffer, maxBytes = MAX_HEAD_BYTES): number {
  // Searched in the latin1 text of the first bytes (one char per byte, so the same index):
  // Deno's Buffer#indexOf cost more than the whole parse of a head. The buffer's own search
  // only when the head is not among them (it may straddle their end).
  const prefix = buffer.toString("latin1", 0, Math.min(buffer.length, PREFIX_BYTES));
  let end = prefix.indexOf("\r\n\r\n");
  if (end === -1 && buffer.length > PREFIX_BYTES) end = buffer.indexOf(CRLF2);
  const scan = end === -1 ? Math.min(buffer.length, maxBytes + 1) : end + 4;
  // One pass over the head as latin1 text (a JS loop per byte cost more than the rest of the
  // request's parse together). A CR as the very last byte may still get its LF.
  const text = scan <= prefix.length ? prefix.slice(0, scan) : buffer.toString("latin1", 0, scan);
  BAD_HEAD_BYTE.lastIndex = 0;
  const bad = lineEndsClean(text) ? null : BAD_HEAD_BYTE.exec(text);
  if (bad && !(bad[0] === "\r" && end === -1 && bad.index === text.length - 1)) {
    throw new HttpError(
      400,
      bad[0] === "\0"
        ? "NUL byte in the message head"
        : bad[0] === "\r"
        ? "bare CR in the message head"
        : "bare LF in the message head",
    );
  }
  if (end === -1) {
    // 400 like every other unreadable head (the rule; 431 would also be right).
    if (buffer.length > maxBytes) throw new HttpError(400, "message head too long");
    return -1;
  }
  if (end + 4 > maxBytes) throw new HttpError(400, "message head too long");
  return end + 4;
}

/**
 * Whether `text` has no NUL and every CR and LF in it is part of a CRLF: then
 * {@linkcode BAD_HEAD_BYTE} cannot match (when false, it says where and what). Why: the regex
 * with its lookbehind cost several microseconds on a daemon's answer head, these native
 * searches a fraction. Every LF preceded by a CR, and as many CRs as LFs, means every CR is
 * followed by an LF.
 */
function lineEndsClean(text: string): boolean {
  if (text.indexOf("\0") !== -1) return false;
  let lfs = 0;
  for (let i = text.indexOf("\n"); i !== -1; i = text.indexOf("\n", i + 1)) {
    if (i === 0 || text.charCodeAt(i - 1) !== 0x0d) return false;
    lfs++;
  }
  let crs = 0;
  for (let i = text.indexOf("\r"); i !== -1; i = text.indexOf("\r", i + 1)) crs++;
  return crs === lfs;
}

/** A NUL, a CR not followed by LF, or an LF not preceded by CR. */
// deno-lint-ignore no-control-regex
const BAD_HEAD_BYTE = /\x00|\r(?!\n)|(?<!\r)\n/g;

const SP = 0x20;
const HTAB = 0x09;

/**
 * `text` from `start` without leading and trailing spaces and tabs (only those: the field
 * value's optional whitespace). A loop, not a regex replace: it runs for every header line.
 */
function trimSpaceTab(text: string, start: number): string {
  let end = text.length;
  while (start < end && (text.charCodeAt(start) === SP || text.charCodeAt(start) === HTAB)) {
    start++;
  }
  while (end > start && (text.charCodeAt(end - 1) === SP || text.charCodeAt(end - 1) === HTAB)) {
    end--;
  }
  return text.slice(start, end);
}

/** Split a complete head into its lines, refusing obs-fold and malformed header lines. */
function headLines(
  head: Buffer,
): { first: string; headers: HeaderField[]; index: Map<string, string[]> } {
  const text = head.toString("latin1", 0, head.length - 4);
  const lines = text.split("\r\n");
  const headers: HeaderField[] = [];
  const index = new Map<string, string[]>();
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    const c0 = line.charCodeAt(0);
    if (c0 === SP || c0 === HTAB) throw new HttpError(400, "obsolete line folding in a header");
    const colon = line.indexOf(":");
    if (colon <= 0) throw new HttpError(400, "malformed header line");
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) throw new HttpError(400, "header name is not a token");
    const value = trimSpaceTab(line, colon + 1);
    if (!FIELD_VALUE.test(value)) throw new HttpError(400, `bad character in header ${name}`);
    headers.push({ name, value });
    const key = name.toLowerCase();
    const list = index.get(key);
    if (list) list.push(value);
    else index.set(key, [value]);
  }
  return { first: lines[0], headers, index };
}

/**
 * Parse a complete request head (the bytes up to and including its blank line, see
 * {@linkcode findHeadEnd}). Throws an {@linkcode HttpError} for anything ambiguous.
 *
 * @example
 * ```ts
 * import { Buffer } from "node:buffer";
 * import { parseRequestHead } from "./http.ts";
 * const h = parseRequestHead(Buffer.from("POST /v1.41/containers/create HTTP/1.1\r\nHost: d\r\nContent-Length: 2\r\n\r\n"));
 * if (h.method !== "POST" || h.framing.kind !== "length") throw new Error();
 * ```
 */
export function parseRequestHead(head: Buffer): RequestHead {
  const { first, headers, index } = headLines(head);
  const parts = first.split(" ");
  if (parts.length !== 3) throw new HttpError(400, "malformed request line");
  const [method, target, protocol] = parts;
  if (!TOKEN.test(method)) throw new HttpError(400, "method is not a token");
  if (protocol !== "HTTP/1.1" && protocol !== "HTTP/1.0") {
    throw new HttpError(400, "only HTTP/1.1 and HTTP/1.0 are spoken here");
  }
  if (target === "*" || !target.startsWith("/")) {
    throw new HttpError(400, "request target must be a path (no absolute or asterisk form)");
  }
  if (!ORIGIN_FORM.test(target)) throw new HttpError(400, "bad character in the request target");
  const version = protocol === "HTTP/1.1" ? "1.1" : "1.0";
  const values = (name: string) => index.get(name) ?? NONE;
  const hosts = values("host");
  if (hosts.length > 1 || (version === "1.1" && hosts.length === 0)) {
    throw new HttpError(400, "an HTTP/1.1 request needs exactly one Host header");
  }
  const framing = requestFraming(values("content-length"), values("transfer-encoding"), version);
  const connection = values("connection").flatMap(tokens);
  const upgrade = connection.includes("upgrade") && values("upgrade").length > 0;
  const close = connection.includes("close") ||
    (version === "1.0" && !connection.includes("keep-alive"));
  return {
    method,
    target,
    version,
    headers,
    framing,
    upgrade,
    close,
    headBytes: head.length,
    index,
  };
}

/**
 * The comma-separated tokens of a list header, lower-cased. Only space and tab are trimmed,
 * as Go's `httpguts.HeaderValuesContainsToken` does: `String#trim` would also strip NBSP
 * (0xa0), so `close\xa0` meant close here and keep-alive to dockerd (found by
 * tests/differential_test.ts).
 */
function tokens(value: string): string[] {
  return value.split(",").map((t) => t.replace(/^[ \t]+|[ \t]+$/g, "").toLowerCase())
    .filter((t) => t !== "");
}

/** The one framing rule for requests: one `Content-Length`, or one `chunked`, or no body. */
function requestFraming(
  lengths: readonly string[],
  codings: readonly string[],
  version: "1.1" | "1.0",
): BodyFraming {
  if (lengths.length > 1) throw new HttpError(400, "more than one Content-Length");
  if (codings.length > 1) throw new HttpError(400, "more than one Transfer-Encoding");
  if (lengths.length && codings.length) {
    throw new HttpError(400, "Content-Length together with Transfer-Encoding");
  }
  if (codings.length) {
    if (version === "1.0") throw new HttpError(400, "Transfer-Encoding in an HTTP/1.0 request");
    if (codings[0].toLowerCase() !== "chunked") {
      throw new HttpError(400, "the only transfer coding accepted is one chunked");
    }
    return { kind: "chunked" };
  }
  if (lengths.length) return { kind: "length", length: parseLength(lengths[0]) };
  return { kind: "none" };
}

function parseLength(text: string): number {
  if (!/^[0-9]{1,15}$/.test(text)) throw new HttpError(400, "Content-Length is not a decimal");
  return Number(text);
}

/**
 * Parse a complete response head. `requestMethod` decides whether a body follows (`HEAD`
 * never has one). The daemon is trusted to frame its answers, but they are still read
 * strictly: a response the gate cannot frame ends the connection.
 *
 * @example
 * ```ts
 * import { Buffer } from "node:buffer";
 * import { parseResponseHead, responseFraming } from "./http.ts";
 * const r = parseResponseHead(Buffer.from("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"));
 * if (r.status !== 200 || responseFraming(r, "GET").kind !== "length") throw new Error();
 * ```
 */
export function parseResponseHead(head: Buffer): ResponseHead {
  const { first, headers, index } = headLines(head);
  const m = /^HTTP\/1\.[01] ([1-9][0-9]{2})(?: .*)?$/.exec(first);
  if (!m) throw new HttpError(502, "malformed status line from the target");
  return { status: Number(m[1]), headers, headBytes: head.length, index };
}

/** How the body of `response` (an answer to `requestMethod`) is delimited. */
export function responseFraming(response: ResponseHead, requestMethod: string): BodyFraming {
  const s = response.status;
  if (requestMethod === "HEAD" || s < 200 || s === 204 || s === 304) return { kind: "none" };
  const codings = valuesOf(response, "transfer-encoding");
  const lengths = valuesOf(response, "content-length");
  if (codings.length) {
    if (codings.length > 1 || codings[0].toLowerCase() !== "chunked" || lengths.length) {
      throw new HttpError(502, "unframeable response from the target");
    }
    return { kind: "chunked" };
  }
  if (lengths.length > 1) throw new HttpError(502, "unframeable response from the target");
  if (lengths.length) return { kind: "length", length: parseLength(lengths[0]) };
  return { kind: "close" };
}

/**
 * An incremental, strict reader of chunked framing: `feed` it bytes and it says how many
 * belong to the body (framing included) and which of them are data. Chunk sizes are hex
 * without extensions; every line ends in CRLF; trailers are refused.
 *
 * @example
 * ```ts
 * import { Buffer } from "node:buffer";
 * import { ChunkedReader } from "./http.ts";
 * const r = new ChunkedReader();
 * const data: Buffer[] = [];
 * const used = r.feed(Buffer.from("3\r\nabc\r\n0\r\n\r\nNEXT"), (d) => data.push(d));
 * if (used !== 13 || !r.done || Buffer.concat(data).toString() !== "abc") throw new Error();
 * ```
 */
export class ChunkedReader {
  /** Whether the last chunk and the final CRLF were read. */
  done = false;
  #state: "size" | "data" | "data-crlf" | "trailer" = "size";
  #line = "";
  #left = 0;

  /**
   * Read from `bytes`; data bytes are passed to `onData` (views into `bytes`). Returns how
   * many bytes of `bytes` belong to this body (all of them unless it ended inside).
   */
  feed(bytes: Buffer, onData?: (data: Buffer) => void): number {
    let i = 0;
    while (i < bytes.length && !this.done) {
      if (this.#state === "data") {
        const n = Math.min(this.#left, bytes.length - i);
        onData?.(bytes.subarray(i, i + n));
        i += n;
        this.#left -= n;
        if (this.#left === 0) this.#state = "data-crlf";
        continue;
      }
      const c = bytes[i++];
      this.#line += String.fromCharCode(c);
      if (this.#line.length > 18) throw new HttpError(400, "chunk line too long");
      if (c !== 0x0a) continue;
      const line = this.#line;
      this.#line = "";
      if (!line.endsWith("\r\n")) throw new HttpError(400, "bare LF in chunked framing");
      const content = line.slice(0, -2);
      if (this.#state === "data-crlf") {
        if (content !== "") throw new HttpError(400, "chunk data longer than its size");
        this.#state = "size";
      } else if (this.#state === "trailer") {
        if (content !== "") throw new HttpError(400, "trailers are not accepted");
        this.done = true;
      } else {
        if (!/^[0-9a-fA-F]{1,15}$/.test(content)) {
          throw new HttpError(400, "bad chunk size (hex digits only, no extensions)");
        }
        this.#left = parseInt(content, 16);
        this.#state = this.#left === 0 ? "trailer" : "data";
      }
    }
    return i;
  }
}

/**
 * The text of a complete response from the gate itself (a refusal), JSON body in Docker's
 * error shape so the Docker CLI prints the message.
 *
 * @example
 * ```ts
 * import { gateResponse } from "./http.ts";
 * const r = gateResponse(403, "dockgate: x may not POST /containers/create: read-only", false);
 * if (!r.toString().startsWith("HTTP/1.1 403 Forbidden\r\n")) throw new Error();
 * ```
 */
export function gateResponse(status: number, message: string, close: boolean): Buffer {
  const body = Buffer.from(JSON.stringify({ message }) + "\n");
  const head = `HTTP/1.1 ${status} ${REASONS[status] ?? "Error"}\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n` +
    (close ? "Connection: close\r\n" : "") + "\r\n";
  return Buffer.concat([Buffer.from(head, "latin1"), body]);
}

const REASONS: Record<number, string> = {
  400: "Bad Request",
  403: "Forbidden",
  404: "Not Found",
  409: "Conflict",
  413: "Content Too Large",
  429: "Too Many Requests",
  502: "Bad Gateway",
};

/**
 * Serialize a request head again, with `bodyLength` replacing its body framing headers (an
 * inspected chunked body is forwarded with the `Content-Length` of what was checked) and
 * `target` its request target (an isolated role's request carries full IDs).
 */
export function serializeRequestHead(
  head: RequestHead,
  bodyLength?: number,
  target: string = head.target,
): Buffer {
  let text = `${head.method} ${target} HTTP/${head.version}\r\n`;
  for (const h of head.headers) {
    const n = headerName(h.name);
    if (bodyLength !== undefined && (n === "content-length" || n === "transfer-encoding")) {
      continue;
    }
    text += `${h.name}: ${h.value}\r\n`;
  }
  if (bodyLength !== undefined) text += `Content-Length: ${bodyLength}\r\n`;
  return Buffer.from(text + "\r\n", "latin1");
}

/**
 * A response head like `head` with `status` and a `Content-Length` of `length` (its own
 * framing headers dropped): the head of an answer the gate rewrote (isolation's filters).
 *
 * @example
 * ```ts
 * import { Buffer } from "node:buffer";
 * import { parseResponseHead, responseHeadWith } from "./http.ts";
 * const r = parseResponseHead(Buffer.from("HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 9\r\n\r\n"));
 * if (responseHeadWith(r, 409, 2).toString() !== "HTTP/1.1 409 Conflict\r\nX-A: 1\r\nContent-Length: 2\r\n\r\n") throw new Error();
 * ```
 */
export function responseHeadWith(head: ResponseHead, status: number, length: number): Buffer {
  const reasons: Record<number, string> = { 200: "OK", 201: "Created", 409: "Conflict" };
  let text = `HTTP/1.1 ${status} ${reasons[status] ?? "Status"}\r\n`;
  for (const h of head.headers) {
    const n = headerName(h.name);
    if (n === "content-length" || n === "transfer-encoding") continue;
    text += `${h.name}: ${h.value}\r\n`;
  }
  return Buffer.from(`${text}Content-Length: ${length}\r\n\r\n`, "latin1");
}
