/**
 * `dockgate keygen intermediate NAME` and `--issuer NAME`: a root that can go offline, an
 * intermediate that issues and revokes on its own, bundles in step-ca's shape (leaf +
 * intermediate in cert.pem), checked by `openssl verify` (not by our code) and through serve.
 */

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFile, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { freeTempDir } from "./helpers/wait.ts";
import { runCli, startServe } from "./helpers/gate.ts";
import { keygenOk } from "./helpers/keygen_inproc.ts";
import { assertAccepted, assertRefused, type Env } from "./helpers/gate_env.ts";
import { bundleCreds, RecordingTarget, waitForLine } from "./helpers/tls_peers.ts";

const certCount = (pem: string) => pem.match(/-----BEGIN CERTIFICATE-----/g)?.length ?? 0;

Deno.test("keygen intermediate: issue with the root offline, revoke with the intermediate, serve enforces both", async () => {
  const dir = await freeTempDir("dg-int-");
  const target = new RecordingTarget(join(dir, "t.sock"));
  await target.start();
  try {
    const pki = join(dir, "pki");
    const ok = async (args: string[]) => {
      const r = await runCli([...args, "--dir", pki]);
      assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
      return r;
    };
    await keygenOk(["--dir", pki]);
    const made = await ok(["keygen", "intermediate", "team"]);
    assert.match(made.stderr, /the root key .* may now go offline/);
    const key = join(pki, "intermediates", "team", "ca-key.pem");
    assert.equal((await stat(key)).mode & 0o777, 0o600);
    const again = await runCli(["keygen", "intermediate", "team", "--dir", pki]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /Intermediate "team" already exists .*--force/);
    // Every server bundle now trusts the intermediate too (to verify its CRL).
    assert.equal(certCount(await readFile(join(pki, "server", "ca.pem"), "utf8")), 2);

    // The root key goes offline; the intermediate issues.
    const rootKey = join(pki, "ca", "ca-key.pem");
    await rename(rootKey, join(dir, "offline-root-key.pem"));
    await ok(["keygen", "client", "alice", "--issuer", "team"]);
    await ok(["keygen", "client", "bob", "--issuer", "team"]);
    const noRoot = await runCli(["keygen", "client", "carol", "--dir", pki]);
    assert.notEqual(noRoot.code, 0, "the root cannot issue while offline");
    const alice = join(pki, "clients", "alice");
    assert.equal(
      certCount(await readFile(join(alice, "cert.pem"), "utf8")),
      2,
      "leaf + intermediate",
    );
    assert.equal(
      certCount(await readFile(join(alice, "ca.pem"), "utf8")),
      1,
      "clients trust the root",
    );
    // OpenSSL agrees the chain is sound.
    const verified = execFileSync("openssl", [
      "verify",
      "-CAfile",
      join(pki, "ca", "ca.pem"),
      "-untrusted",
      join(pki, "intermediates", "team", "ca.pem"),
      "-purpose",
      "sslclient",
      join(alice, "cert.pem"),
    ], { encoding: "utf8" });
    assert.match(verified, /: OK/);

    const env = { dir, target, pki, caPem: "" } as unknown as Env;
    const gate = await startServe([
      "--certs",
      join(pki, "server"),
      "--target",
      `unix://${target.path}`,
    ]);
    try {
      await assertAccepted(gate, await bundleCreds(pki, "alice"), "alice");
      await assertAccepted(gate, await bundleCreds(pki, "bob"), "bob");
      // Revoking needs the intermediate's key only.
      const m = gate.log().length;
      const revoked = await ok(["keygen", "revoke", "bob"]);
      assert.match(revoked.stderr, /intermediates\/team\/crl\.pem/);
      await waitForLine(gate, m, /INFO reloaded .*revoked=1/, 10_000);
      await assertRefused(
        env,
        gate,
        await bundleCreds(pki, "bob"),
        /certificate serial [0-9a-f]+ is revoked/,
      );
      await assertAccepted(gate, await bundleCreds(pki, "alice"), "alice");
    } finally {
      await gate.stop();
    }
    // The server's crl.pem holds the root's CRL and team's.
    const crl = await readFile(join(pki, "server", "crl.pem"), "utf8");
    assert.equal(crl.match(/-----BEGIN X509 CRL-----/g)?.length, 2);
    // Renewing and re-issuing stay with the intermediate (the root key is still offline).
    await ok(["keygen", "renew", "alice"]);
    const renewed = await readFile(join(alice, "cert.pem"), "utf8");
    assert.equal(certCount(renewed), 2);
    assert.match(
      execFileSync("openssl", ["x509", "-noout", "-issuer"], { input: renewed, encoding: "utf8" }),
      /CN ?= ?team/,
    );
    const reissued = await ok([
      "keygen",
      "client",
      "alice",
      "--issuer",
      "team",
      "--force",
      "--revoke-old",
    ]);
    assert.match(reissued.stderr, /Revoked the 2 earlier certificate\(s\) of "alice"/);
    // doctor checks the bundle's chain as the gate does.
    const doctor = await runCli(["doctor", "--certs", alice]);
    assert.match(
      doctor.stdout + doctor.stderr,
      /PASS .*alice.*certificate signed by the CA in ca\.pem|PASS .*certificate signed by the CA in ca\.pem .*team/,
    );
  } finally {
    await target.stop();
    await rm(dir, { recursive: true, force: true });
  }
});

Deno.test("keygen intermediate: usage errors are one line", async () => {
  const dir = await freeTempDir("dg-int-usage-");
  try {
    const none = await runCli([
      "keygen",
      "client",
      "a",
      "--issuer",
      "nope",
      "--dir",
      join(dir, "p"),
    ]);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /^dockgate: error: No CA in /m);
    await keygenOk(["--dir", join(dir, "p")]);
    const missing = await runCli([
      "keygen",
      "client",
      "a",
      "--issuer",
      "nope",
      "--dir",
      join(dir, "p"),
    ]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /No intermediate "nope" .*keygen intermediate nope/);
    const flag = await runCli(["keygen", "revoke", "a", "--issuer", "x"]);
    assert.equal(flag.code, 2);
    assert.match(flag.stderr, /--issuer does not apply to "keygen revoke"/);
    const bad = await runCli(["keygen", "intermediate", "../evil", "--dir", join(dir, "p")]);
    assert.notEqual(bad.code, 0);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
