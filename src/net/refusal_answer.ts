/**
 * A refused client is told why. When the gate's own checks refuse a peer after the TLS
 * handshake (a revoked or disallowed certificate, no role in the API policy) or the Docker
 * daemon does not answer, closing the connection would leave the Docker CLI printing `EOF`.
 * Instead the first HTTP request on the connection gets an answer in the Docker API's error
 * shape (`{"message": "dockgate: …"}`, which the CLI prints as `Error response from daemon:
 * dockgate: …`), with `Connection: close`, and then the connection closes. Nothing the client
 * sent is forwarded.
 *
 * The answer also carries the reason in a {@linkcode REFUSAL_HEADER} header, which `connect`
 * reads to log the refusal on the client's side.
 *
 * @module
 */

import type { Duplex } from "node:stream";
import type { HeldInput } from "./relay.ts";

/** The header naming the reason of a refusal answer (read by `connect`). */
export const REFUSAL_HEADER = "Dockgate-Refused";

/** How long a refused client may take to send its request head before the gate just closes. */
export const REFUSAL_WAIT_MS = 3_000;

/** More than this without a complete request head: answer at once. */
const HEAD_LIMIT = 16 * 1024;

/** A refusal as the client is told it. */
export interface RefusalAnswer {
  /** HTTP status: 403 for the certificate or the policy, 502 when the daemon is down. */
  status: number;
  /** One line, said after `dockgate: `. */
  message: string;
}

const REASONS: Record<number, string> = { 403: "Forbidden", 502: "Bad Gateway" };

/**
 * The bytes of the answer to a request whose method is `method` (a `HEAD` gets no body).
 *
 * @example
 * ```ts
 * import { refusalResponse } from "./refusal_answer.ts";
 * const text = new TextDecoder().decode(refusalResponse({ status: 403, message: "revoked" }, "GET"));
 * if (!text.startsWith("HTTP/1.1 403 Forbidden\r\n")) throw new Error(text);
 * if (!text.endsWith('{"message":"dockgate: revoked"}\n')) throw new Error(text);
 * ```
 */
export function refusalResponse(answer: RefusalAnswer, method: string): Uint8Array {
  if (!Number.isInteger(answer.status) || answer.status < 400 || answer.status > 599) {
    throw new RangeError(`A refusal needs a 4xx or 5xx status, not ${answer.status}`);
  }
  // One printable line: a reason from a certificate or a socket error could carry anything.
  const line = answer.message.replace(/[^\x20-\x7e]+/g, " ").trim();
  const body = `${JSON.stringify({ message: `dockgate: ${line}` })}\n`;
  const head = [
    `HTTP/1.1 ${answer.status} ${REASONS[answer.status] ?? "Refused"}`,
    "Content-Type: application/json",
    `Content-Length: ${Buffer.byteLength(body)}`,
    "Connection: close",
    `${REFUSAL_HEADER}: ${line}`,
    "",
    "",
  ].join("\r\n");
  return Buffer.from(method === "HEAD" ? head : head + body);
}

/**
 * Wait (at most `waitMs`) for the client's first request head, answer it with `answer` and
 * close; resolves once the socket is closed. A client that sends nothing, or ends its side,
 * is closed without an answer.
 */
export function answerRefusal(
  socket: Duplex,
  held: HeldInput,
  answer: RefusalAnswer,
  waitMs: number = REFUSAL_WAIT_MS,
): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed) return resolve();
    let seen = Buffer.concat(held.chunks);
    let done = false;
    const finish = (reply: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.off("data", onData);
      if (!reply || socket.destroyed) return void socket.destroy();
      const method = /^([A-Z]+) /.exec(seen.subarray(0, 16).toString("latin1"))?.[1] ?? "GET";
      // Closing only after the answer is flushed; a client that never reads cannot hold it.
      const hard = setTimeout(() => socket.destroy(), waitMs);
      socket.end(refusalResponse(answer, method), () => {
        clearTimeout(hard);
        socket.destroy();
      });
    };
    const check = () => {
      if (!couldBeHttp(seen)) finish(false);
      else if (seen.includes("\r\n\r\n") || seen.length > HEAD_LIMIT) finish(true);
      else if (held.ended) finish(false);
    };
    const onData = (chunk: Uint8Array) => {
      seen = Buffer.concat([seen, chunk]);
      check();
    };
    const timer = setTimeout(() => finish(false), waitMs);
    socket.on("data", onData);
    socket.once("end", () => finish(seen.includes("\r\n\r\n")));
    socket.once("close", () => {
      finish(false);
      resolve();
    });
    check();
  });
}

/**
 * Whether `bytes` can still be the start of an HTTP/1 request: a client speaking something
 * else is closed at once, not kept waiting for a head that will not come.
 */
function couldBeHttp(bytes: Buffer): boolean {
  const text = bytes.subarray(0, 8192).toString("latin1");
  const eol = text.indexOf("\n");
  // A line not yet complete: a method, then perhaps the target and the start of a version.
  if (eol < 0) return /^[A-Z]{0,16}$|^[A-Z]{1,16} \S*( H[TP/0-9.]{0,7}\r?)?$/.test(text);
  return /^[A-Z]{1,16} \S+ HTTP\/1\.[01]\r$/.test(text.slice(0, eol));
}
