#!/usr/bin/env -S deno run -A
/**
 * Builds the container image: `deno task build:image [--binary FILE] [--tag NAME] [--tar FILE]`.
 *
 * No base image is pulled: the rootfs is the standalone binary (`build_bin.ts`, built unless
 * `--binary` names one) and only the shared libraries it links (as `ldd` lists them, the
 * dynamic loader included) at their own paths, plus `/etc/passwd` and `/etc/group` with the
 * one user the gate may run as, an empty `/tmp` and `/etc/dockgate`. The script writes that
 * tree as a tar and hands it to `docker import` (the daemon `DOCKER_HOST` names), with
 * `ENTRYPOINT ["/dockgate"]`, `CMD ["serve", …]` listening on 0.0.0.0:2376 with the bundle in
 * /etc/dockgate/pki/server and the daemon's socket mounted at /var/run/docker.sock. `--tar`
 * writes the tar only (no daemon needed).
 *
 *   docker run -d -p 2376:2376 -v /var/run/docker.sock:/var/run/docker.sock \
 *     -v /etc/dockgate/pki:/etc/dockgate/pki:ro dockgate:0.2.0
 *
 * @module
 */

import { execFileSync } from "node:child_process";
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), "..");

/** The libraries `ldd` says `binary` loads, the loader first. */
export function linkedLibraries(binary: string): string[] {
  const out = execFileSync("ldd", [binary], { encoding: "utf8" });
  const libs: string[] = [];
  for (const line of out.split("\n")) {
    const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m) libs.push(m[1]);
  }
  if (libs.length === 0) throw new Error(`ldd found no libraries for ${binary}: ${out.trim()}`);
  return libs;
}

const USAGE = "usage: deno task build:image [--binary FILE] [--tag NAME] [--tar FILE]";

/** The flags, or the usage line: exit 0 for `--help`, 2 (one line) for a mistake. */
function flags(): { binary?: string; tag?: string; tar?: string } {
  let values: { binary?: string; tag?: string; tar?: string; help?: boolean };
  try {
    values = parseArgs({
      options: {
        binary: { type: "string" },
        tag: { type: "string" },
        tar: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }).values;
  } catch (err) {
    console.error(`build:image: ${(err as Error).message.split("\n")[0]}; ${USAGE}`);
    process.exit(2);
  }
  if (values.help) {
    console.log(
      `${USAGE}\n  --binary FILE  use this standalone binary (default: build it)\n` +
        `  --tag NAME     the image's tag (default dockgate:VERSION)\n` +
        `  --tar FILE     write the image's tar only (no daemon needed)`,
    );
    process.exit(0);
  }
  return values;
}

function main(): void {
  const values = flags();
  const version = JSON.parse(readFileSync(join(ROOT, "deno.json"), "utf8")).version as string;
  const tag = values.tag ?? `dockgate:${version}`;
  const work = mkdtempSync(join(tmpdir(), "dockgate-image-"));
  try {
    let binary = values.binary;
    if (!binary) {
      binary = join(work, "dockgate");
      console.error("building the standalone binary (build_bin.ts)");
      execFileSync(process.execPath, [
        "run",
        "-A",
        join(ROOT, "scripts", "build_bin.ts"),
        "--out",
        binary,
      ], {
        stdio: ["ignore", "inherit", "inherit"],
        cwd: ROOT,
      });
    }
    const rootfs = join(work, "rootfs");
    mkdirSync(rootfs);
    copyFileSync(binary, join(rootfs, "dockgate"));
    chmodSync(join(rootfs, "dockgate"), 0o755);
    const libs = linkedLibraries(binary);
    for (const lib of libs) {
      const to = join(rootfs, lib);
      mkdirSync(dirname(to), { recursive: true });
      copyFileSync(lib, to); // follows symlinks: the file the name resolves to
    }
    for (const d of ["tmp", "etc/dockgate/pki", "var/run"]) {
      mkdirSync(join(rootfs, d), { recursive: true });
    }
    chmodSync(join(rootfs, "tmp"), 0o1777);
    writeFileSync(
      join(rootfs, "etc/passwd"),
      "root:x:0:0:root:/:/dockgate\ndockgate:x:2376:2376:dockgate:/:/dockgate\n",
    );
    writeFileSync(join(rootfs, "etc/group"), "root:x:0:\ndockgate:x:2376:\n");
    const tar = values.tar ? resolve(values.tar) : join(work, "rootfs.tar");
    execFileSync("tar", [
      "--numeric-owner",
      "--owner=0",
      "--group=0",
      "-C",
      rootfs,
      "-cf",
      tar,
      ".",
    ]);
    console.error(`rootfs: the binary and ${libs.length} libraries (${libs.join(", ")})`);
    if (values.tar) {
      console.error(`wrote ${tar} (import it with: docker import ${tar} ${tag})`);
      return;
    }
    const id = execFileSync("docker", [
      "import",
      "--change",
      'ENTRYPOINT ["/dockgate"]',
      "--change",
      'CMD ["serve", "--listen", "0.0.0.0:2376", "--certs", "/etc/dockgate/pki/server", "--target", "unix:///var/run/docker.sock"]',
      "--change",
      "EXPOSE 2376",
      "--change",
      `LABEL org.opencontainers.image.title=dockgate org.opencontainers.image.version=${version}`,
      tar,
      tag,
    ], { encoding: "utf8" }).trim();
    console.error(`built ${tag} (${id})`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (import.meta.main) main();
