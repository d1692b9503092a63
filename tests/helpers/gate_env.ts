/**
 * An environment for end-to-end tests of `dockgate serve` (access_test.ts, hardening_test.ts):
 * a PKI, a recording target, serve processes started against them, long-lived clients, and
 * assertions that a client was served or refused with nothing reaching the target.
 */

import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import tls from "node:tls";
import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { freeTempDir } from "./wait.ts";
import { type Runtime, type ServeProcess, startServe } from "./gate.ts";
import {
  type Creds,
  RecordingTarget,
  REFUSAL_ANSWER,
  tlsAttempt,
  tlsConnect,
  type TlsOutcome,
  waitForLine,
} from "./tls_peers.ts";
import { clientBundlePaths, pkiLayout } from "../../src/ca/layout.ts";
import { initPki, issueClientBundle } from "../../src/ca/keygen.ts";

/** A long-lived, accepted TLS connection through the gate to the echo target. */
export class LiveClient {
  received = "";
  closedAt?: number;
  error?: string;
  readonly closed: Promise<void>;
  #waiters: (() => void)[] = [];

  private constructor(readonly socket: tls.TLSSocket) {
    this.closed = new Promise((resolve) => {
      socket.on("close", () => {
        this.closedAt = Date.now();
        for (const w of this.#waiters) w();
        resolve();
      });
    });
    socket.on("data", (d: Uint8Array) => {
      this.received += new TextDecoder().decode(d);
      for (const w of this.#waiters) w();
    });
    socket.on("error", (e: Error) => (this.error ??= e.message));
  }

  /** Connect, and resolve once a first echo went through (so the gate accepted it). */
  static async open(port: number, creds: Creds): Promise<LiveClient> {
    const socket = tlsConnect(port, creds);
    const c = new LiveClient(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once("secureConnect", resolve);
      socket.once("error", reject);
    });
    c.localPort = socket.localPort;
    await c.echo("hello\n");
    return c;
  }

  /** Our local port (the gate logs it as the peer). */
  localPort?: number;

  get isClosed(): boolean {
    return this.closedAt !== undefined;
  }

  serverFingerprint(): string {
    return this.socket.getPeerCertificate().fingerprint256;
  }

  /** Send `msg` and wait for it to come back; rejects if the connection closes first. */
  echo(msg: string, timeoutMs = 5_000): Promise<void> {
    const from = this.received.length;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => done(new Error(`no echo of ${JSON.stringify(msg)} in ${timeoutMs} ms`)),
        timeoutMs,
      );
      const check = () => {
        if (this.received.indexOf(msg, from) >= 0) done();
        else if (this.isClosed) {
          done(new Error(`connection closed before echo (${this.error ?? "no error"})`));
        }
      };
      const done = (err?: Error) => {
        clearTimeout(timer);
        this.#waiters = this.#waiters.filter((w) => w !== check);
        err ? reject(err) : resolve();
      };
      this.#waiters.push(check);
      this.socket.write(msg);
      check();
    });
  }

  async end(): Promise<void> {
    this.socket.end();
    await this.closed;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/**
 * Keep data flowing on `client`: one echo round trip every `everyMs` until stopped or the
 * connection closes. Records when each round trip completed.
 */
export function startPump(client: LiveClient, everyMs = 25) {
  const times: number[] = [];
  let stopped = false;
  let failure: string | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let wake: (() => void) | undefined;
  const loop = (async () => {
    for (let i = 0; !stopped; i++) {
      try {
        await client.echo(`tick-${i}-${crypto.randomUUID()}\n`);
        times.push(Date.now());
      } catch (e) {
        failure = (e as Error).message;
        return;
      }
      // Pacing, not a readiness wait.
      await new Promise<void>((r) => {
        wake = r;
        timer = setTimeout(r, everyMs);
      });
    }
  })();
  return {
    times,
    get failure() {
      return failure;
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      wake?.();
      await loop;
      return { count: times.length, failure };
    },
  };
}

export function peerRe(port: number | undefined): string {
  assert.ok(port, "client port known");
  return `peer=127\\.0\\.0\\.1:${port} `;
}

export function fingerprintOf(pem: string): string {
  return new X509Certificate(pem).fingerprint256;
}

/** A PKI, a recording target, and a way to start serve against them. */
export interface Env {
  dir: string;
  pki: string;
  target: RecordingTarget;
  caPem: string;
  /** Credentials of client bundle `name` (created on first use). */
  client(name: string): Promise<Creds>;
  /** Start serve with `--certs PKI/server --target unix://…` plus `extra`; stopped at the end. */
  serve(extra?: string[], runtime?: Runtime): Promise<ServeProcess>;
}

export async function withEnv(fn: (env: Env) => Promise<void>): Promise<void> {
  const dir = await freeTempDir("dg-access-");
  const target = new RecordingTarget(join(dir, "target.sock"));
  const gates: ServeProcess[] = [];
  try {
    const pki = join(dir, "pki");
    await initPki({ dir: pki });
    await target.start();
    const caPem = await readFile(pkiLayout(pki).caCert, "utf8");
    const env: Env = {
      dir,
      pki,
      target,
      caPem,
      async client(name) {
        const p = clientBundlePaths(pki, name);
        try {
          await readFile(p.cert);
        } catch {
          await issueClientBundle(name, { dir: pki });
        }
        return {
          ca: caPem,
          cert: await readFile(p.cert, "utf8"),
          key: await readFile(p.key, "utf8"),
        };
      },
      async serve(extra = [], runtime = "deno") {
        const gate = await startServe([
          "--certs",
          join(pki, "server"),
          "--target",
          `unix://${target.path}`,
          ...extra,
        ], { runtime });
        gates.push(gate);
        return gate;
      },
    };
    await fn(env);
  } finally {
    for (const g of gates) await g.stop();
    await target.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

let seq = 0;

/** A client that must be served: its payload comes back and the gate logs `accepted`. */
export async function assertAccepted(
  gate: ServeProcess,
  creds: Creds,
  identity: string,
  why?: RegExp,
): Promise<TlsOutcome> {
  const payload = `payload-${++seq}-${crypto.randomUUID()}\n`;
  const out = await tlsAttempt(gate.port, creds, payload);
  assert.equal(
    out.data,
    payload,
    `${identity} should be served: ${JSON.stringify(out)}\n${gate.log()}`,
  );
  const line = (await gate.waitForLog(new RegExp(`INFO accepted ${peerRe(out.localPort)}.*`)))[0];
  assert.match(line, new RegExp(`identity=${identity.replace(/[.*]/g, "\\$&")} `));
  if (why) assert.match(line, why);
  return out;
}

/**
 * A client that must be refused after its handshake: at most the gate's refusal answer,
 * logged, target untouched.
 */
export async function assertRefused(
  env: Env,
  gate: ServeProcess,
  creds: Creds,
  reason: RegExp,
): Promise<string> {
  const before = { conns: env.target.connections, bytes: env.target.bytes, log: gate.log().length };
  const out = await tlsAttempt(
    gate.port,
    creds,
    "GET /containers/json HTTP/1.1\r\nHost: d\r\n\r\n",
  );
  // Refused by the runtime's TLS: nothing. Refused by the gate's own checks after the
  // handshake: the gate's answer in Docker's error shape and nothing else (no relayed byte).
  if (out.data !== "") {
    assert.match(out.data, REFUSAL_ANSWER, `refused client got data: ${JSON.stringify(out)}`);
  }
  assert.equal(out.timedOut, false, "the gate must close the connection itself");
  const line = await waitForLine(
    gate,
    before.log,
    new RegExp(`WARN refused ${peerRe(out.localPort)}`),
  );
  assert.match(line, reason);
  // No new target connection, hence not a byte from the refused client (other, already open
  // connections may be flowing meanwhile).
  assert.equal(
    env.target.connections,
    before.conns,
    "target saw no connection from the refused client",
  );
  assert.equal(env.target.perConnection.length, before.conns);
  return line;
}
