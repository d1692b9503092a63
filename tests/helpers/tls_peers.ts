/**
 * Peers for end-to-end tests of `dockgate serve` (see serve_test.ts, access_test.ts): a
 * recording unix-socket echo target, TLS and raw TCP clients that report what happened, and
 * waiting for lines of the gate's log.
 */

import { rm } from "node:fs/promises";
import net from "node:net";
import tls from "node:tls";
import { waitFor } from "./wait.ts";
import type { ServeProcess } from "./gate.ts";

/** A unix-socket echo server that records every connection and byte it receives. */
export class RecordingTarget {
  connections = 0;
  bytes = 0;
  /** Bytes received on each connection, in order of arrival. */
  perConnection: number[] = [];
  #server?: net.Server;
  #sockets = new Set<net.Socket>();

  constructor(readonly path: string) {}

  async start(): Promise<void> {
    await rm(this.path, { force: true });
    const server = net.createServer({ allowHalfOpen: true }, (s) => {
      const index = this.connections++;
      this.perConnection[index] = 0;
      this.#sockets.add(s);
      s.on("data", (d: Uint8Array) => {
        this.bytes += d.byteLength;
        this.perConnection[index] += d.byteLength;
        s.write(d);
      });
      s.on("end", () => s.end());
      s.on("error", () => {});
      s.on("close", () => this.#sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.path, () => resolve());
    });
    this.#server = server;
  }

  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (!server) return;
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
    await rm(this.path, { force: true });
  }
}

/** The whole of what a client refused after its handshake may receive: the gate's answer. */
export const REFUSAL_ANSWER =
  /^HTTP\/1\.1 (403 Forbidden|502 Bad Gateway)\r\nContent-Type: application\/json\r\nContent-Length: \d+\r\nConnection: close\r\nDockgate-Refused: [^\r]+\r\n\r\n\{"message":"dockgate: [^\n]*"\}\n$/;

/** A client's PEM credentials: the CA it trusts, and its certificate and key if it has any. */
export interface Creds {
  ca: string;
  cert?: string;
  key?: string;
}

/** What a {@linkcode tlsAttempt} saw. */
export interface TlsOutcome {
  /** The client saw its handshake complete. */
  secure: boolean;
  /** Application data received. */
  data: string;
  /** First error seen, if any. */
  error?: string;
  /** Our local port (the gate logs it as the peer). */
  localPort?: number;
  /** The attempt had to be cut by us. */
  timedOut: boolean;
  /** SHA-256 fingerprint of the server certificate seen, `AA:BB:…`. */
  serverFingerprint?: string;
}

/** node:tls to 127.0.0.1:`port` as `localhost` with `creds`, verifying the server. */
export function tlsConnect(port: number, creds: Creds): tls.TLSSocket {
  return tls.connect({
    host: "127.0.0.1",
    port,
    servername: "localhost",
    ca: creds.ca,
    cert: creds.cert,
    key: creds.key,
    rejectUnauthorized: true,
  });
}

/**
 * Connect with node:tls, send `send` once the handshake completes, read until as many bytes
 * came back (then end) or until the server closes.
 */
export function tlsAttempt(
  port: number,
  creds: Creds,
  send: string,
  timeoutMs = 10_000,
): Promise<TlsOutcome> {
  return new Promise((resolve) => {
    const out: TlsOutcome = { secure: false, data: "", timedOut: false };
    const socket = tlsConnect(port, creds);
    const timer = setTimeout(() => {
      out.timedOut = true;
      socket.destroy();
    }, timeoutMs);
    socket.on("connect", () => (out.localPort = socket.localPort));
    socket.on("secureConnect", () => {
      out.secure = true;
      out.localPort ??= socket.localPort;
      out.serverFingerprint = socket.getPeerCertificate()?.fingerprint256;
      socket.write(send);
    });
    socket.on("data", (d: Uint8Array) => {
      out.data += new TextDecoder().decode(d);
      if (out.data.length >= send.length) socket.end();
    });
    socket.on("error", (e: Error) => (out.error ??= e.message));
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(out);
    });
  });
}

/** Raw TCP: send `bytes`, collect whatever comes back until the server closes. */
export function rawAttempt(port: number, bytes: Uint8Array | undefined, timeoutMs = 10_000) {
  return new Promise<{ received: Uint8Array; localPort?: number; timedOut: boolean; ms: number }>(
    (resolve) => {
      const chunks: Uint8Array[] = [];
      const t0 = Date.now();
      let timedOut = false;
      let localPort: number | undefined;
      const socket = net.connect({ host: "127.0.0.1", port });
      const timer = setTimeout(() => {
        timedOut = true;
        socket.destroy();
      }, timeoutMs);
      socket.on("connect", () => {
        localPort = socket.localPort;
        if (bytes) socket.write(bytes);
      });
      socket.on("data", (d: Uint8Array) => chunks.push(new Uint8Array(d)));
      socket.on("error", () => {});
      socket.on("close", () => {
        clearTimeout(timer);
        const received = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
        let off = 0;
        for (const c of chunks) received.set(c, (off += c.length) - c.length);
        resolve({ received, localPort, timedOut, ms: Date.now() - t0 });
      });
    },
  );
}

/** Lines of the gate's log after character offset `from` that match `re`. */
export function linesAfter(gate: ServeProcess, from: number, re: RegExp): string[] {
  return gate.log().slice(from).split("\n").filter((l) => re.test(l));
}

/** Wait until a line after `from` matches `re`; returns it. */
export async function waitForLine(
  gate: ServeProcess,
  from: number,
  re: RegExp,
  timeoutMs = 10_000,
): Promise<string> {
  return await waitFor(() => linesAfter(gate, from, re)[0], { timeoutMs, what: `log line ${re}` })
    .catch((err) => {
      throw new Error(
        `${(err as Error).message}\n--- log since mark ---\n${
          gate.log().slice(from, from + 20_000)
        }`,
      );
    });
}

/** How many file descriptors process `pid` has open. */
export function fdCount(pid: number): number {
  return [...Deno.readDirSync(`/proc/${pid}/fd`)].length;
}

/** The client bundle `PKI/clients/NAME` as {@linkcode Creds} (keygen's layout). */
export async function bundleCreds(pki: string, name: string): Promise<Creds> {
  const dir = `${pki}/clients/${name}`;
  return {
    ca: await Deno.readTextFile(`${dir}/ca.pem`),
    cert: await Deno.readTextFile(`${dir}/cert.pem`),
    key: await Deno.readTextFile(`${dir}/key.pem`),
  };
}
