/**
 * Raw HTTP over real TLS for tests that must send exactly the bytes they mean (smuggling,
 * framing, folded keys): send, half-close, and read every byte until the gate closes; then
 * split what came back into responses with a parser of its own (not the gate's).
 */

import { Buffer } from "node:buffer";
import { type Creds, tlsConnect } from "./tls_peers.ts";

/** What came back for one raw exchange. */
export interface RawExchange {
  /** Every byte received. */
  data: Buffer;
  /** The exchange had to be cut by us (the gate neither answered nor closed). */
  timedOut: boolean;
  /** First socket error, if any. */
  error?: string;
}

/**
 * Connect with `creds`, write `bytes` (then half-close unless `keepOpen`), read until the
 * peer closes or `timeoutMs` passes.
 */
export function tlsExchange(
  port: number,
  creds: Creds,
  bytes: Uint8Array | string,
  opts: { timeoutMs?: number; keepOpen?: boolean } = {},
): Promise<RawExchange> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const out: RawExchange = { data: Buffer.alloc(0), timedOut: false };
    const socket = tlsConnect(port, creds);
    const timer = setTimeout(() => {
      out.timedOut = true;
      socket.destroy();
    }, opts.timeoutMs ?? 15_000);
    socket.on("secureConnect", () => {
      socket.write(bytes);
      if (!opts.keepOpen) socket.end();
    });
    socket.on("data", (d: Buffer) => chunks.push(d));
    socket.on("error", (e: Error) => (out.error ??= e.message));
    socket.on("close", () => {
      clearTimeout(timer);
      out.data = Buffer.concat(chunks);
      resolve(out);
    });
  });
}

/** One response as split by {@linkcode splitResponses}. */
export interface SimpleResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * Split a byte stream of HTTP/1.1 responses (Content-Length or chunked bodies; a body without
 * either runs to the end). Minimal on purpose: it is the tests' reader, not the gate's.
 */
export function splitResponses(data: Buffer): SimpleResponse[] {
  const out: SimpleResponse[] = [];
  let rest = data;
  while (rest.length > 0) {
    const end = rest.indexOf("\r\n\r\n");
    if (end === -1) break;
    const lines = rest.subarray(0, end).toString("latin1").split("\r\n");
    const status = Number(lines[0].split(" ")[1]);
    const headers: Record<string, string> = {};
    for (const l of lines.slice(1)) {
      const i = l.indexOf(":");
      headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
    }
    rest = rest.subarray(end + 4);
    let body: Buffer;
    if (status === 101 || status === 204 || status === 304 || status < 200) {
      body = Buffer.alloc(0);
    } else if (headers["content-length"] !== undefined) {
      const n = Number(headers["content-length"]);
      body = rest.subarray(0, n);
      rest = rest.subarray(n);
    } else if (headers["transfer-encoding"]?.toLowerCase() === "chunked") {
      const parts: Buffer[] = [];
      for (;;) {
        const lineEnd = rest.indexOf("\r\n");
        const size = parseInt(rest.subarray(0, lineEnd).toString("latin1"), 16);
        rest = rest.subarray(lineEnd + 2);
        if (!(size > 0)) {
          rest = rest.subarray(2);
          break;
        }
        parts.push(rest.subarray(0, size));
        rest = rest.subarray(size + 2);
      }
      body = Buffer.concat(parts);
    } else {
      body = rest;
      rest = Buffer.alloc(0);
    }
    out.push({ status, headers, body: body.toString("utf8") });
    if (status === 101) break;
  }
  return out;
}

/** A request with a JSON body and a correct Content-Length. */
export function jsonRequest(method: string, target: string, body: string, extra = ""): string {
  return `${method} ${target} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;
}

/** A ustar header block for a regular file `name` of `size` bytes, checksum correct (written
 * here, not by the gate's code, so tests do not share its assumptions). */
export function tarHeader(name: string | Uint8Array, size: number): Buffer {
  const b = Buffer.alloc(512);
  b.set((typeof name === "string" ? Buffer.from(name, "latin1") : name).subarray(0, 100), 0);
  b.write("0000644\0", 100, "latin1");
  b.write("0000000\0", 108, "latin1");
  b.write("0000000\0", 116, "latin1");
  b.write(size.toString(8).padStart(11, "0") + "\0", 124, "latin1");
  b.write("00000000000\0", 136, "latin1");
  b.write("        ", 148, "latin1");
  b.write("0", 156, "latin1");
  b.write("ustar\x0000", 257, "latin1");
  let sum = 0;
  for (const x of b) sum += x;
  b.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, "latin1");
  return b;
}
