/**
 * `keygen crl` with the root key offline (the reason to have intermediates): it publishes the
 * intermediate's CRL again and says the root's stays as it is; it failed outright before,
 * trying to load the root key.
 */
import assert from "node:assert/strict";
import { rename } from "node:fs/promises";
import { join } from "node:path";
import { x509 } from "../src/pki/x509.ts";
import { runCli } from "./helpers/gate.ts";
import { keygenOk } from "./helpers/keygen_inproc.ts";
import { freeTempDir } from "./helpers/wait.ts";

Deno.test("keygen crl with the root key offline republishes the intermediate's CRL", async () => {
  const pki = join(await freeTempDir("dg-crl-"), "pki");
  for (
    const args of [[], ["intermediate", "team"], ["client", "carol", "--issuer", "team"], [
      "revoke",
      "carol",
    ]]
  ) {
    await keygenOk([...args, "--dir", pki]);
  }
  const crlPath = join(pki, "intermediates", "team", "crl.pem");
  const before = new x509.X509Crl(await Deno.readTextFile(crlPath));
  await rename(join(pki, "ca", "ca-key.pem"), join(pki, "..", "offline-root-key.pem"));
  const r = await runCli(["keygen", "crl", "--dir", pki]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr + r.stdout, /intermediate "team" listing 1 revoked/);
  assert.match(r.stderr + r.stdout, /the root: key offline/);
  const after = new x509.X509Crl(await Deno.readTextFile(crlPath));
  assert.ok(after.thisUpdate >= before.thisUpdate);
  const server = await Deno.readTextFile(join(pki, "server", "crl.pem"));
  assert.ok(server.includes(await Deno.readTextFile(crlPath)), "the server bundle got the new CRL");
});
