/**
 * `dockgate env` through the real CLI: shell lines that bash evaluates, a bundle archive that
 * GNU tar unpacks (key 0600, never written over an existing file), and `--context --apply`
 * making a Docker context the real Docker CLI uses through serve to a real dockerd. Also the
 * "did you mean" of an unknown flag.
 */
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { runCli, type ServeProcess, startServe } from "./helpers/gate.ts";
import { dockerdUnavailable, startDockerd } from "./helpers/dockerd.ts";
import { freeTempDir } from "./helpers/wait.ts";

async function sh(script: string, env: Record<string, string> = {}) {
  const out = await new Deno.Command("bash", {
    args: ["-c", script],
    env,
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

Deno.test("env: shell lines bash evaluates; a bundle archive tar unpacks, never over a file", async () => {
  const dir = await freeTempDir("dg-env-");
  try {
    const pki = join(dir, "pki");
    assert.equal((await runCli(["keygen", "--dir", pki])).code, 0);
    const made = await runCli(["keygen", "client", "alice", "--dir", pki]);
    assert.equal(made.code, 0);
    assert.match(
      made.stderr,
      /next steps:\n {2}eval "\$\(dockgate env alice --dir .* --host HOST:2376\)"/,
    );
    const r = await runCli(["env", "alice", "--dir", pki, "--host", "gate.example:2376"]);
    assert.equal(r.code, 0, r.stderr);
    const evald = await sh(`${r.stdout}\necho "$DOCKER_HOST|$DOCKER_TLS_VERIFY|$DOCKER_CERT_PATH"`);
    assert.equal(evald.stdout, `tcp://gate.example:2376|1|${join(pki, "clients", "alice")}\n`);
    const ctx = await runCli([
      "env",
      "alice",
      "--dir",
      pki,
      "--host",
      "gate.example:2376",
      "--context",
    ]);
    assert.match(
      ctx.stdout,
      /^docker context create alice --docker host=tcp:\/\/gate\.example:2376,ca=.*\/alice\/ca\.pem,cert=.*\/cert\.pem,key=.*\/key\.pem\n$/,
    );

    const archive = join(dir, "alice.tar.gz");
    assert.equal((await runCli(["env", "alice", "--dir", pki, "--bundle", archive])).code, 0);
    assert.equal((await Deno.stat(archive)).mode! & 0o777, 0o600);
    const out = join(dir, "unpacked");
    await Deno.mkdir(out);
    const tar = await sh(`tar -xpzf ${archive} -C ${out}`);
    assert.equal(tar.code, 0, tar.stderr);
    for (const f of ["ca.pem", "cert.pem", "key.pem"]) {
      assert.equal(
        await Deno.readTextFile(join(out, "alice", f)),
        await Deno.readTextFile(join(pki, "clients", "alice", f)),
      );
    }
    assert.equal((await Deno.stat(join(out, "alice", "key.pem"))).mode! & 0o777, 0o600);
    const again = await runCli(["env", "alice", "--dir", pki, "--bundle", archive]);
    assert.equal(again.code, 1);
    assert.match(
      again.stderr,
      /^dockgate: error: Cannot write bundle ".*alice\.tar\.gz": file exists/m,
    );
    const none = await runCli(["env", "bob", "--dir", pki]);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /run "dockgate keygen client bob --dir .*" first/);
    const typo = await runCli(["serve", "--listn", "127.0.0.1:0"]);
    assert.equal(typo.code, 2);
    assert.match(typo.stderr, /Unknown option '--listn' \(did you mean --listen\?\)/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

Deno.test({
  name: "env --context --apply: a Docker context the real CLI uses through serve",
  ignore: dockerdUnavailable(),
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const d = await startDockerd();
  if (!d) return;
  const dir = await freeTempDir("dg-envctx-");
  let gate: ServeProcess | undefined;
  try {
    const pki = join(dir, "pki");
    assert.equal((await runCli(["keygen", "--dir", pki])).code, 0);
    assert.equal((await runCli(["keygen", "client", "alice", "--dir", pki])).code, 0);
    gate = await startServe(["--target", d.host, "--certs", join(pki, "server")]);
    const env = {
      PATH: Deno.env.get("PATH")!,
      HOME: dir,
      DOCKER_CONFIG: join(dir, "docker-config"),
    };
    const cli = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--quiet",
        join(import.meta.dirname!, "..", "cli.ts"),
        "env",
        "alice",
        "--dir",
        pki,
        "--host",
        `127.0.0.1:${gate.port}`,
        "--context",
        "--apply",
      ],
      env,
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(cli.code, 0, new TextDecoder().decode(cli.stderr));
    const v = await sh("docker --context alice version -f '{{.Server.APIVersion}}'", env);
    assert.equal(v.code, 0, v.stderr);
    assert.equal(v.stdout, "1.41\n");
  } finally {
    await gate?.stop();
    await d.stop();
    await rm(dir, { recursive: true, force: true });
  }
});

Deno.test({
  name:
    "env with several --host: one docker context per fleet host, from keygen server --name bundles",
  ignore: dockerdUnavailable(),
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const d = await startDockerd();
  if (!d) return;
  const dir = await freeTempDir("dg-fleet-");
  const gates: ServeProcess[] = [];
  try {
    const pki = join(dir, "pki");
    assert.equal((await runCli(["keygen", "--dir", pki])).code, 0);
    // Two Docker hosts of one fleet, one CA: here both on loopback, by IP and by name.
    for (const host of ["127.0.0.1", "localhost"]) {
      const r = await runCli(["keygen", "server", "--name", host, "--dir", pki]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, new RegExp(`servers/${host}/cert\\.pem`));
      gates.push(await startServe(["--target", d.host, "--certs", join(pki, "servers", host)]));
    }
    assert.equal((await runCli(["keygen", "client", "ci", "--dir", pki])).code, 0);
    const hostsFile = join(dir, "hosts");
    await Deno.writeTextFile(hostsFile, `# the fleet\nlocalhost:${gates[1].port}\n`);
    const printed = await runCli([
      "env",
      "ci",
      "--dir",
      pki,
      "--host",
      `127.0.0.1:${gates[0].port}`,
      "--hosts-file",
      hostsFile,
    ]);
    assert.equal(printed.code, 0, printed.stderr);
    const lines = printed.stdout.trim().split("\n");
    assert.match(
      lines[0],
      new RegExp(
        `^docker context create 127\\.0\\.0\\.1 --docker host=tcp://127\\.0\\.0\\.1:${
          gates[0].port
        },`,
      ),
    );
    assert.match(
      lines[1],
      new RegExp(
        `^docker context create localhost --docker host=tcp://localhost:${gates[1].port},`,
      ),
    );
    const env = {
      PATH: Deno.env.get("PATH")!,
      HOME: dir,
      DOCKER_CONFIG: join(dir, "docker-config"),
    };
    for (const line of lines.slice(0, 2)) {
      const r = await sh(line, env);
      assert.equal(r.code, 0, r.stderr);
    }
    for (const [i, context] of ["127.0.0.1", "localhost"].entries()) {
      const v = await sh(`docker --context ${context} version -f '{{.Server.APIVersion}}'`, env);
      assert.equal(v.code, 0, v.stderr);
      assert.equal(v.stdout, "1.41\n");
      await gates[i].waitForLog(/INFO accepted .*identity=ci /);
    }
  } finally {
    for (const g of gates) await g.stop();
    await d.stop();
    await rm(dir, { recursive: true, force: true });
  }
});
