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
import { childrenOf, contentOf, encodingOf, expectTag, oidOf, readOnly, TAG } from "./der.ts";

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
        ? await certificateSignatureValid(signed, ca)
        : signatureValid(signed, ca);
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
 * The hash and the key type of each signature algorithm checked by node:crypto (`hash` `null`:
 * the algorithm has its own, Ed25519). Why a short list: these are what easy-rsa, cfssl,
 * step-ca, Vault, `openssl ca` and our keygen sign with; a CRL signed otherwise (SHA-1,
 * RSA-PSS with parameters to read) is refused rather than half-supported, a certificate
 * signed otherwise is checked by WebCrypto as before.
 */
const SIGNATURE_ALGORITHMS: Record<string, { hash: string | null; key: string }> = {
  "1.2.840.10045.4.3.2": { hash: "sha256", key: "ec" }, // ecdsa-with-SHA256
  "1.2.840.10045.4.3.3": { hash: "sha384", key: "ec" },
  "1.2.840.10045.4.3.4": { hash: "sha512", key: "ec" },
  "1.2.840.113549.1.1.11": { hash: "sha256", key: "rsa" }, // sha256WithRSAEncryption
  "1.2.840.113549.1.1.12": { hash: "sha384", key: "rsa" },
  "1.2.840.113549.1.1.13": { hash: "sha512", key: "rsa" },
  "1.3.101.112": { hash: null, key: "ed25519" }, // Ed25519
};

/** The parts of a signed object that its signature covers and is. */
export type SignedParts = Pick<SignedCrl, "tbs" | "signatureOid" | "signature">;

/** Whether `ca`'s key made this signature ({@linkcode signatureMadeBy} with the CA's key). */
function signatureValid(signed: SignedParts, ca: x509.X509Certificate): boolean {
  return signatureMadeBy(signed, nodeKeyOf(ca));
}

/**
 * Whether `key` made the signature of `signed`, for an algorithm of the short list the gate
 * checks itself (ECDSA and RSA PKCS#1 v1.5 with SHA-256/384/512, Ed25519) whose key type is
 * `key`'s; any other algorithm is `false`. node:crypto reads ECDSA's DER form directly. May
 * throw on a malformed signature (callers read that as "not valid").
 *
 * @example A CSR's self-signature (its proof of possession)
 * ```ts
 * import { Buffer } from "node:buffer";
 * import { createPublicKey } from "node:crypto";
 * import { x509 } from "./x509.ts";
 * import { signatureMadeBy, signedPartsOf } from "./verify.ts";
 * const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
 * const keys = await crypto.subtle.generateKey(alg, true, ["sign", "verify"]);
 * const csr = await x509.Pkcs10CertificateRequestGenerator.create({
 *   name: "CN=x", keys, signingAlgorithm: alg,
 * });
 * const spki = Buffer.from(csr.publicKey.rawData);
 * const key = createPublicKey({ key: spki, format: "der", type: "spki" });
 * if (!signatureMadeBy(signedPartsOf(new Uint8Array(csr.rawData)), key)) throw new Error();
 * ```
 */
export function signatureMadeBy(signed: SignedParts, key: KeyObject): boolean {
  const algorithm = SIGNATURE_ALGORITHMS[signed.signatureOid];
  if (algorithm === undefined || key.asymmetricKeyType !== algorithm.key) return false;
  return verify(algorithm.hash, signed.tbs, key, signed.signature);
}

/**
 * Whether `ca`'s key made `cert`'s signature. Why node:crypto first: on Node a WebCrypto verify
 * is a thread-pool job behind promises, ~0.3 ms of JavaScript per check (bench workload 9,
 * renewals), node:crypto's one call is the check alone. The signed bytes, the algorithm and
 * the signature are read from the certificate's own DER (`der.ts`), once per object.
 */
async function certificateSignatureValid(
  cert: x509.X509Certificate,
  ca: x509.X509Certificate,
): Promise<boolean> {
  let parts = signedParts.get(cert);
  if (!parts) {
    parts = signedPartsOf(new Uint8Array(cert.rawData));
    signedParts.set(cert, parts);
  }
  if (SIGNATURE_ALGORITHMS[parts.signatureOid] !== undefined) return signatureValid(parts, ca);
  return await cert.verify({ publicKey: await publicKeyOf(ca), signatureOnly: true });
}
const signedParts = new WeakMap<x509.X509Certificate, SignedParts>();

/**
 * The signed part (DER), the signature algorithm's OID and the signature of a signed object
 * whose DER is `SEQUENCE { signed SEQUENCE, AlgorithmIdentifier, BIT STRING }`: a certificate
 * or a PKCS#10 request (a CRL is read by `crl.ts`). Throws `TypeError` on anything else.
 *
 * @example
 * ```ts
 * import { signedPartsOf } from "./verify.ts";
 * try { signedPartsOf(new Uint8Array([0x30, 0x00])); throw new Error("must refuse"); }
 * catch (e) { if (!(e instanceof TypeError)) throw e; }
 * ```
 */
export function signedPartsOf(der: Uint8Array): SignedParts {
  const parts = childrenOf(expectTag(readOnly(der), TAG.sequence, "a signed SEQUENCE"));
  if (parts.length !== 3) throw new TypeError("expected signed data, an algorithm, a signature");
  const [tbs, alg, sig] = parts;
  const bits = contentOf(expectTag(sig, TAG.bitString, "the signature BIT STRING"));
  if (bits.length === 0 || bits[0] !== 0) throw new TypeError("signature has unused bits");
  return {
    tbs: encodingOf(expectTag(tbs, TAG.sequence, "the signed SEQUENCE")),
    signatureOid: oidOf(childrenOf(expectTag(alg, TAG.sequence, "an AlgorithmIdentifier"))[0]),
    signature: bits.subarray(1),
  };
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
