/**
 * Owner isolation end to end: two isolated identities (team-a, team-b) share one real dockerd
 * through `dockgate serve --policy`, driven by the REAL docker CLI and docker-compose 1.29.
 *
 * - Each runs, lists, logs, execs and removes its own containers; neither sees the other's in
 *   `ps -a`, `volume ls`, `network ls`, `events`, `system df`, a shared network's inspect.
 * - rm, exec, logs, inspect, kill, start of the other's container by name, full ID and ID
 *   prefix fail as "No such container"; --volumes-from, --network container:, -v and
 *   --network of the other's objects fail; prune removes only the caller's.
 * - A dockgate.owner label set by the client is refused; a shared volume is usable, not
 *   removable; a missing named volume is created for its owner.
 * - A full admin and a plain (not isolated) no-escape identity see everything.
 * - The audit line says the owner decision.
 */
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { dockerdUnavailable, type DockerResult, startDockerd, which } from "./helpers/dockerd.ts";
import { freeTempDir, waitFor } from "./helpers/wait.ts";
import { runCli, type ServeProcess, startServe, tlsFlags } from "./helpers/gate.ts";
import { splitResponses, tlsExchange } from "./helpers/http_raw.ts";
import { bundleCreds as creds } from "./helpers/tls_peers.ts";

const POLICY = {
  roles: {
    tenant: { preset: "no-escape", isolate: true },
    tenant403: { preset: "no-escape", isolate: true, othersStatus: 403 },
    plain: { preset: "no-escape" },
    admin: { preset: "full" },
  },
  shared: { volumes: ["cache"], networks: ["ci-net"] },
  identities: [
    { cn: "team-a", role: "tenant" },
    { cn: "team-b", role: "tenant" },
    { cn: "team-c", role: "tenant403" },
    { cn: "plain", role: "plain" },
    { cn: "admin", role: "admin" },
  ],
};

function ok(what: string, r: DockerResult): DockerResult {
  assert.equal(r.code, 0, `${what}: exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

function missing(
  what: string,
  r: DockerResult,
  re = /No such container|No such object|no such volume|not found/i,
) {
  assert.notEqual(r.code, 0, `${what} must fail: ${r.stdout}`);
  assert.match(r.stderr, re, `${what}: ${r.stderr}`);
  if (!/shared/.test(re.source)) {
    assert.doesNotMatch(r.stderr, /dockgate/, `${what}: a 404 looks like the daemon's own`);
  }
}

const lines = (r: DockerResult) => r.stdout.split("\n").filter((l) => l !== "");

