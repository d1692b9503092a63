/**
 * No-escape rules end to end: raw requests over real TLS through `dockgate serve --policy` to
 * a private dockerd, each refused one checked afterwards on the daemon's own socket (nothing it
 * asked for exists), each allowed one checked there too (it was made as asked).
 *
 * - Bind sources the gate cannot resolve in its own view (a dangling link) are refused.
 * - docker-py's own bodies (exec `Container` and `detachKeys`, a `null` endpoint) pass.
 * - Local-driver volume options: only a sized tmpfs passes, in `POST /volumes/create` and in a
 *   container's `Mounts[].VolumeOptions.DriverConfig`; binds in disguise, overlays, host and
 *   relative devices, and other drivers are refused.
 */
import assert from "node:assert/strict";
import { lstat, mkdir, rm, symlink } from "node:fs/promises";
import { join } from "node:path";
import {
  availableEngines,
  type Dockerd,
  dockerdUnavailable,
  startDockerd,
  type StartDockerdOptions,
} from "./helpers/dockerd.ts";
import { freeTempDir } from "./helpers/wait.ts";
import { type ServeProcess, startPolicyGate, tlsFlags } from "./helpers/gate.ts";
import { jsonRequest, splitResponses, tlsExchange } from "./helpers/http_raw.ts";
import { bundleCreds, type Creds } from "./helpers/tls_peers.ts";

/** ci: no-escape with binds from `root` (a temp directory of the test). */
const policy = (root: string) =>
  JSON.stringify({
    roles: { ci: { preset: "no-escape", allowBindMounts: [root] } },
    identities: [{ cn: "ci-runner", role: "ci" }],
  });

/** docker-py through the gate: exec_create/exec_start, then containers.create(network="n"). */
const DOCKER_PY = `
import docker, sys
port, bundle, image = sys.argv[1], sys.argv[2], sys.argv[3]
tls = docker.tls.TLSConfig(client_cert=(bundle + "/cert.pem", bundle + "/key.pem"),
                           ca_cert=bundle + "/ca.pem", verify=True)
c = docker.DockerClient(base_url="https://localhost:" + port, tls=tls, version="1.41")
ct = c.containers.run(image, ["sleep", "60"], detach=True, network_mode="none", name="py-exec")
ex = c.api.exec_create(ct.id, ["echo", "exec-ok"], detach_keys="ctrl-p,q")
print(c.api.exec_start(ex["Id"]).decode().strip())
ct.remove(force=True)
made = c.containers.create(image, ["true"], network="n", name="py-net")
print("created", made.name)
`;

/** The environment docker-py needs here: no CA bundle overrides from the machine. */
function pythonEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(Deno.env.toObject())) {
    if (!/CA_BUNDLE|SSL_CERT|CA_CERTS|^DOCKER_/.test(k)) env[k] = v;
  }
  return env;
}

/** One raw request through the gate: its status and body. */
async function send(port: number, c: Creds, path: string, body: unknown) {
  const ex = await tlsExchange(port, c, jsonRequest("POST", path, JSON.stringify(body)));
  assert.equal(ex.timedOut, false, `${path}: the gate neither answered nor closed`);
  const [r] = splitResponses(ex.data);
  assert.ok(r, `${path}: no response: ${ex.data}`);
  return r;
}

/** The local driver's escapes (moby volume/local: type, o and device go to mount(2)). */
const ESCAPES: Record<string, string>[] = [
  { type: "none", o: "bind", device: "/etc" },
  { type: "tmpfs", o: "bind", device: "/" },
  { type: "tmpfs", o: "size=1m,rbind", device: "/etc" },
  { type: "overlay", o: "lowerdir=/etc,upperdir=/tmp/u,workdir=/tmp/w", device: "overlay" },
  { type: "none", o: "bind", device: "etc" },
  { type: "ext4", device: "dev/vda" },
];

