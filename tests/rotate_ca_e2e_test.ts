/**
 * `keygen rotate-ca` and `keygen retire-ca` with the real Docker CLI through `dockgate serve`
 * to a real dockerd: during the overlap, a client that kept its bundle from before the
 * rotation (trusting the old root only), a client of the new root and a client of an
 * intermediate all get in, and the old root's revocation stays in force; retire-ca refuses
 * while old certificates are unrenewed; after it, the old certificates are refused and the
 * renewed ones get in.
 */

import assert from "node:assert/strict";
import { cp, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { X509Certificate } from "node:crypto";
import { dockerdUnavailable, startDockerd } from "./helpers/dockerd.ts";
import { runCli, type ServeProcess, startServe, tlsFlags } from "./helpers/gate.ts";
import { freeTempDir, waitFor } from "./helpers/wait.ts";

async function keygen(...args: string[]) {
  const r = await runCli(["keygen", ...args]);
  assert.equal(r.code, 0, `keygen ${args.join(" ")}: ${r.stderr}`);
  return r;
}

function subjects(pem: string): string[] {
  return pem.split(/(?=-----BEGIN CERTIFICATE-----)/).filter((p) => p.includes("BEGIN"))
    .map((p) => new X509Certificate(p).subject.replace(/\n/g, ","));
}

async function doctorPasses(pki: string, when: string) {
  const r = await runCli(["doctor", "--pki", pki]);
  assert.equal(r.code, 0, `doctor ${when}:\n${r.stdout}${r.stderr}`);
}

Deno.test({
  name: "rotate-ca: both CAs' clients during the overlap, only renewed ones after retire-ca",
  ignore: dockerdUnavailable(),
  async fn() {
    const d = (await startDockerd())!;
    const tmp = await freeTempDir("dg-rotate-");
    const pki = join(tmp, "pki");
    let gate: ServeProcess | undefined;
    try {
      await keygen("--dir", pki);
      for (const name of ["alice", "bob", "mallory"]) await keygen("client", name, "--dir", pki);
      await keygen("intermediate", "team", "--dir", pki);
      await keygen("client", "carol", "--issuer", "team", "--dir", pki);
      await keygen("revoke", "mallory", "--dir", pki);
      // What alice's and carol's machines hold: the bundles from before the rotation.
      const oldAlice = join(tmp, "alice-machine");
      const oldCarol = join(tmp, "carol-machine");
      await cp(join(pki, "clients", "alice"), oldAlice, { recursive: true });
      await cp(join(pki, "clients", "carol"), oldCarol, { recursive: true });
      const oldMallory = join(tmp, "mallory-machine");
      await cp(join(pki, "clients", "mallory"), oldMallory, { recursive: true });
      // A revoked client's bundle is removed from the PKI (doctor says so).
      await rm(join(pki, "clients", "mallory"), { recursive: true });

      const rotated = await keygen("rotate-ca", "--dir", pki);
      assert.match(rotated.stdout + rotated.stderr, /retire-ca/);
      const serverChain = subjects(await readFile(join(pki, "server", "cert.pem"), "utf8"));
      assert.equal(serverChain.length, 2, `leaf + cross: ${serverChain}`);
      assert.equal(subjects(await readFile(join(pki, "server", "ca.pem"), "utf8")).length, 3);
      await keygen("client", "dave", "--dir", pki);
      await doctorPasses(pki, "during the overlap");

      const docker = (bundle: string) =>
        d.docker([...tlsFlags(bundle), "ps", "-q"], { host: gate!.host, timeoutMs: 60_000 });
      gate = await startServe(["--certs", join(pki, "server"), "--target", d.host]);
      for (
        const [who, bundle] of [["old alice", oldAlice], ["carol", oldCarol], [
          "dave",
          join(pki, "clients", "dave"),
        ]]
      ) {
        const r = await docker(bundle);
        assert.equal(r.code, 0, `${who} during the overlap: ${r.stderr}\n${gate.log()}`);
      }
      const m = await docker(oldMallory);
      assert.notEqual(m.code, 0, "the old root's revocation was dropped by the rotation");
      await gate.waitForLog(/refused .*identity=mallory .*revoked/);

      const early = await runCli(["keygen", "retire-ca", "--dir", pki]);
      assert.notEqual(early.code, 0, "retire-ca with unrenewed certificates");
      assert.match(early.stderr, /alice/);
      assert.match(early.stderr, /bob/);
      assert.doesNotMatch(early.stderr, /mallory|carol|dave/);
      assert.equal(early.stderr.trim().split("\n").length, 1, early.stderr);

      // A certificate of the old root is revoked by the old root during the overlap.
      assert.equal((await docker(join(pki, "clients", "bob"))).code, 0);
      await keygen("revoke", "bob", "--dir", pki);
      await waitFor(
        async () => (await docker(join(pki, "clients", "bob"))).code !== 0 || undefined,
        {
          timeoutMs: 30_000,
        },
      );
      for (const name of ["alice", "default"]) await keygen("renew", name, "--dir", pki);
      const retired = await keygen("retire-ca", "--dir", pki);
      assert.match(retired.stdout + retired.stderr, /retired root and no longer get in: bob/);
      await rm(join(pki, "clients", "bob"), { recursive: true });
      await gate.stop();
      gate = await startServe(["--certs", join(pki, "server"), "--target", d.host]);
      assert.equal(subjects(await readFile(join(pki, "server", "cert.pem"), "utf8")).length, 1);
      const stale = await docker(oldAlice);
      assert.notEqual(stale.code, 0, "a certificate of the retired root got in");
      for (const name of ["alice", "carol", "dave"]) {
        const r = await docker(join(pki, "clients", name));
        assert.equal(r.code, 0, `${name} after retire-ca: ${r.stderr}\n${gate.log()}`);
      }
      await doctorPasses(pki, "after retire-ca");
    } finally {
      await gate?.stop();
      await d.stop();
    }
  },
});