Deno.test({
  name: "docker isolation e2e: two owners on one dockerd, CLI and docker-compose",
  ignore: dockerdUnavailable(),
  sanitizeOps: false,
  sanitizeResources: false,
}, async (t) => {
  const d = await startDockerd();
  if (!d) return;
  const work = await freeTempDir("dgi-");
  let gate: ServeProcess | undefined;
  try {
    const pki = join(work, "pki");
    assert.equal((await runCli(["keygen", "--dir", pki])).code, 0);
    for (const name of ["team-a", "team-b", "team-c", "plain", "admin"]) {
      assert.equal((await runCli(["keygen", "client", name, "--dir", pki])).code, 0);
    }
    const policyFile = join(work, "policy.json");
    await writeFile(policyFile, JSON.stringify(POLICY), { mode: 0o600 });
    const auditLog = join(work, "audit.log");
    gate = await startServe([
      "--target",
      d.host,
      "--certs",
      join(pki, "server"),
      "--policy",
      policyFile,
      "--audit-log",
      auditLog,
      // Shared with the Node gate below: both read the one record of who created what.
      "--state-dir",
      join(work, "state"),
    ]);
    const g = gate;
    const as = (who: string, args: string[], stdin?: string) =>
      d.docker([...tlsFlags(join(pki, "clients", who)), ...args], {
        host: g.host,
        stdin,
        timeoutMs: 60_000,
      });
    const id = async (name: string) =>
      ok("inspect", await d.docker(["inspect", "-f", "{{.Id}}", name])).stdout.trim();

    await t.step("each team runs its own containers, volumes and networks", async () => {
      for (const team of ["a", "b"]) {
        const who = `team-${team}`;
        ok("run", await as(who, ["run", "-d", "--name", `${team}1`, d.image, "sleep", "300"]));
        ok(
          "run exited",
          await as(who, ["run", "--name", `${team}-done`, d.image, "echo", `out-${team}`]),
        );
        ok("volume", await as(who, ["volume", "create", `v${team}`]));
        ok("network", await as(who, ["network", "create", `n${team}`]));
      }
      const labels = ok(
        "labels",
        await d.docker(["inspect", "-f", '{{index .Config.Labels "dockgate.owner"}}', "a1", "b1"]),
      );
      assert.equal(labels.stdout, "team-a\nteam-b\n");
      const vol = ok(
        "vol label",
        await d.docker(["volume", "inspect", "-f", '{{index .Labels "dockgate.owner"}}', "va"]),
      );
      assert.equal(vol.stdout, "team-a\n");
      assert.equal(ok("logs", await as("team-a", ["logs", "a-done"])).stdout, "out-a\n");
      assert.equal(
        ok("exec", await as("team-a", ["exec", "a1", "echo", "in-a1"])).stdout,
        "in-a1\n",
      );
      assert.equal(
        ok("exec -i", await as("team-a", ["exec", "-i", "a1", "cat"], "stdin-a\n")).stdout,
        "stdin-a\n",
      );
    });

    await t.step("neither sees the other's: ps -a, volume ls, network ls, system df", async () => {
      const ps = lines(ok("ps", await as("team-a", ["ps", "-a", "--format", "{{.Names}}"])));
      assert.deepEqual(ps.sort(), ["a-done", "a1"]);
      assert.deepEqual(lines(ok("ps -q", await as("team-b", ["ps", "-aq"]))).length, 2);
      const filtered = ok(
        "ps -f",
        await as("team-a", ["ps", "-a", "-f", "status=exited", "--format", "{{.Names}}"]),
      );
      assert.deepEqual(lines(filtered), ["a-done"], "the client's own filter is kept");
      assert.deepEqual(lines(ok("volume ls", await as("team-a", ["volume", "ls", "-q"]))), ["va"]);
      const nets = lines(
        ok("network ls", await as("team-a", ["network", "ls", "--format", "{{.Name}}"])),
      );
      assert.deepEqual(nets, ["na"]);
      const df = ok("system df", await as("team-a", ["system", "df", "-v"])).stdout;
      assert.match(df, /\ba1\b/);
      assert.doesNotMatch(df, /\bb1\b|\bvb\b/);
      // A shared network (the harness's dockerd has no bridge) lists only the caller's containers.
      ok("ci-net", await as("admin", ["network", "create", "ci-net"]));
      for (const team of ["a", "b"]) {
        ok(
          "on ci-net",
          await as(`team-${team}`, [
            "run",
            "-d",
            "--name",
            `${team}-net`,
            "--network",
            "ci-net",
            d.image,
            "sleep",
            "300",
          ]),
        );
      }
      const shared = ok(
        "ci-net inspect",
        await as("team-a", [
          "network",
          "inspect",
          "-f",
          "{{range .Containers}}{{.Name}} {{end}}",
          "ci-net",
        ]),
      );
      assert.equal(shared.stdout.trim(), "a-net");
      const all = ok(
        "admin inspect",
        await as("admin", ["network", "inspect", "-f", "{{len .Containers}}", "ci-net"]),
      );
      assert.equal(all.stdout.trim(), "2");
      missing(
        "rm shared",
        await as("team-a", ["network", "rm", "ci-net"]),
        /shared: only an admin removes it/,
      );
      ok("rm own", await as("team-a", ["rm", "-f", "a-net"]));
      assert.equal(
        (await d.docker(["container", "inspect", "a-net"])).code,
        1,
        "a-net removed by its owner",
      );
    });

    await t.step(
      "the other's container by name, full ID and prefix: No such container",
      async () => {
        const full = await id("b1");
        for (const ref of ["b1", full, full.slice(0, 12), full.slice(0, 4)]) {
          for (
            // `container inspect`: a bare `inspect` falls back to images, which are shared (and an
            // image ID may start with the same characters as the name or prefix tried).
            const cmd of [
              ["rm"],
              ["exec"],
              ["logs"],
              ["container", "inspect"],
              ["kill"],
              ["stop"],
              ["top"],
              [
                "port",
              ],
            ]
          ) {
            const args = cmd[0] === "exec" ? [...cmd, ref, "true"] : [...cmd, ref];
            missing(`${cmd.join(" ")} ${ref}`, await as("team-a", args));
          }
        }
        // rm -f ignores a missing container (exit 0): the container must still be there.
        await as("team-a", ["rm", "-f", "b1", full]);
        missing("cp", await as("team-a", ["cp", "b1:/bin/sh", join(work, "x")]));
        missing("commit", await as("team-a", ["commit", "b1", "stolen:1"]));
        assert.equal(
          ok("still running", await d.docker(["inspect", "-f", "{{.State.Running}}", "b1"])).stdout,
          "true\n",
        );
      },
    );

    await t.step("raw, pipelined: owner checks keep requests and answers in order", async () => {
      const full = await id("b1");
      const own = await id("a1");
      // An exec instance of the other's container, made by the admin (IDs are not secret).
      const execId = JSON.parse(
        ok("exec create", await d.docker(["exec", "-d", "b1", "sleep", "30"])).stdout || "{}",
      ).Id ?? (await (async () => {
        const r = ok("exec ids", await d.docker(["inspect", "-f", "{{json .ExecIDs}}", "b1"]));
        return JSON.parse(r.stdout)[0];
      })());
      const a = await creds(pki, "team-a");
      const get = (path: string, method = "GET") => `${method} ${path} HTTP/1.1\r\nHost: d\r\n\r\n`;
      const ex = await tlsExchange(
        g.port,
        a,
        get("/v1.41/_ping") + get(`/v1.41/exec/${execId}/json`) +
          get(`/v1.41/containers/${full}/json`) +
          get("/v1.41/version") + get(`/v1.41/containers/${own.slice(0, 8)}/json`) +
          get("/v1.41/_ping"),
      );
      const rs = splitResponses(ex.data);
      assert.deepEqual(
        rs.map((r) => r.status),
        [200, 404, 404, 200, 200, 200],
        ex.data.toString().slice(0, 2000),
      );
      assert.match(rs[1].body, /No such exec instance/);
      assert.equal(JSON.parse(rs[4].body).Id, own, "an own container by ID prefix");
      // HEAD: the refusal has no body (the connection stays usable).
      const head = await tlsExchange(
        g.port,
        a,
        get(`/v1.41/containers/${full.slice(0, 6)}/archive?path=/`, "HEAD") + get("/v1.41/_ping"),
      );
      assert.match(
        head.data.toString(),
        /^HTTP\/1\.1 404 Not Found\r\n[^]*\r\n\r\nHTTP\/1\.1 200 OK\r\n[^]*\r\n\r\nOK$/,
      );
      const dup = await tlsExchange(
        g.port,
        a,
        get("/v1.41/containers/json?filters=%7B%7D&filters=%7B%7D"),
      );
      // Refused by the policy's parameter list (a value that matters, given twice).
      assert.equal(splitResponses(dup.data)[0].status, 403);
      assert.match(splitResponses(dup.data)[0].body, /filters.{0,3} given twice/);
    });

    await t.step("references to the other's objects fail; to one's own they work", async () => {
      missing(
        "volumes-from",
        await as("team-a", [
          "run",
          "--pull",
          "never",
          "--rm",
          "--volumes-from",
          "b1",
          d.image,
          "true",
        ]),
      );
      missing(
        "network container:",
        await as("team-a", [
          "run",
          "--pull",
          "never",
          "--rm",
          "--network",
          "container:b1",
          d.image,
          "true",
        ]),
      );
      missing(
        "-v other's",
        await as("team-a", ["run", "--pull", "never", "--rm", "-v", "vb:/x", d.image, "true"]),
      );
      missing(
        "--mount other's",
        await as("team-a", [
          "run",
          "--pull",
          "never",
          "--rm",
          "--mount",
          "source=vb,target=/x",
          d.image,
          "true",
        ]),
      );
      missing(
        "--network other's",
        await as("team-a", ["run", "--pull", "never", "--rm", "--network", "nb", d.image, "true"]),
      );
      missing("connect other's network", await as("team-a", ["network", "connect", "nb", "a1"]));
      missing("connect other's container", await as("team-a", ["network", "connect", "na", "b1"]));
      missing("volume rm", await as("team-a", ["volume", "rm", "vb"]));
      missing("network rm", await as("team-a", ["network", "rm", "nb"]));
      missing("volume inspect", await as("team-a", ["volume", "inspect", "vb"]));
      missing(
        "link",
        await as("team-a", ["run", "--pull", "never", "--rm", "--link", "b1:x", d.image, "true"]),
      );
      // One's own: all of these work (and go to the object the check saw).
      ok(
        "volumes-from own",
        await as("team-a", ["run", "--rm", "--volumes-from", "a1", d.image, "true"]),
      );
      ok(
        "container: own",
        await as("team-a", ["run", "--rm", "--network", "container:a1", d.image, "true"]),
      );
      const own = ok(
        "own net",
        await as("team-a", [
          "run",
          "--rm",
          "--network",
          "na",
          "-v",
          "va:/x",
          d.image,
          "sh",
          "-c",
          "echo ok > /x/f; cat /x/f",
        ]),
      );
      assert.equal(own.stdout, "ok\n");
      ok("connect own", await as("team-a", ["network", "connect", "na", "a1"]));
      ok("disconnect own", await as("team-a", ["network", "disconnect", "na", "a1"]));
      // A named volume that does not exist yet is created for its owner.
      ok("new volume", await as("team-a", ["run", "--rm", "-v", "fresh-a:/x", d.image, "true"]));
      const fresh = ok(
        "fresh label",
        await d.docker([
          "volume",
          "inspect",
          "-f",
          '{{index .Labels "dockgate.owner"}}',
          "fresh-a",
        ]),
      );
      assert.equal(fresh.stdout, "team-a\n");
      assert.equal(
        ok("b sees none", await as("team-b", ["volume", "ls", "-q", "-f", "name=fresh-a"])).stdout,
        "",
      );
    });

    await t.step(
      "owner labels are the gate's; shared volumes are usable, not removable",
      async () => {
        const r = await as("team-a", [
          "run",
          "--rm",
          "--label",
          "dockgate.owner=team-b",
          d.image,
          "true",
        ]);
        assert.notEqual(r.code, 0);
        assert.match(
          r.stderr,
          /dockgate: team-a may not POST \/containers\/create: .*gate's to set/,
        );
        const v = await as("plain", [
          "volume",
          "create",
          "--label",
          "dockgate.owner=team-a",
          "planted",
        ]);
        assert.notEqual(v.code, 0, "a restricted role that is not isolated cannot plant either");
        ok("admin creates cache", await as("admin", ["volume", "create", "cache"]));
        ok(
          "a uses cache",
          await as("team-a", ["run", "--rm", "-v", "cache:/c", d.image, "touch", "/c/a"]),
        );
        ok(
          "b uses cache",
          await as("team-b", ["run", "--rm", "-v", "cache:/c", d.image, "ls", "/c/a"]),
        );
        const rm = await as("team-a", ["volume", "rm", "cache"]);
        assert.notEqual(rm.code, 0);
        assert.match(rm.stderr, /shared: only an admin removes it/);
        const squat = await as("team-b", ["volume", "create", "cache"]);
        assert.notEqual(squat.code, 0);
        assert.match(squat.stderr, /shared: an admin creates it/);
      },
    );

    await t.step("a name the other owns: conflicts do not leak its ID", async () => {
      const full = await id("b1");
      const r = await as("team-a", ["run", "-d", "--name", "b1", d.image, "true"]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /already in use/);
      assert.doesNotMatch(r.stderr, new RegExp(full.slice(0, 12)));
      const v = await as("team-a", ["volume", "create", "vb"]);
      assert.notEqual(v.code, 0, "creating the other's volume name must not return it");
      assert.doesNotMatch(v.stdout + v.stderr, /_data|Mountpoint/);
    });

    await t.step("othersStatus 403: the other's container is refused by name", async () => {
      const r = await as("team-c", ["container", "inspect", "b1"]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /container b1 belongs to another owner/);
    });

    await t.step("events: only one's own", async () => {
      const until = String(Math.floor(Date.now() / 1000) + 2);
      const ev = ok(
        "events",
        await as("team-a", [
          "events",
          "--since",
          "10m",
          "--until",
          until,
          "--format",
          "{{.Actor.Attributes.name}}",
        ]),
      );
      const names = new Set(lines(ev));
      assert.ok(names.has("a1"), ev.stdout);
      assert.ok(!names.has("b1") && !names.has("b-done"), ev.stdout);
    });

    await t.step("prune removes only the caller's", async () => {
      ok("prune", await as("team-a", ["container", "prune", "-f"]));
      assert.equal((await d.docker(["container", "inspect", "a-done"])).code, 1, "a-done pruned");
      ok("b-done survives", await d.docker(["inspect", "b-done"]));
      ok("volume prune", await as("team-a", ["volume", "prune", "-f"]));
      ok("vb survives", await d.docker(["volume", "inspect", "vb"]));
      ok("cache survives", await d.docker(["volume", "inspect", "cache"]));
    });

    await t.step("admin and a plain no-escape identity see everything", async () => {
      for (const who of ["admin", "plain"]) {
        const ps = lines(ok("ps", await as(who, ["ps", "-a", "--format", "{{.Names}}"])));
        assert.ok(ps.includes("a1") && ps.includes("b1"), `${who}: ${ps}`);
      }
      ok("plain inspects b1", await as("plain", ["container", "inspect", "b1"]));
    });

    await t.step("docker-compose: a project per team, invisible to the other", async () => {
      if (!which("docker-compose")) {
        throw new Error("docker-compose is needed (scripts/test.sh installs it)");
      }
      const dir = join(work, "proj");
      await Deno.mkdir(dir, { recursive: true });
      await writeFile(
        join(dir, "docker-compose.yml"),
        `version: "3.7"
services:
  web:
    image: ${d.image}
    command: ["sh", "-c", "echo compose-up; sleep 300"]
    labels: { app: web }
    volumes: [ "data:/data" ]
  side:
    image: ${d.image}
    command: ["sleep", "300"]
    networks: [ default, back ]
volumes: { data: {} }
networks: { back: {} }
`,
      );
      const compose = async (who: string, args: string[]) => {
        const env: Record<string, string> = {};
        for (const [k, v] of Object.entries(Deno.env.toObject())) {
          if (!/CA_BUNDLE|SSL_CERT|CA_CERTS|^DOCKER_/.test(k)) env[k] = v;
        }
        Object.assign(env, {
          DOCKER_HOST: g.host,
          DOCKER_TLS_VERIFY: "1",
          DOCKER_CERT_PATH: join(pki, "clients", who),
        });
        const out = await new Deno.Command("docker-compose", {
          args: ["-p", `p-${who}`, ...args],
          cwd: dir,
          env,
          clearEnv: true,
          stdout: "piped",
          stderr: "piped",
        }).output();
        const dec = new TextDecoder();
        return {
          code: out.code,
          stdout: dec.decode(out.stdout),
          stderr: dec.decode(out.stderr),
          stdoutBytes: out.stdout,
        };
      };
      ok("up a", await compose("team-a", ["up", "-d"]));
      ok("up b", await compose("team-b", ["up", "-d"]));
      const psA = ok("compose ps", await compose("team-a", ["ps", "-q"]));
      assert.equal(lines(psA).length, 2);
      await waitFor(
        async () => (await compose("team-a", ["logs", "web"])).stdout.includes("compose-up"),
        { timeoutMs: 20_000 },
      );
      const cid = lines(psA)[0];
      const labels = ok(
        "labels",
        await d.docker([
          "inspect",
          "-f",
          '{{index .Config.Labels "dockgate.owner"}} {{index .Config.Labels "com.docker.compose.project"}}',
          cid,
        ]),
      );
      assert.equal(labels.stdout, "team-a p-team-a\n", "compose's own labels stay");
      const seen = lines(ok("a ps", await as("team-a", ["ps", "--format", "{{.Names}}"])));
      assert.ok(
        seen.some((n) => n.startsWith("p-team-a")) && !seen.some((n) => n.startsWith("p-team-b")),
        String(seen),
      );
      missing("a execs b's", await as("team-a", ["exec", "p-team-b_web_1", "true"]));
      ok("down a", await compose("team-a", ["down", "-v"]));
      ok("b still up", await d.docker(["inspect", "p-team-b_web_1"]));
      ok("down b", await compose("team-b", ["down", "-v"]));
    });

    await t.step("the same isolation on Node", async () => {
      const node = await startServe([
        "--target",
        d.host,
        "--certs",
        join(pki, "server"),
        "--policy",
        policyFile,
        "--audit-log",
        join(work, "audit-node.log"),
        "--state-dir",
        join(work, "state"),
      ], { runtime: "node" });
      try {
        const viaNode = (who: string, args: string[]) =>
          d.docker([...tlsFlags(join(pki, "clients", who)), ...args], {
            host: node.host,
            timeoutMs: 60_000,
          });
        const ps = lines(ok("ps", await viaNode("team-b", ["ps", "-a", "--format", "{{.Names}}"])));
        assert.ok(ps.includes("b1") && !ps.includes("a1"), String(ps));
        missing("inspect a1", await viaNode("team-b", ["container", "inspect", "a1"]));
        assert.equal(
          ok("exec", await viaNode("team-b", ["exec", "b1", "echo", "node-b"])).stdout,
          "node-b\n",
        );
      } finally {
        await node.stop();
      }
    });

    await t.step("the audit line says the owner decision", async () => {
      await waitFor(async () => (await readFile(auditLog, "utf8")).includes('"owner":"other'), {
        timeoutMs: 10_000,
      }).catch(() => {});
      const records = (await readFile(auditLog, "utf8")).split("\n").filter(Boolean).map((l) =>
        JSON.parse(l)
      );
      const reqs = records.filter((r) => r.event === "request" && r.identity === "team-a");
      assert.ok(reqs.some((r) => r.owner === "owner filter" && r.path === "/containers/json"));
      assert.ok(reqs.some((r) => /^own container [0-9a-f]{12}$/.test(r.owner ?? "")));
      const hidden = reqs.find((r) => /^refused: No such container: b1$/.test(r.owner ?? ""));
      assert.ok(hidden, "a refusal of the other's container is recorded");
      assert.equal(hidden.decision, "deny");
      assert.equal(hidden.status, 404);
    });
  } finally {
    await gate?.stop();
    await d.stop();
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
});
