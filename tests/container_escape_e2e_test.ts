/**
 * Issue 20 item 12, end to end: another identity's container is no way out for a no-escape
 * role. An admin container made on the daemon's own socket with `-v /:/host` (and a created,
 * privileged one) may not be exec'd, attached, copied in or out of, exported or committed
 * through the gate: each route is refused with the rule that the container's stored
 * configuration breaks, and the daemon shows nothing happened (no exec instance, no file on
 * the host, no image). The same routes on a container the role made itself work with the real
 * docker CLI. On every engine the harness has.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { Dockerd, Engine } from "./helpers/dockerd.ts";
import { e2eGate, forEachEngine } from "./helpers/e2e_gate.ts";
import { jsonRequest, splitResponses, tlsExchange } from "./helpers/http_raw.ts";
import type { Creds } from "./helpers/tls_peers.ts";

const POLICY = {
  roles: { ci: { preset: "no-escape" } },
  identities: [{ cn: "ci", role: "ci" }],
};

/** One raw request through the gate; its status and body. */
async function send(port: number, c: Creds, request: string) {
  const ex = await tlsExchange(port, c, request);
  assert.equal(ex.timedOut, false, "the gate neither answered nor closed");
  const [r] = splitResponses(ex.data);
  assert.ok(r, `no response: ${ex.data}`);
  return r;
}

/** A request without a body. */
function bare(method: string, target: string): string {
  return `${method} ${target} HTTP/1.1\r\nHost: d\r\n\r\n`;
}

