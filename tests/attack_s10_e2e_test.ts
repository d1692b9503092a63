/**
 * Session 10's third attacker, end to end: attacks on restricted roles that got through, as raw
 * requests over real TLS through `dockgate serve --policy` to a private dockerd the test
 * starts, on every engine the harness has. Each effect is judged by what the daemon stored or
 * did (its own socket, the host's routing table), never by an exit code.
 *
 * - `POST /networks/create` took any `IPAM.Config`: a no-escape identity made a bridge network
 *   whose subnet lies inside one of the host's own networks (a more specific route wins), and
 *   dockerd put the gateway address on a new bridge in the host's namespace: the host's
 *   traffic to those addresses (its DNS resolver, its router, a metadata service) went to the
 *   role's containers instead.
 * - The same through `ConfigFrom`: a network made from an admin's config-only network (a LAN
 *   macvlan's subnet and gateway) took that stored configuration, which the gate never read.
 *
 * - A read-only role (no `allowSecrets`) read a built image's last Dockerfile step in image
 *   inspect's `ContainerConfig.Cmd` (`#(nop) ENV PASSWORD=hunter2`, or a `RUN` with its build
 *   args), the value `Config.Env` and the history's `CreatedBy` redact.
 * - `dockgate policy learn` wrote a request no route knows as an allow entry of its method and
 *   path, which are patterns: an identity watched in audit mode that sent `* /**` (dockerd
 *   answered 404) got a learned read-only role that allowed every method on every path the
 *   preset does not refuse outright, and a gate serving it forwarded a kill it never sent.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type E2eGate, e2eGate, forEachEngine } from "./helpers/e2e_gate.ts";
import { dockerdUnavailable, startDockerd } from "./helpers/dockerd.ts";
import { runCli, startPolicyGate } from "./helpers/gate.ts";
import { bundleCreds } from "./helpers/tls_peers.ts";
import { freeTempDir } from "./helpers/wait.ts";
import { jsonRequest, splitResponses, tlsExchange } from "./helpers/http_raw.ts";

const POLICY = {
  roles: {
    ci: { preset: "no-escape" },
    tenant: { preset: "no-escape", isolate: true },
    nets: { preset: "no-escape", allowSubnets: ["10.97.0.0/16"] },
  },
  identities: [
    { cn: "ci", role: "ci" },
    { cn: "t1", role: "tenant" },
    { cn: "nets", role: "nets" },
  ],
};

/** `ip ARGS…`; throws with its stderr on failure. */
async function ip(args: string[]): Promise<string> {
  const out = await new Deno.Command("ip", { args, stdout: "piped", stderr: "piped" }).output();
  const dec = new TextDecoder();
  if (out.code !== 0) throw new Error(`ip ${args.join(" ")}: ${dec.decode(out.stderr)}`);
  return dec.decode(out.stdout);
}

/** A JSON request through the gate as `who`: the status and the raw answer. */
async function send(g: E2eGate, who: string, method: string, target: string, body: unknown) {
  const ex = await tlsExchange(
    g.gate.port,
    await g.creds(who),
    jsonRequest(method, target, JSON.stringify(body)),
  );
  const [answer] = splitResponses(ex.data);
  return { status: answer?.status, raw: ex.data.toString("latin1") };
}

/**
 * A bridge of the host's own with address `cidr` (a LAN the host is on), up; its name. The
 * caller removes it (`ip link del`).
 */
async function hostBridge(cidr: string): Promise<string> {
  const name = `dgs10${crypto.randomUUID().slice(0, 8)}`;
  await ip(["link", "add", name, "type", "bridge"]);
  try {
    await ip(["addr", "add", cidr, "dev", name]);
    await ip(["link", "set", name, "up"]);
  } catch (err) {
    await ip(["link", "del", name]).catch(() => {});
    throw err;
  }
  return name;
}

/** The API version prefix the daemon speaks (`/v1.41`). */
async function apiPrefix(g: E2eGate): Promise<string> {
  return `/v${(await g.d.docker(["version", "-f", "{{.Server.APIVersion}}"])).stdout.trim()}`;
}

