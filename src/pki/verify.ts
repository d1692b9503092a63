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

import { Buffer } from "node:buffer";
import { createPublicKey, type KeyObject, verify } from "node:crypto";
import type { x509 } from "./x509.ts";

/**
 * The parts of a CRL the signature check reads (`crl.ts`'s `ParsedCrl` has them). Declared
 * here, not imported, so that this rule does not depend on the CRL reader that uses it.
 */
export interface SignedCrl {
  /** The signed part (`tbsCertList`), DER. */
  tbs: Uint8Array;
  /** The signature algorithm's OID. */
  signatureOid: string;
  /** The signature (the BIT STRING's octets). */
  signature: Uint8Array;
  /** The issuer name, DER (compared byte for byte with a CA's subject). */
  issuerDer: Uint8Array;
}

/** Something a CA signs: a certificate or a CRL (read by the gate's own DER reader). */
export type Signed = x509.X509Certificate | SignedCrl;

/**
 * The CA among `cas` that signed `signed`, or `undefined`. Never throws: a malformed
 * signature or an algorithm mismatch means "not this CA".
 *
 * @example
 * ```ts
 * import { createCa, issueClient } from "../ca/issue.ts";
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
  // the same client certificates reconnect all the time), and so does one checked against a
  // CA certificate of the very same DER parsed elsewhere (the enrolment port's issuer, read
  // from its files, is the bundle's intermediate that the access decision checked the leaf
  // against): the same bytes are the same subject and the same key.
  const cached = verifiedBy.get(signed);
  if (cached) {
    if (cas.includes(cached)) return cached;
    const same = cas.find((ca) => sameDer(ca, cached));
    if (same) return same;
  }
  const issuer = nameDer(signed, "issuer");
  for (const ca of cas) {
    if (!sameBytes(nameDer(ca, "subject"), issuer)) continue;
    try {
      const ok = isCertificate(signed)
        ? await signed.verify({ publicKey: await publicKeyOf(ca), signatureOnly: true })
        : crlSignatureValid(signed, ca);
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
 * The DER of a name of a parsed object (a certificate's issuer or subject, a CRL's issuer),
 * encoded once per object: re-encoding it (pure JS
 * ASN.1) for every connection cost ~10 % of the connection rate.
 */
export function nameDer(o: Signed, which: "issuer" | "subject"): Uint8Array {
  if (!isCertificate(o)) return o.issuerDer;
  const memo = which === "issuer" ? issuerDer : subjectDer;
  let der = memo.get(o);
  if (!der) {
    const name = which === "issuer" ? o.issuerName : o.subjectName;
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

/** Whether two parsed certificates are the same DER (compared byte for byte, natively). */
function sameDer(a: x509.X509Certificate, b: x509.X509Certificate): boolean {
  return Buffer.from(a.rawData).equals(Buffer.from(b.rawData));
}

/** Whether two byte strings are equal (names, algorithm identifiers). */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
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

/**
 * The hash each CRL signature algorithm uses (`null`: the algorithm has its own, Ed25519).
 * Why a short list: these are what easy-rsa, cfssl, step-ca, Vault and `openssl ca` sign
 * with; SHA-1 and RSA-PSS (parameters to read) are refused rather than half-supported.
 */
const CRL_SIGNATURE_HASHES: Record<string, string | null> = {
  "1.2.840.10045.4.3.2": "sha256", // ecdsa-with-SHA256
  "1.2.840.10045.4.3.3": "sha384",
  "1.2.840.10045.4.3.4": "sha512",
  "1.2.840.113549.1.1.11": "sha256", // sha256WithRSAEncryption
  "1.2.840.113549.1.1.12": "sha384",
  "1.2.840.113549.1.1.13": "sha512",
  "1.3.101.112": null, // Ed25519
};

/** Whether `ca`'s key made `crl`'s signature (node:crypto reads ECDSA's DER form directly). */
function crlSignatureValid(crl: SignedCrl, ca: x509.X509Certificate): boolean {
  const hash = CRL_SIGNATURE_HASHES[crl.signatureOid];
  if (hash === undefined) return false;
  return verify(hash, crl.tbs, nodeKeyOf(ca), crl.signature);
}

const nodeKeys = new WeakMap<x509.X509Certificate, KeyObject>();
function nodeKeyOf(ca: x509.X509Certificate): KeyObject {
  let key = nodeKeys.get(ca);
  if (!key) {
    key = createPublicKey({
      key: Buffer.from(ca.publicKey.rawData),
      format: "der",
      type: "spki",
    });
    nodeKeys.set(ca, key);
  }
  return key;
}
