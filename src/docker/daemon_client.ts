/**
 * The gate's own small HTTP/1.1 client to the daemon, for owner checks: one keep-alive
 * connection per client connection, opened when first needed, requests one at a time, answers
 * read with the same strict parser as the relay's (`http.ts`).
 *
 * Why not `node:http`: its client needs an agent per socket path and differs between Deno and
 * Node in what it does with a custom connection; the gate already parses HTTP strictly, and an
 * owner check must never be fooled by an answer it read loosely.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import type { Duplex } from "node:stream";
import {
  ChunkedReader,
  findHeadEnd,
  HttpError,
  parseResponseHead,
  responseFraming,
} from "./http.ts";

/** An answer from the daemon. */
export interface DaemonAnswer {
  /** The status code. */
  status: number;
  /** The body, de-chunked. */
  body: Buffer;
  /** The response headers, names in lower case (the last of repeated ones). */
  headers: Record<string, string>;
}

/** The largest answer the client reads (a list of one owner's containers fits easily). */
export const MAX_ANSWER_BYTES = 16 * 1024 * 1024;

/**
 * A client that sends requests to the daemon over connections from `connect`.
 *
 * @example
 * ```ts ignore
 * import { DaemonClient } from "./daemon_client.ts";
 * import { connectTarget } from "../net/strategy.ts";
 * const c = new DaemonClient(() => connectTarget({ kind: "unix", path: "/var/run/docker.sock" }, 5000));
 * const { status } = await c.request("GET", "/_ping");
 * c.close();
 * ```
 */
export class DaemonClient {
  readonly #connect: () => Promise<Duplex>;
  #socket: Duplex | undefined;
  #buffer: Buffer = Buffer.alloc(0);
  #waiter: (() => void) | undefined;
  #failure: Error | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  /** Make a client; `connect` opens a connection to the daemon. */
  constructor(connect: () => Promise<Duplex>) {
    this.#connect = connect;
  }

  /**
   * Send one request and read its answer. `body` is sent as JSON. Throws when the daemon
   * cannot be reached or answers with something that is not HTTP.
   */
  request(method: string, path: string, body?: unknown): Promise<DaemonAnswer> {
    const run = this.#queue.then(() => this.#exchange(method, path, body));
    this.#queue = run.catch(() => {});
    return run;
  }

  /** Close the connection (the client can be used again: it reconnects). */
  close(): void {
    this.#closed = true;
    this.#socket?.destroy();
    this.#socket = undefined;
  }

  async #exchange(method: string, path: string, body?: unknown): Promise<DaemonAnswer> {
    if (this.#closed) throw new Error("owner check after the connection ended");
    try {
      return await this.#once(method, path, body);
    } catch (err) {
      // A kept-alive connection the daemon closed meanwhile: one fresh try.
      if (err instanceof HttpError) throw err;
      this.#drop();
      return await this.#once(method, path, body);
    }
  }

  async #once(method: string, path: string, body?: unknown): Promise<DaemonAnswer> {
    const socket = await this.#open();
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const head = `${method} ${path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: dockgate\r\n` +
      (payload ? `Content-Type: application/json\r\nContent-Length: ${payload.length}\r\n` : "") +
      "\r\n";
    socket.write(payload ? Buffer.concat([Buffer.from(head), payload]) : Buffer.from(head));
    const end = await this.#until(() => findHeadEnd(this.#buffer));
    const response = parseResponseHead(this.#buffer.subarray(0, end));
    this.#buffer = this.#buffer.subarray(end);
    const framing = responseFraming(response, method);
    let data: Buffer;
    if (framing.kind === "none") data = Buffer.alloc(0);
    else if (framing.kind === "length") {
      if (framing.length > MAX_ANSWER_BYTES) throw new HttpError(502, "owner check answer too big");
      await this.#until(() => (this.#buffer.length >= framing.length ? framing.length : -1));
      data = Buffer.from(this.#buffer.subarray(0, framing.length));
      this.#buffer = this.#buffer.subarray(framing.length);
    } else if (framing.kind === "chunked") {
      const reader = new ChunkedReader();
      const parts: Buffer[] = [];
      let size = 0;
      await this.#until(() => {
        const used = reader.feed(this.#buffer, (d) => {
          parts.push(Buffer.from(d));
          size += d.length;
        });
        this.#buffer = this.#buffer.subarray(used);
        if (size > MAX_ANSWER_BYTES) throw new HttpError(502, "owner check answer too big");
        return reader.done ? 0 : -1;
      });
      data = Buffer.concat(parts);
    } else throw new HttpError(502, "owner check answer without a length");
    if (response.status < 200) return await this.#once(method, path, body);
    const headers: Record<string, string> = {};
    for (const h of response.headers) headers[h.name.toLowerCase()] = h.value;
    return { status: response.status, body: data, headers };
  }

  async #open(): Promise<Duplex> {
    if (this.#socket && !this.#socket.destroyed) return this.#socket;
    const socket = await this.#connect();
    if (this.#closed) {
      socket.destroy();
      throw new Error("owner check after the connection ended");
    }
    this.#socket = socket;
    this.#buffer = Buffer.alloc(0);
    this.#failure = undefined;
    socket.on("data", (chunk: Buffer) => {
      this.#buffer = this.#buffer.length ? Buffer.concat([this.#buffer, chunk]) : chunk;
      this.#wake();
    });
    const fail = (err: Error) => {
      if (this.#socket === socket) {
        this.#failure = err;
        this.#socket = undefined;
      }
      this.#wake();
    };
    socket.once("error", fail);
    socket.once("end", () => fail(new Error("the daemon closed the owner-check connection")));
    socket.once("close", () => fail(new Error("the daemon closed the owner-check connection")));
    return socket;
  }

  #drop(): void {
    this.#socket?.destroy();
    this.#socket = undefined;
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.();
  }

  /** Wait until `ready` returns a non-negative number (re-run on every chunk). */
  async #until(ready: () => number): Promise<number> {
    for (;;) {
      const n = ready();
      if (n >= 0) return n;
      if (this.#failure) throw this.#failure;
      await new Promise<void>((resolve) => (this.#waiter = resolve));
    }
  }
}