forEachEngine(
  (e) => `attack s10 (Docker ${e}): network create cannot take addresses of the host's networks`,
  async (_t, engine) => {
    const g = await e2eGate(engine, POLICY, ["ci", "t1", "nets"]);
    if (!g) return;
    // A network of the host's own (a LAN, the resolver's subnet), on a bridge the test makes.
    let hostIf = "";
    try {
      hostIf = await hostBridge("10.98.9.2/24");
      const v = await apiPrefix(g);
      const attacks: Record<string, unknown> = {
        // The host's 10.98.9.5 becomes the network's gateway: a local address of a new bridge.
        inside: { Subnet: "10.98.9.0/28", Gateway: "10.98.9.5" },
        // An IPv4 range that covers the host's own network (dockerd refuses only overlaps
        // with its own networks).
        wider: { Subnet: "10.98.8.0/23", IPRange: "10.98.9.0/24" },
        // Inside the role's allowSubnets, but the gateway (or an aux address) outside.
        gateway: { Subnet: "10.97.1.0/24", Gateway: "10.98.9.1" },
        aux: { Subnet: "10.97.2.0/24", AuxiliaryAddresses: { a: "10.98.9.1" } },
      };
      for (const who of ["ci", "t1", "nets"]) {
        for (const [name, config] of Object.entries(attacks)) {
          const net = `${who}-${name}`;
          const body = { Name: net, IPAM: { Config: [config] } };
          const a = await send(g, who, "POST", `${v}/networks/create`, body);
          assert.equal(a.status, 403, `${who} ${name}: ${a.raw}`);
          const stored = await g.d.docker(["network", "ls", "-q", "--filter", `name=${net}`]);
          assert.equal(stored.stdout.trim(), "", `${who}: the daemon stored network ${net}`);
        }
      }
      const route = await ip(["-4", "route", "get", "10.98.9.5"]);
      assert.match(route, new RegExp(`dev ${hostIf}`), `the host's route moved: ${route}`);
      assert.doesNotMatch(route, /^local /, `the host took 10.98.9.5 as its own: ${route}`);
      // A network whose addresses dockerd chooses still goes through, and so does a subnet
      // inside the role's allowSubnets.
      const plain = await send(g, "ci", "POST", `${v}/networks/create`, { Name: "plain" });
      assert.equal(plain.status, 201, plain.raw);
      const allowed = await send(g, "nets", "POST", `${v}/networks/create`, {
        Name: "allowed",
        IPAM: { Config: [{ Subnet: "10.97.3.0/24", Gateway: "10.97.3.1" }] },
      });
      assert.equal(allowed.status, 201, allowed.raw);
      const subnet = await g.d.docker([
        "network",
        "inspect",
        "allowed",
        "-f",
        "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
      ]);
      assert.equal(subnet.stdout.trim(), "10.97.3.0/24");
    } finally {
      await g.stop();
      if (hostIf) await ip(["link", "del", hostIf]).catch(() => {});
    }
  },
);

forEachEngine(
  (e) => `attack s10 (Docker ${e}): network create cannot copy an admin's config-only network`,
  async (_t, engine) => {
    const g = await e2eGate(engine, POLICY, ["ci", "t1", "nets"]);
    if (!g) return;
    let hostIf = "";
    try {
      hostIf = await hostBridge("10.98.10.2/24");
      // An admin's configuration for a LAN network (a macvlan's, made on the daemon's socket):
      // its subnet is the host's own.
      const conf = await g.d.docker([
        "network",
        "create",
        "--config-only",
        "--subnet",
        "10.98.10.0/28",
        "--gateway",
        "10.98.10.5",
        "lanconf",
      ]);
      assert.equal(conf.code, 0, conf.stderr);
      const v = await apiPrefix(g);
      for (const who of ["ci", "t1", "nets"]) {
        const net = `${who}-fromconf`;
        const body = { Name: net, ConfigFrom: { Network: "lanconf" } };
        const a = await send(g, who, "POST", `${v}/networks/create`, body);
        assert.ok(a.status === 403 || a.status === 404, `${who}: ${a.raw}`);
        const stored = await g.d.docker(["network", "ls", "-q", "--filter", `name=${net}`]);
        assert.equal(stored.stdout.trim(), "", `${who}: the daemon stored network ${net}`);
      }
      const route = await ip(["-4", "route", "get", "10.98.10.5"]);
      assert.match(route, new RegExp(`dev ${hostIf}`), `the host's route moved: ${route}`);
    } finally {
      await g.stop();
      if (hostIf) await ip(["link", "del", hostIf]).catch(() => {});
    }
  },
);

