/**
 * The one "which CA signed this?" rule (src/pki/verify.ts), on certificates and CRLs made by
 * `openssl ca` (not by our keygen), with namesake CAs (same subject, other key).
 */

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { signerOf } from "../src/pki/verify.ts";
import { parseCertificatePem } from "../src/pki/pem.ts";
import { parseCrlPem } from "../src/pki/crl.ts";
import { CLIENT_EXT, OpensslCa } from "./helpers/openssl_ca.ts";

Deno.test("signerOf: the CA whose name and key match, for certificates and CRLs alike", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dg-verify-" });
  try {
    const ca = OpensslCa.create(join(dir, "a"), { name: "shared name" });
    const namesake = OpensslCa.create(join(dir, "b"), { name: "shared name" });
    const stranger = OpensslCa.create(join(dir, "c"), { name: "another name" });
    const cas = [namesake, stranger, ca].map((c) => parseCertificatePem(c.cert));
    const leaf = parseCertificatePem(
      ca.issue("alice", { subject: "/CN=alice", extensions: CLIENT_EXT }).cert,
    );
    assert.equal(await signerOf(leaf, cas), cas[2]);
    assert.equal(await signerOf(leaf, cas), cas[2], "again, from the cache");
    assert.equal(await signerOf(leaf, cas.slice(0, 2)), undefined, "a namesake is not the signer");

    const crl = parseCrlPem(ca.crl(join(dir, "crl.pem")));
    assert.equal(await signerOf(crl, cas), cas[2]);
    const forged = parseCrlPem(namesake.crl(join(dir, "forged.pem")));
    assert.equal(await signerOf(forged, [cas[2]]), undefined, "a namesake's CRL is not ours");

    // A flipped bit in the signature: no signer, no exception.
    const pem = readFileSync(ca.certPath, "utf8");
    const der = parseCertificatePem(pem).rawData;
    const bytes = new Uint8Array(der.slice(0));
    bytes[bytes.length - 5] ^= 0x01;
    const { x509 } = await import("../src/pki/x509.ts");
    const broken = new x509.X509Certificate(bytes);
    assert.equal(await signerOf(broken, cas), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