/** A field of `docker inspect` on the daemon's own socket. */
async function inspectField(d: Dockerd, name: string, format: string): Promise<string> {
  const r = await d.docker(["inspect", "-f", format, name]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

/** The admin's own exec instance, made on the daemon's socket (curl: the CLI starts it at once). */
async function adminExec(d: Dockerd, container: string, cmd: string[]): Promise<string> {
  const out = await new Deno.Command("curl", {
    args: [
      "-sf",
      "--unix-socket",
      d.socket,
      "-X",
      "POST",
      "-H",
      "Content-Type: application/json",
      "-d",
      JSON.stringify({ Cmd: cmd }),
      `http://d/containers/${container}/exec`,
    ],
    stdout: "piped",
  }).output();
  assert.equal(out.code, 0, "curl exec create");
  return JSON.parse(new TextDecoder().decode(out.stdout)).Id;
}

forEachEngine(
  (engine) => `no-escape e2e (Docker ${engine}): others' containers are no way out`,
  containers,
);

async function containers(t: Deno.TestContext, engine: Engine): Promise<void> {
  const g = await e2eGate(engine, POLICY, ["ci"]);
  if (!g) return;
  const { d, work } = g;
  try {
    const port = g.gate.port;
    const ci = await g.creds("ci");
    const as = (args: string[]) => g.as("ci", args);
    const v = `/v${(await d.docker(["version", "-f", "{{.Server.APIVersion}}"])).stdout.trim()}`;

    const run = await d.docker([
      "run",
      "-d",
      "--name",
      "adm-root",
      "--network",
      "none",
      "-v",
      "/:/host",
      d.image,
      "sleep",
      "600",
    ]);
    assert.equal(run.code, 0, run.stderr);
    const adminId = run.stdout.trim();
    const priv = await d.docker(["create", "--name", "adm-priv", "--privileged", d.image, "sh"]);
    assert.equal(priv.code, 0, priv.stderr);
    // Where a write through the admin's container would land on the host.
    const hostFile = join(d.tmp, "pwned.txt");
    await Deno.writeTextFile(join(work, "payload.txt"), "from the attacker\n");
    const hostGone = async () => {
      assert.equal(await Deno.stat(hostFile).then(() => true, () => false), false, hostFile);
    };

    await t.step("exec create on the admin's containers: 403, no exec instance", async () => {
      const body = JSON.stringify({ Cmd: ["touch", `/host${hostFile}`], AttachStdout: true });
      for (const name of ["adm-root", adminId.slice(0, 12), adminId]) {
        const r = await send(port, ci, jsonRequest("POST", `${v}/containers/${name}/exec`, body));
        assert.equal(r.status, 403, `${name}: ${r.body}`);
        assert.match(r.body, /HostConfig\.Binds\[0\]=\/: bind mount of \/ /, r.body);
      }
      const p = await send(port, ci, jsonRequest("POST", `${v}/containers/adm-priv/exec`, body));
      assert.equal(p.status, 403, p.body);
      assert.match(p.body, /HostConfig\.Privileged/, p.body);
      assert.equal(await inspectField(d, "adm-root", "{{json .ExecIDs}}"), "null");
      assert.equal(await inspectField(d, "adm-priv", "{{json .ExecIDs}}"), "null");
      const cli = await as(["exec", "adm-root", "cat", "/host/etc/hostname"]);
      assert.notEqual(cli.code, 0, cli.stdout);
      assert.match(cli.stderr, /Binds/, cli.stderr);
      assert.equal(await inspectField(d, "adm-root", "{{json .ExecIDs}}"), "null");
      await hostGone();
    });

    await t.step("exec start of the admin's own exec instance: 403, it never ran", async () => {
      const id = await adminExec(d, "adm-root", ["touch", `/host${hostFile}`]);
      const r = await send(
        port,
        ci,
        jsonRequest("POST", `${v}/exec/${id}/start`, JSON.stringify({ Detach: true })),
      );
      assert.equal(r.status, 403, r.body);
      assert.match(r.body, /Binds/, r.body);
      const r2 = await send(
        port,
        ci,
        jsonRequest("POST", `${v}/exec/${id}/start`, JSON.stringify({ Detach: true })),
      );
      assert.equal(r2.status, 403, r2.body);
      const pid = await new Deno.Command("curl", {
        args: ["-sf", "--unix-socket", d.socket, `http://d/exec/${id}/json`],
        stdout: "piped",
      }).output();
      const exec = JSON.parse(new TextDecoder().decode(pid.stdout));
      assert.equal(exec.Pid, 0, "the exec never started");
      assert.equal(exec.Running, false);
      await hostGone();
    });

    await t.step("attach, attach/ws, archive, export, commit: 403, nothing made", async () => {
      const requests = [
        bare("POST", `${v}/containers/adm-root/attach?stream=1&stdout=1`),
        "GET " + `${v}/containers/adm-root/attach/ws?stream=1&stdout=1` +
        " HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        bare("GET", `${v}/containers/adm-root/archive?path=/host/etc/hostname`),
        bare("HEAD", `${v}/containers/adm-root/archive?path=/host/etc/hostname`),
        bare("GET", `${v}/containers/adm-root/export`),
        bare("POST", `${v}/commit?container=adm-root&repo=evil&tag=1`),
        bare("POST", `${v}/commit?container=${adminId.slice(0, 10)}&repo=evil&tag=2`),
      ];
      for (const req of requests) {
        const r = await send(port, ci, req);
        assert.equal(r.status, 403, `${req.split("\r\n")[0]}: ${r.status} ${r.body}`);
      }
      for (const tag of ["evil:1", "evil:2"]) {
        const img = await d.docker(["image", "inspect", tag]);
        assert.notEqual(img.code, 0, `${tag} was committed`);
      }
      const cpIn = await as(["cp", join(work, "payload.txt"), `adm-root:/host${hostFile}`]);
      assert.notEqual(cpIn.code, 0, cpIn.stderr);
      await hostGone();
      const cpOut = await as(["cp", "adm-root:/host/etc/hostname", "-"]);
      assert.notEqual(cpOut.code, 0, cpOut.stdout);
      const commit = await as(["commit", "adm-root", "evil:3"]);
      assert.notEqual(commit.code, 0, commit.stdout);
      assert.notEqual((await d.docker(["image", "inspect", "evil:3"])).code, 0, "evil:3 exists");
    });

    await t.step("the role's own container: exec, attach, cp, export, commit work", async () => {
      const mine = await as([
        "run",
        "-d",
        "--name",
        "mine",
        "--network",
        "none",
        d.image,
        "sleep",
        "600",
      ]);
      assert.equal(mine.code, 0, mine.stderr);
      const exec = await as(["exec", "mine", "echo", "exec-ok"]);
      assert.equal(exec.code, 0, exec.stderr);
      assert.equal(exec.stdout.trim(), "exec-ok");
      const once = await as([
        "create",
        "--name",
        "once",
        "--network",
        "none",
        d.image,
        "echo",
        "attached",
      ]);
      assert.equal(once.code, 0, once.stderr);
      const attach = await as(["start", "-a", "once"]);
      assert.equal(attach.code, 0, attach.stderr);
      assert.equal(attach.stdout.trim(), "attached");
      const out = join(work, "mine.tar");
      const exp = await as(["export", "-o", out, "mine"]);
      assert.equal(exp.code, 0, exp.stderr);
      assert.ok((await Deno.stat(out)).size > 0, "an export was written");
      const commit = await as(["commit", "mine", "mine-img:1"]);
      assert.equal(commit.code, 0, commit.stderr);
      assert.equal((await d.docker(["image", "inspect", "mine-img:1"])).code, 0, "committed");
      const cpIn = await as(["cp", join(work, "payload.txt"), "mine:/tmp/in.txt"]);
      const cpOut = await as(["cp", "mine:/tmp/in.txt", "-"]);
      if (engine === "20.10") {
        assert.equal(cpIn.code, 0, cpIn.stderr);
        assert.equal(cpOut.code, 0, cpOut.stderr);
        assert.match(cpOut.stdout, /from the attacker/);
        assert.equal(
          (await d.docker(["exec", "mine", "cat", "/tmp/in.txt"])).stdout.trim(),
          "from the attacker",
        );
      } else {
        // Docker 25.0-29.5.0: the cp shields refuse archive routes whoever owns the container.
        assert.match(cpIn.stderr, /shield CVE-2026-41568/, cpIn.stderr);
      }
    });
  } finally {
    await g.stop();
  }
}
