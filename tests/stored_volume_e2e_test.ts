/**
 * Issue 20, named volumes made outside the gate: a local volume an admin created on the
 * daemon's own socket with bind options (`--opt type=none --opt o=bind --opt device=/etc`) is
 * the host's `/etc` under a plain name. A no-escape role (and an isolated one, for a volume
 * the policy shares) may not mount it: neither by `Binds` (`-v hostetc:/x`) nor by `Mounts`
 * (`--mount type=volume,source=hostetc,…`), raw or through the real docker CLI. The gate
 * inspects each named volume on the daemon and runs its stored driver and options through the
 * rule that `POST /volumes/create` gets. Judged by what the daemon stored: no container
 * mounts the volume. Plain and tmpfs volumes, and new names (created by the gate with the
 * request's checked options), still work. On every engine the harness has.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  availableEngines,
  type Dockerd,
  dockerdUnavailable,
  type Engine,
  startDockerd,
} from "./helpers/dockerd.ts";
import { freeTempDir } from "./helpers/wait.ts";
import { type ServeProcess, startPolicyGate, tlsFlags } from "./helpers/gate.ts";
import { jsonRequest, splitResponses, tlsExchange } from "./helpers/http_raw.ts";
import { bundleCreds, type Creds } from "./helpers/tls_peers.ts";

const POLICY = {
  roles: {
    ci: { preset: "no-escape" },
    tenant: { preset: "no-escape", isolate: true },
  },
  shared: { volumes: ["hostetc", "plain"] },
  identities: [{ cn: "ci", role: "ci" }, { cn: "t1", role: "tenant" }],
};

/** One raw request through the gate; its status and body. */
async function send(port: number, c: Creds, request: string) {
  const ex = await tlsExchange(port, c, request);
  assert.equal(ex.timedOut, false, "the gate neither answered nor closed");
  const [r] = splitResponses(ex.data);
  assert.ok(r, `no response: ${ex.data}`);
  return r;
}

