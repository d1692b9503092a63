/**
 * Session 9's second attacker, end to end: attacks on the code paths this session added that
 * got through, as raw requests over real TLS through `dockgate serve --policy` to a private
 * dockerd the test starts, on every engine the harness has. Each effect is judged by what the
 * daemon answered on its own socket and what the gate passed on.
 *
 * - (Holds, kept as a guard) a label-scoped read-only role: a container outside the scope is
 *   missing on every read route tried (inspect by name, ID prefix and version prefix, logs,
 *   top, stats, changes, export, archive GET/HEAD, its exec's inspect) and absent from lists,
 *   events and `system df`.
 * - Reads that keep secrets: a read-only role (no `allowSecrets`) gets an image's `Config.Env`
 *   values redacted in `GET /images/{name}/json`, but `GET /images/{name}/history` lists the
 *   build steps, and a built image's `ENV PASSWORD=hunter2` step is there in `CreatedBy`.
 * - The same role read a log driver's token (`--log-opt splunk-token=…`, container inspect's
 *   `HostConfig.LogConfig.Config`) and a CIFS volume's password (`--opt o=password=…`, volume
 *   inspect's `Options`).
 *
 * @module
 */
import assert from "node:assert/strict";
import { type E2eGate, e2eGate, forEachEngine } from "./helpers/e2e_gate.ts";
import { splitResponses, tlsExchange } from "./helpers/http_raw.ts";

const POLICY = {
  roles: { ro: { preset: "read-only" }, seer: { preset: "read-only", allowSecrets: true } },
  identities: [{ cn: "ro", role: "ro" }, { cn: "seer", role: "seer" }],
};

/** A GET through the gate as `who`; the answer's status and body. */
async function get(g: E2eGate, who: string, target: string) {
  const ex = await tlsExchange(
    g.gate.port,
    await g.creds(who),
    `GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
  );
  const [answer] = splitResponses(ex.data);
  return { status: answer?.status, raw: ex.data.toString("latin1") };
}

forEachEngine(
  (e) => `attack s9b (Docker ${e}): read-only image history does not show ENV values`,
  async (_t, engine) => {
    const g = await e2eGate(engine, POLICY, ["ro", "seer"]);
    if (!g) return;
    try {
      // A built image (the classic builder: no registry, no BuildKit here) with a secret ENV.
      const built = await g.d.docker(["build", "-t", "withsecret:1", "-"], {
        stdin: `FROM ${g.d.image}\nENV PASSWORD=hunter2\nCMD ["true"]\n`,
        env: { DOCKER_BUILDKIT: "0" },
      });
      assert.equal(built.code, 0, built.stderr);
      const own = await g.d.docker(["history", "--no-trunc", "withsecret:1"]);
      assert.ok(own.stdout.includes("hunter2"), `the daemon's history holds it: ${own.stdout}`);
      const v = `/v${
        (await g.d.docker(["version", "-f", "{{.Server.APIVersion}}"])).stdout.trim()
      }`;
      for (const target of ["/images/withsecret:1/history", `${v}/images/withsecret:1/history`]) {
        const inspect = await get(g, "ro", target.replace("/history", "/json"));
        assert.equal(inspect.status, 200, inspect.raw);
        assert.ok(!inspect.raw.includes("hunter2"), `inspect redacts it: ${inspect.raw}`);
        const history = await get(g, "ro", target);
        assert.ok(
          !history.raw.includes("hunter2"),
          `read-only ${target} showed the ENV value: ${history.raw}`,
        );
        assert.ok(history.status === 200 || history.status === 403, history.raw);
      }
      // allowSecrets still sees it (the redaction is the read-only default, not a refusal).
      const seer = await get(g, "seer", "/images/withsecret:1/history");
      assert.equal(seer.status, 200, seer.raw);
      assert.ok(seer.raw.includes("hunter2"), seer.raw);
    } finally {
      await g.stop();
    }
  },
);

const SCOPED = {
  roles: { web: { preset: "read-only", scope: { label: "com.example.team=web" } } },
  identities: [{ cn: "webmon", role: "web" }],
};

