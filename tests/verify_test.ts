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
import { x509 } from "../src/pki/x509.ts";

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
    const broken = new x509.X509Certificate(bytes);
    assert.equal(await signerOf(broken, cas), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("signerOf's cache: a CA of the same DER is served from it; another certificate or CA is checked", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dg-verify-" });
  try {
    const ca = OpensslCa.create(join(dir, "a"), { name: "shared name" });
    const namesake = OpensslCa.create(join(dir, "b"), { name: "shared name" });
    // Each CA object parsed afresh, counting the reads of its key: a signature check needs
    // the key (imported once per object), the cache only the certificate's bytes.
    let keyReads = 0;
    const caObject = (pem: string) => {
      const cert = parseCertificatePem(pem);
      const key = cert.publicKey;
      Object.defineProperty(cert, "publicKey", { get: () => (keyReads++, key) });
      return cert;
    };
    const issue = (c: OpensslCa, name: string) =>
      parseCertificatePem(c.issue(name, { subject: `/CN=${name}`, extensions: CLIENT_EXT }).cert);
    const inBundle = caObject(ca.cert); // what the access decision checked the leaf against
    const leaf = issue(ca, "alice");
    assert.equal(await signerOf(leaf, [inBundle]), inBundle);
    assert.equal(keyReads, 1);
    const fromFiles = caObject(ca.cert); // the issuer, read again: another object, same DER
    assert.equal(await signerOf(leaf, [fromFiles]), fromFiles, "the same DER: the same CA");
    assert.equal(keyReads, 1, "served from the cache");

    // A changed issuer (same name, another key) is checked, and refused.
    assert.equal(await signerOf(leaf, [caObject(namesake.cert)]), undefined);
    assert.equal(keyReads, 2);
    // Another certificate is checked: the namesake's leaf is not ours, ours is.
    assert.equal(await signerOf(issue(namesake, "mallory"), [caObject(ca.cert)]), undefined);
    assert.equal(keyReads, 3);
    const ours = caObject(ca.cert);
    assert.equal(await signerOf(issue(ca, "bob"), [ours]), ours);
    assert.equal(keyReads, 4);
    // The same certificate parsed again is another object: checked again.
    const again = new x509.X509Certificate(leaf.rawData);
    const fresh = caObject(ca.cert);
    assert.equal(await signerOf(again, [fresh]), fresh);
    assert.equal(keyReads, 5);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
