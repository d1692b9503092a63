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
  const log = io.logger("info");
  for (;;) {
    const cert = await currentCert(cmd.dir);
    const due = renewalTime(cert).getTime();
    const wait = Math.max(0, due - Date.now());
    log.log("info", "next renewal", { at: new Date(Date.now() + wait).toISOString() });
    if (await sleepOrStop(wait, stopped)) return 0;
    if (await renewUntilDone(cmd, cert, stopped, log)) return 0;
  }
}

/**
 * Renew, retrying (every tenth of what is left, between 1 s and 5 min) until it works or the
 * certificate ends; `true` when stopped meanwhile. An ended certificate cannot renew: join
 * again.
 */
async function renewUntilDone(
  cmd: RenewCommand,
  cert: { notAfter: Date },
  stopped: Promise<void>,
  log: ReturnType<CliIo["logger"]>,
): Promise<boolean> {
  for (;;) {
    try {
      const r = await renewBundleOnce({ dir: cmd.dir, place: cmd.server });
      log.log("info", "renewed", { identity: r.name, not_after: r.notAfter.toISOString() });
      if (cmd.exec) await runExec(cmd.exec, log);
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