async function volumeNames(d: Dockerd): Promise<string> {
  const r = await d.docker(["volume", "ls", "-q"]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

/** The daemons to run against: every engine the harness has (20.10, and 26.1 when unpacked). */
const ENGINES: { name: string; options: StartDockerdOptions }[] = availableEngines().map((e) => ({
  name: e,
  options: { engine: e },
}));

for (const engine of ENGINES) {
  Deno.test({
    name: `no-escape e2e (dockerd ${engine.name}): volume options, bind sources, docker-py`,
    ignore: dockerdUnavailable(),
    sanitizeOps: false,
    sanitizeResources: false,
  }, async (t) => {
    const d = await startDockerd(engine.options);
    if (!d) return;
    const work = await freeTempDir("dgne-");
    const gates: ServeProcess[] = [];
    try {
      const binds = join(work, "binds");
      await mkdir(binds);
      const { gate, pki } = await startPolicyGate(d.host, work, policy(binds), ["ci-runner"]);
      gates.push(gate);
      await gate.waitForLog(/API policy: ci=no-escape/);
      const ci = await bundleCreds(pki, "ci-runner");

      await t.step("POST /volumes/create: every escape refused, nothing created", async () => {
        for (const [i, opts] of ESCAPES.entries()) {
          for (const driver of [undefined, "local"]) {
            const name = `evil-vol-${i}-${driver ?? "default"}`;
            const r = await send(gate.port, ci, "/v1.41/volumes/create", {
              Name: name,
              Driver: driver,
              DriverOpts: opts,
            });
            assert.equal(r.status, 403, `${JSON.stringify(opts)}: ${r.body}`);
            assert.match(r.body, /dockgate: .*DriverOpts/);
            assert.doesNotMatch(await volumeNames(d), new RegExp(name), "dockerd made it");
          }
        }
        const other = await send(gate.port, ci, "/v1.41/volumes/create", {
          Name: "evil-vol-driver",
          Driver: "rexray",
        });
        assert.equal(other.status, 403, other.body);
        assert.match(other.body, /allowVolumeDrivers/);
        assert.doesNotMatch(await volumeNames(d), /evil-vol-driver/);
      });

      await t.step(
        "container Mounts[].VolumeOptions.DriverConfig: refused, nothing created",
        async () => {
          for (const [i, opts] of ESCAPES.entries()) {
            const name = `evil-ct-${i}`;
            const r = await send(gate.port, ci, `/v1.41/containers/create?name=${name}`, {
              Image: d.image,
              HostConfig: {
                NetworkMode: "none",
                Mounts: [{
                  Type: "volume",
                  Source: `evil-mvol-${i}`,
                  Target: "/h",
                  VolumeOptions: { DriverConfig: { Name: "local", Options: opts } },
                }],
              },
            });
            assert.equal(r.status, 403, `${JSON.stringify(opts)}: ${r.body}`);
            assert.match(r.body, /DriverConfig/);
            assert.notEqual((await d.docker(["inspect", name])).code, 0, `${name} exists`);
            assert.doesNotMatch(await volumeNames(d), new RegExp(`evil-mvol-${i}`));
          }
        },
      );

      await t.step("service specs: the same volume options refused, no service made", async () => {
        const init = await d.docker(["swarm", "init", "--advertise-addr", "127.0.0.1"]);
        assert.equal(init.code, 0, init.stderr);
        try {
          for (const [i, opts] of ESCAPES.entries()) {
            const r = await send(gate.port, ci, "/v1.41/services/create", {
              Name: `evil-svc-${i}`,
              TaskTemplate: {
                ContainerSpec: {
                  Image: d.image,
                  Mounts: [{
                    Type: "volume",
                    Source: `evil-svol-${i}`,
                    Target: "/h",
                    VolumeOptions: { DriverConfig: { Name: "local", Options: opts } },
                  }],
                },
              },
            });
            assert.equal(r.status, 403, `${JSON.stringify(opts)}: ${r.body}`);
            assert.match(r.body, /DriverConfig/);
          }
          const ls = await d.docker(["service", "ls", "-q"]);
          assert.equal(ls.code, 0, ls.stderr);
          assert.equal(ls.stdout, "", "dockerd made a service");
        } finally {
          await d.docker(["swarm", "leave", "--force"]);
        }
      });

      await t.step("a sized tmpfs volume passes and is stored as asked", async () => {
        // Through the real CLI: a raw exchange half-closes, and dockerd cancels what it forwards.
        const opts = { type: "tmpfs", device: "tmpfs", o: "size=8m,mode=1777,uid=1000" };
        const flags = Object.entries(opts).flatMap(([k, v]) => ["--opt", `${k}=${v}`]);
        const made = await d.docker(
          [
            ...tlsFlags(join(pki, "clients", "ci-runner")),
            "volume",
            "create",
            ...flags,
            "ok-tmpfs",
          ],
          { host: gate.host },
        );
        assert.equal(made.code, 0, made.stderr);
        const inspect = await d.docker([
          "volume",
          "inspect",
          "-f",
          "{{json .Options}}",
          "ok-tmpfs",
        ]);
        assert.equal(inspect.code, 0, inspect.stderr);
        assert.deepEqual(JSON.parse(inspect.stdout), opts);
      });

      await t.step(
        "a dangling link under an allowed root is refused, dockerd makes nothing",
        async () => {
          // dockerd creates a missing bind source, following the link: a directory anywhere.
          const outside = join(work, "outside", "made-by-dockerd");
          await symlink(outside, join(binds, "dangling"));
          const r = await send(gate.port, ci, "/v1.41/containers/create?name=evil-dangling", {
            Image: d.image,
            HostConfig: { NetworkMode: "none", Binds: [`${binds}/dangling:/h`] },
          });
          assert.equal(r.status, 403, r.body);
          // Below the root: refused as not a root (a root itself that dangles: no_escape_test).
          assert.match(r.body, /not one of the role's allowBindMounts/);
          assert.notEqual((await d.docker(["inspect", "evil-dangling"])).code, 0, "it was created");
          await assert.rejects(lstat(outside), "dockerd made the link's target");
        },
      );

      await t.step(
        "docker-py: exec with detachKeys, create on a network (null endpoint)",
        async () => {
          const net = await d.docker(["network", "create", "n"]);
          assert.equal(net.code, 0, net.stderr);
          const out = await new Deno.Command("/usr/bin/python3", {
            args: ["-c", DOCKER_PY, String(gate.port), join(pki, "clients", "ci-runner"), d.image],
            env: pythonEnv(),
            clearEnv: true,
            signal: AbortSignal.timeout(120_000),
          }).output();
          const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
          assert.equal(out.code, 0, text);
          assert.match(text, /exec-ok\ncreated py-net/, text);
          const mode = await d.docker(["inspect", "-f", "{{.HostConfig.NetworkMode}}", "py-net"]);
          assert.equal(mode.stdout, "n\n", mode.stderr);
        },
      );
    } finally {
      for (const g of gates) await g.stop();
      await d.stop();
      await rm(work, { recursive: true, force: true });
    }
  });
}
