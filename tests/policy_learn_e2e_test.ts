/**
 * `dockgate policy learn` round trip (issue 24): a deploy bot drives the real docker CLI through
 * `dockgate serve --policy --audit-log` (a no-escape role) to a private dockerd: ps, inspect,
 * logs, restart, stop. The policy learned from that audit log, checked with `dockgate policy
 * check`, allows every request the bot made and refuses routes it never used (a kill, an
 * image list, a create); another identity's requests are not in it; `--against` the policy in
 * force names the routes that policy allows and the bot never used; and a gate serving the
 * learned policy lets the bot do it all again, and refuses what it never did.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { dockerdUnavailable, startDockerd } from "./helpers/dockerd.ts";
import { freeTempDir } from "./helpers/wait.ts";
import { runCli, type ServeProcess, startPolicyGate, tlsFlags } from "./helpers/gate.ts";

const POLICY = {
  roles: { bot: { preset: "no-escape" }, ro: { preset: "read-only" } },
  identities: [{ cn: "bot", role: "bot" }, { cn: "other", role: "ro" }],
};

Deno.test({
  name: "policy learn e2e: the learned policy allows what the bot did and refuses the rest",
  ignore: dockerdUnavailable(),
  sanitizeOps: false,
  sanitizeResources: false,
}, async (t) => {
  const d = await startDockerd();
  if (!d) return;
  const work = await freeTempDir("dgp-");
  const log = join(work, "audit.log");
  let gate: ServeProcess | undefined;
  try {
    const g = await startPolicyGate(d.host, work, POLICY, ["bot", "other"], ["--audit-log", log]);
    gate = g.gate;
    await gate.waitForLog(/API policy: /);
    const as = (who: string, args: string[]) =>
      d.docker([...tlsFlags(join(g.pki, "clients", who)), ...args], { host: gate!.host });
    const run = await d.docker([
      "run",
      "-d",
      "--name",
      "app",
      "--network",
      "none",
      d.image,
      "sleep",
      "600",
    ]);
    assert.equal(run.code, 0, run.stderr);
    for (
      const args of [["ps"], ["inspect", "app"], ["logs", "app"], ["restart", "-t", "0", "app"], [
        "stop",
        "-t",
        "0",
        "app",
      ]]
    ) {
      const r = await as("bot", args);
      assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
    }
    assert.equal((await as("other", ["images"])).code, 0);
    await gate.stop();
    gate = undefined;
    const records = (await Deno.readTextFile(log)).split("\n").filter((l) => l)
      .map((l) => JSON.parse(l)).filter((r) => r.event === "request" && r.identity === "bot");
    const used = [...new Set(records.map((r) => `${r.method} ${r.path}`))];
    assert.ok(used.includes("POST /containers/app/restart"), used.join("\n"));

    const learned = join(work, "learned.json");
    await t.step("learn prints a policy that loads", async () => {
      const r = await runCli(["policy", "learn", log, "--identity", "bot"]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /no body allowance/);
      const p = JSON.parse(r.stdout);
      assert.deepEqual(p.identities, [{ cn: "bot", role: "learned-bot" }]);
      assert.equal(p.roles["learned-bot"].preset, "no-escape");
      await Deno.writeTextFile(learned, r.stdout, { mode: 0o600 });
    });

    await t.step("policy check: every logged request allowed, unused routes refused", async () => {
      const check = (method: string, path: string) =>
        runCli(["policy", "check", learned, "--identity", "bot", method, path]);
      for (const request of used) {
        const [method, path] = request.split(" ");
        const r = await check(method, path);
        assert.equal(r.code, 0, `${request}: ${r.stdout}${r.stderr}`);
      }
      for (
        const [method, path] of [
          ["POST", "/containers/app/kill"],
          ["GET", "/images/json"],
          ["DELETE", "/containers/app"],
          ["POST", "/containers/create"],
        ]
      ) {
        const r = await check(method, path);
        assert.equal(r.code, 1, `${method} ${path}: ${r.stdout}`);
        assert.match(r.stdout, /^deny learned-bot: /);
      }
      const stranger = await runCli([
        "policy",
        "check",
        learned,
        "--identity",
        "other",
        "GET",
        "/_ping",
      ]);
      assert.equal(stranger.code, 1, "another identity has no role in it");
    });

    await t.step(
      "--against: the routes the current policy allows and the bot never used",
      async () => {
        const r = await runCli([
          "policy",
          "learn",
          log,
          "--identity",
          "bot",
          "--against",
          join(work, "policy.json"),
        ]);
        assert.equal(r.code, 0, r.stderr);
        const lines = r.stdout.split("\n");
        assert.equal(lines[0], "bot: role bot (no-escape), learned no-escape");
        assert.ok(
          lines.includes("- POST /containers/{name}/kill  allowed now, never used"),
          r.stdout,
        );
        assert.ok(!lines.some((l) => l.startsWith("+ ")), "nothing the bot did is refused now");
        assert.ok(!lines.some((l) => l.includes("/containers/{name}/restart")), "restart was used");
      },
    );

    await t.step(
      "a gate serving the learned policy: the same work passes, a kill does not",
      async () => {
        await d.docker(["start", "app"]);
        const g2 = await startPolicyGate(
          d.host,
          join(work, "again"),
          await Deno.readTextFile(learned),
          [
            "bot",
          ],
        );
        gate = g2.gate;
        await gate.waitForLog(/API policy: /);
        const bot = (args: string[]) =>
          d.docker([...tlsFlags(join(g2.pki, "clients", "bot")), ...args], { host: gate!.host });
        for (
          const args of [["ps"], ["inspect", "app"], ["logs", "app"], ["restart", "-t", "0", "app"]]
        ) {
          const r = await bot(args);
          assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
        }
        const kill = await bot(["kill", "app"]);
        assert.match(kill.stderr, /dockgate: bot may not POST \/containers\/app\/kill: deny/);
        const state = await d.docker(["inspect", "-f", "{{.State.Running}}", "app"]);
        assert.equal(state.stdout.trim(), "true", "the daemon never got the kill");
      },
    );
  } finally {
    await gate?.stop();
    await d.docker(["rm", "-f", "app"]);
    await d.stop();
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
});
