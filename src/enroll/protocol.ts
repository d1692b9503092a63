/**
 * The enrolment protocol, spoken over TLS on serve's `--enroll` port (never the Docker API's):
 * the client sends one line, a JSON object, and the gate answers one line and closes.
 *
 * ```text
 * client: {"op":"enroll","token":"DGTKN-1-…","csr":"-----BEGIN CERTIFICATE REQUEST-----…"}
 *         {"op":"renew","csr":"…"}              (with the current client certificate, mTLS)
 * gate:   {"ok":true,"cert":"<leaf + chain PEM>","ca":"<root PEM>"}
 *         {"ok":false,"error":"token expired"}
 * ```
 *
 * Both sides bound what they read: {@linkcode MAX_REQUEST_BYTES} and
 * {@linkcode MAX_ANSWER_BYTES}, and a deadline for the whole exchange.
 *
 * @module
 */

import type { Duplex } from "node:stream";
import { Buffer } from "node:buffer";
import { isJsonObject, type JsonObject, parseStrictJson } from "../docker/strict_json.ts";

/** The largest request line the gate reads (a token and a CSR fit in 10 KiB). */
export const MAX_REQUEST_BYTES = 16 * 1024;
/** The largest answer line a client reads. */
export const MAX_ANSWER_BYTES = 64 * 1024;
/** The deadline of one exchange, from the end of the handshake. */
export const EXCHANGE_TIMEOUT_MS = 10_000;

/** What a client may ask. */
export type EnrollRequest =
  | { op: "enroll"; token: string; csr: string }
  | { op: "renew"; csr: string };

/** What the gate answers. */
export type EnrollAnswer =
  | { ok: true; cert: string; ca: string }
  | { ok: false; error: string };

/** A line that is not a request or answer; `message` is safe to tell the peer. */
export class ProtocolError extends Error {
  /** Create it; `received` is how many bytes of the line had arrived. */
  constructor(message: string, readonly received?: number) {
    super(message);
    this.name = "ProtocolError";
  }
}

/**
 * Read one `\n`-terminated line of at most `max` bytes from `socket` within `timeoutMs`.
 * Rejects with {@linkcode ProtocolError} when it is longer, late or the socket ends first.
 */
export function readLine(socket: Duplex, max: number, timeoutMs: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (err?: Error, line?: Uint8Array) => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("end", onEnd);
      socket.off("close", onEnd);
      socket.off("error", onError);
      if (err) reject(err);
      else resolve(line!);
    };
    const onData = (chunk: Buffer) => {
      const nl = chunk.indexOf(0x0a);
      const take = nl === -1 ? chunk : chunk.subarray(0, nl);
      size += take.length;
      if (size > max) return done(new ProtocolError(`line longer than ${max} bytes`));
      chunks.push(take);
      if (nl !== -1) {
        socket.pause();
        done(undefined, new Uint8Array(Buffer.concat(chunks)));
      }
    };
    const onEnd = () => done(new ProtocolError("the connection ended before a whole line", size));
    const onError = (e: Error) => done(new ProtocolError(`connection error: ${e.message}`));
    const timer = setTimeout(
      () => done(new ProtocolError(`no whole line within ${timeoutMs} ms`)),
      timeoutMs,
    );
    socket.on("data", onData);
    socket.once("end", onEnd);
    socket.once("close", onEnd);
    socket.once("error", onError);
    socket.resume();
  });
}

/**
 * A request line read strictly: a JSON object (no duplicate keys) with exactly the keys of
 * its `op`, each a string.
 *
 * @example
 * ```ts
 * import { parseRequest } from "./protocol.ts";
 * const r = parseRequest(new TextEncoder().encode('{"op":"renew","csr":"x"}'));
 * if (r.op !== "renew") throw new Error();
 * ```
 */
export function parseRequest(line: Uint8Array): EnrollRequest {
  const value = objectOf(line);
  const keys = Object.keys(value).sort().join(",");
  if (value.op === "enroll" && keys === "csr,op,token" && strings(value, "csr", "token")) {
    return { op: "enroll", token: value.token as string, csr: value.csr as string };
  }
  if (value.op === "renew" && keys === "csr,op" && strings(value, "csr")) {
    return { op: "renew", csr: value.csr as string };
  }
  throw new ProtocolError('expected {"op":"enroll","token","csr"} or {"op":"renew","csr"}');
}

/**
 * An answer line read strictly.
 *
 * @example
 * ```ts
 * import { parseAnswer } from "./protocol.ts";
 * const a = parseAnswer(new TextEncoder().encode('{"ok":false,"error":"token expired"}'));
 * if (a.ok || a.error !== "token expired") throw new Error();
 * ```
 */
export function parseAnswer(line: Uint8Array): EnrollAnswer {
  const value = objectOf(line);
  const keys = Object.keys(value).sort().join(",");
  if (value.ok === true && keys === "ca,cert,ok" && strings(value, "ca", "cert")) {
    return { ok: true, cert: value.cert as string, ca: value.ca as string };
  }
  if (value.ok === false && keys === "error,ok" && strings(value, "error")) {
    return { ok: false, error: value.error as string };
  }
  throw new ProtocolError("the gate's answer is not an enrolment answer");
}

/** One message as its line. */
export function lineOf(message: EnrollRequest | EnrollAnswer): string {
  return JSON.stringify(message) + "\n";
}

function objectOf(line: Uint8Array): JsonObject {
  let value;
  try {
    value = parseStrictJson(line);
  } catch {
    throw new ProtocolError("not one JSON object");
  }
  if (!isJsonObject(value)) throw new ProtocolError("not one JSON object");
  return value;
}

function strings(o: JsonObject, ...keys: string[]): boolean {
  return keys.every((k) => typeof o[k] === "string");
}