/** The containers (any state) that mount volume `name`, as the daemon lists them. */
async function mounting(d: Dockerd, name: string): Promise<string> {
  const r = await d.docker(["ps", "-aq", "--filter", `volume=${name}`]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

/** A create body that mounts `name` at /x, by Binds or by Mounts. */
function createBody(image: string, name: string, by: "binds" | "mounts"): string {
  const host = by === "binds"
    ? { Binds: [`${name}:/x`], NetworkMode: "none" }
    : { Mounts: [{ Type: "volume", Source: name, Target: "/x" }], NetworkMode: "none" };
  return JSON.stringify({ Image: image, Cmd: ["cat", "/x/hostname"], HostConfig: host });
}

for (const engine of availableEngines()) {
  Deno.test({
    name: `no-escape e2e (Docker ${engine}): stored options of named volumes are checked`,
    ignore: dockerdUnavailable(),
    sanitizeOps: false,
    sanitizeResources: false,
  }, (t) => storedVolumes(t, engine));
}

async function storedVolumes(t: Deno.TestContext, engine: Engine): Promise<void> {
  const d = await startDockerd({ engine });
  if (!d) return;
  const work = await freeTempDir("dgv-");
  let gate: ServeProcess | undefined;
  try {
    const g = await startPolicyGate(d.host, work, POLICY, ["ci", "t1"]);
    gate = g.gate;
    await gate.waitForLog(/API policy: /);
    const port = gate.port;
    const creds = { ci: await bundleCreds(g.pki, "ci"), t1: await bundleCreds(g.pki, "t1") };
    const as = (who: "ci" | "t1", args: string[]) =>
      d.docker([...tlsFlags(join(g.pki, "clients", who)), ...args], { host: gate!.host });
    const v = `/v${(await d.docker(["version", "-f", "{{.Server.APIVersion}}"])).stdout.trim()}`;
    const admin = async (args: string[]) => {
      const r = await d.docker(args);
      assert.equal(r.code, 0, r.stderr);
    };
    await admin(["volume", "create", "--driver", "local", "--opt", "type=none", "--opt", "o=bind"]
      .concat(["--opt", "device=/etc", "hostetc"]));
    await admin(["volume", "create", "--opt", "type=none", "--opt", "o=bind", "--opt"]
      .concat(["device=etc", "rel"]));
    await admin(["volume", "create", "plain"]);
    await admin(["volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs"]
      .concat(["--opt", "o=size=1m", "small"]));

    await t.step("raw creates mounting the admin's bind volume: 403, no container", async () => {
      for (const who of ["ci", "t1"] as const) {
        for (const by of ["binds", "mounts"] as const) {
          for (const name of who === "ci" ? ["hostetc", "rel"] : ["hostetc"]) {
            const body = createBody(d.image, name, by);
            const r = await send(
              port,
              creds[who],
              jsonRequest("POST", `${v}/containers/create`, body),
            );
            assert.equal(r.status, 403, `${who} ${by} ${name}: ${r.status} ${r.body}`);
            assert.match(r.body, /volume .* (type is not tmpfs|o=bind)/, r.body);
            assert.match(r.body, new RegExp(`volume ${name}`), r.body);
          }
        }
      }
      assert.equal(await mounting(d, "hostetc"), "");
      assert.equal(await mounting(d, "rel"), "");
    });

    await t.step("the docker CLI: -v and --mount of it fail, nothing stored", async () => {
      for (const who of ["ci", "t1"] as const) {
        const runs = [
          ["run", "--rm", "--network", "none", "-v", "hostetc:/x", d.image, "cat", "/x/hostname"],
          [
            "run",
            "--rm",
            "--network",
            "none",
            "--mount",
            "type=volume,source=hostetc,target=/x",
            d.image,
            "cat",
            "/x/hostname",
          ],
          ["create", "--network", "none", "-v", "hostetc:/x:ro", d.image],
        ];
        for (const args of runs) {
          const r = await as(who, args);
          assert.notEqual(r.code, 0, `${who} ${args.join(" ")}: ${r.stdout}`);
          assert.match(r.stderr, /volume hostetc/, r.stderr);
        }
      }
      assert.equal(await mounting(d, "hostetc"), "");
    });

    await t.step("plain, tmpfs and new volumes still mount (new ones as requested)", async () => {
      const ok = await as("ci", [
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "plain:/a",
        "-v",
        "small:/b",
        "-v",
        "fresh:/c",
        "--mount",
        "type=volume,source=fresh2,target=/d,volume-opt=type=tmpfs,volume-opt=device=tmpfs",
        d.image,
        "true",
      ]);
      assert.equal(ok.code, 0, ok.stderr);
      const opts = await d.docker(["volume", "inspect", "-f", "{{json .Options}}", "fresh2"]);
      assert.equal(opts.code, 0, opts.stderr);
      assert.deepEqual(JSON.parse(opts.stdout), { type: "tmpfs", device: "tmpfs" });
      const fresh = await d.docker(["volume", "inspect", "-f", "{{.Driver}}", "fresh"]);
      assert.equal(fresh.stdout.trim(), "local", fresh.stderr);
      const shared = await as(
        "t1",
        ["run", "--rm", "--network", "none", "-v", "plain:/a"]
          .concat([d.image, "true"]),
      );
      assert.equal(shared.code, 0, shared.stderr);
    });

    await t.step("a service mounting it: 403, no service; a new name passes", async () => {
      const init = await d.docker(["swarm", "init", "--advertise-addr", "127.0.0.1"]);
      assert.equal(init.code, 0, init.stderr);
      try {
        const spec = (name: string, source: string) =>
          JSON.stringify({
            Name: name,
            TaskTemplate: {
              ContainerSpec: {
                Image: d.image,
                Command: ["sleep", "1"],
                Mounts: [{ Type: "volume", Source: source, Target: "/x" }],
              },
            },
          });
        const bad = await send(
          port,
          creds.ci,
          jsonRequest("POST", `${v}/services/create`, spec("evil", "hostetc")),
        );
        assert.equal(bad.status, 403, bad.body);
        assert.match(
          bad.body,
          /TaskTemplate\.ContainerSpec\.Mounts\[0\]: volume hostetc/,
          bad.body,
        );
        const ls = await d.docker(["service", "ls", "-q"]);
        assert.equal(ls.stdout.trim(), "", "a service was created");
        const good = await send(
          port,
          creds.ci,
          jsonRequest("POST", `${v}/services/create`, spec("fine", "svc-new")),
        );
        assert.equal(good.status, 201, good.body);
      } finally {
        await d.docker(["swarm", "leave", "--force"]);
      }
    });
  } finally {
    await gate?.stop();
    await d.stop();
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}
