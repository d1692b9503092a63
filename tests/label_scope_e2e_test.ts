/**
 * Label scope (issue 24), end to end on every engine the harness has: containers made on the
 * daemon's own socket, two with `com.example.team=web`, one with `=db`, one without; a
 * read-only role scoped to `com.example.team=web` lists only the first two (`docker ps -a`,
 * whatever filters it adds), inspects and reads the logs of those, and gets the daemon's
 * "No such container" for the others (by name and by ID), which the socket shows exist. A
 * `docker system df -v` shows only its containers; a request that is no read is refused.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  availableEngines,
  dockerdUnavailable,
  type Engine,
  exists,
  startDockerd,
} from "./helpers/dockerd.ts";
import { freeTempDir } from "./helpers/wait.ts";
import { type ServeProcess, startPolicyGate, tlsFlags } from "./helpers/gate.ts";
import { splitResponses, tlsExchange } from "./helpers/http_raw.ts";
import { bundleCreds } from "./helpers/tls_peers.ts";

const POLICY = {
  roles: {
    web: { preset: "read-only", scope: { label: "com.example.team=web" } },
  },
  identities: [{ cn: "webmon", role: "web" }],
};

for (const engine of availableEngines()) {
  Deno.test({
    name: `label scope e2e (Docker ${engine}): a scoped role sees only its labelled containers`,
    ignore: dockerdUnavailable(),
    sanitizeOps: false,
    sanitizeResources: false,
  }, (t) => scoped(t, engine));
}

async function scoped(t: Deno.TestContext, engine: Engine): Promise<void> {
  const d = await startDockerd({ engine });
  if (!d) return;
  const work = await freeTempDir("dgc-");
  let gate: ServeProcess | undefined;
  try {
    const g = await startPolicyGate(d.host, work, POLICY, ["webmon"]);
    gate = g.gate;
    await gate.waitForLog(/API policy: /);
    const as = (args: string[]) =>
      d.docker([...tlsFlags(join(g.pki, "clients", "webmon")), ...args], { host: gate!.host });
    const make = async (name: string, label?: string) => {
      const args = ["run", "--name", name, "--network", "none"];
      if (label) args.push("--label", label);
      const r = await d.docker([...args, d.image, "echo", `from ${name}`]);
      assert.equal(r.code, 0, r.stderr);
      return (await d.docker(["inspect", "-f", "{{.Id}}", name])).stdout.trim();
    };
    await make("web1", "com.example.team=web");
    await make("web2", "com.example.team=web");
    const dbId = await make("db1", "com.example.team=db");
    await make("plain");
    await make("near", "com.example.team=webx");

    await t.step(
      "lists: only the labelled containers, whatever filters the client adds",
      async () => {
        const ps = await as(["ps", "-a", "--format", "{{.Names}}"]);
        assert.equal(ps.code, 0, ps.stderr);
        assert.deepEqual(ps.stdout.trim().split("\n").sort(), ["web1", "web2"]);
        const other = await as(["ps", "-a", "--filter", "label=com.example.team=db", "-q"]);
        assert.equal(other.code, 0, other.stderr);
        assert.equal(other.stdout.trim(), "", "the client's filter is ANDed with the scope's");
        const df = await as(["system", "df", "-v", "--format", "{{json .Containers}}"]);
        assert.equal(df.code, 0, df.stderr);
        const names = (JSON.parse(df.stdout) as { Names: string }[]).map((c) => c.Names).sort();
        assert.deepEqual(names, ["web1", "web2"]);
      },
    );

    await t.step("objects: its own are read, the others are missing", async () => {
      const logs = await as(["logs", "web1"]);
      assert.equal(logs.code, 0, logs.stderr);
      assert.match(logs.stdout, /from web1/);
      assert.equal((await as(["container", "inspect", "web2"])).code, 0);
      for (const name of ["db1", "plain", "near", dbId, dbId.slice(0, 12)]) {
        const r = await as(["container", "inspect", name]);
        assert.notEqual(r.code, 0, name);
        assert.match(r.stderr, /No such container/, `${name}: ${r.stderr}`);
        const l = await as(["logs", name]);
        assert.match(l.stderr, /No such container/, `${name}: ${l.stderr}`);
        assert.ok(!l.stdout.includes("from "), "no log line of another container");
      }
      assert.equal(await exists(d, "db1"), true, "db1 exists on the socket");
    });

    await t.step("only reads: a prune is refused, the old network list too", async () => {
      const creds = await bundleCreds(g.pki, "webmon");
      const ex = await tlsExchange(
        gate!.port,
        creds,
        "GET /v1.27/networks HTTP/1.1\r\nHost: d\r\n\r\n" +
          "POST /containers/prune HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\n\r\n",
      );
      const answers = splitResponses(ex.data);
      assert.deepEqual(answers.map((a) => a.status), [403, 403], ex.data.toString());
      assert.match(answers[0].body, /scope: a scoped role lists networks with API 1\.28/);
      assert.equal(await exists(d, "plain"), true, "nothing was pruned");
    });
  } finally {
    await gate?.stop();
    await d.stop();
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}
