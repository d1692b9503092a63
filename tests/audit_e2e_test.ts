/**
 * Per-request audit end to end: the REAL docker CLI through `dockgate serve --policy
 * --audit-log` to a private dockerd.
 *
 * - A `full` role with `"audit": "requests"` goes through the HTTP-aware relay with everything
 *   allowed: `docker run`, `docker exec` (plain and `-i`, an upgrade) and `docker attach` work,
 *   and each request has its record; a `full` role without the option keeps the raw relay (one
 *   record per connection, none per request).
 * - Attribution: a container create's record names image, command and entrypoint; an exec
 *   create's its command, user, tty, privileged, working directory and the names (never the
 *   values) of its environment; exec start and attach records the exec or container and the
 *   stream's bytes each way. For the admin and for a no-escape role.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import {
  availableEngines,
  dockerdUnavailable,
  type DockerResult,
  type Engine,
  startDockerd,
} from "./helpers/dockerd.ts";
import { freeTempDir, waitFor } from "./helpers/wait.ts";
import { type ServeProcess, startPolicyGate, tlsFlags } from "./helpers/gate.ts";

const POLICY = {
  roles: {
    admin: { preset: "full", audit: "requests" },
    root: { preset: "full" },
    ci: { preset: "no-escape" },
  },
  identities: [
    { cn: "alice", role: "admin" },
    { cn: "bob", role: "root" },
    { cn: "ci", role: "ci" },
  ],
};

/** One parsed audit line. */
type Rec = Record<string, unknown>;

