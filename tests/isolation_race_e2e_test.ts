/**
 * Check and act on the same object (issue 20 item 8): an isolated request that names a volume
 * is owner-checked, then queued on the upstream connection behind an earlier pipelined request
 * that blocks (`POST /containers/{id}/wait`). Meanwhile its own volume is removed and the
 * victim creates one of the same name. The create, acted on later, must not mount the victim's
 * volume. Two isolated identities through `dockgate serve`, a real dockerd on every engine;
 * judged by what the daemon stored (`docker inspect` on its own socket).
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { join } from "node:path";
import {
  availableEngines,
  dockerdUnavailable,
  type Engine,
  startDockerd,
} from "./helpers/dockerd.ts";
import { freeTempDir, waitFor } from "./helpers/wait.ts";
import { type ServeProcess, startPolicyGate, tlsFlags } from "./helpers/gate.ts";
import { jsonRequest, splitResponses } from "./helpers/http_raw.ts";
import { bundleCreds, tlsConnect } from "./helpers/tls_peers.ts";

const POLICY = {
  roles: { tenant: { preset: "no-escape", isolate: true } },
  identities: [{ cn: "t1", role: "tenant" }, { cn: "t2", role: "tenant" }],
};

for (const engine of availableEngines()) {
  Deno.test({
    name: `isolation race (Docker ${engine}): a pipelined wait cannot swap a checked volume`,
    ignore: dockerdUnavailable(),
    sanitizeOps: false,
    sanitizeResources: false,
  }, () => race(engine));
}

async function race(engine: Engine): Promise<void> {
  // -D: dockerd logs every request it reads, so the test can see the gate's owner check.
  const d = await startDockerd({ engine, extraArgs: ["-D"] });
  if (!d) return;
  const work = await freeTempDir("dgq-");
  let gate: ServeProcess | undefined;
  try {
    const g = await startPolicyGate(d.host, work, POLICY, ["t1", "t2"], [
      "--audit-log",
      join(work, "audit.log"),
    ]);
    gate = g.gate;
    await gate.waitForLog(/API policy: /);
    const as = (who: string, args: string[]) =>
      d.docker([...tlsFlags(join(g.pki, "clients", who)), ...args], { host: gate!.host });
    const ok = async (what: string, p: Promise<{ code: number; stderr: string }>) => {
      const r = await p;
      assert.equal(r.code, 0, `${what}: ${r.stderr}`);
    };
    const v = `/v${(await d.docker(["version", "-f", "{{.Server.APIVersion}}"])).stdout.trim()}`;
    const run = ["run", "-d", "--network", "none", "--name", "waiter", d.image, "sleep", "300"];
    await ok("t1's waiter", as("t1", run));
    await ok("t1's volume", as("t1", ["volume", "create", "loot"]));

    // One connection: a wait that blocks, then a create mounting t1's own volume "loot".
    const socket = tlsConnect(gate.port, await bundleCreds(g.pki, "t1"));
    const got: Buffer[] = [];
    socket.on("data", (b: Buffer) => got.push(b));
    await new Promise<void>((r) => socket.once("secureConnect", () => r()));
    const create = JSON.stringify({
      Image: d.image,
      Cmd: ["true"],
      HostConfig: { Binds: ["loot:/data"], NetworkMode: "none" },
    });
    socket.write(
      `POST ${v}/containers/waiter/wait HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\n\r\n` +
        jsonRequest("POST", `${v}/containers/create?name=thief`, create),
    );
    // Today the gate checks "loot" as soon as it has read the create; give it that chance
    // (bounded: a gate that checks only when it acts never logs this, and that is the fix).
    await waitFor(async () => (await d.logTail(400)).includes("/volumes/loot"), {
      what: "the gate's owner check of loot",
      timeoutMs: 3000,
    }).catch(() => {});

    // The gap: t1 removes its volume, the victim creates one of the same name with a secret.
    await ok("t1 removes loot", as("t1", ["volume", "rm", "loot"]));
    await ok("t2 creates loot", as("t2", ["volume", "create", "loot"]));
    const owner = await d.docker([
      "volume",
      "inspect",
      "-f",
      '{{index .Labels "dockgate.owner"}}',
      "loot",
    ]);
    assert.match(owner.stdout, /t2/, "loot is the victim's now");

    // The wait ends; the queued create reaches the daemon.
    assert.equal((await d.docker(["kill", "waiter"])).code, 0);
    await waitFor(() => splitResponses(Buffer.concat(got)).length >= 2, {
      what: "both answers",
      timeoutMs: 20_000,
    });
    socket.destroy();
    const answers = splitResponses(Buffer.concat(got));
    assert.equal(answers[0].status, 200, "the wait was answered");
    const mounts = await d.docker(["inspect", "-f", "{{json .Mounts}}", "thief"]);
    assert.ok(
      mounts.code !== 0,
      `the daemon created thief, mounting ${mounts.stdout} (answer ${answers[1].status})`,
    );
    assert.equal(answers[1].status, 404, answers[1].body);
  } finally {
    await gate?.stop();
    await d.stop();
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}
