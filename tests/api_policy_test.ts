/**
 * Unit tests of src/docker/api_policy.ts, routes.ts and config/policy_file.ts: presets per
 * route, allow/deny entries, versions, build queries, the policy file's validation messages.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  compileApiPolicy,
  decideRequest,
  inspectionFor,
  relaysRaw,
  type Role,
  roleFor,
} from "../src/docker/api_policy.ts";
import { parseApiTarget } from "../src/docker/api_path.ts";
import { matchRoutes, ROUTES } from "../src/docker/routes.ts";
import { loadApiPolicyFile, parseApiPolicyText } from "../src/config/policy_file.ts";

const POLICY = compileApiPolicy({
  roles: {
    monitor: { preset: "read-only" },
    dl: { preset: "read-only", allowDownloads: true },
    ops: { preset: "read-only", allow: ["POST /containers/*/restart"], deny: ["GET /info"] },
    ci: { preset: "no-escape", allowBindMounts: ["/srv/ci"], deny: ["DELETE /images/**"] },
    admin: { preset: "full", deny: ["POST /swarm/leave"] },
  },
  identities: [
    { cn: "grafana", role: "monitor" },
    { san: "*.ci.example", role: "ci" },
    { ou: "ops", role: "ops" },
    { cn: "dl", role: "dl" },
    { cn: "alice", role: "admin" },
  ],
}, "test");
const role = (n: string) => POLICY.roles.get(n)!;
const decide = (r: Role, method: string, target: string, body?: unknown) =>
  decideRequest(r, {
    method,
    target: parseApiTarget(target),
    body: body as never,
    hasBody: body !== undefined,
  });

Deno.test("roles are found by CN, SAN (DNS folded) and OU, first entry wins", () => {
  const peer = (
    p: Partial<{ commonName: string; dnsNames: string[]; organizationalUnits: string[] }>,
  ) => ({
    commonName: p.commonName,
    organizationalUnits: p.organizationalUnits ?? [],
    dnsNames: p.dnsNames ?? [],
    uris: [],
    ips: [],
  });
  assert.equal(roleFor(POLICY, peer({ commonName: "grafana" }))?.name, "monitor");
  assert.equal(roleFor(POLICY, peer({ commonName: "Grafana" })), undefined, "CNs compare exactly");
  assert.equal(
    roleFor(POLICY, peer({ commonName: "x", dnsNames: ["Runner1.CI.example"] }))?.name,
    "ci",
  );
  assert.equal(
    roleFor(POLICY, peer({ commonName: "grafana", organizationalUnits: ["ops"] }))?.name,
    "monitor",
  );
  assert.equal(roleFor(POLICY, peer({ commonName: "nobody" })), undefined);
});

Deno.test("read-only: reads pass, writes and downloads do not", () => {
  const m = role("monitor");
  for (
    const [method, path] of [
      ["GET", "/v1.41/containers/json"],
      ["GET", "/containers/abc/json"],
      ["GET", "/containers/abc/logs?follow=1"],
      ["GET", "/containers/abc/stats"],
      ["GET", "/events"],
      ["GET", "/version"],
      ["GET", "/info"],
      ["HEAD", "/_ping"],
      ["GET", "/images/json"],
      ["GET", "/images/registry:5000/a/b:tag/json"],
      ["GET", "/networks"],
      ["GET", "/volumes/v"],
    ]
  ) assert.ok(decide(m, method, path).allow, `${method} ${path}`);
  for (
    const [method, path, re] of [
      ["POST", "/containers/create", /changes state/],
      ["POST", "/containers/abc/exec", /changes state/],
      ["DELETE", "/containers/abc", /changes state/],
      ["GET", "/containers/abc/archive?path=/etc", /downloads files/],
      ["HEAD", "/containers/abc/archive?path=/etc", /downloads files/],
      ["GET", "/containers/abc/export", /downloads files/],
      ["GET", "/images/bb/get", /downloads files/],
      ["GET", "/images/get?names=bb", /downloads files/],
      ["GET", "/containers/abc/attach/ws", /changes state/],
      ["GET", "/swarm/unlockkey", /can reach the host/],
      ["GET", "/debug/pprof/profile", /not a Docker API route/],
      ["OPTIONS", "/containers/json", /not a Docker API route/],
      ["get", "/containers/json", /not a Docker API route/],
    ] as const
  ) {
    const d = decide(m, method, path);
    assert.equal(d.allow, false, `${method} ${path}`);
    assert.match(d.rule, re, `${method} ${path}`);
  }
  assert.ok(decide(role("dl"), "GET", "/containers/abc/archive?path=/").allow, "allowDownloads");
});

