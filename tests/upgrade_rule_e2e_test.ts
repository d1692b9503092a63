/**
 * The gate's upgrade rule is dockerd's (routes.ts `asksUpgrade`): dockerd looks only at whether
 * an `Upgrade` header is present (`r.Header["Upgrade"]` in attach and exec start), never at
 * `Connection`. A restricted request off the hijacked routes that carries `Upgrade` is refused
 * whatever `Connection` says; on exec start `Upgrade` alone gets dockerd's 101 and the stream.
 * Judged on the daemon's own socket, on every engine the harness has.
 */
import assert from "node:assert/strict";
import type { Engine } from "./helpers/dockerd.ts";
import { e2eGate, forEachEngine } from "./helpers/e2e_gate.ts";
import { jsonRequest, splitResponses, tlsExchange } from "./helpers/http_raw.ts";

const POLICY = {
  roles: { ci: { preset: "no-escape" } },
  identities: [{ cn: "ci", role: "ci" }],
};

forEachEngine(
  (engine) => `upgrade rule (Docker ${engine}): Upgrade alone is an upgrade, as dockerd reads it`,
  upgradeRule,
);

async function upgradeRule(t: Deno.TestContext, engine: Engine): Promise<void> {
  const g = await e2eGate(engine, POLICY, ["ci"]);
  if (!g) return;
  const { d, gate } = g;
  try {
    const creds = await g.creds("ci");
    const v = `/v${(await d.docker(["version", "-f", "{{.Server.APIVersion}}"])).stdout.trim()}`;
    const exists = async (name: string) =>
      (await d.docker(["ps", "-a", "-q", "--filter", `name=^/${name}$`])).stdout.trim() !== "";

    await t.step("a create with Upgrade and no Connection is refused, not created", async () => {
      for (const [what, extra] of [["alone", "Upgrade: tcp\r\n"], ["empty", "Upgrade:\r\n"]]) {
        const name = `upg-${what}`;
        const create = jsonRequest(
          "POST",
          `${v}/containers/create?name=${name}`,
          JSON.stringify({ Image: d.image, Cmd: ["true"] }),
          extra,
        );
        const ex = await tlsExchange(gate.port, creds, create);
        const [answer] = splitResponses(ex.data);
        assert.equal(answer?.status, 403, `${what}: ${ex.data}`);
        assert.match(answer.body, /Upgrade is only for attach and exec start/);
        assert.equal(await exists(name), false, `${what}: the daemon created nothing`);
      }
    });

    await t.step("exec start with Upgrade alone: dockerd's 101 and the stream", async () => {
      const run = ["run", "-d", "--network", "none", "--name", "box", d.image, "sleep", "300"];
      assert.equal((await d.docker(run)).code, 0);
      const mk = await new Deno.Command("curl", {
        args: ["-s", "--unix-socket", d.socket, "-H", "Content-Type: application/json", "-d"]
          .concat([
            '{"Cmd":["echo","said-hi"],"AttachStdout":true}',
            "http://d/containers/box/exec",
          ]),
        stdout: "piped",
      }).output();
      const id = (JSON.parse(new TextDecoder().decode(mk.stdout)) as { Id: string }).Id;
      const start = jsonRequest("POST", `${v}/exec/${id}/start`, '{"Detach":false,"Tty":true}')
        .replace("\r\n\r\n", "\r\nUpgrade: tcp\r\n\r\n");
      const ex = await tlsExchange(gate.port, creds, start, { keepOpen: true, timeoutMs: 10_000 });
      const text = ex.data.toString("latin1");
      assert.match(text, /^HTTP\/1\.1 101 /, text);
      assert.match(text, /said-hi/, text);
    });
  } finally {
    await g.stop();
  }
}
