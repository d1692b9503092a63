/**
 * Owner isolation end to end, the object references hidden in bodies: fields that name an
 * object besides the obvious ones (an endpoint's `NetworkID`, which dockerd joins in place of
 * the network the path or the `EndpointsConfig` key names). Raw HTTP over real TLS through
 * `dockgate serve --policy` to a real dockerd; judged by what dockerd stored.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type DockerResult, type Engine, exists } from "./helpers/dockerd.ts";
import { e2eGate, forEachEngine } from "./helpers/e2e_gate.ts";
import { jsonRequest, splitResponses, tlsExchange } from "./helpers/http_raw.ts";

const POLICY = {
  roles: {
    tenant: { preset: "no-escape", isolate: true },
    tenant403: { preset: "no-escape", isolate: true, othersStatus: 403 },
  },
  identities: [
    { cn: "team-a", role: "tenant" },
    { cn: "team-b", role: "tenant" },
    { cn: "team-c", role: "tenant403" },
  ],
};

function ok(what: string, r: DockerResult): DockerResult {
  assert.equal(r.code, 0, `${what}: exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

const lines = (r: DockerResult) => r.stdout.split("\n").filter((l) => l !== "");

forEachEngine(
  (engine) =>
    `docker isolation refs e2e (Docker ${engine}): NetworkID, leading slashes, ` +
    "unlabelled network create, anonymous mounts",
  (_t, engine) => refs(engine),
);

async function refs(engine: Engine): Promise<void> {
  const e2e = await e2eGate(engine, POLICY, ["team-a", "team-b", "team-c"]);
  if (!e2e) return;
  const { d, as, creds } = e2e;
  const g = e2e.gate;
  try {
    ok("b net", await as("team-b", ["network", "create", "nb"]));
    ok("a net", await as("team-a", ["network", "create", "na"]));
    ok("a1", await as("team-a", ["create", "--name", "a1", d.image, "true"]));
    const nb = ok("nb id", await d.docker(["network", "inspect", "-f", "{{.Id}}", "nb"])).stdout
      .trim();
    const na = ok("na id", await d.docker(["network", "inspect", "-f", "{{.Id}}", "na"])).stdout
      .trim();
    const a = await creds("team-a");
    const send = async (req: string) => splitResponses((await tlsExchange(g.port, a, req)).data)[0];
    // What dockerd stored: the NetworkID it will join at start, per endpoint.
    // A failed inspect says what the daemon holds and logged: a run once found no `a1` right
    // after its create had answered 201 through the gate, and reruns never did again.
    const stored = async (name: string) => {
      const r = await d.docker(["inspect", "-f", "{{json .NetworkSettings.Networks}}", name]);
      if (r.code !== 0) {
        const ps = await d.docker(["ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}}"]);
        assert.fail(
          `inspect ${name}: exit ${r.code}: ${r.stderr}\nps -a: ${ps.stdout}\n` +
            `gate log: ${g.log().slice(-4000)}\ndockerd log: ${await d.logTail(40)}`,
        );
      }
      return JSON.parse(r.stdout) as Record<string, { NetworkID?: string }>;
    };
    const reaches = (nets: Record<string, { NetworkID?: string }>) =>
      Object.values(nets).some((e) => e.NetworkID && nb.startsWith(e.NetworkID));

    for (const ref of ["nb", nb, nb.slice(0, 6)]) {
      const connect = await send(jsonRequest(
        "POST",
        "/v1.41/networks/na/connect",
        JSON.stringify({ Container: "a1", EndpointConfig: { NetworkID: ref } }),
      ));
      assert.equal(connect.status, 404, `connect with NetworkID ${ref}: ${connect.body}`);
      assert.ok(!reaches(await stored("a1")), `connect with NetworkID ${ref} reached nb`);
      const create = await send(jsonRequest(
        "POST",
        "/v1.41/containers/create?name=a2",
        JSON.stringify({
          Image: d.image,
          Cmd: ["true"],
          NetworkingConfig: { EndpointsConfig: { na: { NetworkID: ref } } },
        }),
      ));
      assert.equal(create.status, 404, `create with NetworkID ${ref}: ${create.body}`);
      // By name filter: `inspect a2` would also answer for a container whose ID begins "a2".
      if (await exists(d, "a2")) {
        assert.ok(!reaches(await stored("a2")), `create ${ref} reached nb`);
      }
      await d.docker(["rm", "-f", "a2"]);
    }
    // One's own network by NetworkID (a prefix) works, and is forwarded as the full ID.
    const own = await send(jsonRequest(
      "POST",
      "/v1.41/networks/na/connect",
      JSON.stringify({ Container: "a1", EndpointConfig: { NetworkID: na.slice(0, 8) } }),
    ));
    assert.equal(own.status, 200, own.body);
    assert.equal((await stored("a1")).na?.NetworkID, na);
    // A build's network (`build?networkmode=`, docker-py's test_build_with_network_mode) is an
    // owner-checked reference too: a build on one's own network works (it was refused for
    // isolated roles), on another owner's network it is refused and nothing is built.
    const ctx = join(e2e.work, "ctx");
    await Deno.mkdir(ctx);
    await Deno.writeTextFile(join(ctx, "Dockerfile"), `FROM ${d.image}\nENV BUILT=1\n`);
    const build = (net: string, tag: string) =>
      as("team-a", ["build", "--network", net, "-t", tag, ctx], { env: { DOCKER_BUILDKIT: "0" } });
    ok("build on a's own network", await build("na", "built-na"));
    ok("built-na", await d.docker(["image", "inspect", "built-na"]));
    const theirs = await build("nb", "built-nb");
    assert.notEqual(theirs.code, 0, `a build on b's network: ${theirs.stdout}`);
    // The gate answers as dockerd does for a network that does not exist (nb does).
    assert.match(theirs.stderr, /network nb not found/, theirs.stderr);
    assert.notEqual((await d.docker(["image", "inspect", "built-nb"])).code, 0, "nothing built");
    // Honest clients the checks refused: a network create with neither Labels nor
    // CheckDuplicate (400), a leading '/' in VolumesFrom and Links as the CLI and compose send
    // it (502).
    const net = await send(jsonRequest("POST", "/v1.41/networks/create", '{"Name":"nc"}'));
    assert.equal(net.status, 201, net.body);
    const ncOwner = ok(
      "nc label",
      await d.docker(["network", "inspect", "-f", '{{index .Labels "dockgate.owner"}}', "nc"]),
    );
    assert.equal(ncOwner.stdout, "team-a\n");
    const a1 = ok("a1 id", await d.docker(["inspect", "-f", "{{.Id}}", "a1"])).stdout.trim();
    const slash = await send(jsonRequest(
      "POST",
      "/v1.41/containers/create?name=a3",
      JSON.stringify({
        Image: d.image,
        Cmd: ["true"],
        HostConfig: { VolumesFrom: ["/a1:ro"], Links: ["/a1:al"] },
      }),
    ));
    assert.equal(slash.status, 201, slash.body);
    const a3 = JSON.parse(
      ok("a3", await d.docker(["inspect", "-f", "{{json .HostConfig}}", "a3"])).stdout,
    );
    assert.deepEqual(a3.VolumesFrom, [`${a1}:ro`]);
    assert.equal(a3.Links.length, 1);
    // Another owner's container with a leading '/' is as missing as without.
    ok("b1", await as("team-b", ["create", "--name", "b1", d.image, "true"]));
    const other = await send(jsonRequest(
      "POST",
      "/v1.41/containers/create?name=a4",
      JSON.stringify({ Image: d.image, HostConfig: { VolumesFrom: ["/b1"] } }),
    ));
    assert.equal(other.status, 404, other.body);
    // An anonymous volume of a Mounts entry is the owner's (dockerd creates it with the
    // entry's VolumeOptions.Labels); team-a lists it.
    const anon = await send(jsonRequest(
      "POST",
      "/v1.41/containers/create?name=a5",
      JSON.stringify({
        Image: d.image,
        Cmd: ["true"],
        HostConfig: { Mounts: [{ Type: "volume", Target: "/m" }] },
      }),
    ));
    assert.equal(anon.status, 201, anon.body);
    const vol = ok(
      "a5 mounts",
      await d.docker(["inspect", "-f", "{{range .Mounts}}{{.Name}}{{end}}", "a5"]),
    ).stdout.trim();
    const volOwner = ok(
      "anon label",
      await d.docker(["volume", "inspect", "-f", '{{index .Labels "dockgate.owner"}}', vol]),
    );
    assert.equal(volOwner.stdout, "team-a\n");
    assert.ok(lines(ok("volume ls", await as("team-a", ["volume", "ls", "-q"]))).includes(vol));
    // A rename onto another owner's name: the 409 does not name that container.
    const b1 = ok("b1 id", await d.docker(["inspect", "-f", "{{.Id}}", "b1"])).stdout.trim();
    const rename = await send(
      `POST /v1.41/containers/a1/rename?name=b1 HTTP/1.1\r\nHost: d\r\n\r\n`,
    );
    assert.equal(rename.status, 409, rename.body);
    assert.ok(!rename.body.includes(b1.slice(0, 12)), rename.body);
    // An ID prefix shared by an own container and another owner's: 404 (dockerd's 500 for an
    // ambiguous prefix was a 502). Own containers are made until one shares b1's first digit.
    for (let i = 0; i < 200; i++) {
      const c = ok("own", await d.docker(["create", "-l", "dockgate.owner=team-a", d.image]));
      if (c.stdout.trim()[0] === b1[0]) break;
    }
    const ambiguous = await send(`GET /v1.41/containers/${b1[0]}/json HTTP/1.1\r\nHost: d\r\n\r\n`);
    assert.equal(ambiguous.status, 404, ambiguous.body);
    // othersStatus 403 says "another owner's" for a name or ID, never for a prefix: a prefix
    // would walk the other owners' IDs.
    const c = await creds("team-c");
    const sendC = async (req: string) =>
      splitResponses((await tlsExchange(g.port, c, req)).data)[0];
    const get = (name: string) => `GET /v1.41/containers/${name}/json HTTP/1.1\r\nHost: d\r\n\r\n`;
    assert.equal((await sendC(get("b1"))).status, 403);
    assert.equal((await sendC(get(b1))).status, 403);
    const prefix = await sendC(get(b1.slice(0, 12)));
    assert.equal(prefix.status, 404, prefix.body);
    assert.match(prefix.body, /No such container/);
  } finally {
    await e2e.stop();
  }
}
