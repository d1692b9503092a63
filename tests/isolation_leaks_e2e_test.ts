/**
 * Owner isolation end to end, the smaller leaks: what an isolated identity can learn about
 * another owner's objects from answers that are not about them. Raw HTTP over real TLS through
 * `dockgate serve --policy` to a real dockerd (20.10 and 26.1); judged by the answers an
 * honest daemon gives for objects that do not exist.
 *
 * - `filters={"since":[name]}` (and `before`) on a container list: another owner's name or ID
 *   answers exactly as a name nobody has.
 * - `/system/df`: an image's `Containers` count and a volume's `RefCount` count the owner's
 *   containers only (also when the client's `type`s leave the containers out).
 * - `/events`: an isolated role sees the events of its own containers only (no image events,
 *   whatever labels the image carries); asking for another event type is refused.
 */
import assert from "node:assert/strict";
import type { DockerResult, Engine } from "./helpers/dockerd.ts";
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

forEachEngine(
  (engine) => `isolation leaks e2e (Docker ${engine}): list filters, system df counts, events`,
  (t, engine) => leaks(engine, t),
);

async function leaks(engine: Engine, t: Deno.TestContext): Promise<void> {
  const g = await e2eGate(engine, POLICY, ["team-a", "team-b", "team-c"]);
  if (!g) return;
  const { d } = g;
  try {
    const port = g.gate.port;
    const who = {
      a: await g.creds("team-a"),
      b: await g.creds("team-b"),
      c: await g.creds("team-c"),
    };
    // `keepOpen` until the daemon's answer and its close: dockerd cancels a `system/df` whose
    // client half-closed (500 "context canceled").
    const send = async (as: keyof typeof who, req: string, keepOpen = false) =>
      splitResponses((await tlsExchange(port, who[as], req, { keepOpen })).data)[0];
    const get = (as: keyof typeof who, target: string, keepOpen = false) =>
      send(as, `GET ${target} HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n`, keepOpen);
    const create = async (as: keyof typeof who, name: string, binds: string[] = []) => {
      const r = await send(
        as,
        jsonRequest(
          "POST",
          `/v1.41/containers/create?name=${name}`,
          JSON.stringify({ Image: d.image, Cmd: ["true"], HostConfig: { Binds: binds } }),
          "Connection: close\r\n",
        ),
        true,
      );
      assert.equal(r.status, 201, `${name}: ${r.body}`);
      return JSON.parse(r.body).Id as string;
    };
    const t0 = Math.floor(Date.now() / 1000) - 1;
    const ac = await create("a", "ac", ["va:/v"]);
    const bc = await create("b", "bc");
    // The admin's container mounts a's volume: a's counts must not show it.
    ok("admin's own", await d.docker(["create", "--name", "adm", "-v", "va:/v", d.image, "true"]));

    await t.step("since/before: another owner's name answers as a missing one", async () => {
      for (const key of ["since", "before"]) {
        const list = (as: keyof typeof who, ref: string) =>
          get(
            as,
            `/v1.41/containers/json?all=1&filters=${encodeURIComponent(`{"${key}":["${ref}"]}`)}`,
          );
        const own = await list("a", "ac");
        assert.equal(own.status, 200, `${key} own: ${own.body}`);
        const ownById = await list("a", ac);
        assert.equal(ownById.status, 200, `${key} own ID: ${ownById.body}`);
        for (const as of ["a", "c"] as const) {
          const none = await list(as, "nosuch");
          const other = await list(as, "bc");
          const otherId = await list(as, bc);
          const noId = await list(as, "f".repeat(64));
          assert.equal(other.status, none.status, `${as} ${key}=bc: ${other.body} / ${none.body}`);
          assert.equal(other.body, none.body.replace("nosuch", "bc"), `${as} ${key}=bc`);
          assert.equal(otherId.status, noId.status, `${as} ${key}=<b's ID>: ${otherId.body}`);
          assert.equal(otherId.body, noId.body.replace("f".repeat(64), bc), `${as} ${key} ID`);
          assert.notEqual(none.status, 200, `${as} ${key}=nosuch`);
        }
      }
    });

    await t.step("system df: image and volume counts are the owner's", async () => {
      const image = ok("image id", await d.docker(["image", "inspect", "-f", "{{.Id}}", d.image]))
        .stdout.trim();
      const df = await get("a", "/v1.41/system/df", true);
      assert.equal(df.status, 200, df.body);
      const body = JSON.parse(df.body);
      const row = body.Images.find((i: { Id: string }) => i.Id === image);
      assert.equal(row?.Containers, 1, `a has one container of ${d.image}: ${df.body}`);
      assert.deepEqual(body.Containers.map((c: { Id: string }) => c.Id), [ac]);
      assert.deepEqual(body.Volumes.map((v: { Name: string }) => v.Name), ["va"]);
      assert.equal(body.Volumes[0].UsageData.RefCount, 1, `a's volume va: ${df.body}`);
      if (engine === "20.10") return;
      // API 1.42: the client picks what to compute; the counts are still a's own.
      const typed = await get("a", "/v1.45/system/df?type=image&type=volume", true);
      assert.equal(typed.status, 200, typed.body);
      const t = JSON.parse(typed.body);
      assert.equal(t.Containers, undefined, `containers were not asked for: ${typed.body}`);
      assert.equal(t.Images.find((i: { Id: string }) => i.Id === image)?.Containers, 1);
      assert.equal(t.Volumes[0].UsageData.RefCount, 1, typed.body);
    });

    await t.step("events: only one's own containers, never images", async () => {
      // An image carrying a's owner label (a Dockerfile LABEL the gate cannot see would do the
      // same), tagged and removed by the admin: none of it is a's.
      ok(
        "commit",
        await d.docker(["commit", "--change", "LABEL dockgate.owner=team-a", "adm", "lab:1"]),
      );
      ok("tag", await d.docker(["tag", "lab:1", "lab:2"]));
      ok("rmi", await d.docker(["rmi", "lab:1", "lab:2"]));
      const until = Math.floor(Date.now() / 1000) + 1;
      const ev = await get("a", `/v1.41/events?since=${t0}&until=${until}`);
      assert.equal(ev.status, 200, ev.body);
      const events = ev.body.split("\n").filter((l) => l.trim() !== "").map((l) =>
        JSON.parse(l)
      ) as { Type: string; Actor: { ID: string } }[];
      assert.ok(events.some((e) => e.Type === "container" && e.Actor.ID === ac), ev.body);
      for (const e of events) {
        assert.equal(e.Type, "container", `a sees a ${e.Type} event: ${JSON.stringify(e)}`);
        assert.equal(e.Actor.ID, ac, `a sees another's container: ${JSON.stringify(e)}`);
      }
      const images = await get(
        "a",
        `/v1.41/events?since=${t0}&until=${until}&filters=${
          encodeURIComponent('{"type":["image"]}')
        }`,
      );
      assert.equal(images.status, 403, images.body);
      assert.match(images.body, /events of its own containers/);
    });
  } finally {
    await g.stop();
  }
}
