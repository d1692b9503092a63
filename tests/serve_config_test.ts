/**
 * Loading serve's configuration as one unit (src/config/serve_config.ts), with CRLs made by
 * `openssl ca`: a foreign signer, a malformed file, an expired nextUpdate (warn or refuse),
 * a rollback and a disappearance against the configuration in force.
 */

import assert from "node:assert/strict";
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { loadServeConfig, type ServeConfigSource } from "../src/config/serve_config.ts";
import { resolveBundlePaths } from "../src/pki/credentials.ts";
import { daysFromNow, OpensslCa, serverBundle } from "./helpers/openssl_ca.ts";
import { freeTempDir } from "./helpers/wait.ts";

async function withBundle(
  fn: (
    ctx: { dir: string; ca: OpensslCa; source: ServeConfigSource; crl: string },
  ) => Promise<void>,
) {
  const dir = await freeTempDir("dg-config-");
  try {
    const ca = OpensslCa.create(join(dir, "ca"));
    const server = serverBundle(ca, join(dir, "server"));
    const crl = join(server, "crl.pem");
    const source = {
      paths: resolveBundlePaths({ certs: server }),
      crls: [{ path: crl }],
      policy: { allowAny: true },
    };
    await fn({ dir, ca, source, crl });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

Deno.test("serve config: a CRL signed by another CA, or malformed, is refused naming the file", async () => {
  await withBundle(async ({ dir, crl, source }) => {
    const foreign = OpensslCa.create(join(dir, "foreign"), { name: "openssl test CA" });
    await writeFile(crl, foreign.crl(join(dir, "f.pem")));
    await assert.rejects(loadServeConfig(source), /crl\.pem": not signed by a CA in the CA bundle/);
    await writeFile(crl, "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n");
    await assert.rejects(loadServeConfig(source), /Cannot load CRL ".*crl\.pem": malformed CRL/);
  });
});

Deno.test("serve config: an expired CRL is a warning by default and an error with refuse", async () => {
  await withBundle(async ({ dir, ca, crl, source }) => {
    await writeFile(
      crl,
      ca.crl(join(dir, "old.pem"), { thisUpdate: daysFromNow(-9), nextUpdate: daysFromNow(-2) }),
    );
    const config = await loadServeConfig(source);
    assert.match(config.crlWarning ?? "", /crl\.pem": CRL expired \(nextUpdate /);
    assert.equal(config.revocations?.stale, "warn");
    await assert.rejects(
      loadServeConfig({ ...source, crlStale: "refuse" }),
      /--crl-stale is refuse/,
    );
  });
});

Deno.test("serve config: against the one in force, an older CRL and a vanished one are refused", async () => {
  await withBundle(async ({ dir, ca, crl, source }) => {
    const first = ca.crl(join(dir, "1.pem"));
    await writeFile(crl, ca.crl(join(dir, "2.pem")));
    const inForce = await loadServeConfig(source);
    await writeFile(crl, first);
    await assert.rejects(loadServeConfig(source, inForce), /lower than 2 in force/);
    assert.ok(await loadServeConfig(source), "the same file is a fine startup");
    await rm(crl);
    await assert.rejects(
      loadServeConfig({ ...source, crls: [{ path: crl, optional: true }] }, inForce),
      /was in force \(0 revoked\) and is now missing/,
    );
    const fresh = await loadServeConfig({ ...source, crls: [{ path: crl, optional: true }] });
    assert.equal(fresh.revocations, undefined, "without a record, no CRL at startup is allowed");
  });
});
