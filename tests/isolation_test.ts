/**
 * Owner isolation's planning, unit by unit: which objects a request names, how its filters
 * and labels change, and the body edits (byte-exact elsewhere). The daemon side is in
 * `docker_isolation_e2e_test.ts`.
 */
import assert from "node:assert/strict";
import { parseApiTarget } from "../src/docker/api_path.ts";
import { compileApiPolicy, decideBody } from "../src/docker/api_policy.ts";
import {
  filterAnswer,
  IsolationRefusal,
  type IsolationSettings,
  mergeOwnerFilter,
  planIsolation,
} from "../src/docker/isolation.ts";
import { JsonDocument } from "../src/docker/strict_json.ts";

const A: IsolationSettings = {
  owner: "team-a",
  othersStatus: 404,
  sharedVolumes: ["cache"],
  sharedNetworks: ["ci-net"],
  allowVolumesFrom: [],
};
const enc = (s: string) => new TextEncoder().encode(s);
const plan = (method: string, raw: string, body?: string) =>
  planIsolation(
    A,
    method,
    raw,
    parseApiTarget(raw),
    body ? new JsonDocument(enc(body)) : undefined,
  );
const refusal = (fn: () => unknown, status: number, re: RegExp) =>
  assert.throws(
    fn,
    (e) => e instanceof IsolationRefusal && e.status === status && re.test(e.message),
  );

Deno.test("JsonDocument: edits change only what they name", () => {
  const text =
    '{ "Image" : "bb", "N": 12345678901234567890, "E":"\\u00e9", "L":{}, "A":["x","y"] }';
  const doc = new JsonDocument(enc(text));
  const v = doc.value as Record<string, unknown>;
  doc.insertMember(v.L as object, "k", '"v"');
  doc.replaceItem(v.A as object, 1, '"z"');
  doc.renameKey(v, "Image", "Img");
  assert.equal(
    doc.result(),
    '{ "Img" : "bb", "N": 12345678901234567890, "E":"\\u00e9", "L":{"k":"v"}, "A":["x","z"] }',
  );
  assert.throws(() => doc.replaceItem(v.A as object, 1, "1"), /overlapping/);
  assert.throws(() => new JsonDocument(enc('{"a":1,"a":2}')), /duplicate key/);
});

Deno.test("isolation: lists, events and prunes get the owner filter, client filters kept", () => {
  for (
    const [m, p] of [
      ["GET", "/containers/json"],
      ["GET", "/volumes"],
      ["GET", "/networks"],
      ["GET", "/events"],
      ["POST", "/containers/prune"],
      ["POST", "/volumes/prune"],
      ["POST", "/networks/prune"],
    ]
  ) {
    const t = plan(m, `/v1.41${p}?filters=${encodeURIComponent('{"label":["app=x"]}')}`).target;
    const q = parseApiTarget(t.toString());
    assert.equal(q.version, "1.41");
    const f = JSON.parse(q.query.find(([k]) => k === "filters")![1]);
    assert.deepEqual(Object.keys(f.label).sort(), ["app=x", "dockgate.owner=team-a"], p);
  }
  // The legacy map form, and no filters at all.
  const legacy = JSON.parse(mergeOwnerFilter('{"status":{"exited":true}}', "o"));
  assert.deepEqual(legacy, { status: { exited: true }, label: { "dockgate.owner=o": true } });
  assert.deepEqual(JSON.parse(mergeOwnerFilter(undefined, "o")), {
    label: { "dockgate.owner=o": true },
  });
  // Filters the gate cannot read, or two of them, are refused (never passed through).
  refusal(() => mergeOwnerFilter('{"label":"x"}', "o"), 400, /not a list/);
  refusal(() => mergeOwnerFilter('{"label":["a"],"label":["b"]}', "o"), 400, /duplicate/);
  refusal(() => plan("GET", "/containers/json?filters={}&filters={}"), 400, /more than one/);
  // Other requests' targets are forwarded byte for byte.
  assert.equal(
    plan("GET", "/v1.41/images/json?all=1").target.toString(),
    "/v1.41/images/json?all=1",
  );
});

