/**
 * Label scope (role option `scope`; isolation.ts `containerSeen`, `planIsolation` with a
 * scope, limit_spec.ts `scopeProblem`): the one visibility rule, the label filter on
 * container lists and events only (volume and network lists stay whole), the references a
 * scoped role's requests make, what it may not ask, the answer filters, and the option's
 * checks.
 */
import assert from "node:assert/strict";
import { parseApiTarget } from "../src/docker/api_path.ts";
import { compileApiPolicy } from "../src/docker/api_policy.ts";
import { runCli } from "./helpers/gate.ts";
import {
  containerSeen,
  filterAnswer,
  IsolationRefusal,
  keepEvent,
  planIsolation,
} from "../src/docker/isolation.ts";

const scope = { key: "com.example.team", value: "web" };
const settings = {
  owner: "webmon",
  othersStatus: 404 as const,
  sharedVolumes: [],
  sharedNetworks: [],
  allowVolumesFrom: [],
  scope,
};
const plan = (method: string, raw: string) =>
  planIsolation(settings, method, raw, parseApiTarget(raw));
const filtersOf = (raw: string) => {
  const t = plan("GET", raw).target.toString();
  return JSON.parse(new URL(`http://x${t}`).searchParams.get("filters") ?? "null");
};

Deno.test("label scope: the one rule, by the label alone", () => {
  assert.ok(containerSeen({ "com.example.team": "web" }, "i", "webmon", undefined, scope));
  for (const labels of [{ "com.example.team": "webx" }, { "dockgate.owner": "webmon" }, null]) {
    assert.ok(!containerSeen(labels, "i", "webmon", undefined, scope), JSON.stringify(labels));
  }
  const proto = JSON.parse('{"__proto__": {"com.example.team": "web"}}');
  assert.ok(!containerSeen(proto, "i", "webmon", undefined, { key: "x", value: "web" }));
});

Deno.test("label scope: lists and events filtered by the label, volumes and networks whole", () => {
  assert.deepEqual(filtersOf("/containers/json?all=1").label, { "com.example.team=web": true });
  const mixed = filtersOf('/containers/json?filters={"label":["a=b"]}');
  assert.deepEqual(Object.keys(mixed.label).sort(), ["a=b", "com.example.team=web"]);
  assert.deepEqual(filtersOf("/events").type, { container: true });
  assert.equal(plan("GET", "/volumes").target.changed, false);
  assert.equal(plan("GET", "/networks").target.changed, false);
  assert.equal(plan("GET", "/containers/json").answer?.kind, "container-list");
  assert.equal(plan("GET", "/system/df").answer?.kind, "system-df");
  const logs = plan("GET", "/containers/web1/logs");
  assert.deepEqual(logs.refs.map((r) => [r.kind, r.name]), [["container", "web1"]]);
  assert.deepEqual(plan("GET", "/exec/e1/json").refs.map((r) => r.kind), ["exec"]);
});

Deno.test("label scope: only reads, and acts on one container it sees", () => {
  assert.equal(plan("POST", "/containers/web1/restart").refs[0].name, "web1");
  for (
    const [method, raw] of [
      ["POST", "/containers/create"],
      ["POST", "/containers/prune"],
      ["DELETE", "/volumes/v"],
      ["POST", "/networks/n/connect"],
      ["POST", "/exec/e/start"],
      ["POST", "/build"],
      ["GET", "/v1.27/networks"],
      ["GET", "/services"],
    ]
  ) {
    assert.throws(() => plan(method, raw), IsolationRefusal, `${method} ${raw}`);
  }
  assert.equal(plan("GET", "/v1.28/networks").target.changed, false);
});

Deno.test("label scope: the answer filters keep what the scope sees", async () => {
  const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
  const dec = (b: Uint8Array) => JSON.parse(new TextDecoder().decode(b));
  const web = { Id: "a", Labels: { "com.example.team": "web" } };
  const db = { Id: "b", Labels: { "com.example.team": "db" } };
  const list = await filterAnswer(
    { kind: "container-list" },
    200,
    enc([web, db]),
    "webmon",
    new Set(),
    undefined,
    scope,
  );
  assert.deepEqual(dec(list!.body), [web]);
  const df = { Containers: [web, db], Volumes: [{ Name: "v", Labels: null }], Images: [] };
  const out = dec(
    (await filterAnswer(
      { kind: "system-df" },
      200,
      enc(df),
      "webmon",
      new Set(),
      undefined,
      scope,
    ))!
      .body,
  );
  assert.deepEqual(out.Containers, [web]);
  assert.equal(out.Volumes.length, 1, "volumes are not scoped");
  const ev = (c: typeof web) =>
    JSON.stringify({ Type: "container", Actor: { ID: c.Id, Attributes: c.Labels } });
  assert.ok(keepEvent(ev(web), "webmon", undefined, scope));
  assert.ok(!keepEvent(ev(db), "webmon", undefined, scope));
});

Deno.test("label scope: the option is checked", () => {
  const role = (spec: Record<string, unknown>) =>
    compileApiPolicy({ roles: { r: { preset: "read-only", ...spec } }, identities: [] }, "p");
  assert.ok(role({ scope: { label: "com.example.team=web" } }));
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ scope: "team=web" }, /roles\.r\.scope: must be an object/],
    [{ scope: { label: "team" } }, /scope\.label: must be "key=value"/],
    [{ scope: { label: "=web" } }, /scope\.label: must be "key=value"/],
    [{ scope: { label: "dockgate.owner=x" } }, /scope\.label: dockgate\. labels/],
    [{ scope: { label: "a=b", kind: "x" } }, /scope\.kind: unknown key/],
    [{ preset: "no-escape", scope: { label: "a=b" } }, /scope: only with preset read-only/],
  ];
  for (const [spec, re] of bad) assert.throws(() => role(spec), re, JSON.stringify(spec));
});

Deno.test("label scope: policy check says what the scope does", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/p.json`;
    await Deno.writeTextFile(
      file,
      JSON.stringify({
        roles: { w: { preset: "read-only", scope: { label: "team=web" } } },
        identities: [{ cn: "m", role: "w" }],
      }),
    );
    const check = (method: string, path: string) =>
      runCli(["policy", "check", file, "--identity", "m", method, path]);
    const list = await check("GET", "/containers/json");
    assert.equal(list.code, 0);
    assert.equal(list.stdout, "allow w: read-only\nscope: label filter\n");
    const logs = await check("GET", "/containers/db/logs");
    assert.match(logs.stdout, /^scope: label of container db \(path\) checked at run time$/m);
    const old = await check("GET", "/v1.27/networks");
    assert.equal(old.code, 1);
    assert.match(old.stdout, /^deny w: scope: 403: a scoped role lists networks/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
