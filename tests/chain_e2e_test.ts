/**
 * Chains and per-issuer CRLs through `dockgate serve`, on Deno and on Node, with a PKI made
 * by `openssl ca` (root -> intermediates -> leaves): the chain sent by the client or found in
 * the bundle, a leaf revoked by its intermediate's CRL, an intermediate revoked by the root's
 * CRL, serial numbers that collide across issuers, a leaf under a foreign intermediate, CRLs
 * as DER and PEM in a directory, and a server certificate under an intermediate.
 */

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { freeTempDir } from "./helpers/wait.ts";
import { runCli, type Runtime, startServe } from "./helpers/gate.ts";
import { assertAccepted, assertRefused, type Env } from "./helpers/gate_env.ts";
import { RecordingTarget } from "./helpers/tls_peers.ts";
import { CLIENT_EXT, OpensslCa, SERVER_EXT } from "./helpers/openssl_ca.ts";

interface Fleet {
  dir: string;
  root: OpensslCa;
  team: OpensslCa;
  other: OpensslCa;
  target: RecordingTarget;
  env: Env;
  /** A client of `ca`: its chain (`chain`, default `[ca]` unless `ca` is the root) sent after the leaf. */
  client(ca: OpensslCa, name: string, chain?: OpensslCa[]): {
    ca: string;
    cert: string;
    key: string;
    certPath: string;
  };
}

async function withFleet(fn: (f: Fleet) => Promise<void>) {
  const dir = await freeTempDir("dg-chain-e2e-");
  const target = new RecordingTarget(join(dir, "target.sock"));
  await target.start();
  try {
    const root = OpensslCa.create(join(dir, "root"), { name: "fleet root" });
    const team = root.intermediate(join(dir, "team"), { name: "team intermediate" });
    const other = root.intermediate(join(dir, "other"), { name: "other intermediate" });
    const env = { dir, target, pki: "", caPem: root.cert } as unknown as Env;
    await fn({
      dir,
      root,
      team,
      other,
      target,
      env,
      client(ca, name, chain = ca === root ? [] : [ca]) {
        const c = ca.issue(name, { subject: `/CN=${name}`, extensions: CLIENT_EXT });
        return {
          ca: root.cert,
          cert: c.cert + chain.map((x) => x.cert).join(""),
          key: c.key,
          certPath: c.certPath,
        };
      },
    });
  } finally {
    await target.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** A server bundle: its certificate from `issuer` (chain appended), `trust` as ca.pem. */
async function serverDir(dir: string, issuer: OpensslCa, chain: OpensslCa[], trust: string) {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const s = issuer.issue("server", { subject: "/CN=localhost", extensions: SERVER_EXT });
  await writeFile(join(dir, "cert.pem"), s.cert + chain.map((c) => c.cert).join(""));
  await writeFile(join(dir, "key.pem"), s.key, { mode: 0o600 });
  await writeFile(join(dir, "ca.pem"), trust);
  return dir;
}

for (const runtime of ["deno", "node"] as Runtime[]) {
  Deno.test(`chains through serve (${runtime}): sent or bundled intermediates, per-issuer CRLs, foreign intermediates`, async () => {
    await withFleet(async ({ dir, root, team, other, target, env, client }) => {
      // Serials collide across issuers (both CAs count from 1000): root issued team (1000),
      // other (1001) and dave (1002); team issues alice (1000), erin (1001) and bob (1002).
      // Root revokes 1001 (other), team revokes 1002 (bob): erin and dave pass only if each
      // CRL is applied to its own CA's certificates.
      const dave = client(root, "dave");
      const alice = client(team, "alice");
      const erin = client(team, "erin");
      const bob = client(team, "bob");
      const carol = client(other, "carol");
      const leafOnly = { ...alice, cert: alice.cert.split(/(?<=-----END CERTIFICATE-----\n)/)[0] };
      team.revoke(bob.certPath);
      root.revoke(other.certPath); // the whole "other" intermediate
      // The CRLs as other CAs publish them: one directory, the root's as DER, team's as PEM.
      const crls = join(dir, "crls");
      await mkdir(crls, { recursive: true, mode: 0o755 });
      root.crl(join(dir, "root-crl.pem"));
      execFileSync("openssl", [
        "crl",
        "-in",
        join(dir, "root-crl.pem"),
        "-outform",
        "DER",
        "-out",
        join(crls, "root.crl"),
      ]);
      await writeFile(join(crls, "team.pem"), team.crl(join(dir, "team-crl.pem")));
      // The server's certificate is under team too, its chain in its cert.pem; team is in
      // ca.pem so that its CRL can be verified.
      const server = await serverDir(join(dir, "server"), team, [team], root.cert + team.cert);
      const gate = await startServe(
        ["--certs", server, "--crl", crls, "--target", `unix://${target.path}`],
        { runtime },
      );
      try {
        await gate.waitForLog(/crl="2 revoked" crl_cas=2/);
        await assertAccepted(gate, alice, "alice");
        await assertAccepted(gate, leafOnly, "alice");
        await assertAccepted(gate, dave, "dave");
        await assertAccepted(gate, erin, "erin");
        await assertRefused(env, gate, bob, /certificate serial 1002 is revoked/);
        await assertRefused(
          env,
          gate,
          carol,
          /intermediate CA \(CN=other intermediate\) serial [0-9a-f]+ is revoked/,
        );
        // A namesake of team under a root we do not trust.
        const elsewhere = OpensslCa.create(join(dir, "elsewhere"), { name: "fleet root" });
        const foreign = elsewhere.intermediate(join(dir, "foreign"), { name: "team intermediate" });
        const mallory = client(foreign, "mallory", [foreign, elsewhere]);
        await assertRefused(
          env,
          gate,
          mallory,
          /not verified|does not chain|not signed by a trusted CA/,
        );
      } finally {
        await gate.stop();
      }
      // ca.pem with the root alone (as step-ca and Vault set it up): the chain must come from
      // the client.
      const rooted = await serverDir(join(dir, "rooted"), root, [], root.cert);
      const second = await startServe(
        ["--certs", rooted, "--target", `unix://${target.path}`],
        { runtime },
      );
      try {
        await assertAccepted(second, alice, "alice");
        await assertRefused(env, second, leafOnly, /not verified|not signed by a trusted CA/);
      } finally {
        await second.stop();
      }
    });
  });
}

Deno.test("chains through serve: only the bundle's roots are anchors, an intermediate's CRL needs the intermediate", async () => {
  await withFleet(async ({ dir, root, team, target }) => {
    // ca.pem holding only an intermediate trusts nobody: said at load.
    const lonely = await serverDir(join(dir, "lonely"), root, [], team.cert);
    const a = await runCli([
      "serve",
      "--listen",
      "127.0.0.1:0",
      "--certs",
      lonely,
      "--target",
      `unix://${target.path}`,
    ]);
    assert.equal(a.code, 1, a.stderr);
    assert.match(a.stderr, /an intermediate CA that does not chain to a root in the bundle/);
    // team's CRL with only the root in ca.pem: which CA signed it cannot be checked.
    const rootOnly = await serverDir(join(dir, "root-only"), root, [], root.cert);
    const crl = join(dir, "team-crl.pem");
    team.crl(crl);
    const b = await runCli([
      "serve",
      "--listen",
      "127.0.0.1:0",
      "--certs",
      rootOnly,
      "--crl",
      crl,
      "--target",
      `unix://${target.path}`,
    ]);
    assert.equal(b.code, 1, b.stderr);
    assert.match(
      b.stderr,
      /not signed by a CA in the CA bundle .*needs the intermediate in ca\.pem/,
    );
  });
});
