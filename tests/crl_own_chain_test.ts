/**
 * The layout step-ca and Vault hand a server: `cert.pem` = leaf + intermediate, the CA file =
 * the root alone, and the intermediate's CRL. The intermediate is in the gate's own chain, so
 * it counts for verifying that CRL (never as a trust anchor): serve starts, the revoked
 * client is refused, the other one served. Made with openssl, not our keygen.
 */
import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { runCli, startServe } from "./helpers/gate.ts";
import { CLIENT_EXT, OpensslCa, SERVER_EXT } from "./helpers/openssl_ca.ts";
import { RecordingTarget, tlsAttempt, waitForLine } from "./helpers/tls_peers.ts";
import { freeTempDir } from "./helpers/wait.ts";

/** Root → intermediate; the server's bundle as step-ca writes it; alice and bob (revoked). */
async function stepCaLayout(dir: string) {
  const root = OpensslCa.create(join(dir, "root"), { name: "Smallstep-like Root CA" });
  const inter = root.intermediate(join(dir, "inter"), { name: "Smallstep-like Intermediate" });
  const server = inter.issue("server", { subject: "/CN=localhost", extensions: SERVER_EXT });
  const certs = join(dir, "server");
  await mkdir(certs, { mode: 0o700 });
  await writeFile(join(certs, "cert.pem"), server.cert + inter.cert);
  await writeFile(join(certs, "key.pem"), server.key, { mode: 0o600 });
  await writeFile(join(certs, "ca.pem"), root.cert);
  const client = (cn: string) => {
    const c = inter.issue(cn, { subject: `/CN=${cn}`, extensions: CLIENT_EXT });
    // A step-ca client presents its leaf and the intermediate.
    return { issued: c, creds: { ca: root.cert, cert: c.cert + inter.cert, key: c.key } };
  };
  const alice = client("alice");
  const bob = client("bob");
  inter.revoke(bob.issued.certPath);
  const crl = join(dir, "intermediate.crl");
  inter.crl(crl);
  return { certs, crl, alice: alice.creds, bob: bob.creds };
}

Deno.test({
  name: "an intermediate of the gate's own chain verifies its CRL (step-ca's layout)",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await freeTempDir();
    const pki = await stepCaLayout(dir);
    const target = new RecordingTarget(join(dir, "target.sock"));
    await target.start();
    const gate = await startServe([
      "--certs",
      pki.certs,
      "--crl",
      pki.crl,
      "--target",
      `unix://${target.path}`,
    ]);
    try {
      assert.match(gate.log(), /crl=/);
      const ok = await tlsAttempt(gate.port, pki.alice, "payload\n");
      assert.equal(ok.data, "payload\n", `alice should be served: ${gate.log()}`);
      const conns = target.connections;
      const mark = gate.log().length;
      const bob = await tlsAttempt(gate.port, pki.bob, "payload\n");
      assert.notEqual(bob.data, "payload\n", "a client the intermediate revoked was served");
      await waitForLine(gate, mark, /WARN refused .*is revoked/);
      assert.equal(target.connections, conns, "the revoked client reached the target");
    } finally {
      await gate.stop();
      await target.stop();
    }
  },
});

Deno.test("the gate's own chain never makes its intermediate a trust anchor", async () => {
  // cert.pem carries the intermediate, ca.pem another root: the intermediate must not let
  // its clients in (it does not chain to the bundle), and its CRL is not a CA's of ours.
  const dir = await freeTempDir();
  const pki = await stepCaLayout(dir);
  const other = OpensslCa.create(join(dir, "other"), { name: "another root" });
  await writeFile(join(pki.certs, "ca.pem"), other.cert);
  const r = await runCli(
    ["serve", "--certs", pki.certs, "--crl", pki.crl, "--listen", "127.0.0.1:0"],
    { timeoutMs: 30_000 },
  );
  assert.notEqual(r.code, 0, "serve started with a server chain outside its CA bundle");
  assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
});
