/**
 * `dockgate use NAME.tar.gz` on a client machine, end to end: two temp directories stand for
 * the two machines (the CA host's PKI, the client's HOME), the archive is made by `env --bundle
 * --host` on the CA host, and after `use` on the client the real Docker CLI reaches a real
 * dockerd through a real `dockgate serve` with `docker --context alice` (judged by the volume
 * dockerd stored). Archives made with `tar` and `openssl` directly (never with our code) are
 * each refused with one line, exit 1, and nothing written in the client's HOME.
 */
import assert from "node:assert/strict";
import { mkdir, readdir, rm, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { runCli, type ServeProcess, startServe } from "./helpers/gate.ts";
import { dockerdUnavailable, startDockerd } from "./helpers/dockerd.ts";
import { CLIENT_EXT, OpensslCa } from "./helpers/openssl_ca.ts";
import { freeTempDir } from "./helpers/wait.ts";

/** The client's environment: its own HOME, Deno's cache kept outside it (it is not ours). */
function clientEnv(home: string): Record<string, string> {
  const denoDir = Deno.env.get("DENO_DIR") ??
    join(Deno.env.get("HOME") ?? "/root", ".cache", "deno");
  return { HOME: home, DOCKER_CONFIG: "", DENO_DIR: denoDir };
}

async function sh(script: string, env: Record<string, string>) {
  const out = await new Deno.Command("bash", {
    args: ["-c", script],
    env: { PATH: Deno.env.get("PATH")!, ...env },
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

/** A staging directory `alice/` with the given files (text, or a symlink target). */
async function stage(
  root: string,
  files: Record<string, string | { link: string }>,
): Promise<string> {
  await mkdir(join(root, "alice"), { recursive: true });
  for (const [name, body] of Object.entries(files)) {
    const path = join(root, "alice", name);
    if (typeof body === "string") await writeFile(path, body, { mode: 0o600 });
    else await symlink(body.link, path);
  }
  return root;
}

Deno.test({
  name: "use: a bundle archive sets up the client's Docker context; bad archives write nothing",
  ignore: dockerdUnavailable(),
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const d = await startDockerd();
  if (!d) return;
  const work = await freeTempDir("dg-use-");
  const caHost = join(work, "ca-host");
  const home = join(work, "client-home");
  await mkdir(caHost);
  await mkdir(home);
  let gate: ServeProcess | undefined;
  try {
    // --- the CA host: PKI, gate, and the archive that records the gate's address
    const pki = join(caHost, "pki");
    assert.equal((await runCli(["keygen", "--dir", pki])).code, 0);
    assert.equal((await runCli(["keygen", "client", "alice", "--dir", pki])).code, 0);
    gate = await startServe(["--target", d.host, "--certs", join(pki, "server")]);
    const archive = join(work, "alice.tar.gz");
    const packed = await runCli([
      "env",
      "alice",
      "--dir",
      pki,
      "--bundle",
      archive,
      "--host",
      `127.0.0.1:${gate.port}`,
    ]);
    assert.equal(packed.code, 0, packed.stderr);
    assert.match(packed.stderr, /then "dockgate use alice\.tar\.gz" there/);

    // --- bad archives, made with tar and openssl only
    const bundle = join(pki, "clients", "alice");
    const read = (f: string) => Deno.readTextFile(join(bundle, f));
    const good = { "ca.pem": await read("ca.pem"), "cert.pem": await read("cert.pem") };
    const key = await read("key.pem");
    const other = OpensslCa.create(join(work, "other-ca"), { name: "dockgate CA" });
    const foreign = other.issue("alice", { subject: "/CN=alice", extensions: CLIENT_EXT });
    const strayKey =
      (await sh("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256", {}))
        .stdout;
    const bad: Record<string, { make: (dir: string) => Promise<string>; why: RegExp }> = {
      "a ../x entry": {
        make: async (dir) => {
          await stage(join(dir, "s"), { ...good, "key.pem": key });
          await writeFile(join(dir, "x"), "outside\n");
          return `tar -czPf ${dir}/a.tgz -C ${dir}/s alice/ca.pem alice/cert.pem alice/key.pem ../x`;
        },
        why: /unexpected entry "\.\.\/x"/,
      },
      "a symlink": {
        make: async (dir) => {
          await stage(join(dir, "s"), { ...good, "key.pem": { link: "/etc/passwd" } });
          return `tar -czf ${dir}/a.tgz -C ${dir}/s alice`;
        },
        why: /unexpected entry "alice\/key\.pem" \(a symlink\)/,
      },
      "an extra file": {
        make: async (dir) => {
          await stage(join(dir, "s"), { ...good, "key.pem": key, "run.sh": "echo hi\n" });
          return `tar -czf ${dir}/a.tgz -C ${dir}/s alice`;
        },
        why: /unexpected entry "alice\/run\.sh" \(not one of/,
      },
      "a key of another certificate": {
        make: async (dir) => {
          await stage(join(dir, "s"), { ...good, "key.pem": strayKey });
          return `tar -czf ${dir}/a.tgz -C ${dir}/s alice`;
        },
        why: /alice\/key\.pem does not match alice\/cert\.pem/,
      },
      "a certificate from another CA": {
        make: async (dir) => {
          await stage(join(dir, "s"), {
            "ca.pem": good["ca.pem"],
            "cert.pem": foreign.cert,
            "key.pem": foreign.key,
          });
          return `tar -czf ${dir}/a.tgz -C ${dir}/s alice`;
        },
        why: /alice\/cert\.pem does not chain to ca\.pem/,
      },
    };
    for (const [what, { make, why }] of Object.entries(bad)) {
      const dir = join(work, what.replace(/[^a-z]+/g, "-"));
      await mkdir(dir);
      const made = await sh(await make(dir), {});
      assert.equal(made.code, 0, `${what}: ${made.stderr}`);
      const listed = await sh(`tar -tvzf ${dir}/a.tgz`, {});
      assert.equal(listed.code, 0, listed.stderr);
      const r = await runCli(["use", join(dir, "a.tgz")], { env: clientEnv(home) });
      assert.equal(r.code, 1, `${what}: ${r.stderr}`);
      assert.match(r.stderr, /^dockgate: error: Refusing ".*a\.tgz": .*; nothing was written\n$/);
      assert.match(r.stderr, why, what);
      assert.deepEqual(await readdir(home), [], `${what}: nothing written in the client's HOME`);
    }

    // --- the client: one command, then the Docker CLI works through the gate
    const used = await runCli(["use", archive], { env: clientEnv(home) });
    assert.equal(used.code, 0, used.stderr);
    const installed = join(home, ".docker", "dockgate", "alice");
    assert.equal((await Deno.stat(join(installed, "key.pem"))).mode! & 0o777, 0o600);
    assert.equal((await Deno.stat(installed)).mode! & 0o777, 0o700);
    const docker = (args: string) => sh(`docker ${args}`, { HOME: home });
    const ps = await docker("--context alice ps");
    assert.equal(ps.code, 0, ps.stderr);
    assert.match(ps.stdout, /^CONTAINER ID/);
    const made = await docker("--context alice volume create dg-use-e2e");
    assert.equal(made.code, 0, made.stderr);
    const stored = await d.docker(["volume", "inspect", "-f", "{{.Name}}", "dg-use-e2e"]);
    assert.equal(stored.stdout.trim(), "dg-use-e2e", "dockerd stored the volume");
    await d.docker(["volume", "rm", "dg-use-e2e"]);

    // --- a second use never replaces the key silently; --force does
    const again = await runCli(["use", archive], { env: clientEnv(home) });
    assert.equal(again.code, 1);
    assert.match(again.stderr, /^dockgate: error: ".*alice" already holds a bundle .*--force.*\n$/);
    const forced = await runCli(["use", archive, "--force"], { env: clientEnv(home) });
    assert.equal(forced.code, 0, forced.stderr);
    assert.equal((await docker("--context alice ps")).code, 0);
  } finally {
    await gate?.stop();
    await d.stop();
    await rm(work, { recursive: true, force: true });
  }
});

Deno.test("use: an archive without the gate's address says how to give it", async () => {
  const work = await freeTempDir("dg-use-nohost-");
  try {
    const pki = join(work, "pki");
    assert.equal((await runCli(["keygen", "--dir", pki])).code, 0);
    assert.equal((await runCli(["keygen", "client", "alice", "--dir", pki])).code, 0);
    const archive = join(work, "alice.tar.gz");
    assert.equal((await runCli(["env", "alice", "--dir", pki, "--bundle", archive])).code, 0);
    const home = join(work, "home");
    await mkdir(home);
    const r = await runCli(["use", archive, "--env"], { env: clientEnv(home) });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /does not record the gate's address: give --host HOST:PORT/);
    assert.deepEqual(await readdir(home), []);
    const ok = await runCli(["use", archive, "--env", "--host", "gate.lan"], {
      env: clientEnv(home),
    });
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^export DOCKER_HOST=tcp:\/\/gate\.lan:2376\n/);
    const connect = await runCli(["use", archive, "--connect", "--host", "gate.lan", "--force"], {
      env: clientEnv(home),
    });
    assert.equal(connect.code, 0, connect.stderr);
    assert.match(connect.stdout, /^dockgate connect --server gate\.lan:2376 --certs \S+\/alice\n$/);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});
