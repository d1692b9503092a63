/**
 * `dockgate use NAME.tar.gz` on the client machine: the bundle archive that `dockgate env
 * NAME --bundle` made on the CA host, read strictly and checked (`ca/bundle_unpack.ts`,
 * `ca/bundle_install.ts`) before anything is written, installed into the Docker CLI's
 * config directory, then a Docker context (the default), the `DOCKER_*` shell lines, or the
 * `dockgate connect` command. Every refusal is one line, and leaves nothing behind.
 *
 * @module
 */

import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { hostPort, UsageError, type UseCommand } from "./args.ts";
import type { CliIo } from "./io.ts";
import { contextArgs, run, shellLines, shellWord } from "./run_env.ts";
import { type BundleArchive, BundleArchiveError, readBundleArchive } from "../ca/bundle_unpack.ts";
import { checkBundle, existingBundleFiles, installBundle } from "../ca/bundle_install.ts";
import { fsErrorText } from "../util/fs_util.ts";

/** Install a bundle archive and set up the Docker CLI; returns the exit code. */
export async function runUse(cmd: UseCommand, io: CliIo): Promise<number> {
  const bundle = await readChecked(cmd.archive);
  const host = gateOf(cmd, bundle);
  const dir = resolve(cmd.dir ?? join(cmd.dockerConfig, "dockgate", bundle.name));
  const there = await existingBundleFiles(dir);
  if (there.length > 0 && !cmd.force) {
    throw new Error(
      `"${dir}" already holds a bundle (${there.join(", ")}): remove it or give --force to ` +
        `replace it; nothing was written`,
    );
  }
  const contextThere = cmd.mode === "context" && await contextExists(bundle.name);
  if (contextThere && !cmd.force) {
    throw new Error(
      `docker context "${bundle.name}" already exists: remove it ("docker context rm ` +
        `${bundle.name}") or give --force to replace it; nothing was written`,
    );
  }
  const files = await installBundle(bundle, dir, cmd.force);
  const installed = `installed bundle "${bundle.name}" in ${dir} (key.pem 0600)`;
  if (cmd.mode === "env") {
    for (const line of shellLines(host, files.dir)) io.out(line);
    io.say(`${installed}; gate ${host}`);
    return 0;
  }
  if (cmd.mode === "connect") {
    io.out(`dockgate connect --server ${shellWord(host)} --certs ${shellWord(files.dir)}`);
    io.say(`${installed}; run the line above, then point DOCKER_HOST at the socket it prints`);
    return 0;
  }
  const args = contextArgs(bundle.name, host, files.dir);
  if (contextThere) args[1] = "update";
  const code = await run("docker", args);
  if (code !== 0) {
    throw new Error(`docker context ${args[1]} ${bundle.name} failed (exit ${code})`);
  }
  io.say(
    `${installed}; docker context "${bundle.name}" is ${host}: docker --context ${bundle.name} ps`,
  );
  return 0;
}

/** The archive read and its bundle checked, or one line saying why not. */
async function readChecked(archive: string): Promise<BundleArchive> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(archive);
  } catch (err) {
    throw new Error(`Cannot read bundle archive "${archive}": ${fsErrorText(err)}`);
  }
  try {
    const bundle = readBundleArchive(bytes);
    await checkBundle(bundle);
    return bundle;
  } catch (err) {
    if (!(err instanceof BundleArchiveError)) throw err;
    throw new Error(`Refusing "${archive}": ${err.message}; nothing was written`);
  }
}

/** The gate's `HOST:PORT`: `--host`, else the archive's record, else an error with the fix. */
function gateOf(cmd: UseCommand, bundle: BundleArchive): string {
  if (cmd.host) return cmd.host;
  if (bundle.host === undefined) {
    throw new Error(
      `"${cmd.archive}" does not record the gate's address: give --host HOST:PORT, or make ` +
        `the archive with "dockgate env ${bundle.name} --bundle FILE --host HOST:PORT"`,
    );
  }
  try {
    return hostPort(bundle.host);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    throw new Error(
      `Refusing "${cmd.archive}": ${bundle.name}/host is not HOST:PORT; nothing was written`,
    );
  }
}

/** Whether the Docker CLI has a context `name` (a missing docker binary is an error). */
function contextExists(name: string): Promise<boolean> {
  return new Promise((done, fail) => {
    const child = spawn("docker", ["context", "inspect", name], { stdio: "ignore" });
    child.once("error", (err) => fail(new Error(`Cannot run docker: ${err.message}`)));
    child.once("exit", (code) => done(code === 0));
  });
}
