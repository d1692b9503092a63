/**
 * The setup the restricted roles' e2e tests share: a test per available engine
 * ({@linkcode forEachEngine}), a private dockerd with a policy gate in front of it and the real
 * docker CLI through the gate as one identity's certificate ({@linkcode e2eGate}).
 *
 * @example A no-escape identity runs the CLI through the gate on every engine
 * ```ts ignore
 * forEachEngine((e) => `ps through the gate (Docker ${e})`, async (_t, engine) => {
 *   const g = await e2eGate(engine, { roles: { ci: { preset: "no-escape" } },
 *     identities: [{ cn: "ci", role: "ci" }] }, ["ci"]);
 *   if (!g) return;
 *   try {
 *     if ((await g.as("ci", ["ps"])).code !== 0) throw new Error("ps through the gate");
 *   } finally {
 *     await g.stop();
 *   }
 * });
 * ```
 *
 * @module
 */

import { join } from "node:path";
import {
  availableEngines,
  type Dockerd,
  dockerdUnavailable,
  type DockerResult,
  type DockerRunOptions,
  type Engine,
  startDockerd,
} from "./dockerd.ts";
import { type ServeProcess, startPolicyGate, tlsFlags } from "./gate.ts";
import { bundleCreds, type Creds } from "./tls_peers.ts";
import { freeTempDir } from "./wait.ts";

/** A dockerd with a policy gate in front of it; see {@linkcode e2eGate}. */
export interface E2eGate {
  /** The private dockerd (its own socket: `d.docker([...])` judges what the daemon did). */
  d: Dockerd;
  /** The running `dockgate serve --policy`. */
  gate: ServeProcess;
  /** The PKI directory (`clients/NAME/` per client). */
  pki: string;
  /** A temp dir of the test's own (removed by `stop`). */
  work: string;
  /** The real docker CLI through the gate with `who`'s client certificate. */
  as(who: string, args: string[], opts?: DockerRunOptions): Promise<DockerResult>;
  /** `who`'s client certificate, key and CA for raw TLS requests. */
  creds(who: string): Promise<Creds>;
  /** Stops the gate and dockerd and removes `work`. Idempotent. */
  stop(): Promise<void>;
}

/** How {@linkcode e2eGate} starts the gate. */
export interface E2eGateOptions {
  /** Extra `serve` arguments, given the test's work dir (e.g. an audit log in it). */
  serveArgs?: (work: string) => string[];
  /** Extra dockerd flags (a daemon-wide default the attack depends on). */
  dockerdArgs?: string[];
}

/**
 * Start a dockerd of `engine` and `dockgate serve --policy policy` in front of it with a client
 * certificate per name in `clients`; resolves when the gate has loaded the policy, or with
 * undefined when dockerd cannot run here (the caller returns, as after startDockerd).
 *
 * @example See the module's example.
 * ```ts ignore
 * const g = await e2eGate("20.10", policy, ["ci"]);
 * ```
 */
export async function e2eGate(
  engine: Engine,
  policy: unknown,
  clients: readonly string[],
  opts: E2eGateOptions = {},
): Promise<E2eGate | undefined> {
  const d = await startDockerd({ engine, extraArgs: opts.dockerdArgs });
  if (!d) return undefined;
  const work = await freeTempDir("dge2e-");
  let gate: ServeProcess | undefined;
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await gate?.stop();
    await d.stop();
    await Deno.remove(work, { recursive: true }).catch(() => {});
  };
  try {
    const g = await startPolicyGate(d.host, work, policy, clients, opts.serveArgs?.(work) ?? []);
    gate = g.gate;
    await gate.waitForLog(/API policy: /);
    const host = gate.host;
    return {
      d,
      gate,
      pki: g.pki,
      work,
      as: (who, args, o = {}) =>
        d.docker([...tlsFlags(join(g.pki, "clients", who)), ...args], { host, ...o }),
      creds: (who) => bundleCreds(g.pki, who),
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

/**
 * Register one Deno test per engine of `availableEngines()` (ignored where dockerd cannot run;
 * the daemons' and gates' own timers are no leak of the test's).
 *
 * @example
 * ```ts ignore
 * forEachEngine((e) => `thing (Docker ${e})`, async (t, engine) => {});
 * ```
 */
export function forEachEngine(
  name: (engine: Engine) => string,
  fn: (t: Deno.TestContext, engine: Engine) => Promise<void>,
): void {
  for (const engine of availableEngines()) {
    Deno.test({
      name: name(engine),
      ignore: dockerdUnavailable(),
      sanitizeOps: false,
      sanitizeResources: false,
    }, (t) => fn(t, engine));
  }
}