forEachEngine(
  (e) => `attack s9b (Docker ${e}): a scoped role learns nothing of a container outside it`,
  async (_t, engine) => {
    const g = await e2eGate(engine, SCOPED, ["webmon"]);
    if (!g) return;
    try {
      const run = async (args: string[]) => {
        const r = await g.d.docker(args);
        assert.equal(r.code, 0, r.stderr);
        return r.stdout.trim();
      };
      await run([
        "run",
        "-d",
        "--name",
        "web1",
        "--network",
        "none",
        "--label",
        "com.example.team=web",
        g.d.image,
        "sleep",
        "300",
      ]);
      const out = await run([
        "run",
        "-d",
        "--name",
        "secretdb",
        "--network",
        "none",
        g.d.image,
        "sleep",
        "300",
      ]);
      const outExec = JSON.parse(
        await run(["exec", "-d", "secretdb", "sleep", "299"]).then(() =>
          g.d.docker(["inspect", "-f", "{{json .ExecIDs}}", "secretdb"]).then((r) => r.stdout)
        ),
      )[0] as string;
      const v = `/v${
        (await g.d.docker(["version", "-f", "{{.Server.APIVersion}}"])).stdout.trim()
      }`;
      const now = Math.ceil(Date.now() / 1000) + 1;
      const direct = [
        "/containers/secretdb/json",
        `${v}/containers/secretdb/json`,
        `/containers/${out.slice(0, 5)}/json`,
        "/containers/secretdb/logs?stdout=1",
        "/containers/secretdb/top",
        "/containers/secretdb/stats?stream=0",
        "/containers/secretdb/changes",
        "/containers/secretdb/export",
        "/containers/secretdb/archive?path=/",
        `/exec/${outExec}/json`,
      ];
      const lists = [
        "/containers/json?all=1",
        `/containers/json?all=1&filters=${encodeURIComponent('{"name":{"secretdb":true}}')}`,
        `/events?since=0&until=${now}`,
        "/system/df",
        `${v}/system/df`,
      ];
      const leaks: string[] = [];
      for (
        const [method, target] of [
          ...direct.map((p) => ["GET", p]),
          ["HEAD", "/containers/secretdb/archive?path=/"],
          ["HEAD", "/containers/secretdb/json"],
          ...lists.map((p) => ["GET", p]),
        ]
      ) {
        const ex = await tlsExchange(
          g.gate.port,
          await g.creds("webmon"),
          `${method} ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
        );
        const [a] = splitResponses(ex.data);
        const text = ex.data.toString("latin1");
        const isDirect = !lists.includes(target);
        if (isDirect && a?.status !== undefined && a.status < 300) {
          leaks.push(`${method} ${target}: ${a.status}`);
        }
        if (text.includes(out.slice(0, 12)) || (!isDirect && text.includes("secretdb"))) {
          leaks.push(`${method} ${target}: names it: ${text.slice(0, 600)}`);
        }
      }
      assert.deepEqual(leaks, []);
      // The control: the same requests reach what the scope holds.
      const web = await tlsExchange(
        g.gate.port,
        await g.creds("webmon"),
        "GET /containers/web1/top HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
      );
      assert.equal(splitResponses(web.data)[0]?.status, 200, web.data.toString());
    } finally {
      await g.stop();
    }
  },
);

forEachEngine(
  (e) => `attack s9b (Docker ${e}): read-only inspect hides log and volume driver options`,
  async (_t, engine) => {
    const g = await e2eGate(engine, POLICY, ["ro", "seer"]);
    if (!g) return;
    try {
      const run = async (args: string[]) => {
        const r = await g.d.docker(args);
        assert.equal(r.code, 0, r.stderr);
      };
      // A log driver's token and a CIFS volume's password: where such secrets are written.
      await run([
        "create",
        "--name",
        "shipper",
        "--network",
        "none",
        "--log-driver",
        "splunk",
        "--log-opt",
        "splunk-url=https://127.0.0.1:9",
        "--log-opt",
        "splunk-token=hunter2-token",
        g.d.image,
        "true",
      ]);
      await run([
        "volume",
        "create",
        "--opt",
        "type=cifs",
        "--opt",
        "device=//127.0.0.1/share",
        "--opt",
        "o=username=u,password=hunter2-cifs",
        "share",
      ]);
      const leaks: string[] = [];
      for (
        const target of ["/containers/shipper/json", "/volumes/share", "/volumes", "/system/df"]
      ) {
        const r = await get(g, "ro", target);
        if (/hunter2/.test(r.raw)) leaks.push(`${target}: ${r.status} ${r.raw.slice(-400)}`);
      }
      assert.deepEqual(leaks, []);
      const seer = await get(g, "seer", "/volumes/share");
      assert.ok(seer.raw.includes("hunter2-cifs"), seer.raw);
    } finally {
      await g.stop();
    }
  },
);
