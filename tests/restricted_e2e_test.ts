/**
 * Issue 20's attacks on restricted roles, end to end: raw requests over real TLS through
 * `dockgate serve --policy` to a private dockerd the test starts, on every engine the harness
 * has. Each effect is judged on the daemon's own socket (what it stored), never by an exit
 * code.
 *
 * - A logs request with `Upgrade: tcp` (Docker 23+ answers logs with a stream content type)
 *   must not turn the connection into a raw relay: the create with `Binds ["/:/host"]` sent
 *   after it on the same connection is read and refused, and no such container exists.
 * - A prune with `filters={}` in a form body (Go's ParseForm reads it before the query, where
 *   the gate puts the owner filter) must not delete another owner's stopped container.
 * - An archive upload compressed with gzip (the daemon decompresses it; on 25.0–29.5.0 with the
 *   container's own tools, CVE-2026-41567) is refused; the CLI's plain tar (`docker cp`) works.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { join } from "node:path";
import {
  availableEngines,
  dockerdUnavailable,
  type Engine,
  exists,
  startDockerd,
} from "./helpers/dockerd.ts";
import { freeTempDir } from "./helpers/wait.ts";
import { RESTRICTED_POLICY, type ServeProcess, startPolicyGate, tlsFlags } from "./helpers/gate.ts";
import { jsonRequest, splitResponses, tlsExchange } from "./helpers/http_raw.ts";
import { bundleCreds } from "./helpers/tls_peers.ts";

/** A gzip-compressed tar of one file, made by the real tar and gzip. */
async function gzippedTar(dir: string, name: string): Promise<Buffer> {
  await Deno.writeTextFile(join(dir, name), "from the attacker\n");
  const out = await new Deno.Command("tar", {
    args: ["-czf", "-", name],
    cwd: dir,
    stdout: "piped",
  })
    .output();
  assert.equal(out.code, 0);
  return Buffer.from(out.stdout);
}

for (const engine of availableEngines()) {
  Deno.test({
    name:
      `restricted roles e2e (Docker ${engine}): Upgrade on logs, form-body prune, archive uploads`,
    ignore: dockerdUnavailable(),
    sanitizeOps: false,
    sanitizeResources: false,
  }, (t) => attacks(t, engine));
}

async function attacks(t: Deno.TestContext, engine: Engine): Promise<void> {
  const d = await startDockerd({ engine });
  if (!d) return;
  const work = await freeTempDir("dgr-");
  let gate: ServeProcess | undefined;
  try {
    const g = await startPolicyGate(d.host, work, RESTRICTED_POLICY, ["ro", "ci", "t1", "t2"], [
      "--audit-log",
      join(work, "audit.log"),
    ]);
    gate = g.gate;
    await gate.waitForLog(/API policy: /);
    const port = gate.port;
    const creds = (n: string) => bundleCreds(g.pki, n);
    const as = (who: string, args: string[]) =>
      d.docker([...tlsFlags(join(g.pki, "clients", who)), ...args], { host: gate!.host });
    const v = `/v${(await d.docker(["version", "-f", "{{.Server.APIVersion}}"])).stdout.trim()}`;

    await t.step(
      "logs with Upgrade stays an HTTP exchange; the create after it is refused",
      async () => {
        assert.equal((await d.docker(["run", "--name", "talker", d.image, "echo", "hi"])).code, 0);
        for (const who of ["ro", "ci"]) {
          const ex = await tlsExchange(
            port,
            await creds(who),
            `GET ${v}/containers/talker/logs?stdout=1 HTTP/1.1\r\nHost: d\r\n` +
              "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n" +
              jsonRequest(
                "POST",
                `${v}/containers/create?name=escaped-${who}`,
                JSON.stringify({ Image: d.image, HostConfig: { Binds: ["/:/host"] } }),
              ),
          );
          const statuses = splitResponses(ex.data).map((r) => r.status);
          assert.equal(statuses.at(-1), 403, `${who}: ${ex.data}`);
          assert.equal(
            await exists(d, `escaped-${who}`),
            false,
            `${who}: no container was created`,
          );
        }
      },
    );

    await t.step("a prune's filters in a form body do not reach the daemon", async () => {
      assert.equal((await as("t2", ["create", "--name", "victim", d.image, "true"])).code, 0);
      assert.equal(await exists(d, "victim"), true);
      const body = "filters=%7B%7D";
      const ex = await tlsExchange(
        port,
        await creds("t1"),
        `POST ${v}/containers/prune HTTP/1.1\r\nHost: d\r\n` +
          "Content-Type: application/x-www-form-urlencoded\r\n" +
          `Content-Length: ${body.length}\r\n\r\n${body}`,
      );
      assert.equal(splitResponses(ex.data)[0]?.status, 403, ex.data.toString());
      assert.equal(await exists(d, "victim"), true, "t2's stopped container survived t1's prune");
    });

    await t.step(
      "a gzip archive upload is refused; docker cp's plain tar goes through",
      async () => {
        assert.equal((await d.docker(["create", "--name", "box", d.image, "true"])).code, 0);
        const gz = await gzippedTar(work, "dropped.txt");
        const ex = await tlsExchange(
          port,
          await creds("ci"),
          Buffer.concat([
            Buffer.from(
              `PUT ${v}/containers/box/archive?path=/ HTTP/1.1\r\nHost: d\r\n` +
                `Content-Type: application/x-tar\r\nContent-Length: ${gz.length}\r\n\r\n`,
            ),
            gz,
          ]),
        );
        assert.equal(splitResponses(ex.data)[0]?.status, 403, ex.data.toString());
        const absent = await d.docker(["cp", "box:/dropped.txt", "-"]);
        assert.notEqual(absent.code, 0, "the daemon never unpacked the gzip upload");
        await Deno.writeTextFile(join(work, "plain.txt"), "plain tar\n");
        const cp = await as("ci", ["cp", join(work, "plain.txt"), "box:/plain.txt"]);
        const back = await d.docker(["cp", "box:/plain.txt", "-"]);
        if (engine === "20.10") {
          assert.equal(cp.code, 0, cp.stderr);
          assert.equal(back.code, 0, back.stderr);
          assert.match(back.stdout, /plain tar/);
        } else {
          // Docker 25.0-29.5.0: the cp shields (CVE-2026-41568, CVE-2026-42306) refuse it.
          assert.match(cp.stderr, /shield CVE-2026-41568/, cp.stderr);
          assert.notEqual(back.code, 0, "nothing was copied in");
        }
      },
    );
  } finally {
    await gate?.stop();
    await d.stop();
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}
