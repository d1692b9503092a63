/**
 * Reads that keep secrets (issue 24), end to end on every engine the harness has: a container
 * made on the daemon's own socket with `-e PASSWORD=hunter2` and an image whose config carries
 * `ENV TOKEN=s3cr3t` (and a built image whose history's `ENV` step carries `APIKEY=s3cr3t`,
 * read with `docker history`), inspected through `dockgate serve --policy` by a read-only role (the
 * values replaced by the marker, the names kept, the CLI's output valid JSON) and by a
 * read-only role with `allowSecrets` (the values shown). The whole raw answer is searched, on
 * the unversioned path and under an API version prefix.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  availableEngines,
  dockerdUnavailable,
  type Engine,
  startDockerd,
} from "./helpers/dockerd.ts";
import { freeTempDir } from "./helpers/wait.ts";
import { type ServeProcess, startPolicyGate, tlsFlags } from "./helpers/gate.ts";
import { splitResponses, tlsExchange } from "./helpers/http_raw.ts";
import { bundleCreds } from "./helpers/tls_peers.ts";

const POLICY = {
  roles: {
    ro: { preset: "read-only" },
    seer: { preset: "read-only", allowSecrets: true },
    ci: { preset: "no-escape" },
  },
  identities: [{ cn: "ro", role: "ro" }, { cn: "seer", role: "seer" }, { cn: "ci", role: "ci" }],
};

const MARKER = "<redacted by dockgate>";

for (const engine of availableEngines()) {
  Deno.test({
    name: `secret reads e2e (Docker ${engine}): read-only inspect keeps env values`,
    ignore: dockerdUnavailable(),
    sanitizeOps: false,
    sanitizeResources: false,
  }, (t) => secretReads(t, engine));
}

async function secretReads(t: Deno.TestContext, engine: Engine): Promise<void> {
  const d = await startDockerd({ engine });
  if (!d) return;
  const work = await freeTempDir("dgs-");
  let gate: ServeProcess | undefined;
  try {
    const g = await startPolicyGate(d.host, work, POLICY, ["ro", "seer", "ci"]);
    gate = g.gate;
    await gate.waitForLog(/API policy: /);
    const as = (who: string, args: string[]) =>
      d.docker([...tlsFlags(join(g.pki, "clients", who)), ...args], { host: gate!.host });
    const made = await d.docker([
      "create",
      "--name",
      "db",
      "-e",
      "PASSWORD=hunter2",
      "-e",
      "EMPTY=",
      d.image,
      "true",
    ]);
    assert.equal(made.code, 0, made.stderr);
    const box = await d.docker(["create", "--name", "box", d.image, "true"]);
    assert.equal(box.code, 0, box.stderr);
    const commit = await d.docker(["commit", "--change", "ENV TOKEN=s3cr3t", "box", "withtoken:1"]);
    assert.equal(commit.code, 0, commit.stderr);
    // A build's ENV step is in the image's history too (`CreatedBy`), not only in its config.
    const built = await d.docker(["build", "-t", "withenv:1", "-"], {
      stdin: `FROM ${d.image}\nENV APIKEY=s3cr3t OTHER=plain\n`,
      env: { DOCKER_BUILDKIT: "0" },
    });
    assert.equal(built.code, 0, built.stderr);
    const v = `/v${(await d.docker(["version", "-f", "{{.Server.APIVersion}}"])).stdout.trim()}`;

    await t.step("read-only: docker inspect shows the names, not the values", async () => {
      const r = await as("ro", ["inspect", "db"]);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(!r.stdout.includes("hunter2"), r.stdout);
      const [c] = JSON.parse(r.stdout);
      assert.ok(c.Config.Env.includes(`PASSWORD=${MARKER}`), JSON.stringify(c.Config.Env));
      assert.ok(c.Config.Env.includes(`EMPTY=${MARKER}`), JSON.stringify(c.Config.Env));
      const own = JSON.parse((await d.docker(["inspect", "db"])).stdout)[0];
      const names = (env: string[]) => env.map((e) => e.split("=")[0]);
      assert.deepEqual(names(c.Config.Env), names(own.Config.Env), "every name kept, in order");
      assert.deepEqual({ ...c, Config: {} }, { ...own, Config: {} }, "the rest unchanged");
      const f = await as("ro", [
        "inspect",
        "-f",
        "{{range .Config.Env}}{{println .}}{{end}}",
        "db",
      ]);
      assert.equal(f.code, 0, f.stderr);
      assert.match(f.stdout, /^PASSWORD=<redacted by dockgate>$/m);
      const img = await as("ro", ["image", "inspect", "withtoken:1"]);
      assert.equal(img.code, 0, img.stderr);
      assert.ok(!img.stdout.includes("s3cr3t"), img.stdout);
      assert.ok(JSON.parse(img.stdout)[0].Config.Env.includes(`TOKEN=${MARKER}`));
    });

    await t.step(
      "read-only: docker history shows no ENV step's value",
      async () => {
        const own = await d.docker(["history", "--no-trunc", "withenv:1"]);
        assert.ok(own.stdout.includes("APIKEY=s3cr3t"), own.stdout);
        const r = await as("ro", ["history", "--no-trunc", "withenv:1"]);
        assert.equal(r.code, 0, r.stderr);
        assert.ok(!r.stdout.includes("s3cr3t"), r.stdout);
        assert.ok(r.stdout.includes(MARKER), r.stdout);
        const seer = await as("seer", ["history", "--no-trunc", "withenv:1"]);
        assert.ok(seer.stdout.includes("APIKEY=s3cr3t"), seer.stdout);
      },
    );

    await t.step("read-only: the whole raw answer, unversioned and versioned", async () => {
      const creds = await bundleCreds(g.pki, "ro");
      for (const path of ["/containers/db/json", `${v}/containers/db/json`]) {
        // Two requests on one connection: the rewritten answer's length must frame the next.
        const req = `GET ${path} HTTP/1.1\r\nHost: d\r\n\r\n`;
        const ex = await tlsExchange(gate!.port, creds, req + req);
        const text = ex.data.toString("latin1");
        assert.ok(!text.includes("hunter2"), text);
        const answers = splitResponses(ex.data);
        assert.equal(answers.length, 2, text);
        for (const a of answers) {
          assert.equal(a.status, 200, a.body);
          assert.ok(JSON.parse(a.body).Config.Env.includes(`PASSWORD=${MARKER}`), a.body);
        }
      }
    });

    await t.step("allowSecrets: the values are shown", async () => {
      const r = await as("seer", ["inspect", "db"]);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(JSON.parse(r.stdout)[0].Config.Env.includes("PASSWORD=hunter2"), r.stdout);
      assert.ok(!r.stdout.includes(MARKER));
    });

    await t.step("swarm: service env and config data redacted, join tokens for all", async () => {
      const init = await d.docker(["swarm", "init", "--advertise-addr", "127.0.0.1"]);
      assert.equal(init.code, 0, init.stderr);
      const svc = await d.docker([
        "service",
        "create",
        "--detach",
        "--name",
        "websvc",
        "--env",
        "API_KEY=sekrit",
        d.image,
        "sleep",
        "600",
      ]);
      assert.equal(svc.code, 0, svc.stderr);
      const cfg = await d.docker(["config", "create", "appcfg", "-"], {
        stdin: "db_pass=topsecret",
      });
      assert.equal(cfg.code, 0, cfg.stderr);
      const tokens = (await d.docker(["swarm", "join-token", "-q", "manager"])).stdout.trim();
      assert.match(tokens, /^SWMTKN-/);
      for (const args of [["service", "inspect", "websvc"], ["service", "ls"]]) {
        const r = await as("ro", args);
        assert.equal(r.code, 0, r.stderr);
        assert.ok(!r.stdout.includes("sekrit"), `${args.join(" ")}: ${r.stdout}`);
      }
      const spec = JSON.parse((await as("ro", ["service", "inspect", "websvc"])).stdout)[0].Spec;
      assert.deepEqual(spec.TaskTemplate.ContainerSpec.Env, [`API_KEY=${MARKER}`]);
      const pretty = await as("ro", ["config", "inspect", "--pretty", "appcfg"]);
      assert.equal(pretty.code, 0, pretty.stderr);
      assert.ok(!pretty.stdout.includes("topsecret"), pretty.stdout);
      assert.ok(pretty.stdout.includes(MARKER), pretty.stdout);
      const seen = await as("seer", ["config", "inspect", "--pretty", "appcfg"]);
      assert.ok(seen.stdout.includes("topsecret"), seen.stdout);
      for (const who of ["ro", "seer", "ci"]) {
        const r = await as(who, ["swarm", "join-token", "manager"]);
        assert.ok(!r.stdout.includes(tokens), `${who} must not get the manager token`);
        assert.ok(!r.stderr.includes(tokens), `${who} must not get the manager token`);
        const raw = await tlsExchange(
          gate!.port,
          await bundleCreds(g.pki, who),
          "GET /swarm HTTP/1.1\r\nHost: d\r\n\r\n",
        );
        const text = raw.data.toString("latin1");
        assert.ok(!text.includes("SWMTKN-"), `${who}: ${text}`);
        assert.equal(JSON.parse(splitResponses(raw.data)[0].body).JoinTokens.Manager, MARKER);
      }
    });

    await t.step(
      "swarm spec: an external CA's options are redacted in info and swarm",
      async () => {
        // The CLI files every key it does not know of an `--external-ca` under the CA's Options,
        // where a signer's credentials go; `docker info` shows the swarm's whole spec.
        const upd = await d.docker([
          "swarm",
          "update",
          "--external-ca",
          "protocol=cfssl,url=https://ca.invalid:8888,apikey=caKeySekrit",
        ]);
        assert.equal(upd.code, 0, upd.stderr);
        const own = await d.docker(["info", "--format", "{{json .Swarm.Cluster.Spec.CAConfig}}"]);
        assert.match(own.stdout, /caKeySekrit/, "the daemon stored the option");
        for (const args of [["info", "--format", "{{json .}}"], ["swarm", "ca"]]) {
          const r = await as("ro", args);
          assert.ok(!`${r.stdout}${r.stderr}`.includes("caKeySekrit"), `${args}: ${r.stdout}`);
        }
        for (const path of ["/info", "/v1.41/info", "/swarm"]) {
          // Kept open: on a half-close Go cancels the request's context, and 26's /info then
          // answers `null` (its system info is gathered under that context).
          const raw = await tlsExchange(
            gate!.port,
            await bundleCreds(g.pki, "ro"),
            `GET ${path} HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n`,
            { keepOpen: true },
          );
          const answer = splitResponses(raw.data)[0];
          assert.equal(answer.status, 200, answer.body);
          assert.ok(!answer.body.includes("caKeySekrit"), `${path}: ${answer.body}`);
          assert.ok(answer.body.includes(MARKER), `${path}: ${answer.body}`);
        }
        const seen = await as("seer", [
          "info",
          "--format",
          "{{json .Swarm.Cluster.Spec.CAConfig}}",
        ]);
        assert.match(seen.stdout, /caKeySekrit/, "allowSecrets shows it");
      },
    );
  } finally {
    await gate?.stop();
    await d.stop();
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}
