/**
 * The standalone binary: `scripts/build_bin.ts` builds it (once per run, into a temp dir), and
 * it runs `keygen`, `serve` and `connect` from a temp directory with no node_modules anywhere
 * above it and a PATH with neither `node` nor `deno` (an empty dir; a cleared environment).
 * The Docker CLI then works through it (dockerd harness).
 */
import assert from "node:assert/strict";
import { mkdir, readdir, readFile, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { dockerdUnavailable, startDockerd } from "./helpers/dockerd.ts";
import { type CliProcess, DENO, ROOT } from "./helpers/gate.ts";
import { REFUSAL_ANSWER } from "./helpers/tls_peers.ts";
import {
  assertDockerThroughGate,
  assertRelayAndRefusals,
  builtOnce,
  httpGet,
  ok,
  run,
} from "./helpers/packaged.ts";

// ------------------------------------------------------------------ the binary, built once

interface Fixture {
  /** Temp root (short path under /tmp). */
  tmp: string;
  /** The executable. */
  binary: string;
  /** The version it reports. */
  version: string;
  /** The binary's whole environment: PATH is an empty dir, HOME a temp dir. */
  env: Record<string, string>;
}

const builtBinary = builtOnce("dg-bin-", async (tmp): Promise<Fixture> => {
  const binary = join(tmp, "bin", "dockgate-linux-x64");
  const t0 = performance.now();
  const build = ok(
    await run(DENO, ["run", "-A", "scripts/build_bin.ts", "--out", binary], {
      cwd: ROOT,
      timeoutMs: 300_000,
    }),
    "build_bin.ts",
  );
  console.error(`binary built in ${Math.round(performance.now() - t0)} ms\n${build.stderr}`);
  const emptyPath = join(tmp, "empty-path");
  const home = join(tmp, "home");
  await mkdir(emptyPath);
  await mkdir(home);
  const deno = JSON.parse(await readFile(join(ROOT, "deno.json"), "utf8"));
  return { tmp, binary, version: deno.version, env: { PATH: emptyPath, HOME: home } };
});

/** A fresh work dir; asserts no node_modules in it or any directory above it. */
async function workDir(f: Fixture, name: string): Promise<string> {
  const dir = join(f.tmp, name);
  await mkdir(dir);
  for (let d = dir;; d = dirname(d)) {
    const nm = await stat(join(d, "node_modules")).catch(() => null);
    assert.equal(nm, null, `${d}/node_modules exists`);
    if (d === "/") break;
  }
  return dir;
}

// ------------------------------------------------------------------ tests

Deno.test("binary: keygen, serve and connect without node, deno or node_modules", async (t) => {
  const f = await builtBinary();
  const dir = await workDir(f, "work");
  const opts = { cwd: dir, env: f.env, clearEnv: true };

  await t.step("one executable; PATH holds no node or deno", async () => {
    const st = await stat(f.binary);
    assert.ok(st.mode & 0o100, "executable");
    assert.ok(st.size > 20e6, `size ${st.size}`);
    const head = new Uint8Array(4);
    const file = await Deno.open(f.binary);
    try {
      await file.read(head);
    } finally {
      file.close();
    }
    assert.deepEqual([...head], [0x7f, 0x45, 0x4c, 0x46], "ELF");
    assert.deepEqual(await readdir(f.env.PATH), []);
    assert.equal(
      ok(await run(f.binary, ["version"], opts), "version").stdout,
      `dockgate ${f.version}\n`,
    );
    const usage = await run(f.binary, ["bogus"], opts);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /^dockgate: /);
  });

  await t.step("keygen: PKI, a second client, a revocation", async () => {
    const k = ok(await run(f.binary, ["keygen", "--dir", "pki"], opts), "keygen");
    assert.match(k.stderr, /created pki\/server\/cert\.pem/);
    for (const key of ["ca/ca-key.pem", "server/key.pem", "clients/default/key.pem"]) {
      assert.equal((await stat(join(dir, "pki", key))).mode & 0o777, 0o600, key);
    }
    ok(await run(f.binary, ["keygen", "client", "bob", "--dir", "pki"], opts), "keygen client bob");
    const r = ok(await run(f.binary, ["keygen", "revoke", "bob", "--dir", "pki"], opts), "revoke");
    assert.match(r.stderr, /revoked 1 certificate\(s\) of client bob: serial [0-9a-f]+/);
    assert.match(
      await readFile(join(dir, "pki", "server", "crl.pem"), "utf8"),
      /^-----BEGIN X509 CRL-----/,
    );
  });

  await t.step("env --bundle on the CA host, use on a client (docs/client.md)", async () => {
    ok(
      await run(f.binary, [
        "env",
        "default",
        "--dir",
        "pki",
        "--bundle",
        "default.tar.gz",
        "--host",
        "gate.example:2376",
      ], opts),
      "env --bundle",
    );
    const home = await workDir(f, "client-home");
    const used = ok(
      await run(f.binary, ["use", join(dir, "default.tar.gz"), "--env"], {
        ...opts,
        env: { ...f.env, HOME: home },
      }),
      "use",
    );
    const installed = join(home, ".docker", "dockgate", "default");
    assert.match(used.stdout, /^export DOCKER_HOST=tcp:\/\/gate\.example:2376\n/);
    assert.ok(used.stdout.includes(`export DOCKER_CERT_PATH=${installed}\n`), used.stdout);
    assert.equal((await stat(join(installed, "key.pem"))).mode & 0o777, 0o600);
  });

  await t.step(
    "serve + connect relay over mutual TLS; anonymous and revoked peers refused",
    async () => {
      await assertRelayAndRefusals(f.binary, opts, "/through-the-binary", {
        ready: ({ serve }) => serve.waitForLog(/INFO policy: .* crl="1 revoked"/),
        async refuseMore({ serve, port }, caPem) {
          const bob = Deno.connectTls({
            hostname: "127.0.0.1",
            port,
            caCerts: [caPem],
            cert: await readFile(join(dir, "pki", "clients", "bob", "cert.pem"), "utf8"),
            key: await readFile(join(dir, "pki", "clients", "bob", "key.pem"), "utf8"),
          });
          // The gate's refusal answer alone: nothing from the target.
          const answer = await httpGet(bob, "/revoked");
          assert.match(answer, REFUSAL_ANSWER);
          assert.match(answer, /Dockgate-Refused: [^\r]*revoked/);
          await serve.waitForLog(
            /WARN refused peer=127\.0\.0\.1:\d+ identity=bob .*reason="[^"]*revoked/,
          );
        },
      });
    },
  );
});

Deno.test({
  name: "binary: the Docker CLI through the binary's serve and connect",
  ignore: dockerdUnavailable(),
}, async () => {
  const f = await builtBinary();
  const d = await startDockerd();
  assert.ok(d, "dockerd harness");
  const procs: CliProcess[] = [];
  try {
    const dir = await workDir(f, "docker");
    const opts = { cwd: dir, env: f.env, clearEnv: true };
    ok(await run(f.binary, ["keygen", "--dir", "pki"], opts), "keygen");
    const { pair, direct } = await assertDockerThroughGate(
      d,
      f.binary,
      opts,
      procs,
      "hello from the binary\n",
      ["images", "--format", "{{.Repository}}"],
    );
    assert.ok(direct.stdout.split("\n").includes(d.image.split(":")[0]), direct.stdout);
    assert.equal(await pair.connect.stop(), 0, pair.connect.log());
    assert.equal(await pair.serve.stop(), 0, pair.serve.log());
  } finally {
    for (const p of procs) await p.stop();
    await d.stop();
  }
});
