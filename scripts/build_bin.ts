#!/usr/bin/env -S deno run -A
/**
 * Builds the standalone binary: `deno task build:bin [VERSION] [--out FILE] [--node PATH]`.
 *
 * `deno compile` needs to download `denort`, which is not reachable here, so the binary is a
 * Node.js single executable application (SEA):
 *
 * 1. Stage the sources as for npm (`build_npm.ts`: specifiers mapped to package names).
 * 2. Bundle `cli.ts` and its npm dependencies into ONE CommonJS file with esbuild (module
 *    evaluation order is kept, so `reflect-metadata` still loads before `@peculiar/x509`).
 * 3. `node --experimental-sea-config` turns it into a blob; a copy of that same `node`
 *    binary gets the blob injected with postject and its SEA fuse flipped.
 * 4. Smoke test: `FILE version` must print `dockgate VERSION`.
 *
 * The result (default `dist/dockgate-<os>-<arch>`, e.g. `dist/dockgate-linux-x64`) runs
 * without Node, Deno or node_modules. The `node` used (first on PATH, or `--node`) must be
 * Node.js >= 20 built with SEA support (the official builds are).
 *
 * @module
 */

import { Buffer } from "node:buffer";
import {
  chmod,
  copyFile,
  mkdir,
  mkdtemp,
  readFile,
  rename,
  rm,
  stat,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, dirname, join, resolve } from "node:path";
import process from "node:process";
import { declaredVersion, ENTRIES, ROOT, stageForNode } from "./build_npm.ts";
import { buildMain, run as runTool, stepTimer } from "./lib/build_common.ts";

/** The sentinel postject flips to tell Node a SEA blob is present. */
export const SEA_FUSE = "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2";

/** Options for {@linkcode buildBinary}. */
export interface BinaryBuildOptions {
  /** Version baked in. Default: deno.json's `version`. */
  version?: string;
  /** Output file. Default: `ROOT/dist/dockgate-<os>-<arch>`. */
  out?: string;
  /** The Node.js binary to embed. Default: `node` from PATH. */
  node?: string;
  /** Progress lines. Default: stderr. */
  log?: (line: string) => void;
}

/** What {@linkcode buildBinary} produced. */
export interface BinaryBuildResult {
  /** The executable. */
  path: string;
  /** Its size in bytes. */
  size: number;
  /** The embedded Node.js version. */
  nodeVersion: string;
  /** Milliseconds per step. */
  timings: Record<string, number>;
}

/** Run a tool; returns its stdout and stderr. */
function run(cmd: string, args: string[], opts: { cwd?: string } = {}): string {
  const { stdout, stderr } = runTool(cmd, args, opts);
  return stdout + stderr;
}

async function findOnPath(cmd: string): Promise<string> {
  for (const dir of (process.env.PATH ?? "").split(delimiter).filter(Boolean)) {
    const p = join(dir, cmd);
    const st = await stat(p).catch(() => undefined);
    if (st?.isFile() && (st.mode & 0o111) !== 0) return p;
  }
  throw new Error(`${cmd} not found on PATH`);
}

/** Build the binary; see the module doc. */
export async function buildBinary(options: BinaryBuildOptions = {}): Promise<BinaryBuildResult> {
  const log = options.log ?? ((line: string) => console.error(line));
  const { timings, step } = stepTimer("build:bin", log);
  const declared = await declaredVersion(ROOT);
  const version = options.version ?? declared;

  const node = options.node ?? await findOnPath("node");
  const [nodeVersion, platform, arch] = run(node, [
    "-p",
    "[process.version, process.platform, process.arch].join(' ')",
  ])
    .trim().split(" ");
  if (Number(nodeVersion.slice(1).split(".")[0]) < 20) {
    throw new Error(`${node} is Node.js ${nodeVersion}; single executable applications need >= 20`);
  }
  const nodeBytes = await readFile(node);
  if (nodeBytes.indexOf(Buffer.from(SEA_FUSE)) < 0) {
    throw new Error(`${node} (${nodeVersion}) has no SEA fuse: use an official Node.js build`);
  }
  const out = resolve(options.out ?? join(ROOT, "dist", `dockgate-${platform}-${arch}`));
  const work = await mkdtemp(join(tmpdir(), "dockgate-bin-"));
  const partial = `${out}.partial-${process.pid}`;
  try {
    const staged = await step("stage sources", () => stageForNode(ROOT, version));
    const bundle = join(work, "dockgate.cjs");
    try {
      await step(
        "esbuild bundle",
        () =>
          run(join(ROOT, "node_modules", "esbuild", "bin", "esbuild"), [
            join(staged.dir, ENTRIES.bin),
            "--bundle",
            "--platform=node",
            "--format=cjs",
            `--target=node${nodeVersion.slice(1).split(".")[0]}`,
            // Deno's entry-point flag; in a CommonJS bundle import.meta is empty.
            "--define:import.meta.main=true",
            "--legal-comments=none",
            "--log-level=warning",
            `--outfile=${bundle}`,
          ]),
      );
    } finally {
      await rm(staged.dir, { recursive: true, force: true });
    }
    // The SEA main script is run as a CommonJS function body: no shebang line there.
    const code = (await readFile(bundle, "utf8")).replace(/^#!.*\n/, "");
    await writeFile(bundle, code);
    log(`build:bin: bundle ${code.length} bytes`);

    const config = {
      main: bundle,
      output: join(work, "sea-prep.blob"),
      disableExperimentalSEAWarning: true,
      useSnapshot: false,
      useCodeCache: true,
    };
    await writeFile(join(work, "sea.json"), JSON.stringify(config, null, 2));
    await step(
      `SEA blob (Node.js ${nodeVersion})`,
      () => run(node, ["--experimental-sea-config", join(work, "sea.json")], { cwd: work }),
    );

    await step("copy node", async () => {
      await mkdir(dirname(out), { recursive: true });
      await rm(partial, { force: true });
      await copyFile(node, partial);
      await chmod(partial, 0o755);
    });
    await step("postject", () =>
      run(node, [
        join(ROOT, "node_modules", "postject", "dist", "cli.js"),
        partial,
        "NODE_SEA_BLOB",
        config.output,
        "--sentinel-fuse",
        SEA_FUSE,
      ]));
    const said = await step("smoke test", () => run(partial, ["version"]).trim());
    if (said !== `dockgate ${version}`) throw new Error(`${partial} version said "${said}"`);
    await rename(partial, out);
  } finally {
    await rm(partial, { force: true });
    await rm(work, { recursive: true, force: true });
  }
  const size = (await stat(out)).size;
  log(
    `build:bin: ${out} (${
      (size / 1e6).toFixed(1)
    } MB, Node.js ${nodeVersion}, dockgate ${version})`,
  );
  return { path: out, size, nodeVersion, timings };
}

if (import.meta.main) {
  const options: BinaryBuildOptions = {};
  await buildMain({
    task: "build:bin",
    usage: "[VERSION] [--out FILE] [--node PATH]",
    valued: {
      "--out": (v) => (options.out = v),
      "--node": (v) => (options.node = v),
    },
    build: (version) => buildBinary({ ...options, version }),
  });
}