Deno.test("isolation: the objects a path or query names, and full IDs forwarded", () => {
  const logs = plan("GET", "/v1.41/containers/web/logs?stdout=1");
  assert.deepEqual(logs.refs.map((r) => [r.kind, r.name]), [["container", "web"]]);
  logs.refs[0].rewrite!("f".repeat(64));
  assert.equal(logs.target.toString(), `/v1.41/containers/${"f".repeat(64)}/logs?stdout=1`);
  assert.deepEqual(plan("DELETE", "/volumes/v1").refs.map((r) => [r.kind, r.remove]), [[
    "volume",
    true,
  ]]);
  assert.equal(plan("GET", "/exec/abc/json").refs[0].kind, "exec");
  assert.equal(plan("POST", "/networks/n1/connect", '{"Container":"c1"}').refs.length, 2);
  assert.equal(plan("GET", "/containers/json/json").refs[0].name, "json"); // a container named json
  assert.equal(plan("GET", "/containers/json").refs.length, 0);
  // Names that look like the literal routes are names where a route says so.
  assert.deepEqual(plan("GET", "/volumes/create").refs.map((r) => [r.kind, r.name]), [[
    "volume",
    "create",
  ]]);
  assert.deepEqual(plan("DELETE", "/networks/prune").refs.map((r) => [r.kind, r.name]), [[
    "network",
    "prune",
  ]]);
  assert.equal(plan("POST", "/volumes/create", '{"Name":"v"}').refs.length, 0);
  assert.equal(plan("POST", "/networks/prune").refs.length, 0);
  const commit = plan("POST", "/commit?container=c1&repo=x");
  commit.refs[0].rewrite!("abc");
  assert.equal(commit.target.toString(), "/commit?container=abc&repo=x");
  // A name across segments names nothing; swarm objects have no owner.
  refusal(() => plan("GET", "/containers/a/b/json"), 404, /No such container: a\/b/);
  refusal(() => plan("GET", "/services"), 403, /swarm services/);
});

