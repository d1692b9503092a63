/**
 * The container image (`scripts/build_image.ts`): built from the standalone binary and the
 * libraries it links, no base image, imported into the test dockerd; then run with the
 * daemon's socket and a PKI mounted, and the real Docker CLI driven through it.
 */
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { DENO, ROOT, runCli, tlsFlags } from "./helpers/gate.ts";
import { dockerdUnavailable, startDockerd } from "./helpers/dockerd.ts";
import { freePort, freeTempDir, waitFor } from "./helpers/wait.ts";

Deno.test({
  name: "image: build:image makes dockgate:VERSION with no base image; it serves the test dockerd",
  ignore: dockerdUnavailable(),
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const d = await startDockerd();
  if (!d) return;
  const dir = await freeTempDir("dg-img-");
  try {
    const build = await new Deno.Command(DENO, {
      args: ["run", "-A", join(ROOT, "scripts", "build_image.ts"), "--tag", "dockgate:test"],
      cwd: ROOT,
      env: { DOCKER_HOST: d.host },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const log = new TextDecoder().decode(build.stderr);
    assert.equal(build.code, 0, log);
    assert.match(log, /rootfs: the binary and \d+ libraries \(.*libc\.so/);
    const inspect = await d.docker([
      "image",
      "inspect",
      "-f",
      "{{json .Config.Entrypoint}} {{len .RootFS.Layers}}",
      "dockgate:test",
    ]);
    assert.equal(inspect.stdout.trim(), '["/dockgate"] 1', "one layer: ours, no base image");
    const version = await d.docker(["run", "--rm", "dockgate:test", "version"]);
    assert.match(version.stdout, /^dockgate \d+\.\d+\.\d+/, version.stderr);

    const pki = join(dir, "pki");
    assert.equal((await runCli(["keygen", "--dir", pki])).code, 0);
    const port = await freePort();
    const run = await d.docker([
      "run",
      "-d",
      "--name",
      "gate",
      "--network",
      "host",
      "-v",
      `${d.socket}:/var/run/docker.sock`,
      "-v",
      `${pki}:/etc/dockgate/pki:ro`,
      "dockgate:test",
      "serve",
      "--listen",
      `127.0.0.1:${port}`,
      "--certs",
      "/etc/dockgate/pki/server",
      "--target",
      "unix:///var/run/docker.sock",
    ]);
    assert.equal(run.code, 0, run.stderr);
    const through = (args: string[]) =>
      d.docker([...tlsFlags(join(pki, "clients", "default")), ...args], {
        host: `tcp://127.0.0.1:${port}`,
      });
    const v = await waitFor(async () => {
      const r = await through(["version", "-f", "{{.Server.APIVersion}}"]);
      return r.code === 0 ? r : undefined;
    }, { timeoutMs: 30_000 }).catch(async (e) => {
      throw new Error(`${e}\n${(await d.docker(["logs", "gate"])).stderr}`);
    });
    assert.equal(v.stdout, "1.41\n");
    const ps = await through(["ps", "--format", "{{.Names}} {{.Image}}"]);
    assert.match(
      ps.stdout,
      /^gate dockgate:test$/m,
      "the gate sees itself running, through itself",
    );
    const logs = await d.docker(["logs", "gate"]);
    assert.match(logs.stderr, /INFO accepted .*identity=default/);
  } finally {
    await d.docker(["rm", "-f", "gate"]).catch(() => {});
    await d.stop();
    await rm(dir, { recursive: true, force: true });
  }
});