Deno.test("allow and deny entries; deny wins; full keeps its deny entries", () => {
  const ops = role("ops");
  assert.ok(decide(ops, "POST", "/v1.41/containers/web/restart").allow);
  assert.match(decide(ops, "POST", "/v1.41/containers/web/restart").rule, /allow POST/);
  assert.equal(decide(ops, "POST", "/containers/web/kill").allow, false);
  assert.match(decide(ops, "GET", "/info").rule, /deny GET \/info/);
  assert.match(decide(role("ci"), "DELETE", "/images/library/bb:latest").rule, /deny DELETE/);
  assert.ok(decide(role("admin"), "POST", "/plugins/pull").allow);
  assert.equal(decide(role("admin"), "POST", "/swarm/leave").allow, false);
});

Deno.test("no-escape: host-reaching routes refused, bodies inspected, old versions refused", () => {
  const ci = role("ci");
  for (
    const path of [
      "/plugins/pull",
      "/plugins/x/enable",
      "/plugins/x/set",
      "/plugins/x/upgrade",
      "/swarm/init",
      "/swarm/join",
      "/session",
      "/grpc",
      "/containers/abc/copy",
    ]
  ) assert.match(decide(ci, "POST", path).rule, /can reach the host|not a Docker API route/, path);
  assert.equal(inspectionFor(ci, "POST", "/containers/create"), "create");
  assert.equal(inspectionFor(ci, "POST", "/containers/a/exec"), "exec");
  assert.equal(inspectionFor(ci, "POST", "/volumes/create"), "volume");
  assert.equal(inspectionFor(ci, "POST", "/containers/a/start"), "start");
  assert.equal(inspectionFor(ci, "POST", "/services/create"), "service");
  assert.equal(inspectionFor(ci, "POST", "/services/web/update"), "service");
  assert.equal(inspectionFor(ci, "POST", "/build"), undefined, "a build's body is its context");
  // A full role reads only the exec and container creates, for their audit record.
  assert.equal(inspectionFor(role("admin"), "POST", "/containers/create"), "create");
  assert.equal(inspectionFor(role("admin"), "POST", "/containers/web/exec"), "exec");
  assert.equal(inspectionFor(role("admin"), "POST", "/containers/web/update"), undefined);
  assert.equal(inspectionFor(role("admin"), "POST", "/networks/create"), undefined);
  assert.equal(
    decide(ci, "POST", "/containers/create").allow,
    false,
    "no body: nothing to inspect",
  );
  assert.ok(decide(ci, "POST", "/containers/create", { Image: "bb" }).allow);
  assert.match(
    decide(ci, "POST", "/containers/create", { HostConfig: { Privileged: true } }).rule,
    /Privileged/,
  );
  assert.ok(decide(ci, "POST", "/containers/a/start").allow);
  assert.ok(decide(ci, "POST", "/containers/a/start", {}).allow);
  assert.match(
    decide(ci, "POST", "/containers/a/start", { Privileged: true }).rule,
    /body on start/,
  );
  assert.match(decide(ci, "POST", "/v1.23/containers/a/start").rule, /below 1\.24/);
  assert.match(decide(role("monitor"), "GET", "/v1.12/containers/json").rule, /below 1\.24/);
  assert.match(decide(ci, "POST", "/build?networkmode=host").rule, /networkmode="host"/);
  assert.match(decide(ci, "POST", "/build?networkmode=container:x").rule, /networkmode/);
  assert.match(
    decide(ci, "POST", "/build?t=a&networkmode=default&networkmode=host").rule,
    /"networkmode" given twice/,
  );
  assert.match(decide(ci, "POST", "/build?cgroupparent=/x").rule, /cgroupparent/);
  assert.match(decide(ci, "POST", "/build?version=2").rule, /BuildKit/);
  assert.ok(decide(ci, "POST", "/build?t=x&networkmode=default&version=1").allow);
});

