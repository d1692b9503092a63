/**
 * A failed handshake is logged with one short reason on both runtimes: on Node, OpenSSL's
 * whole string (codes, library, function, the source file path) was logged as it came.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { withEnv } from "./helpers/gate_env.ts";
import { OpensslCa } from "./helpers/openssl_ca.ts";
import { tlsAttempt, waitForLine } from "./helpers/tls_peers.ts";
import { CLIENT_EXT } from "./helpers/openssl_ca.ts";
import { createCa, issueClient } from "../src/ca/issue.ts";
import { parseCertificatePem } from "../src/pki/pem.ts";
import { refusedChainReason } from "../src/net/tls_reason.ts";

for (const runtime of ["node", "deno"] as const) {
  Deno.test(`a client that does not trust the gate: one short reason (${runtime})`, async () => {
    await withEnv(async (env) => {
      const gate = await env.serve([], runtime);
      const foreign = OpensslCa.create(join(env.dir, "foreign"), { name: "foreign CA" });
      const mallory = foreign.issue("mallory", { subject: "/CN=mallory", extensions: CLIENT_EXT });
      const mark = gate.log().length;
      // It trusts another CA only, so it aborts the handshake with an "unknown ca" alert.
      const out = await tlsAttempt(gate.port, {
        ca: foreign.cert,
        cert: mallory.cert,
        key: mallory.key,
      }, "hello\n");
      assert.equal(out.data, "");
      const line = await waitForLine(gate, mark, /WARN refused /);
      const reason = /reason="([^"]*)"/.exec(line)?.[1] ?? line;
      assert.doesNotMatch(reason, /\.c:\d+|error:[0-9A-F]{8}|SSL routines/, line);
      assert.ok(reason.length < 120, `a long reason: ${reason}`);
    });
  });
}

Deno.test("refusedChainReason: our CA's expired or future certificate by its date, never a foreign one", async () => {
  const DAY = 86_400_000;
  const ca = await createCa();
  const cas = [parseCertificatePem(ca.certPem)];
  const der = (pem: string) => new Uint8Array(parseCertificatePem(pem).rawData);
  const old = await issueClient(ca, "old", {
    notBefore: new Date(Date.now() - 10 * DAY),
    notAfter: new Date(Date.now() - DAY),
  });
  const end = parseCertificatePem(old.certPem).notAfter.toISOString();
  const deno = "UNABLE_TO_VERIFY_LEAF_SIGNATURE";
  assert.equal(
    await refusedChainReason(deno, [der(old.certPem)], cas),
    `certificate expired ${end}`,
  );
  const future = await issueClient(ca, "future", {
    notBefore: new Date(Date.now() + DAY),
    notAfter: new Date(Date.now() + 10 * DAY),
  });
  assert.match(
    await refusedChainReason(deno, [der(future.certPem)], cas),
    /^certificate not valid before \d{4}-/,
  );
  const other = await createCa({ commonName: "dockgate CA" });
  const foreign = await issueClient(other, "old", {
    notBefore: new Date(Date.now() - 10 * DAY),
    notAfter: new Date(Date.now() - DAY),
  });
  assert.equal(
    await refusedChainReason(deno, [der(foreign.certPem)], cas),
    `certificate not verified: ${deno}`,
  );
  // A self-signed "CA" sent along with the leaf never becomes an anchor.
  assert.equal(
    await refusedChainReason(deno, [der(foreign.certPem), der(other.certPem)], cas),
    `certificate not verified: ${deno}`,
  );
  assert.equal(
    await refusedChainReason("CERT_HAS_EXPIRED", [], cas),
    "certificate not verified: CERT_HAS_EXPIRED",
  );
  assert.equal(
    await refusedChainReason(deno, [new Uint8Array([1, 2, 3])], cas),
    `certificate not verified: ${deno}`,
  );
});
