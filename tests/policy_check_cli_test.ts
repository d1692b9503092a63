/**
 * `dockgate policy check` through the real CLI: the decision on stdout, exit 0 allow, 1 deny,
 * 2 for usage, one error line for a broken policy.
 */
import assert from "node:assert/strict";
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { runCli } from "./helpers/gate.ts";
import { freeTempDir } from "./helpers/wait.ts";

Deno.test("policy check: decisions, rules and exit codes", async () => {
  const dir = await freeTempDir("dg-pc-");
  try {
    const policy = join(dir, "policy.yaml");
    await writeFile(
      policy,
      `roles:
  monitor: {preset: read-only}
  ci: {preset: no-escape, allowBindMounts: [/srv/ci]}
identities:
  - {cn: grafana, role: monitor}
  - {cn: ci-runner, role: ci}
`,
    );
    const body = join(dir, "create.json");
    await writeFile(body, JSON.stringify({ Image: "bb", HostConfig: { Binds: ["/:/host"] } }));
    const folded = join(dir, "folded.json");
    await writeFile(folded, '{"Image":"bb","HostConfig":{"privileged":true}}');
    const ok = join(dir, "ok.json");
    await writeFile(ok, JSON.stringify({ Image: "bb", HostConfig: { Binds: ["/srv/ci:/w"] } }));
    const check = (...args: string[]) => runCli(["policy", "check", policy, ...args]);

    let r = await check("--identity", "grafana", "GET", "/v1.41/containers/json?all=1");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "allow monitor: read-only\n");
    r = await check("--identity", "ci-runner", "PUT", "/v1.45/containers/web/archive?path=/");
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /^allow ci: no-escape\nshield CVE-2026-41568: refused on Docker 25\.0\.0 to 29\.5\.0 /,
    );
    assert.match(r.stdout, /\ncontainer check: container web is inspected at run time/);
    r = await check("--identity", "ci-runner", "POST", "/v1.41/images/x/tag?repo=bb&tag=latest");
    assert.equal(r.code, 1);
    assert.match(
      r.stdout,
      /^deny ci: no-escape: tag bb:latest: name not allowed .*allowImageNames/,
    );
    r = await check("--identity", "ci-runner", "POST", "/v1.41/build?t=bb");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /\nimage check: bb:latest is not on allowImageNames/);
    r = await check("--identity", "grafana", "POST", "/v1.41/containers/create");
    assert.equal(r.code, 1);
    assert.match(r.stdout, /^deny monitor: read-only: POST \/containers\/create changes state\n$/);
    r = await check("--identity", "ci-runner", "POST", "/containers/create", "--body", body);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /bind mount of \/ is not one of the role's allowBindMounts/);
    r = await check("--identity", "ci-runner", "POST", "/containers/create", "--body", folded);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /not spelled as the field "Privileged"/);
    r = await check("--identity", "ci-runner", "POST", "/containers/create", "--body", ok);
    assert.equal(r.code, 0, r.stdout);
    r = await check("--identity", "mallory", "GET", "/_ping");
    assert.equal(r.code, 1);
    assert.match(r.stdout, /no role for this identity/);
    r = await check("--identity", "ci-runner", "POST", "/containers/x/../create");
    assert.equal(r.code, 1);
    assert.match(r.stdout, /400: dot segment/);
    r = await check("--identity", "grafana", "GET");
    assert.equal(r.code, 2);
    await writeFile(policy, "roles: {m: {preset: readonly}}\nidentities: []\n");
    r = await check("--identity", "grafana", "GET", "/_ping");
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /^dockgate: error: Policy ".*policy\.yaml": roles\.m\.preset: must be one of/m,
    );
    // liftShields names shields by CVE id: an unknown one is one error line naming the known.
    await writeFile(
      policy,
      "roles: {m: {preset: no-escape, liftShields: [CVE-2026-41567]}}\nidentities: []\n",
    );
    r = await check("--identity", "grafana", "GET", "/_ping");
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      `dockgate: error: Policy "${policy}": roles.m.liftShields[0]: unknown shield ` +
        '"CVE-2026-41567" (known: CVE-2026-41568, CVE-2026-42306)\n',
    );
    await writeFile(
      policy,
      "roles: {m: {preset: no-escape, liftShields: [CVE-2026-41568]}}\n" +
        "identities: [{cn: x, role: m}]\n",
    );
    r = await check("--identity", "x", "PUT", "/v1.45/containers/web/archive?path=/");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^shield CVE-2026-41568: lifted by the role \(liftShields\)$/m);
    assert.match(r.stdout, /^shield CVE-2026-42306: refused on Docker 25\.0\.0 to 29\.5\.0 /m);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

Deno.test("policy check: an isolated role says what isolation does", async () => {
  const dir = await freeTempDir("dg-pc-iso-");
  try {
    const policy = join(dir, "policy.json");
    await writeFile(
      policy,
      JSON.stringify({
        roles: { tenant: { preset: "no-escape", isolate: true } },
        identities: [{ cn: "team-a", role: "tenant" }],
      }),
    );
    const body = join(dir, "create.json");
    await writeFile(body, JSON.stringify({ Image: "bb", HostConfig: { VolumesFrom: ["db"] } }));
    const planted = join(dir, "planted.json");
    await writeFile(
      planted,
      JSON.stringify({ Image: "bb", Labels: { "dockgate.owner": "team-b" } }),
    );
    const check = (...args: string[]) => runCli(["policy", "check", policy, ...args]);
    let r = await check("--identity", "team-a", "GET", "/v1.41/containers/json");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "allow tenant: no-escape\nisolate: owner filter\n");
    r = await check("--identity", "team-a", "POST", "/containers/create", "--body", body);
    assert.equal(r.code, 0, r.stdout);
    assert.match(
      r.stdout,
      /isolate: owner label added; owner of container db \(HostConfig\.VolumesFrom\[0\]\) checked at run time/,
    );
    r = await check("--identity", "team-a", "POST", "/containers/create", "--body", planted);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /dockgate\. labels are the gate's to set/);
    r = await check("--identity", "team-a", "GET", "/tasks");
    assert.equal(r.code, 1);
    assert.match(r.stdout, /deny tenant: isolate: 403: swarm tasks have no owner/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
