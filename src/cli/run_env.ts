/**
 * `dockgate env NAME`: how a client uses its bundle. Prints the shell lines
 * (`eval "$(dockgate env alice)"`), or with `--context` the `docker context create` command
 * (`--apply` runs it), and with `--bundle FILE.tar.gz` packs the bundle for copying.
 *
 * @module
 */

import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { basename, resolve } from "node:path";
import type { EnvCommand } from "./args.ts";
import type { CliIo } from "./io.ts";
import { clientBundlePaths } from "../ca/layout.ts";
import { writeBundleArchive } from "../ca/bundle_archive.ts";

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
    await writeBundleArchive(bundle.dir, cmd.name, cmd.bundle, cmd.bundleHost);
    const where = cmd.bundleHost ? ` (gate ${cmd.bundleHost})` : "";
    const hint = cmd.bundleHost ? "" : " --host HOST:PORT";
    io.say(
      `wrote ${cmd.bundle} (0600)${where}: copy it to the client, then ` +
        `"dockgate use ${shellWord(basename(cmd.bundle))}${hint}" there`,
    );
    return 0;
  }
  if (cmd.hosts.length > 1) return await fleetContexts(cmd, dir, io);
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
  for (const line of shellLines(cmd.host, dir)) io.out(line);
  io.out(`# Run: eval "$(dockgate env ${shellWord(cmd.name)})"`);
  return 0;
}

/**
 * The shell lines that point the Docker CLI at the gate `host` (`HOST:PORT`) with the bundle
 * in `dir`.
 *
 * @example
 * ```ts
 * import { shellLines } from "./run_env.ts";
 * const l = shellLines("gate:2376", "/home/a/.docker/dockgate/alice");
 * if (l[0] !== "export DOCKER_HOST=tcp://gate:2376" || l.length !== 3) throw new Error(l.join());
 * ```
 */
export function shellLines(host: string, dir: string): string[] {
  return [
    `export DOCKER_HOST=${shellWord(`tcp://${host}`)}`,
    "export DOCKER_TLS_VERIFY=1",
    `export DOCKER_CERT_PATH=${shellWord(dir)}`,
  ];
}

/**
 * The docker context name for a fleet host: its host name (`h1` for `h1:2376`), with the
 * port when two hosts share a name. Docker's rule: `[a-zA-Z0-9][a-zA-Z0-9_.+-]*`.
 *
 * @example
 * ```ts
 * import { fleetContextNames } from "./run_env.ts";
 * const names = fleetContextNames(["h1:2376", "h2.lan:2376", "[::1]:2376", "h1:2377"]);
 * if (names.join() !== "h1-2376,h2.lan,1,h1-2377") throw new Error(names.join());
 * ```
 */
export function fleetContextNames(hosts: readonly string[]): string[] {
  const split = hosts.map((h) => {
    const at = h.lastIndexOf(":");
    const name = h.slice(0, at).replace(/^\[|\]$/g, "").replace(/[^A-Za-z0-9_.+-]/g, "-")
      .replace(/^[^A-Za-z0-9]+/, "");
    return { name: name === "" ? "host" : name, port: h.slice(at + 1) };
  });
  return split.map(({ name, port }) =>
    split.filter((o) => o.name === name).length > 1 ? `${name}-${port}` : name
  );
}

/** One `docker context` per fleet host, all for the same client bundle. */
async function fleetContexts(cmd: EnvCommand, dir: string, io: CliIo): Promise<number> {
  const names = fleetContextNames(cmd.hosts);
  const all = cmd.hosts.map((h, i) => contextArgs(names[i], h, dir));
  if (!cmd.apply) {
    for (const args of all) io.out(["docker", ...args].map(shellWord).join(" "));
    io.out(`# Then: docker --context ${shellWord(names[0])} ps`);
    return 0;
  }
  for (const [i, args] of all.entries()) {
    const code = await run("docker", args);
    if (code !== 0) throw new Error(`docker context create ${names[i]} failed (exit ${code})`);
    io.say(`created docker context "${names[i]}" for ${cmd.hosts[i]}`);
  }
  io.say(`use them with: docker --context ${names[0]} ps`);
  return 0;
}

/** Run `command args…` (stdout ignored, stderr passed through); resolves with its exit code. */
export function run(command: string, args: string[]): Promise<number> {
  return new Promise((done, fail) => {
    const child = spawn(command, args, { stdio: ["ignore", "ignore", "inherit"] });
    child.once("error", (err) => fail(new Error(`Cannot run ${command}: ${err.message}`)));
    child.once("exit", (code) => done(code ?? 1));
  });
}