function ok(what: string, r: DockerResult): DockerResult {
  assert.equal(r.code, 0, `${what}: exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

async function records(file: string): Promise<Rec[]> {
  const text = await readFile(file, "utf8").catch(() => "");
  return text.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as Rec);
}

/** Waits until a record matching `pred` is in the log (records are written after the answer). */
async function recordOf(file: string, what: string, pred: (r: Rec) => boolean): Promise<Rec> {
  let hit: Rec | undefined;
  await waitFor(async () => (hit = (await records(file)).find(pred)) !== undefined, {
    timeoutMs: 20_000,
    what,
  });
  return hit!;
}

for (const engine of availableEngines()) {
  Deno.test({
    name: `audit e2e (Docker ${engine}): request records for a full role, exec attribution`,
    ignore: dockerdUnavailable(),
    sanitizeOps: false,
    sanitizeResources: false,
  }, (t) => audit(engine, t));
}

async function audit(engine: Engine, t: Deno.TestContext): Promise<void> {
  const d = await startDockerd({ engine });
  if (!d) return;
  const work = await freeTempDir("dga-");
  let gate: ServeProcess | undefined;
  try {
    const auditLog = join(work, "audit.log");
    const started = await startPolicyGate(d.host, work, POLICY, ["alice", "bob", "ci"], [
      "--audit-log",
      auditLog,
    ]);
    gate = started.gate;
    const as = (who: string, args: string[], stdin?: string) =>
      d.docker([...tlsFlags(join(started.pki, "clients", who)), ...args], {
        host: gate!.host,
        stdin,
        timeoutMs: 60_000,
      });
    const mine = (who: string, r: Rec) => r.identity === who;

    await t.step("full with audit requests: run, exec, exec -i, attach work", async () => {
      const run = ok(
        "run",
        await as("alice", ["run", "--rm", "--network", "none", d.image, "echo", "hi"]),
      );
      assert.equal(run.stdout, "hi\n");
      ok(
        "run -d",
        await as("alice", [
          "run",
          "-d",
          "--name",
          "keep",
          "--network",
          "none",
          d.image,
          "sleep",
          "300",
        ]),
      );
      assert.equal(
        ok("exec", await as("alice", ["exec", "keep", "echo", "via-exec"])).stdout,
        "via-exec\n",
      );
      const typed = "typed-line\n".repeat(5000);
      assert.equal(
        ok("exec -i", await as("alice", ["exec", "-i", "keep", "cat"], typed)).stdout,
        typed,
      );
      ok(
        "run -d att",
        await as("alice", [
          "run",
          "-d",
          "--name",
          "att",
          "--network",
          "none",
          d.image,
          "sh",
          "-c",
          "sleep 1; echo attached-out",
        ]),
      );
      assert.equal(
        ok("attach", await as("alice", ["attach", "--no-stdin", "att"])).stdout,
        "attached-out\n",
      );
    });

    await t.step("each of alice's requests has its record; the relay is docker-api", async () => {
      const create = await recordOf(
        auditLog,
        "alice's create record",
        (r) => mine("alice", r) && r.event === "request" && r.path === "/containers/create",
      );
      assert.equal(create.decision, "allow");
      assert.equal(create.rule, "full");
      assert.equal(create.status, 201);
      const start = await recordOf(
        auditLog,
        "alice's exec start record",
        (r) =>
          mine("alice", r) && r.event === "request" &&
          /^\/exec\/[0-9a-f]{64}\/start$/.test(String(r.path)),
      );
      assert.equal(start.decision, "allow");
      const conn = await recordOf(
        auditLog,
        "alice's connection record",
        (r) => mine("alice", r) && r.event === "connection",
      );
      assert.equal(conn.relay, "docker-api");
    });

    await t.step("create and exec records name image, command, user, env names", async () => {
      const create = await recordOf(
        auditLog,
        "alice's create record",
        (r) =>
          mine("alice", r) && r.path === "/containers/create" &&
          JSON.stringify(r.cmd) === '["echo","hi"]',
      );
      assert.equal(create.image, d.image);
      assert.equal(create.entrypoint, undefined);
      ok(
        "run --entrypoint",
        await as("alice", [
          "run",
          "--rm",
          "--network",
          "none",
          "--entrypoint",
          "sh",
          d.image,
          "-c",
          "echo e",
        ]),
      );
      const ep = await recordOf(
        auditLog,
        "the entrypoint record",
        (r) => mine("alice", r) && r.path === "/containers/create" && r.entrypoint !== undefined,
      );
      assert.deepEqual([ep.entrypoint, ep.cmd, ep.image], [["sh"], ["-c", "echo e"], d.image]);
      for (const who of ["alice", "ci"]) {
        const out = await as(who, [
          "exec",
          "-e",
          "SECRET_TOKEN=hunter2",
          "-e",
          "LANG=C",
          "-u",
          "0",
          "-w",
          "/tmp",
          "keep",
          "sh",
          "-c",
          "echo $PWD",
        ]);
        assert.equal(ok(`${who} exec`, out).stdout, "/tmp\n");
        const exec = await recordOf(
          auditLog,
          `${who}'s exec create`,
          (r) =>
            mine(who, r) && r.path === "/containers/keep/exec" && String(r.cmd).includes("PWD"),
        );
        assert.equal(exec.decision, "allow");
        assert.deepEqual(exec.cmd, ["sh", "-c", "echo $PWD"]);
        assert.equal(exec.user, "0");
        assert.equal(exec.working_dir, "/tmp");
        assert.equal(exec.tty, false);
        assert.equal(exec.privileged, false);
        assert.equal(exec.container, "keep");
        assert.deepEqual(exec.env_names, ["SECRET_TOKEN", "LANG"]);
      }
      assert.ok(!(await readFile(auditLog, "utf8")).includes("hunter2"), "an Env value was logged");
    });

    await t.step("exec start and attach records carry the ID and the bytes each way", async () => {
      const typed = "typed-line\n".repeat(5000);
      const start = await recordOf(
        auditLog,
        "the exec -i session's record",
        (r) =>
          mine("alice", r) && /^\/exec\/[0-9a-f]{64}\/start$/.test(String(r.path)) &&
          Number(r.bytes_in) > typed.length,
      );
      assert.equal(start.exec_id, String(start.path).split("/")[2]);
      assert.equal(start.status, 101);
      assert.ok(Number(start.bytes_out) > typed.length, `bytes_out ${start.bytes_out}`);
      const attach = await recordOf(
        auditLog,
        "the attach record",
        (r) => mine("alice", r) && r.path === "/containers/att/attach",
      );
      assert.equal(attach.container, "att");
      assert.ok(
        Number(attach.bytes_out) >= "attached-out\n".length + 8,
        `bytes_out ${attach.bytes_out}`,
      );
    });

    await t.step("a full role without the option keeps the raw relay", async () => {
      assert.equal(
        ok("bob run", await as("bob", ["run", "--rm", "--network", "none", d.image, "echo", "raw"]))
          .stdout,
        "raw\n",
      );
      const conn = await recordOf(
        auditLog,
        "bob's connection record",
        (r) => mine("bob", r) && r.event === "connection",
      );
      assert.equal(conn.relay, "raw");
      assert.deepEqual(
        (await records(auditLog)).filter((r) => mine("bob", r) && r.event === "request"),
        [],
      );
    });
  } finally {
    await gate?.stop();
    await d.docker(["rm", "-f", "keep", "att"]);
    await d.stop();
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}