Deno.test("routes: every line of the table compiles; dockerd's multi-segment names", () => {
  assert.ok(ROUTES.length > 100);
  for (const r of ROUTES) {
    assert.ok(["read", "download", "write", "escape"].includes(r.kind), r.pattern);
  }
  assert.equal(matchRoutes("GET", "/images/library/bb:1/json")[0].pattern, "/images/{name}/json");
  assert.equal(matchRoutes("GET", "/nodes/a/b").length, 0, "{id} is one segment");
  // A container named a/exec: the stricter of the matching routes decides.
  const both = matchRoutes("DELETE", "/containers/x/checkpoints/y");
  assert.equal(both.length, 2);
});

Deno.test("the policy file: the issue's JSON, YAML, and one clear error per mistake", async () => {
  const dir = await mkdtemp(join(tmpdir(), "dg-pol-"));
  try {
    const json = join(dir, "policy.json");
    await writeFile(
      json,
      `{ "roles": { "monitor": { "preset": "read-only" },
             "ci": { "preset": "no-escape", "allowBindMounts": ["/srv/ci"] },
             "admin": { "preset": "full" } },
  "identities": [ { "cn": "grafana", "role": "monitor" },
                  { "cn": "ci-runner", "role": "ci" },
                  { "cn": "alice", "role": "admin" } ] }`,
      { mode: 0o600 },
    );
    const p = await loadApiPolicyFile(json);
    assert.deepEqual([...p.roles.values()].map((r) => `${r.name}=${r.preset}`), [
      "monitor=read-only",
      "ci=no-escape",
      "admin=full",
    ]);
    const yaml = parseApiPolicyText(
      'roles:\n  m:\n    preset: read-only\n    allow: ["POST /containers/*/restart"]\nidentities:\n  - {ou: ops, role: m}\n',
      "p.yaml",
    );
    assert.equal(yaml.roles.get("m")!.allow.length, 1);
    for (
      const [text, re] of [
        [
          "roles: {a: {preset: x}}\nidentities: []",
          /roles\.a\.preset: must be one of read-only, no-escape, full/,
        ],
        [
          "roles: {a: {preset: full, allowBindMount: []}}\nidentities: []",
          /roles\.a\.allowBindMount: unknown option/,
        ],
        [
          "roles: {a: {preset: no-escape, allowBindMounts: [srv]}}\nidentities: []",
          /allowBindMounts\[0\]: must be an absolute path/,
        ],
        [
          "roles: {a: {preset: no-escape, allowBindMounts: [/]}}\nidentities: []",
          /the root directory is the host/,
        ],
        [
          'roles: {a: {preset: no-escape, allowImageNames: ["CI/*"]}}\nidentities: []',
          /roles\.a\.allowImageNames\[0\]: must be an image name pattern like "ci\/\*"/,
        ],
        [
          "roles: {a: {preset: no-escape, allowImageNames: ci}}\nidentities: []",
          /roles\.a\.allowImageNames: must be a list of strings/,
        ],
        [
          "roles: {a: {preset: full, allow: [containers]}}\nidentities: []",
          /roles\.a\.allow\[0\]: must be "METHOD \/path\/pattern"/,
        ],
        [
          "roles: {a: {preset: full}}\nidentities: [{cn: x, role: b}]",
          /identities\[0\]\.role: no role named "b"/,
        ],
        [
          "roles: {a: {preset: full}}\nidentities: [{cn: x, ou: y, role: a}]",
          /identities\[0\]: needs exactly one of cn, san, ou/,
        ],
        [
          "roles: {a: {preset: full}}\nidentities: [{cn: x, role: a, extra: 1}]",
          /identities\[0\]\.extra: unknown key/,
        ],
        [
          '{"roles": {"a": {"preset": "full"}, "a": {"preset": "read-only"}}, "identities": []}',
          /line 1: .*[Uu]nique|line 1: .*duplicate|line 1/,
        ],
        ["roles: {}\nidentities: {}\nother: 1", /other: unknown key/],
        ["[1, 2", /line/],
      ] as const
    ) {
      assert.throws(() => parseApiPolicyText(text, "p.yaml"), (e: unknown) => {
        assert.ok(e instanceof TypeError, String(e));
        assert.match(e.message, /^Policy "p\.yaml": /);
        assert.match(e.message, re);
        assert.ok(!e.message.includes("\n"), "one line");
        return true;
      }, text);
    }
    await writeFile(join(dir, "open.json"), "{}", { mode: 0o666 });
    await Deno.chmod(join(dir, "open.json"), 0o666);
    await assert.rejects(loadApiPolicyFile(join(dir, "open.json")), /writable by group\/others/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

Deno.test("query parameters: each route's list and value rules decide (issue 20, items 4, 7, 13)", () => {
  const ci = role("ci");
  const monitor = role("monitor");
  const priv = compileApiPolicy({
    roles: { reg: { preset: "no-escape", allowPrivateAddresses: true } },
    identities: [],
  }, "t").roles.get("reg")!;
  const refused = (r: Role, method: string, target: string, why: RegExp) => {
    const d = decide(r, method, target);
    assert.equal(d.allow, false, `${method} ${target} must be refused`);
    assert.match(d.rule, why);
  };
  refused(monitor, "GET", "/containers/c/checkpoints?dir=/etc", /query parameter dir=/);
  refused(ci, "DELETE", "/containers/c/checkpoints/x?dir=/etc", /query parameter dir=.*host dir/);
  refused(ci, "POST", "/containers/c/start?checkpoint-dir=/tmp", /checkpoint-dir/);
  refused(monitor, "GET", "/containers/c/top?ps_args=-o%20pid%20--help", /ps_args/);
  assert.ok(decide(monitor, "GET", "/containers/c/top?ps_args=-ef").allow);
  assert.ok(decide(monitor, "GET", "/containers/c/top").allow);
  refused(monitor, "GET", "/containers/json?all=1&Evil=1", /unknown query parameter "Evil"/);
  refused(monitor, "GET", "/containers/json?ALL=1", /unknown query parameter "ALL"/);
  refused(monitor, "GET", "/containers/json?all=f", /all="f" is not 0, 1/);
  refused(monitor, "GET", "/containers/json?limit=1&limit=2", /"limit" given twice/);
  refused(monitor, "GET", '/containers/json?filters={"a":1,"a":2}', /filters=.*duplicate key/);
  refused(monitor, "GET", "/info?x=1", /unknown query parameter "x"/);
  assert.ok(
    decide(monitor, "GET", '/containers/json?all=1&size=0&filters={"status":{"exited":true}}')
      .allow,
  );
  // build: the options that reach the host are pinned; the list options may repeat.
  // A named network as a no-escape container may have (docker-py builds on one); for an
  // isolated role too, where the isolation step owner-checks it and forwards its full ID
  // (isolation_test, docker_isolation_refs e2e).
  assert.ok(decide(ci, "POST", "/build?networkmode=bridge2").allow);
  const iso = compileApiPolicy({
    roles: { t: { preset: "no-escape", isolate: true } },
    identities: [],
  }, "t").roles.get("t")!;
  assert.ok(decide(iso, "POST", "/build?networkmode=bridge2").allow);
  refused(iso, "POST", "/build?networkmode=host", /networkmode/);
  refused(ci, "POST", "/build?networkmode=Host", /networkmode/);
  refused(ci, "POST", "/build?securityopt=seccomp%3Dunconfined", /securityopt/);
  refused(ci, "POST", '/build?labels={"dockgate.owner":"x"}', /dockgate\. labels/);
  refused(ci, "POST", "/build?session=abc", /session/);
  refused(ci, "POST", "/build?remote=http://127.0.0.1:8080/ctx.tar", /127\.0\.0\.1/);
  refused(ci, "POST", "/build?remote=http://user@example.com/", /URL/);
  refused(ci, "POST", "/build?remote=git@github.com:a/b", /URL/);
  refused(ci, "POST", "/build?remote=client-session", /URL/);
  refused(ci, "POST", "/build?remote=HTTP://example.com/", /URL/);
  assert.ok(decide(ci, "POST", "/containers/c/attach?detachKeys=ctrl-p,ctrl-q&stream=1").allow);
  assert.ok(decide(ci, "POST", "/build?remote=https://example.com/ctx.tar").allow);
  assert.ok(decide(priv, "POST", "/build?remote=http://127.0.0.1:8080/ctx.tar").allow);
  assert.ok(
    decide(
      ci,
      "POST",
      "/build?t=a&t=b&buildargs={}&cachefrom=[]&cgroupparent=&cpuperiod=0&labels={}&memory=0" +
        "&networkmode=default&rm=1&shmsize=0&target=&ulimits=null&version=1&dockerfile=Dockerfile",
    ).allow,
  );
  // images/create and the registry references dockerd contacts.
  refused(ci, "POST", "/images/create?fromSrc=http://127.0.0.1:9/x.tar", /fromSrc/);
  refused(ci, "POST", "/images/create?fromSrc=http://10.0.0.1/x.tar", /fromSrc/);
  refused(ci, "POST", "/images/create?fromSrc=http://[::1]/x.tar", /fromSrc/);
  refused(ci, "POST", "/images/create?fromSrc=file:///etc/passwd", /fromSrc/);
  refused(ci, "POST", "/images/create?fromImage=127.0.0.1:5000/x&tag=1", /fromImage/);
  refused(ci, "POST", "/images/create?fromImage=localhost:5000/x", /fromImage/);
  refused(ci, "POST", "/images/create?fromImage=registry:5000/x", /fromImage/);
  refused(ci, "POST", "/images/create?fromSrc=-&changes=LABEL%20dockgate.owner%3Dx", /changes/);
  refused(ci, "POST", "/commit?container=c&changes=label%20DOCKGATE.owner=x", /changes/);
  refused(monitor, "GET", "/distribution/127.0.0.1:5000/x/json", /127\.0\.0\.1/);
  refused(ci, "POST", "/images/localhost:5000/x/push?tag=1", /localhost/);
  refused(monitor, "GET", "/images/search?term=127.0.0.1:5000/x", /term/);
  assert.ok(decide(ci, "POST", "/images/create?fromImage=busybox&tag=latest").allow);
  assert.ok(decide(ci, "POST", "/images/create?fromImage=ghcr.io/a/b&tag=1").allow);
  assert.ok(decide(ci, "POST", "/images/create?fromSrc=-&repo=x&tag=1").allow);
  assert.ok(decide(monitor, "GET", "/distribution/busybox:latest/json").allow);
  assert.ok(decide(priv, "POST", "/images/create?fromImage=127.0.0.1:5000/x").allow);
  // full roles are not restricted; an allow entry does not lift the query rules.
  assert.ok(decide(role("admin"), "GET", "/containers/c/checkpoints?dir=/etc").allow);
  refused(role("ops"), "POST", "/containers/c/restart?t=1&x=1", /unknown query parameter "x"/);
});

Deno.test("api policy: a build's record says its context was not read", () => {
  const p = compileApiPolicy({ roles: { ci: { preset: "no-escape" } }, identities: [] }, "x");
  const d = decideRequest(p.roles.get("ci")!, {
    method: "POST",
    target: parseApiTarget("/v1.41/build?t=x"),
    hasBody: true,
  });
  assert.equal(d.allow, true);
  assert.match(d.rule, /build query checked, context not read/);
});

Deno.test("api policy: image names are written only as allowImageNames allows", () => {
  const p = compileApiPolicy({
    roles: {
      ci: { preset: "no-escape" },
      names: { preset: "no-escape", allowImageNames: ["ci/*"] },
      all: { preset: "no-escape", allowImageNames: ["*"] },
      ro: { preset: "read-only", allow: ["POST /images/**"] },
    },
    identities: [],
  }, "x");
  const decide = (role: string, method: string, path: string) =>
    decideRequest(p.roles.get(role)!, { method, target: parseApiTarget(path) });
  const cases: [string, string, string, boolean][] = [
    ["ci", "POST", "/v1.41/images/evil/tag?repo=bb&tag=latest", false],
    ["ci", "POST", "/v1.41/images/evil/tag?repo=ci/x&tag=1", false],
    ["ci", "DELETE", "/v1.41/images/bb:latest", false],
    ["ci", "POST", "/v1.41/images/bb/push?tag=latest", false],
    ["ci", "POST", "/v1.41/images/prune", false],
    ["ci", "POST", "/v1.41/images/load", false],
    ["ro", "POST", "/v1.41/images/evil/tag?repo=bb", false],
    ["names", "POST", "/v1.41/images/evil/tag?repo=ci/x&tag=1", true],
    ["names", "POST", "/v1.41/images/evil/tag?repo=docker.io/ci/x", true],
    ["names", "POST", "/v1.41/images/evil/tag?repo=docker.io/library/bb", false],
    ["names", "POST", "/v1.41/images/evil/tag", false],
    ["names", "DELETE", "/v1.41/images/ci/x:1", true],
    ["names", "DELETE", "/v1.41/images/3f2a", false],
    ["names", "DELETE", "/v1.41/images/bb", false],
    ["names", "POST", "/v1.41/images/ci/x/push?tag=2", true],
    ["names", "POST", "/v1.41/images/load", false],
    ["all", "DELETE", "/v1.41/images/sha256:3f2a", true],
    ["all", "POST", "/v1.41/images/load", true],
    ["all", "POST", "/v1.41/images/prune", true],
  ];
  for (const [role, method, path, allow] of cases) {
    const d = decide(role, method, path);
    assert.equal(d.allow, allow, `${role} ${method} ${path}: ${d.rule}`);
    if (!allow && role !== "ro") assert.match(d.rule, /allowImageNames/, d.rule);
  }
});

Deno.test("audit option: requests or connections, connections only for full; the relay rule", () => {
  const roles = (r: Record<string, unknown>) =>
    compileApiPolicy({ roles: { r }, identities: [] }, "p.json").roles.get("r")!;
  assert.equal(roles({ preset: "full" }).audit, "connections");
  assert.equal(roles({ preset: "full", audit: "requests" }).audit, "requests");
  assert.equal(roles({ preset: "no-escape" }).audit, "requests");
  assert.equal(roles({ preset: "read-only", audit: "requests" }).audit, "requests");
  assert.ok(relaysRaw(roles({ preset: "full" })));
  assert.ok(relaysRaw(undefined));
  assert.ok(!relaysRaw(roles({ preset: "full", audit: "requests" })));
  assert.ok(!relaysRaw(roles({ preset: "read-only" })));
  assert.throws(
    () => roles({ preset: "full", audit: "request" }),
    /Policy "p\.json": roles\.r\.audit: must be one of requests, connections, got "request"/,
  );
  assert.throws(() => roles({ preset: "full", audit: true }), /roles\.r\.audit: must be one of/);
  assert.throws(
    () => roles({ preset: "no-escape", audit: "connections" }),
    /roles\.r\.audit: a no-escape role decides every request .*only a full role/,
  );
});

Deno.test("record option: true, false or required; a full role needs audit requests", () => {
  const roles = (r: Record<string, unknown>) =>
    compileApiPolicy({ roles: { r }, identities: [] }, "p.json").roles.get("r")!;
  assert.equal(roles({ preset: "no-escape" }).record, false);
  assert.equal(roles({ preset: "no-escape", record: true }).record, true);
  assert.equal(roles({ preset: "full", audit: "requests", record: "required" }).record, "required");
  assert.throws(
    () => roles({ preset: "no-escape", record: "yes" }),
    /roles\.r\.record: must be true, false or "required", got "yes"/,
  );
  assert.throws(
    () => roles({ preset: "full", record: true }),
    /roles\.r\.record: a full role is relayed raw: recording its sessions needs "audit": "requests"/,
  );
});