Deno.test({
  name: "attack s10: a learned policy opens no more than the audit log's requests",
  ignore: dockerdUnavailable(),
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  const d = await startDockerd();
  if (!d) return;
  const work = await freeTempDir("dgs10l-");
  const log = join(work, "audit.log");
  const stops: (() => Promise<unknown>)[] = [];
  try {
    const run = await d.docker([
      "run",
      "-d",
      "--name",
      "app",
      "--network",
      "none",
      d.image,
      "sleep",
      "600",
    ]);
    assert.equal(run.code, 0, run.stderr);
    // Watched in audit mode (forwarded, logged as would_deny): requests no route knows.
    const policy = {
      roles: { ro: { preset: "read-only" } },
      identities: [{ cn: "spy", role: "ro" }],
    };
    const g = await startPolicyGate(d.host, join(work, "a"), policy, ["spy"], [
      "--audit-log",
      log,
      "--policy-mode",
      "audit",
    ]);
    stops.push(() => g.gate.stop());
    await g.gate.waitForLog(/API policy: /);
    const creds = await bundleCreds(g.pki, "spy");
    for (const line of ["* /** HTTP/1.1", "GET /x/{name} HTTP/1.1", "GET /_ping HTTP/1.1"]) {
      const ex = await tlsExchange(
        g.gate.port,
        creds,
        `${line}\r\nHost: x\r\nConnection: close\r\n\r\n`,
      );
      assert.ok(ex.data.length > 0, `${line}: no answer`);
    }
    await g.gate.stop();
    const learned = await runCli(["policy", "learn", log, "--identity", "spy"]);
    assert.equal(learned.code, 0, learned.stderr);
    // A gate serving the learned policy: the spy's kill (never in the log) must not pass.
    const g2 = await startPolicyGate(d.host, join(work, "b"), learned.stdout, ["spy"]);
    stops.push(() => g2.gate.stop());
    await g2.gate.waitForLog(/API policy: /);
    const kill = await tlsExchange(
      g2.gate.port,
      await bundleCreds(g2.pki, "spy"),
      "POST /containers/app/kill HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    );
    const [answer] = splitResponses(kill.data);
    const state = await d.docker(["inspect", "-f", "{{.State.Running}}", "app"]);
    assert.equal(
      state.stdout.trim(),
      "true",
      `the learned policy let a kill through: ${kill.data}`,
    );
    assert.equal(answer?.status, 403, String(kill.data));
  } finally {
    for (const stop of stops) await stop().catch(() => {});
    await d.stop();
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
});

forEachEngine(
  (e) => `attack s10 (Docker ${e}): read-only image inspect does not show the last build step`,
  async (_t, engine) => {
    const policy = {
      roles: { ro: { preset: "read-only" }, seer: { preset: "read-only", allowSecrets: true } },
      identities: [{ cn: "ro", role: "ro" }, { cn: "seer", role: "seer" }],
    };
    const g = await e2eGate(engine, policy, ["ro", "seer"]);
    if (!g) return;
    try {
      const steps: Record<string, string> = {
        env: "ENV PASSWORD=hunter2",
        arg: "ARG TOKEN=argsecret1\nRUN echo $TOKEN >/dev/null",
      };
      const v = await apiPrefix(g);
      for (const [name, step] of Object.entries(steps)) {
        const secret = name === "env" ? "hunter2" : "argsecret1";
        const built = await g.d.docker(["build", "-t", `sec${name}:1`, "-"], {
          stdin: `FROM ${g.d.image}\n${step}\n`,
          env: { DOCKER_BUILDKIT: "0" },
        });
        assert.equal(built.code, 0, built.stderr);
        const own = await g.d.docker(["image", "inspect", `sec${name}:1`]);
        for (const prefix of ["", v, "/v1.41"]) {
          const target = `${prefix}/images/sec${name}:1/json`;
          const ex = await tlsExchange(
            g.gate.port,
            await g.creds("ro"),
            `GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
          );
          const raw = ex.data.toString("latin1");
          assert.equal(splitResponses(ex.data)[0]?.status, 200, raw);
          assert.ok(!raw.includes(secret), `read-only ${target} showed ${secret}: ${raw}`);
        }
        if (own.stdout.includes(secret)) {
          const seer = await tlsExchange(
            g.gate.port,
            await g.creds("seer"),
            `GET /images/sec${name}:1/json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
          );
          assert.ok(seer.data.toString("latin1").includes(secret), "allowSecrets still sees it");
        }
      }
    } finally {
      await g.stop();
    }
  },
);
