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
