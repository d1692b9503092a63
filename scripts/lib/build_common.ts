/**
 * What the build scripts (`build_npm.ts`, `build_bin.ts`) share: running a tool, timing the
 * steps, and the command line (`[VERSION] [--flag VALUE]… [--switch]…`).
 *
 * @module
 */

import { spawnSync } from "node:child_process";
import process from "node:process";

/**
 * Run `cmd ARGS…` to completion (output up to 64 MiB); throws with its output unless it
 * exits 0.
 */
export function run(
  cmd: string,
  args: string[],
  opts: { cwd?: string } = {},
): { stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, {
    cwd: opts.cwd,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    maxBuffer: 64 << 20,
  });
  if (r.error) throw new Error(`${cmd} ${args.join(" ")}: ${r.error.message}`);
  if (r.status !== 0) {
    throw new Error(
      `${cmd} ${args.join(" ")} exited with ${r.status ?? r.signal}:\n${r.stderr}${r.stdout}`,
    );
  }
  return { stdout: r.stdout, stderr: r.stderr };
}

/** Timed build steps: `step(name, fn)` runs `fn`, records its milliseconds and logs them. */
export function stepTimer(task: string, log: (line: string) => void): {
  timings: Record<string, number>;
  step: <T>(name: string, fn: () => Promise<T> | T) => Promise<T>;
} {
  const timings: Record<string, number> = {};
  const step = async <T>(name: string, fn: () => Promise<T> | T): Promise<T> => {
    const t0 = performance.now();
    const result = await fn();
    timings[name] = Math.round(performance.now() - t0);
    log(`${task}: ${name} (${timings[name]} ms)`);
    return result;
  };
  return { timings, step };
}

/** The command line of a build script. */
export interface BuildCommand {
  /** The task, e.g. `build:npm` (prefix of every line). */
  task: string;
  /** What follows `deno task TASK` in the usage line. */
  usage: string;
  /** Flags taking a value, e.g. `--out`: called with it. */
  valued?: Record<string, (value: string) => void>;
  /** Flags without a value, e.g. `--no-pack`. */
  switches?: Record<string, () => void>;
  /** Build, given the VERSION argument if any. */
  build(version: string | undefined): Promise<unknown>;
}

/**
 * Parse `process.argv` (exit 2 with the usage line on anything unknown), build, and print the
 * time taken; exit 1 with one `TASK: error: …` line if the build throws.
 */
export async function buildMain(command: BuildCommand): Promise<void> {
  const usage = (): never => {
    console.error(`usage: deno task ${command.task} ${command.usage}`);
    process.exit(2);
  };
  const args = process.argv.slice(2);
  let version: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const valued = Object.hasOwn(command.valued ?? {}, a) ? command.valued![a] : undefined;
    const flag = Object.hasOwn(command.switches ?? {}, a) ? command.switches![a] : undefined;
    if (valued && args[i + 1]) valued(args[++i]);
    else if (flag) flag();
    else if (a === "-h" || a === "--help") usage();
    else if (!a.startsWith("-") && version === undefined) version = a;
    else usage();
  }
  try {
    const t0 = performance.now();
    await command.build(version);
    console.error(`${command.task}: done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  } catch (err) {
    console.error(`${command.task}: error: ${(err as Error).message}`);
    process.exit(1);
  }
}

/**
 * esbuild's arguments for bundling `entry` (cli.ts) into one ESM file for Node 20 at `out`:
 * the Node build of dockgate used by the tests and the bench without the npm build.
 *
 * @example
 * ```ts
 * import { nodeBundleArgs } from "./build_common.ts";
 * if (!nodeBundleArgs("cli.ts", "out.mjs").includes("--outfile=out.mjs")) throw new Error();
 * ```
 */
export function nodeBundleArgs(entry: string, out: string): string[] {
  return [
    entry,
    "--bundle",
    "--platform=node",
    "--format=esm",
    "--target=node20",
    // CommonJS dependencies (yaml) call require("process") etc.; an ESM bundle has no
    // require of its own, so give it Node's.
    "--banner:js=import { createRequire as __dgCreateRequire } from 'node:module'; " +
    "const require = __dgCreateRequire(import.meta.url);",
    `--outfile=${out}`,
    "--log-level=warning",
  ];
}
