/**
 * Issue 20, `/system/df` under isolation: the build cache has no owner (its records name the
 * build steps of whoever built: `COPY`, `RUN` command lines), so an isolated role's answer has
 * none of it (`BuildCache: []`, `BuilderSize: 0`); images stay as `/images/json` shows them to
 * every identity (they are shared, with counts of the owner's containers only), and containers
 * and volumes are the owner's. An admin's BuildKit build on the daemon's own socket makes the
 * cache; the tenant's raw request and `docker system df -v` through the gate must not show it.
 * On every engine the harness has.
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

/** Debian's docker.io 20.10 CLI: BuildKit without the buildx plugin. */
const LEGACY_CLI = "/usr/bin/docker";

const POLICY = {
  roles: { tenant: { preset: "no-escape", isolate: true } },
  identities: [{ cn: "t1", role: "tenant" }],
};

for (const engine of availableEngines()) {
  Deno.test({
    name: `isolation e2e (Docker ${engine}): /system/df shows no build cache`,
    ignore: dockerdUnavailable() || !legacyCli(),
    sanitizeOps: false,
    sanitizeResources: false,
  }, (t) => diskUsage(t, engine));
}

async function diskUsage(t: Deno.TestContext, engine: Engine): Promise<void> {
  const d = await startDockerd({ engine });
  if (!d) return;
  const work = await freeTempDir("dgf-");
  let gate: ServeProcess | undefined;
  try {
    const ctx = join(work, "ctx");
    await Deno.mkdir(ctx);
    await Deno.writeTextFile(join(ctx, "admin-secret-step.txt"), "x\n");
    await Deno.writeTextFile(
      join(ctx, "Dockerfile"),
      `FROM ${d.image}\nCOPY admin-secret-step.txt /\n`,
    );
    // BuildKit through the 20.10 CLI, which has it built in (the newer CLI wants buildx).
    const build = await new Deno.Command(LEGACY_CLI, {
      args: ["-H", d.host, "build", "-t", "admin-built", ctx],
      env: { DOCKER_BUILDKIT: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(build.code, 0, new TextDecoder().decode(build.stderr));
    const cacheCount = async (host?: string, tls: string[] = []) => {
      const r = await d.docker([...tls, "system", "df", "--format", "{{json .}}"], { host });
      assert.equal(r.code, 0, r.stderr);
      const line = r.stdout.split("\n").find((l) => l.includes("Build Cache"));
      return JSON.parse(line ?? "{}").TotalCount ?? "0";
    };
    const direct = { TotalCount: await cacheCount() };
    assert.notEqual(direct.TotalCount ?? "0", "0", "the admin's build made no cache");

    const g = await startPolicyGate(d.host, work, POLICY, ["t1"]);
    gate = g.gate;
    await gate.waitForLog(/API policy: /);
    const t1 = await bundleCreds(g.pki, "t1");
    const v = `/v${(await d.docker(["version", "-f", "{{.Server.APIVersion}}"])).stdout.trim()}`;

    await t.step("raw /system/df: no build cache, images as /images/json shows them", async () => {
      const get = async (path: string) => {
        // Kept open until the answer (dockerd 26 cancels a request whose client half-closed).
        const request = `GET ${path} HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n`;
        const ex = await tlsExchange(gate!.port, t1, request, { keepOpen: true });
        const [r] = splitResponses(ex.data);
        assert.equal(r?.status, 200, ex.data.toString());
        return JSON.parse(r.body);
      };
      const df = await get(`${v}/system/df`);
      assert.deepEqual(df.BuildCache, [], JSON.stringify(df.BuildCache));
      assert.equal(df.BuilderSize ?? 0, 0);
      assert.deepEqual(df.Containers, []);
      const images = await get(`${v}/images/json`);
      assert.deepEqual(
        df.Images.map((i: { Id: string }) => i.Id).sort(),
        images.map((i: { Id: string }) => i.Id).sort(),
      );
      const only = await get(`${v}/system/df?type=build-cache`);
      assert.deepEqual(only.BuildCache ?? [], []);
    });

    await t.step("docker system df through the gate: no build cache", async () => {
      const tls = tlsFlags(join(g.pki, "clients", "t1"));
      assert.equal(await cacheCount(gate!.host, tls), "0");
      const r = await d.docker([...tls, "system", "df", "-v"], { host: gate!.host });
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stdout, /admin-secret-step|COPY/, r.stdout);
    });
  } finally {
    await gate?.stop();
    await d.stop();
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}

/** Whether the 20.10 CLI is installed (Debian's docker.io). */
function legacyCli(): boolean {
  try {
    return Deno.statSync(LEGACY_CLI).isFile;
  } catch {
    return false;
  }
}
