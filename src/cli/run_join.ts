/**
 * `dockgate join` and `dockgate renew`: the client side of enrolment (`enroll/join.ts`),
 * reported line by line, and renew's daemon loop (2/3 of each lifetime, retries until the
 * certificate ends, `--exec` after each renewal).
 *
 * @module
 */

import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import type { JoinCommand, RenewCommand } from "./args.ts";
import { type CliIo, onStopSignals } from "./io.ts";
import { joinGate, renewalTime, renewBundleOnce } from "../enroll/join.ts";
import { bundlePaths } from "../ca/layout.ts";
import { parseCertificatesPem } from "../pki/pem.ts";
import { DEFAULTS } from "../config/defaults.ts";

/** `dockgate join HOST:PORT TOKEN`: enrol, write the bundle, say how to use it. */
export async function runJoin(cmd: JoinCommand, io: CliIo): Promise<number> {
  const r = await joinGate(cmd);
  const dir = r.files.dir;
  io.say(
    `joined as ${r.name}: ${dir}/{ca,cert,key}.pem (certificate until ${r.notAfter.toISOString()})`,
  );
  const api = `tcp://${
    cmd.host.includes(":") ? `[${cmd.host}]` : cmd.host
  }:${DEFAULTS.dockerTlsPort}`;
  io.say("next steps (the gate's API port, 2376 unless it listens elsewhere):");
  io.say(`  export DOCKER_HOST=${api} DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=${dir}`);
  io.say(
    `  docker context create ${r.name} --docker "host=${api},ca=${r.files.ca},cert=${r.files.cert},key=${r.files.key}"`,
  );
  io.say(`  dockgate renew --dir ${dir} --daemon   (keeps the short-lived certificate fresh)`);
  return 0;
}

/** `dockgate renew`: once, or as a daemon until SIGTERM/SIGINT. */
export async function runRenew(cmd: RenewCommand, io: CliIo): Promise<number> {
  const place = cmd.server;
  if (!cmd.daemon) {
    const r = await renewBundleOnce({ dir: cmd.dir, place });
    io.say(`renewed ${r.name}: ${r.files.cert} until ${r.notAfter.toISOString()}`);
    return 0;
  }
  let stop!: () => void;
  const stopped = new Promise<void>((resolve) => (stop = resolve));
  onStopSignals(io, () => stop());
  await renewLoop({ ...cmd, stopped, log: io.logger("info") });
  return 0;
}

/** What {@linkcode renewLoop} renews, and whom it tells. */
export interface RenewLoop {
  /** The bundle directory. */
  dir: string;
  /** The enrolment port, when not from `DIR/enroll.json`. */
  server?: { host: string; port: number };
  /** `--exec`: run after each renewal. */
  exec?: string;
  /** Resolves when the loop must end. */
  stopped: Promise<void>;
  /** Where it reports. */
  log: ReturnType<CliIo["logger"]>;
  /** Called after each renewal (connect uses the new certificate from then on). */
  onRenewed?: () => Promise<void> | void;
}

/**
 * Renew the bundle in `dir` at 2/3 of each certificate's lifetime until `stopped`; throws
 * once a certificate ended without a renewal (`renew --daemon`, `connect --renew`).
 */
export async function renewLoop(loop: RenewLoop): Promise<void> {
  for (;;) {
    const cert = await currentCert(loop.dir);
    const due = renewalTime(cert).getTime();
    const wait = Math.max(0, due - Date.now());
    loop.log.log("info", "next renewal", { at: new Date(Date.now() + wait).toISOString() });
    if (await sleepOrStop(wait, loop.stopped)) return;
    if (await renewUntilDone(loop, cert)) return;
  }
}

/**
 * Renew, retrying (every tenth of what is left, between 1 s and 5 min) until it works or the
 * certificate ends; `true` when stopped meanwhile. An ended certificate cannot renew: join
 * again.
 */
async function renewUntilDone(loop: RenewLoop, cert: { notAfter: Date }): Promise<boolean> {
  const { log, stopped } = loop;
  for (;;) {
    try {
      const r = await renewBundleOnce({ dir: loop.dir, place: loop.server });
      log.log("info", "renewed", { identity: r.name, not_after: r.notAfter.toISOString() });
      await loop.onRenewed?.();
      if (loop.exec) await runExec(loop.exec, log);
      return false;
    } catch (err) {
      const left = cert.notAfter.getTime() - Date.now();
      if (left <= 0) {
        throw new Error(
          `the certificate ended before it could be renewed: ${
            (err as Error).message
          }; run dockgate join again`,
        );
      }
      const retry = Math.min(300_000, Math.max(1000, left / 10));
      log.log("warn", "renewal failed, retrying", {
        reason: (err as Error).message,
        in_ms: Math.round(retry),
      });
      if (await sleepOrStop(retry, stopped)) return true;
    }
  }
}

async function currentCert(dir: string) {
  const [leaf] = parseCertificatesPem(await readFile(bundlePaths(dir).cert, "utf8"));
  if (!leaf) throw new Error(`No certificate in "${bundlePaths(dir).cert}"`);
  return leaf;
}

/** Wait `ms`; `true` when `stopped` came first. */
async function sleepOrStop(ms: number, stopped: Promise<void>): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const slept = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)));
  const result = await Promise.race([slept, stopped.then(() => true)]);
  clearTimeout(timer);
  return result;
}

/** `--exec CMD` through `sh -c`; its failure is logged, not fatal. */
function runExec(command: string, log: ReturnType<CliIo["logger"]>): Promise<void> {
  return new Promise((resolve) => {
    const child = spawn("sh", ["-c", command], { stdio: ["ignore", "inherit", "inherit"] });
    child.once("error", (err) => {
      log.log("warn", "--exec failed", { reason: err.message });
      resolve();
    });
    child.once("exit", (code) => {
      if (code !== 0) log.log("warn", "--exec exited", { code: code ?? -1 });
      resolve();
    });
  });
}
