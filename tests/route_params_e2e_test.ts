/**
 * Query parameters allow-listed per route (issue 20, items 4 and 13), end to end: the real
 * docker CLI and raw requests over real TLS through `dockgate serve --policy` to a private
 * dockerd.
 *
 * - The CLI's common commands still work through a no-escape and a read-only role.
 * - Checkpoint `dir=`, `top?ps_args=`, `build --network host`, an unknown parameter and
 *   `images/create?fromSrc=http://127.0.0.1:PORT/` are refused; a local HTTP listener records
 *   whether dockerd fetched from it (it must not have; a full role's same request shows that
 *   dockerd would have).
 *
 * Written against dockerd 20.10; `ENGINES` is the list to extend when the harness gains 26.
 */
import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  availableEngines,
  dockerdUnavailable,
  type DockerResult,
  startDockerd,
} from "./helpers/dockerd.ts";
import { freeTempDir } from "./helpers/wait.ts";
import { type ServeProcess, startPolicyGate, tlsFlags } from "./helpers/gate.ts";
import { splitResponses, tlsExchange } from "./helpers/http_raw.ts";
import { bundleCreds } from "./helpers/tls_peers.ts";

const POLICY = JSON.stringify({
  roles: {
    monitor: { preset: "read-only" },
    // Docker 26.1 is in the docker cp shields' range (shields.ts): lifted here, so that the
    // archive routes' parameters are checked on both engines.
    ci: { preset: "no-escape", liftShields: ["CVE-2026-41568", "CVE-2026-42306"] },
    admin: { preset: "full" },
  },
  identities: [
    { cn: "ro", role: "monitor" },
    { cn: "ci", role: "ci" },
    { cn: "admin", role: "admin" },
  ],
});

