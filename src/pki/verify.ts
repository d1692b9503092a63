/**
 * The one rule for "which of our CAs signed this?", for client certificates (every
 * connection), CRLs (every load) and our own certificates (startup): the issuer name equals
 * the CA's subject name byte for byte (DER), and the signature verifies with the CA's key.
 * Why bytes: two names that print alike (`CN=a,O=b` with other string types or spacing) are
 * different names to a TLS stack; comparing printed strings would match a name the runtime
 * did not. This is security code: one rule, tested once (tests/verify_test.ts), used
 * everywhere.
 *
 * @module
 */

import type { x509 } from "./x509.ts";

/** Something a CA signs: a certificate or a CRL. */
export type Signed = x509.X509Certificate | x509.X509Crl;

/**
 * The CA among `cas` that signed `signed`, or `undefined`. Never throws: a malformed
 * signature or an algorithm mismatch means "not this CA".
 *
 * @example
 * ```ts
 * import { createCa, issueClient } from "./pki.ts";
 * import { parseCertificatePem } from "./pem.ts";
 * import { signerOf } from "./verify.ts";
 * const ca = await createCa();
 * const other = await createCa(); // the same subject, "CN=dockgate CA", another key
 * const alice = parseCertificatePem((await issueClient(ca, "alice")).certPem);
 * const cas = [parseCertificatePem(other.certPem), parseCertificatePem(ca.certPem)];
 * if ((await signerOf(alice, cas)) !== cas[1]) throw new Error("the right CA, not the namesake");
 * if ((await signerOf(alice, [cas[0]])) !== undefined) throw new Error();
 * ```
 */
export async function signerOf(
  signed: Signed,
  cas: readonly x509.X509Certificate[],
): Promise<x509.X509Certificate | undefined> {
  // A signature checked before against one of these very CA objects stands (the hot path:
  // the same client certificates reconnect all the time).
  const cached = verifiedBy.get(signed);
  if (cached && cas.includes(cached)) return cached;
  const issuer = nameDer(signed, "issuer");
  for (const ca of cas) {
    if (!sameBytes(nameDer(ca, "subject"), issuer)) continue;
    try {
      const publicKey = await publicKeyOf(ca);
      const ok = isCertificate(signed)
        ? await signed.verify({ publicKey, signatureOnly: true })
        : await signed.verify({ publicKey });
      if (ok) {
        verifiedBy.set(signed, ca);
        return ca;
      }
    } catch {
      // Algorithm mismatch or malformed signature: not this CA.
    }
  }
  return undefined;
}

/**
 * The DER of a name of a parsed object, encoded once per object: re-encoding it (pure JS
 * ASN.1) for every connection cost ~10 % of the connection rate.
 */
function nameDer(o: Signed, which: "issuer" | "subject"): Uint8Array {
  const memo = which === "issuer" ? issuerDer : subjectDer;
  let der = memo.get(o);
  if (!der) {
    const name = which === "issuer" ? o.issuerName : (o as x509.X509Certificate).subjectName;
    der = new Uint8Array(name.toArrayBuffer());
    memo.set(o, der);
  }
  return der;
}
const issuerDer = new WeakMap<Signed, Uint8Array>();
const subjectDer = new WeakMap<Signed, Uint8Array>();

function isCertificate(signed: Signed): signed is x509.X509Certificate {
  return "subjectName" in signed;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/**
 * Which CA certificate object a signed object was verified with. Parsed client certificates
 * are reused across connections (authorize.ts's cache), so their signature is checked once
 * per CA object; a reload brings new CA objects, and with them a fresh check.
 */
const verifiedBy = new WeakMap<Signed, x509.X509Certificate>();

// A CA's public key, imported once per CA certificate object: importing it for every
// handshake was ~0.35 ms each on Node (bench, connection rate).
const caKeys = new WeakMap<x509.X509Certificate, Promise<CryptoKey>>();
function publicKeyOf(ca: x509.X509Certificate): Promise<CryptoKey> {
  let key = caKeys.get(ca);
  if (!key) {
    key = ca.publicKey.export();
    caKeys.set(ca, key);
    // A key that cannot be imported is not cached: the next use tries again.
    key.catch(() => caKeys.delete(ca));
  }
  return key;
}
