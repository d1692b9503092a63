/**
 * Shields end to end, on 20.10 (no shield active) and 26.1 (the `docker cp` shields active):
 * a role's `liftShields` lifts exactly the shields it names (the audit record says so), the
 * others stay; `dockgate doctor --target` prints the shields active for that daemon, with the
 * lines `policy check` prints. Real docker CLI through `dockgate serve --policy`, judged by
 * what the container holds on the daemon's own socket.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { DockerResult, Engine } from "./helpers/dockerd.ts";
import { waitFor } from "./helpers/wait.ts";
import { runCli } from "./helpers/gate.ts";
import { e2eGate, forEachEngine } from "./helpers/e2e_gate.ts";

const POLICY = {
  roles: {
    ci: { preset: "no-escape" },
    out: { preset: "no-escape", liftShields: ["CVE-2026-41568"] },
    both: { preset: "no-escape", liftShields: ["CVE-2026-41568", "CVE-2026-42306"] },
  },
  identities: [
    { cn: "ci", role: "ci" },
    { cn: "out", role: "out" },
    { cn: "both", role: "both" },
  ],
};

function ok(what: string, r: DockerResult): DockerResult {
  assert.equal(r.code, 0, `${what}: exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

forEachEngine(
  (engine) => `shields e2e (Docker ${engine}): liftShields per CVE, audited; doctor prints them`,
  (_t, engine) => shields(engine),
);

async function shields(engine: Engine): Promise<void> {
  const g = await e2eGate(engine, POLICY, ["ci", "out", "both"], {
    serveArgs: (work) => ["--audit-log", join(work, "audit.log")],
  });
  if (!g) return;
  const { d, work, as } = g;
  try {
    const audit = join(work, "audit.log");
    ok("c1", await d.docker(["run", "--name", "c1", d.image, "sh", "-c", "echo in-c1 > /f"]));
    const file = join(work, "up.txt");
    await Deno.writeTextFile(file, "uploaded\n");
    const shielded = engine === "26";
    const cpOut = (who: string) => as(who, ["cp", "c1:/f", join(work, `${who}.out`)]);
    const cpIn = (who: string) => as(who, ["cp", file, `c1:/up-${who}.txt`]);
    const holds = async (name: string) => (await d.docker(["cp", `c1:/${name}`, "-"])).code === 0;

    for (const who of ["ci", "out", "both"]) {
      const outOk = !shielded || who !== "ci";
      const inOk = !shielded || who === "both";
      const o = await cpOut(who);
      assert.equal(o.code === 0, outOk, `${who} cp out: ${o.stderr}`);
      if (!outOk) assert.match(o.stderr, /shield CVE-2026-41568/);
      const i = await cpIn(who);
      assert.equal(await holds(`up-${who}.txt`), inOk, `${who} cp in: ${i.stderr}`);
      if (!inOk) assert.match(i.stderr, /shield CVE-2026-4(1568|2306)/);
    }
    // The audit record names a lifted shield where it applied, and only there.
    const records = await waitFor(async () => {
      const lines = (await Deno.readTextFile(audit)).split("\n").filter((l) => l !== "")
        .map((l) => JSON.parse(l));
      const reqs = lines.filter((r) => r.event === "request" && /archive$/.test(r.path));
      // The last request of the loop above: both's upload (allowed on either daemon).
      return reqs.some((r) => r.role === "both" && r.method === "PUT") ? reqs : undefined;
    });
    for (const r of records) {
      const expected = !shielded || r.role === "ci"
        ? undefined
        : r.role === "out"
        ? "lifted CVE-2026-41568"
        : r.method === "PUT"
        ? "lifted CVE-2026-41568, CVE-2026-42306"
        : "lifted CVE-2026-41568";
      assert.equal(r.shield, expected, JSON.stringify(r));
    }

    // doctor: the shields this daemon's version makes active, as policy check words them.
    const doc = await runCli(["doctor", "--target", d.host]);
    assert.equal(doc.code, 0, doc.stdout + doc.stderr);
    const version = ok("version", await d.docker(["version", "-f", "{{.Server.Version}}"]))
      .stdout.trim().replace(/[.+]/g, "\\$&");
    if (!shielded) {
      assert.match(
        doc.stdout,
        new RegExp(`^PASS shields for Docker ${version} \\(none active\\)$`, "m"),
      );
      assert.doesNotMatch(doc.stdout, /CVE-/);
    } else {
      assert.match(doc.stdout, new RegExp(`^PASS shields for Docker ${version} \\(2 active`, "m"));
      const policyFile = join(work, "policy.json");
      const check = await runCli([
        "policy",
        "check",
        policyFile,
        "--identity",
        "ci",
        "PUT",
        "/v1.45/containers/c1/archive?path=/",
      ]);
      const lines = check.stdout.split("\n").filter((l) => l.startsWith("shield "));
      assert.equal(lines.length, 2, check.stdout);
      for (const line of lines) assert.ok(doc.stdout.includes(`\n  ${line}\n`), doc.stdout);
    }
  } finally {
    await g.stop();
  }
}