Deno.test("isolation: creates get the owner label; a dockgate. label is refused", () => {
  const c = plan("POST", "/containers/create?name=w", '{"Image":"bb","Labels":{"app":"x"}}');
  assert.equal(c.body!.result(), '{"Image":"bb","Labels":{"dockgate.owner":"team-a","app":"x"}}');
  assert.equal(
    plan("POST", "/volumes/create", '{"Name":"v"}').body!.result(),
    '{"Labels":{"dockgate.owner":"team-a"},"Name":"v"}',
  );
  assert.equal(
    plan("POST", "/networks/create", '{"Name":"n","Labels":null}').body!.result(),
    '{"CheckDuplicate":true,"Name":"n","Labels":{"dockgate.owner":"team-a"}}',
  );
  refusal(
    () => plan("POST", "/containers/create", '{"Labels":{"dockgate.owner":"team-b"}}'),
    403,
    /gate's to set/,
  );
  refusal(() => plan("POST", "/volumes/create", '{"Name":"cache"}'), 403, /shared/);
  refusal(() => plan("POST", "/networks/create", '{"Name":"bridge"}'), 403, /shared/);
  refusal(
    () => plan("POST", "/networks/create", '{"Name":"n","CheckDuplicate":false}'),
    403,
    /duplicate/,
  );
  // The same rule for a restricted role that is not isolated (it could hand objects over).
  const p = compileApiPolicy({ roles: { r: { preset: "no-escape" } }, identities: [] }, "t");
  const d = decideBody(
    p.roles.get("r")!,
    "POST",
    parseApiTarget("/volumes/create"),
    enc('{"Labels":{"dockgate.owner":"x"}}'),
  );
  assert.equal(d.allow, false);
  assert.match(d.rule, /gate's to set/);
});

Deno.test("isolation: references in a create body, rewritten to full IDs", () => {
  const body = JSON.stringify({
    Image: "bb",
    HostConfig: {
      VolumesFrom: ["src:ro"],
      Links: ["db"],
      NetworkMode: "appnet",
      Binds: ["data:/d", "/srv/x:/x"],
      Mounts: [{ Type: "volume", Source: "m1", Target: "/m" }, { Type: "tmpfs", Target: "/t" }],
    },
    NetworkingConfig: { EndpointsConfig: { appnet: {}, bridge: {} } },
  });
  const c = plan("POST", "/containers/create", body);
  assert.deepEqual(c.refs.map((r) => `${r.kind}:${r.name}@${r.at}`), [
    "container:src@HostConfig.VolumesFrom[0]",
    "container:db@HostConfig.Links[0]",
    "network:appnet@HostConfig.NetworkMode",
    "volume:data@HostConfig.Binds[0]",
    "volume:m1@HostConfig.Mounts[0]",
    "network:appnet@NetworkingConfig.EndpointsConfig.appnet",
  ]);
  const ids: Record<string, string> = {
    src: "1".repeat(64),
    db: "2".repeat(64),
    appnet: "3".repeat(64),
  };
  for (const r of c.refs) r.rewrite?.(ids[r.name] ?? r.name);
  const out = JSON.parse(c.body!.result());
  assert.deepEqual(out.HostConfig.VolumesFrom, [`${ids.src}:ro`]);
  assert.deepEqual(out.HostConfig.Links, [`${ids.db}:db`]);
  assert.equal(out.HostConfig.NetworkMode, ids.appnet);
  assert.deepEqual(Object.keys(out.NetworkingConfig.EndpointsConfig), [ids.appnet, "bridge"]);
  assert.equal(out.Labels["dockgate.owner"], "team-a");
});

Deno.test("isolation: answers that list every owner's objects are filtered", async () => {
  const mine = { Id: "a", Labels: { "dockgate.owner": "team-a" } };
  // "f" has team-a's label from its image: the gate's record does not have it.
  const record = {
    has: (o: string, id: string) => o === "team-a" && id === "a",
    add: async () => {},
  };
  const df = {
    Containers: [
      mine,
      { Id: "b", Labels: { "dockgate.owner": "team-b" } },
      { Id: "f", Labels: { "dockgate.owner": "team-a" } },
    ],
    Volumes: [{ Name: "x", Labels: null }],
    Images: [{}],
    BuildCache: [{ ID: "k", Description: "[2/2] COPY secret.txt /" }],
    BuilderSize: 5,
  };
  const out = (await filterAnswer(
    { kind: "system-df" },
    200,
    enc(JSON.stringify(df)),
    "team-a",
    new Set(),
    record,
  ))!;
  const got = JSON.parse(new TextDecoder().decode(out.body));
  assert.deepEqual(got.Containers, [mine]);
  assert.deepEqual(got.Volumes, []);
  assert.equal(got.Images.length, 1);
  assert.deepEqual([got.BuildCache, got.BuilderSize], [[], 0], "the build cache has no owner");
  const net = { Name: "bridge", Containers: { a: {}, b: {} } };
  const n = (await filterAnswer(
    { kind: "network-containers" },
    200,
    enc(JSON.stringify(net)),
    "team-a",
    new Set(["a"]),
  ))!;
  assert.deepEqual(Object.keys(JSON.parse(new TextDecoder().decode(n.body)).Containers), ["a"]);
  const v = (await filterAnswer(
    { kind: "volume-owner", name: "v" },
    201,
    enc('{"Name":"v","Labels":{"dockgate.owner":"team-b"}}'),
    "team-a",
    new Set(),
  ))!;
  assert.equal(v.status, 409);
  assert.equal(
    await filterAnswer(
      { kind: "volume-owner", name: "v" },
      201,
      enc('{"Labels":{"dockgate.owner":"team-a"}}'),
      "team-a",
      new Set(),
    ),
    undefined,
  );
  const conflict = (await filterAnswer(
    { kind: "create-conflict", name: "w" },
    409,
    enc('{"message":"... by container \\"0123abcd\\""}'),
    "team-a",
    new Set(),
  ))!;
  assert.doesNotMatch(new TextDecoder().decode(conflict.body), /0123abcd/);
});

Deno.test("isolation: policy options are validated", () => {
  const bad = (roles: unknown, re: RegExp, extra: Record<string, unknown> = {}) =>
    assert.throws(() => compileApiPolicy({ roles, identities: [], ...extra }, "p"), re);
  bad({ r: { preset: "full", isolate: true } }, /roles\.r\.isolate: a full role is relayed raw/);
  bad({ r: { preset: "no-escape", isolate: "yes" } }, /roles\.r\.isolate: must be true or false/);
  bad(
    { r: { preset: "no-escape", isolate: true, othersStatus: 401 } },
    /othersStatus: must be 404 or 403/,
  );
  bad({ r: { preset: "no-escape", othersStatus: 403 } }, /only means something with isolate/);
  bad({}, /shared\.volumes\[0\]: must be a volume or network name/, {
    shared: { volumes: ["a b"] },
  });
  bad({}, /shared\.disks: unknown key/, { shared: { disks: [] } });
  const p = compileApiPolicy({
    roles: { t: { preset: "no-escape", isolate: true, othersStatus: 403 } },
    identities: [],
    shared: { volumes: ["cache"] },
  }, "p");
  const t = p.roles.get("t")!;
  assert.equal(t.isolate, true);
  assert.equal(t.othersStatus, 403);
  assert.deepEqual(t.shared.volumes, ["cache"]);
});

Deno.test("isolation: a build's network is an owner-checked reference", () => {
  const b = plan("POST", "/v1.41/build?networkmode=appnet&t=x");
  assert.deepEqual(b.refs.map((r) => [r.kind, r.name]), [["network", "appnet"]]);
  b.refs[0].rewrite!("9".repeat(64));
  assert.equal(b.target.toString(), `/v1.41/build?networkmode=${"9".repeat(64)}&t=x`);
  assert.equal(plan("POST", "/build?networkmode=default").refs.length, 0);
});

Deno.test("isolation: an endpoint's NetworkID is an owner-checked network reference", () => {
  // dockerd joins EndpointSettings.NetworkID in place of the network the path or key names.
  const other = "b".repeat(64);
  const c = plan(
    "POST",
    "/networks/na/connect",
    `{"Container":"a1","EndpointConfig":{"NetworkID":"bnet"}}`,
  );
  assert.deepEqual(c.refs.map((r) => `${r.kind}:${r.name}@${r.at}`), [
    "network:na@path",
    "container:a1@Container",
    "network:bnet@EndpointConfig.NetworkID",
  ]);
  c.refs[2].rewrite!(other);
  assert.equal(JSON.parse(c.body!.result()).EndpointConfig.NetworkID, other);
  const body = JSON.stringify({
    Image: "bb",
    NetworkingConfig: { EndpointsConfig: { na: { NetworkID: "bn" }, bridge: { NetworkID: "x" } } },
  });
  const create = plan("POST", "/containers/create", body);
  assert.deepEqual(create.refs.map((r) => `${r.kind}:${r.name}@${r.at}`), [
    "network:bn@EndpointsConfig.na.NetworkID",
    "network:na@NetworkingConfig.EndpointsConfig.na",
    "network:x@EndpointsConfig.bridge.NetworkID",
  ]);
  for (const r of create.refs) r.rewrite?.(r.name === "bn" ? other : r.name);
  const out = JSON.parse(create.body!.result());
  assert.equal(out.NetworkingConfig.EndpointsConfig.na.NetworkID, other);
  // A NetworkID that is not a string is not read: refused.
  refusal(
    () =>
      plan("POST", "/networks/na/connect", '{"Container":"a1","EndpointConfig":{"NetworkID":1}}'),
    400,
    /NetworkID/,
  );
});

Deno.test("isolation: owner keys do not collide across identity kinds", async () => {
  const { ownerKey } = await import("../src/docker/isolation.ts");
  const fp = "ab".repeat(32);
  const keyless = ownerKey({ fingerprint: fp });
  // A certificate whose CN is the keyless identity's display name is another owner.
  assert.notEqual(
    ownerKey({ commonName: `sha256:${fp.slice(0, 16)}`, fingerprint: "00" }),
    keyless,
  );
  assert.notEqual(ownerKey({ commonName: keyless, fingerprint: "00" }), keyless);
  // Ordinary CNs keep the bare CN (the labels of existing objects stay theirs).
  assert.equal(ownerKey({ commonName: "team-a", fingerprint: fp }), "team-a");
  const keys = ["cn:x", "x", "key:x", "sha256:x", "cn:cn:x"].map((cn) =>
    ownerKey({ commonName: cn, fingerprint: fp })
  );
  assert.equal(new Set([...keys, keyless]).size, keys.length + 1);
});

Deno.test("isolation: a network create with neither Labels nor CheckDuplicate is labelled", () => {
  for (const body of ['{"Name":"n1"}', "{}", '{"Name":"n1","Labels":null}']) {
    const out = JSON.parse(plan("POST", "/networks/create", body).body!.result());
    assert.equal(out.Labels["dockgate.owner"], "team-a", body);
    assert.equal(out.CheckDuplicate, true, body);
  }
});

Deno.test("isolation: an anonymous volume of a Mounts entry gets the owner label", () => {
  const body = JSON.stringify({
    Image: "bb",
    HostConfig: {
      Mounts: [
        { Type: "volume", Target: "/a" },
        { Type: "volume", Source: "", Target: "/b", VolumeOptions: null },
        { Type: "volume", Target: "/c", VolumeOptions: { NoCopy: true } },
        { Type: "volume", Target: "/d", VolumeOptions: { Labels: { app: "x" } } },
      ],
    },
  });
  const c = plan("POST", "/containers/create", body);
  assert.equal(c.refs.length, 0);
  const mounts = JSON.parse(c.body!.result()).HostConfig.Mounts;
  for (const m of mounts) assert.equal(m.VolumeOptions.Labels["dockgate.owner"], "team-a");
  assert.equal(mounts[2].VolumeOptions.NoCopy, true);
  assert.equal(mounts[3].VolumeOptions.Labels.app, "x");
});

Deno.test("isolation: a rename's name conflict does not name the other container", async () => {
  const p = plan("POST", "/v1.41/containers/a1/rename?name=b1");
  assert.deepEqual(p.answer, { kind: "create-conflict", name: "b1" });
  const daemon = enc(
    `{"message":"Conflict. The container name \\"/b1\\" is already in use by container \\"${
      "b".repeat(64)
    }\\"."}`,
  );
  const out = await filterAnswer(p.answer!, 409, daemon, "team-a", new Set());
  assert.doesNotMatch(new TextDecoder().decode(out!.body), /bbbb/);
});

Deno.test("isolation: since/before are references, events are containers', df counts the owner's", async () => {
  const list = plan("GET", `/containers/json?filters=${encodeURIComponent('{"since":["b1"]}')}`);
  assert.deepEqual(list.refs.map((r) => [r.kind, r.name, r.at, r.asMissing]), [
    ["container", "b1", "filters.since", true],
  ]);
  list.refs[0].rewrite!("f".repeat(64));
  const f = JSON.parse(parseApiTarget(list.target.toString()).query[0][1]);
  assert.deepEqual(Object.keys(f.since), ["f".repeat(64)]);
  refusal(
    () => plan("GET", `/containers/json?filters=${encodeURIComponent('{"before":["a b"]}')}`),
    404,
    /No such container/,
  );
  const ev = plan("GET", "/events");
  const evf = JSON.parse(parseApiTarget(ev.target.toString()).query[0][1]);
  assert.deepEqual(evf.type, { container: true });
  refusal(
    () => plan("GET", `/events?filters=${encodeURIComponent('{"type":["image"]}')}`),
    403,
    /own containers only/,
  );
  const df = plan("GET", "/v1.45/system/df?type=image");
  assert.deepEqual(df.answer, { kind: "system-df", dropContainers: true });
  assert.deepEqual(parseApiTarget(df.target.toString()).query, [["type", "image"], [
    "type",
    "container",
  ]]);
  const body = {
    Containers: [
      {
        Id: "a",
        ImageID: "i",
        Labels: { "dockgate.owner": "team-a" },
        Mounts: [{ Type: "volume", Name: "va" }],
      },
      {
        Id: "b",
        ImageID: "i",
        Labels: { "dockgate.owner": "team-b" },
        Mounts: [{ Type: "volume", Name: "va" }],
      },
    ],
    Images: [{ Id: "i", Containers: 2 }, { Id: "j", Containers: -1 }],
    Volumes: [{ Name: "va", Labels: { "dockgate.owner": "team-a" }, UsageData: { RefCount: 2 } }],
  };
  // The gate's record: it created a for team-a and b for team-b.
  const record = {
    has: (o: string, id: string) =>
      (o === "team-a" && id === "a") || (o === "team-b" && id === "b"),
    add: async () => {},
  };
  const out = (await filterAnswer(
    df.answer!,
    200,
    enc(JSON.stringify(body)),
    "team-a",
    new Set(),
    record,
  ))!;
  const got = JSON.parse(new TextDecoder().decode(out.body));
  assert.equal(got.Containers, undefined);
  assert.deepEqual(got.Images.map((i: { Containers: number }) => i.Containers), [1, -1]);
  assert.equal(got.Volumes[0].UsageData.RefCount, 1);
});