function ok(what: string, r: DockerResult): DockerResult {
  assert.equal(r.code, 0, `${what}: exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

/** A local HTTP server that counts the requests it got (dockerd's fetches). */
function fetchRecorder(): { port: number; hits: string[]; close: () => Promise<void> } {
  const hits: string[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (req) => {
      hits.push(new URL(req.url).pathname);
      return new Response("not a tar", { status: 200 });
    },
  );
  return { port: server.addr.port, hits, close: () => server.shutdown() };
}

for (const engine of availableEngines()) {
  Deno.test({
    name: `route params e2e (Docker ${engine}): the CLI works, dangerous or unknown query ` +
      "parameters are refused",
    ignore: dockerdUnavailable(),
    sanitizeOps: false,
    sanitizeResources: false,
  }, async (t) => {
    const d = await startDockerd({ engine });
    if (!d) return;
    const work = await freeTempDir("dgq-");
    let gate: ServeProcess | undefined;
    const recorder = fetchRecorder();
    try {
      const started = await startPolicyGate(d.host, work, POLICY, ["ro", "ci", "admin"]);
      gate = started.gate;
      const pki = started.pki;
      const g = started.gate;
      const as = (who: string, args: string[], env?: Record<string, string>) =>
        d.docker([...tlsFlags(join(pki, "clients", who)), ...args], {
          host: g.host,
          env,
          timeoutMs: 60_000,
        });
      const raw = async (who: string, method: string, target: string) => {
        const bytes = `${method} ${target} HTTP/1.1\r\nHost: docker\r\nContent-Length: 0\r\n\r\n`;
        const x = await tlsExchange(g.port, await bundleCreds(pki, who), bytes);
        return splitResponses(x.data)[0];
      };

      await t.step("no-escape: the CLI's common commands", async () => {
        ok("ps -a", await as("ci", ["ps", "-a"]));
        ok("images", await as("ci", ["images"]));
        ok("run --rm", await as("ci", ["run", "--rm", "--network", "none", d.image, "true"]));
        ok(
          "run -d",
          await as("ci", [
            "run",
            "-d",
            "--name",
            "keep",
            "--network",
            "none",
            d.image,
            "sh",
            "-c",
            "echo hello-logs; sleep 300",
          ]),
        );
        assert.match(ok("logs", await as("ci", ["logs", "keep"])).stdout, /hello-logs/);
        ok("inspect", await as("ci", ["inspect", "keep"]));
        const ctx = join(work, "ctx");
        await mkdir(ctx, { recursive: true });
        await writeFile(join(ctx, "Dockerfile"), `FROM ${d.image}\nRUN echo built > /b\n`);
        ok(
          "build",
          await as("ci", ["build", "-t", "qp-built", "--network", "none", ctx], {
            DOCKER_BUILDKIT: "0",
          }),
        );
        ok("built image exists", await d.docker(["image", "inspect", "qp-built"]));
        ok("volume ls", await as("ci", ["volume", "ls"]));
        ok("network ls", await as("ci", ["network", "ls"]));
        ok("system df", await as("ci", ["system", "df"]));
        ok("events", await as("ci", ["events", "--since", "2s", "--until", "1s"]));
        ok("cp", await as("ci", ["cp", "keep:/etc/hostname", join(work, "hostname")]));
        ok("exec", await as("ci", ["exec", "keep", "true"]));
        ok("stats", await as("ci", ["stats", "--no-stream", "keep"]));
        ok("top", await as("ci", ["top", "keep"]));
        ok("top -ef", await as("ci", ["top", "keep", "-ef"]));
      });

      await t.step("read-only: the CLI's reading commands", async () => {
        for (
          const args of [
            ["ps", "-a"],
            ["images"],
            ["logs", "keep"],
            ["inspect", "keep"],
            ["volume", "ls"],
            ["network", "ls"],
            ["system", "df"],
            ["events", "--since", "2s", "--until", "1s"],
            ["stats", "--no-stream", "keep"],
            ["top", "keep"],
          ]
        ) ok(args.join(" "), await as("ro", args));
      });

      await t.step("checkpoint dir=, top ps_args, an unknown parameter: refused", async () => {
        for (
          const [who, method, target, name] of [
            ["ro", "GET", "/v1.41/containers/keep/checkpoints?dir=/etc", "dir"],
            ["ci", "GET", "/v1.41/containers/keep/checkpoints?dir=/etc", "dir"],
            ["ci", "DELETE", "/v1.41/containers/keep/checkpoints/x?dir=/tmp/x", "dir"],
            ["ro", "GET", "/v1.41/containers/keep/top?ps_args=-o%20pid,cmd%20--sort", "ps_args"],
            ["ci", "GET", "/v1.41/containers/json?all=1&bogus=1", "bogus"],
          ]
        ) {
          const r = await raw(who, method, target);
          assert.equal(r.status, 403, `${who} ${method} ${target}: ${r.status} ${r.body}`);
          assert.match(r.body, new RegExp(name), r.body);
        }
      });

      await t.step("build --network host: refused, no image built", async () => {
        const r = await as(
          "ci",
          ["build", "-t", "qp-host", "--network", "host", join(work, "ctx")],
          {
            DOCKER_BUILDKIT: "0",
          },
        );
        assert.notEqual(r.code, 0, r.stdout);
        assert.match(r.stderr, /networkmode/, r.stderr);
        assert.notEqual((await d.docker(["image", "inspect", "qp-host"])).code, 0);
      });

      await t.step(
        "images/create?fromSrc=http://127.0.0.1: refused, dockerd fetched nothing",
        async () => {
          const url = `http://127.0.0.1:${recorder.port}/no-escape.tar`;
          for (const who of ["ro", "ci"]) {
            const r = await raw(who, "POST", `/v1.41/images/create?fromSrc=${url}&repo=qp-${who}`);
            assert.equal(r.status, 403, `${who}: ${r.status} ${r.body}`);
            // read-only may not create images at all; no-escape is refused by the parameter.
            assert.match(r.body, who === "ci" ? /fromSrc/ : /changes state/, r.body);
            assert.notEqual((await d.docker(["image", "inspect", `qp-${who}`])).code, 0);
          }
          assert.deepEqual(recorder.hits, [], "dockerd fetched from the host's loopback");
          // The control: a full role's same request does reach dockerd, which fetches.
          const control = `http://127.0.0.1:${recorder.port}/full.tar`;
          await raw("admin", "POST", `/v1.41/images/create?fromSrc=${control}&repo=qp-admin`);
          assert.deepEqual(recorder.hits, ["/full.tar"]);
        },
      );

      await t.step("a DNS name the gate cannot resolve is refused (fail closed)", async () => {
        // This machine has no DNS answers: every public-looking name fails to resolve, as a
        // name with no record would; the gate refuses instead of letting dockerd try.
        const targets = [
          `/v1.41/images/create?fromSrc=${encodeURIComponent("http://no-record.example/x.tar")}` +
          "&repo=qp-dns",
          "/v1.41/images/create?fromImage=no-record.example/team/app&tag=1",
          "/v1.41/distribution/no-record.example/team/app/json",
        ];
        for (const target of targets) {
          const method = target.includes("distribution") ? "GET" : "POST";
          const started = Date.now();
          const r = await raw("ci", method, target);
          assert.equal(r.status, 403, `${target}: ${r.status} ${r.body}`);
          assert.match(r.body, /dockgate: .*no-record\.example.*(does not|did not) resolve/);
          assert.ok(Date.now() - started < 10_000, "bounded in time");
        }
        assert.notEqual((await d.docker(["image", "inspect", "qp-dns"])).code, 0);
      });
    } finally {
      await gate?.stop();
      await recorder.close();
      await d.stop();
      await Deno.remove(work, { recursive: true }).catch(() => {});
    }
  });
}
