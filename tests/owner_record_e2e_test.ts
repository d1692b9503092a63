/**
 * Container ownership does not rest on a label an image can carry (issue 20 item 7), on
 * dockerd 20.10 and 26.1, through `dockgate serve --policy --state-dir` and the real CLI:
 *
 * - An image labelled `dockgate.owner=team-b` by the admin (`docker import --change`, on the
 *   daemon's own socket), and containers created from it on that socket (standing in for a
 *   build's RUN containers, which get only the image's labels): team-b through the gate does
 *   not list, inspect, exec into, remove or prune them, nor see them in `system df`; on the
 *   daemon's socket they still exist and no exec was created.
 * - team-b's own containers, created through the gate, are listed, inspected, exec'ed into
 *   and removed, also after a restart of the gate (the record is read again); the record file
 *   is 0600.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  availableEngines,
  dockerdUnavailable,
  type DockerResult,
  startDockerd,
} from "./helpers/dockerd.ts";
import { freeTempDir, waitFor } from "./helpers/wait.ts";
import {
  runCli,
  type ServeProcess,
  startPolicyGate,
  startServe,
  tlsFlags,
} from "./helpers/gate.ts";

const POLICY = {
  roles: { tenant: { preset: "no-escape", isolate: true } },
  identities: [{ cn: "team-a", role: "tenant" }, { cn: "team-b", role: "tenant" }],
};

function ok(what: string, r: DockerResult): DockerResult {
  assert.equal(r.code, 0, `${what}: exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

for (const engine of availableEngines()) {
  Deno.test({
    name: `owner record e2e (${engine}): an image's owner label gives no container away`,
    ignore: dockerdUnavailable(),
    sanitizeOps: false,
    sanitizeResources: false,
  }, async (t) => {
    const d = await startDockerd({ engine });
    if (!d) return;
    const work = await freeTempDir("dgo-");
    const state = join(work, "state");
    const stateFlags = ["--state-dir", state];
    let gate: ServeProcess | undefined;
    try {
      const started = await startPolicyGate(d.host, work, POLICY, ["team-a", "team-b"], stateFlags);
      gate = started.gate;
      const pki = started.pki;
      const as = (who: string, args: string[]) =>
        d.docker([...tlsFlags(join(pki, "clients", who)), ...args], {
          host: gate!.host,
          timeoutMs: 60_000,
        });
      // Docker 26 was seen to still inspect a container just after `rm -f` said 0: polled.
      // By full ID: `inspect b1` also answers for any container whose ID begins with the hex
      // "b1" (a `created` forged2 did, and this wait timed out in full runs).
      const gone = (id: string, name: string) =>
        waitFor(async () => (await d.docker(["inspect", id])).code !== 0, {
          timeoutMs: 60_000,
          what: `${name} removed on the daemon`,
        }).catch(async (err) => {
          const state = await d.docker(["inspect", "-f", "{{json .State}}", id]);
          throw new Error(
            `${err.message}\nstate: ${state.stdout}\ndockerd: ${await d.logTail(20)}`,
          );
        });
      const inspect = async (name: string, format: string) =>
        ok(`inspect ${name}`, await d.docker(["inspect", "-f", format, name])).stdout.trim();

      const since = String(Math.floor(Date.now() / 1000) - 1);
      // The admin's image with team-b's owner label, and containers dockerd made from it.
      ok("create tmp", await d.docker(["create", "--name", "tmp", d.image]));
      const rootfs = join(work, "rootfs.tar");
      ok("export", await d.docker(["export", "-o", rootfs, "tmp"]));
      ok(
        "import",
        await d.docker(["import", "--change", "LABEL dockgate.owner=team-b", rootfs, "forged:1"]),
      );
      ok(
        "run forged",
        await d.docker([
          "run",
          "-d",
          "--name",
          "forged",
          "--network",
          "none",
          "forged:1",
          "sleep",
          "300",
        ]),
      );
      ok("create forged2", await d.docker(["create", "--name", "forged2", "forged:1", "true"]));
      const forged = await inspect("forged", "{{.Id}}");
      const forged2 = await inspect("forged2", "{{.Id}}");
      assert.equal(await inspect("forged", '{{index .Config.Labels "dockgate.owner"}}'), "team-b");

      await t.step("team-b does not see, inspect, exec into or remove them", async () => {
        // Every attempt first (the first one that got through must not hide the others).
        const through: string[] = [];
        const ps = ok(
          "ps",
          await as("team-b", ["ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}}"]),
        );
        if (ps.stdout.includes(forged) || ps.stdout.includes(forged2)) {
          through.push(`ps: ${ps.stdout}`);
        }
        const df = ok("system df", await as("team-b", ["system", "df", "-v"]));
        // (The image forged:1 is listed: images have no owner. Its containers are not.)
        for (const id of [forged, forged2]) {
          if (df.stdout.includes(id.slice(0, 12))) through.push(`system df lists ${id}`);
        }
        for (const name of ["forged", forged, forged.slice(0, 12)]) {
          const r = await as("team-b", ["inspect", "--type", "container", name]);
          if (r.code === 0) through.push(`inspect ${name}`);
          const e = await as("team-b", ["exec", name, "echo", "in"]);
          if (e.code === 0) through.push(`exec ${name}`);
        }
        await as("team-b", ["container", "prune", "-f"]);
        // What dockerd did: no exec was ever created in the first (its events say so: a
        // finished exec leaves ExecIDs), the second was not pruned.
        const execs = ok(
          "exec events",
          await d.docker([
            "events",
            "--since",
            since,
            "--until",
            String(Math.floor(Date.now() / 1000) + 1),
            "--filter",
            `container=${forged}`,
            "--filter",
            "event=exec_create",
            "--format",
            "{{.Action}}",
          ]),
        ).stdout;
        if (execs !== "") through.push(`execs were created: ${execs}`);
        if ((await d.docker(["inspect", forged2])).code !== 0) {
          through.push("prune removed forged2");
        }
        await as("team-b", ["rm", "-f", "forged"]);
        if ((await d.docker(["inspect", forged])).code !== 0) through.push("rm removed forged");
        assert.deepEqual(through, []);
        assert.equal(await inspect("forged", "{{.State.Running}}"), "true");
      });

      await t.step("team-b's events are its own containers' only", async () => {
        ok(
          "run b0",
          await as("team-b", ["run", "--name", "b0", "--network", "none", d.image, "true"]),
        );
        const b0 = await inspect("b0", "{{.Id}}");
        const until = String(Math.floor(Date.now() / 1000) + 1);
        const args = ["events", "--since", since, "--until", until, "--format", "{{.Actor.ID}}"];
        const ids = ok("events", await as("team-b", args)).stdout;
        assert.ok(ids.includes(b0), ids);
        assert.ok(!ids.includes(forged) && !ids.includes(forged2), ids);
        // On the daemon's socket, with the same label filter: the forged ones are there.
        const all = ok(
          "events direct",
          await d.docker([...args, "--filter", "label=dockgate.owner=team-b"]),
        ).stdout;
        assert.ok(all.includes(forged) && all.includes(b0), all);
        ok("rm b0", await as("team-b", ["rm", "b0"]));
      });

      await t.step("team-b's own containers work, also after a restart of the gate", async () => {
        ok(
          "run b1",
          await as("team-b", [
            "run",
            "-d",
            "--name",
            "b1",
            "--network",
            "none",
            d.image,
            "sleep",
            "300",
          ]),
        );
        ok(
          "run b2",
          await as("team-b", [
            "run",
            "-d",
            "--name",
            "b2",
            "--network",
            "none",
            d.image,
            "sleep",
            "300",
          ]),
        );
        const b1 = await inspect("b1", "{{.Id}}");
        const b2 = await inspect("b2", "{{.Id}}");
        const check = async () => {
          const ps = ok(
            "ps",
            await as("team-b", ["ps", "-a", "--no-trunc", "--format", "{{.ID}}"]),
          );
          assert.ok(ps.stdout.includes(b1), ps.stdout);
          assert.equal(
            ok("inspect", await as("team-b", ["inspect", "-f", "{{.Id}}", "b1"])).stdout.trim(),
            b1,
          );
          assert.equal(ok("exec", await as("team-b", ["exec", "b1", "echo", "hi"])).stdout, "hi\n");
          // team-a sees none of them.
          const psa = ok(
            "ps a",
            await as("team-a", ["ps", "-a", "--no-trunc", "--format", "{{.ID}}"]),
          );
          assert.ok(!psa.stdout.includes(b1), psa.stdout);
        };
        await check();
        // rm -f exits 0 on "No such container": the gate's answer must not be that.
        const rm = ok("rm b2", await as("team-b", ["rm", "-f", "b2"]));
        assert.doesNotMatch(rm.stderr, /No such container/);
        await gone(b2, "b2");
        await gate!.stop();
        gate = await startServe([
          "--target",
          d.host,
          "--certs",
          join(pki, "server"),
          "--policy",
          join(work, "policy.json"),
          ...stateFlags,
        ]);
        await check();
        const rm1 = ok("rm b1", await as("team-b", ["rm", "-f", "b1"]));
        assert.doesNotMatch(rm1.stderr, /No such container/);
        await gone(b1, "b1");
        const mode = (await Deno.stat(join(state, "owners.jsonl"))).mode! & 0o777;
        assert.equal(mode, 0o600);
      });
    } finally {
      await gate?.stop();
      await d.stop();
      await Deno.remove(work, { recursive: true }).catch(() => {});
    }
  });
}

Deno.test("owner record: serve with isolated roles refuses to start without a record it can write", async () => {
  const work = await freeTempDir("dgo-");
  try {
    assert.equal((await runCli(["keygen", "--dir", join(work, "pki")])).code, 0);
    const policy = join(work, "policy.json");
    await Deno.writeTextFile(policy, JSON.stringify(POLICY), { mode: 0o600 });
    const blocker = join(work, "file");
    await Deno.writeTextFile(blocker, "");
    const args = (stateDir: string, env = false) => [
      "serve",
      "--listen",
      "127.0.0.1:0",
      "--target",
      `unix://${join(work, "no.sock")}`,
      "--certs",
      join(work, "pki", "server"),
      "--policy",
      policy,
      ...(env ? [] : ["--state-dir", stateDir]),
    ];
    const r = await runCli(args(join(blocker, "state")), { timeoutMs: 30_000 });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /Cannot open the owner record ".*file\/state\/owners\.jsonl"/);
    // systemd's StateDirectory= is the default: the same refusal through $STATE_DIRECTORY.
    const e = await runCli(args("", true), {
      env: { STATE_DIRECTORY: join(blocker, "sd") },
      timeoutMs: 30_000,
    });
    assert.equal(e.code, 1, e.stderr);
    assert.match(e.stderr, /file\/sd\/owners\.jsonl/);
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
});
