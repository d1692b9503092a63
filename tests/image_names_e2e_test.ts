/**
 * Issue 20 item 12, images: re-pointing or removing image names others run is a role
 * allowance (`allowImageNames`). Through the gate with the real docker CLI on every engine the
 * harness has: a no-escape role without the allowance cannot retag `bb:latest` (it still points
 * at its old image, asked on the daemon's own socket), remove it by name or ID, prune or load;
 * a read-only role cannot tag; with `allowImageNames: ["ci/*"]` tagging and removing a matching
 * name works and `bb:latest` stays refused.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { Dockerd, Engine } from "./helpers/dockerd.ts";
import { e2eGate, forEachEngine } from "./helpers/e2e_gate.ts";
import { splitResponses, tlsExchange } from "./helpers/http_raw.ts";

const POLICY = {
  roles: {
    ci: { preset: "no-escape" },
    names: { preset: "no-escape", allowImageNames: ["ci/*"] },
    ro: { preset: "read-only" },
  },
  identities: [
    { cn: "ci", role: "ci" },
    { cn: "names", role: "names" },
    { cn: "ro", role: "ro" },
  ],
};

/** The image ID a name points at, asked on the daemon's own socket ("" when none). */
async function imageId(d: Dockerd, name: string): Promise<string> {
  const r = await d.docker(["image", "inspect", "-f", "{{.Id}}", name]);
  return r.code === 0 ? r.stdout.trim() : "";
}

forEachEngine(
  (engine) => `no-escape e2e (Docker ${engine}): image names are a role allowance`,
  images,
);

async function images(t: Deno.TestContext, engine: Engine): Promise<void> {
  const g = await e2eGate(engine, POLICY, ["ci", "names", "ro"]);
  if (!g) return;
  const { d, gate, work, as } = g;
  try {
    // Another image than bb's: a commit with a change.
    assert.equal((await d.docker(["create", "--name", "src", d.image, "true"])).code, 0);
    const c = await d.docker(["commit", "-c", "ENV EVIL=1", "src", "other:1"]);
    assert.equal(c.code, 0, c.stderr);
    const bb = await imageId(d, "bb:latest");
    const other = await imageId(d, "other:1");
    assert.notEqual(bb, other);

    await t.step("without the allowance: tag, rmi, prune, load refused; bb unchanged", async () => {
      const tag = await as("ci", ["tag", "other:1", "bb:latest"]);
      assert.notEqual(tag.code, 0, tag.stdout);
      assert.match(tag.stderr, /tag bb:latest: name not allowed.*allowImageNames/, tag.stderr);
      assert.equal(await imageId(d, "bb:latest"), bb, "bb:latest still points at its image");
      const fq = await as("ci", ["tag", "other:1", "docker.io/library/bb"]);
      assert.notEqual(fq.code, 0, fq.stdout);
      assert.equal(await imageId(d, "bb:latest"), bb);
      for (const name of ["bb:latest", bb.slice(7, 19), bb]) {
        const rmi = await as("ci", ["rmi", "-f", name]);
        assert.notEqual(rmi.code, 0, `${name}: ${rmi.stdout}`);
        assert.match(rmi.stderr, /allowImageNames/, rmi.stderr);
      }
      assert.equal(await imageId(d, "bb:latest"), bb, "bb:latest was not removed");
      const prune = await as("ci", ["image", "prune", "-a", "-f"]);
      assert.notEqual(prune.code, 0, prune.stdout);
      assert.equal(await imageId(d, "other:1"), other, "other:1 was not pruned");
      const ex = await tlsExchange(
        gate.port,
        await g.creds("ci"),
        "POST /images/load HTTP/1.1\r\nHost: d\r\nContent-Type: application/x-tar\r\n" +
          "Content-Length: 0\r\n\r\n",
      );
      assert.equal(splitResponses(ex.data)[0]?.status, 403, ex.data.toString());
      const ro = await as("ro", ["tag", "other:1", "bb:latest"]);
      assert.notEqual(ro.code, 0, ro.stdout);
      assert.equal(await imageId(d, "bb:latest"), bb);
    });

    await t.step(
      "build -t, commit, import under an existing name refused; new names work",
      async () => {
        const ctx = join(work, "ctx");
        await Deno.mkdir(ctx);
        await Deno.writeTextFile(join(ctx, "Dockerfile"), `FROM ${d.image}\nENV BUILT=1\n`);
        const build = await as("ci", ["build", "-t", "bb:latest", ctx], {
          env: { DOCKER_BUILDKIT: "0" },
        });
        assert.notEqual(build.code, 0, build.stdout);
        assert.match(build.stderr, /image bb:latest exists.*allowImageNames/, build.stderr);
        const commit = await as("ci", ["commit", "src", "bb:latest"]);
        assert.notEqual(commit.code, 0, commit.stdout);
        assert.match(commit.stderr, /image bb:latest exists/, commit.stderr);
        const tar = join(work, "empty.tar");
        const mk = await new Deno.Command("tar", { args: ["-cf", tar, "-T", "/dev/null"] })
          .output();
        assert.equal(mk.code, 0);
        const imp = await as("ci", ["import", tar, "bb:latest"]);
        assert.notEqual(imp.code, 0, imp.stdout);
        assert.equal(await imageId(d, "bb:latest"), bb, "bb:latest still points at its image");
        const fresh = await as("ci", ["commit", "src", "fresh:1"]);
        assert.equal(fresh.code, 0, fresh.stderr);
        assert.notEqual(await imageId(d, "fresh:1"), "", "fresh:1 was committed");
        const built = await as("ci", ["build", "-t", "built:1", ctx], {
          env: { DOCKER_BUILDKIT: "0" },
        });
        assert.equal(built.code, 0, built.stderr);
        assert.notEqual(await imageId(d, "built:1"), "", "built:1 was built");
      },
    );

    await t.step("allowImageNames [ci/*]: ci/ names work, bb:latest stays refused", async () => {
      const tag = await as("names", ["tag", "other:1", "ci/x:1"]);
      assert.equal(tag.code, 0, tag.stderr);
      assert.equal(await imageId(d, "ci/x:1"), other, "ci/x:1 was made");
      const bad = await as("names", ["tag", "other:1", "bb:latest"]);
      assert.notEqual(bad.code, 0, bad.stdout);
      assert.equal(await imageId(d, "bb:latest"), bb);
      const rmi = await as("names", ["rmi", "ci/x:1"]);
      assert.equal(rmi.code, 0, rmi.stderr);
      assert.equal(await imageId(d, "ci/x:1"), "", "ci/x:1 was removed");
      assert.equal(await imageId(d, "other:1"), other, "other:1 kept");
    });
  } finally {
    await g.stop();
  }
}
