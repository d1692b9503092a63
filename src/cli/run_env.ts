/**
 * `dockgate env NAME`: how a client uses its bundle. Prints the shell lines
 * (`eval "$(dockgate env alice)"`), or with `--context` the `docker context create` command
 * (`--apply` runs it), and with `--bundle FILE.tar.gz` packs the bundle for copying.
 *
 * @module
 */

import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import type { EnvCommand } from "./args.ts";
import type { CliIo } from "./io.ts";
import { clientBundlePaths } from "../pki/keygen.ts";
import { writeBundleArchive } from "../pki/bundle_archive.ts";

/** A word the shell reads as itself: quoted unless it is plainly safe. */
export function shellWord(text: string): string {
  return /^[A-Za-z0-9_./:=@%+,-]+$/.test(text) ? text : `'${text.replaceAll("'", `'\\''`)}'`;
}

/**
 * The `docker context create` arguments for a client bundle.
 *
 * @example
 * ```ts
 * import { contextArgs } from "./run_env.ts";
 * const a = contextArgs("alice", "gate.example:2376", "/pki/clients/alice");
 * if (a[3] !== "--docker" || !a[4].startsWith("host=tcp://gate.example:2376,ca=/pki/clients/alice/ca.pem")) throw new Error(a.join(" "));
 * ```
 */
export function contextArgs(name: string, host: string, dir: string): string[] {
  const docker = `host=tcp://${host},ca=${dir}/ca.pem,cert=${dir}/cert.pem,key=${dir}/key.pem`;
  return ["context", "create", name, "--docker", docker];
}

/** Print or apply what a client needs; returns the exit code. */
export async function runEnv(cmd: EnvCommand, io: CliIo): Promise<number> {
  const bundle = clientBundlePaths(cmd.dir, cmd.name);
  const dir = resolve(bundle.dir);
  for (const f of [bundle.ca, bundle.cert, bundle.key]) {
    if (!existsSync(f)) {
      throw new Error(
        `Cannot find client bundle "${bundle.dir}" (${f} is missing): run "dockgate keygen client ${cmd.name} --dir ${cmd.dir}" first`,
      );
    }
  }
  if (cmd.bundle) {
    await writeBundleArchive(bundle.dir, cmd.name, cmd.bundle);
    io.say(`wrote ${cmd.bundle} (0600): copy it to the client, then "tar -xpzf ${cmd.bundle}"`);
    return 0;
  }
  if (cmd.context) {
    const args = contextArgs(cmd.name, cmd.host, dir);
    if (!cmd.apply) {
      io.out(["docker", ...args].map(shellWord).join(" "));
      return 0;
    }
    const code = await run("docker", args);
    if (code !== 0) throw new Error(`docker context create ${cmd.name} failed (exit ${code})`);
    io.say(`created docker context "${cmd.name}": docker --context ${cmd.name} version`);
    return 0;
  }
  io.out(`export DOCKER_HOST=${shellWord(`tcp://${cmd.host}`)}`);
  io.out("export DOCKER_TLS_VERIFY=1");
  io.out(`export DOCKER_CERT_PATH=${shellWord(dir)}`);
  io.out(`# Run: eval "$(dockgate env ${shellWord(cmd.name)})"`);
  return 0;
}

function run(command: string, args: string[]): Promise<number> {
  return new Promise((done, fail) => {
    const child = spawn(command, args, { stdio: ["ignore", "ignore", "inherit"] });
    child.once("error", (err) => fail(new Error(`Cannot run ${command}: ${err.message}`)));
    child.once("exit", (code) => done(code ?? 1));
  });
}
