/**
 * Signing an enrolled client's certificate from its CSR: the CSR only proves possession of a
 * key (its self-signature is verified and its key type is one keygen would make); everything
 * else in the certificate is the gate's (the token's name as CN, its role as OU, no SAN,
 * clientAuth only, the lifetime the token bought). Nothing the CSR asks for is copied.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createPublicKey, type KeyObject } from "node:crypto";
import { x509 } from "../pki/x509.ts";
import { signatureMadeBy, signedPartsOf } from "../pki/verify.ts";
import { normalizeSerial } from "../pki/serial.ts";
import { issueClientLeaf } from "./issue.ts";
import { issuedEntry, recordIssued } from "./records.ts";
import type { Issuer } from "./issuers.ts";

/** The largest CSR read (a P-384 or RSA-4096 CSR is under 2 KiB of PEM). */
export const MAX_CSR_BYTES = 8192;

/** How far back an enrolled certificate starts (clock skew), at most. */
const SKEW_MS = 60_000;

/** A CSR the gate will not sign; `message` is safe to tell the peer. */
export class CsrRefused extends Error {
  /** Create it. */
  constructor(message: string) {
    super(message);
    this.name = "CsrRefused";
  }
}

/**
 * The public key of a PEM CSR whose self-signature verifies and whose key is ECDSA P-256 or
 * P-384 or RSA of 2048 to 4096 bits. Throws {@linkcode CsrRefused} otherwise.
 *
 * Why node:crypto and not WebCrypto: the key is decoded once (one `createPublicKey`, used for
 * the signature check and the key type), and the signature checked in one call; WebCrypto
 * imported the key twice and ran the check as a thread-pool job behind promises, ~0.6 ms of
 * Node's main thread per enrolment and renewal (bench workload 9). The signature algorithms
 * are `verify.ts`'s short list (SHA-256/384/512 with ECDSA or RSA PKCS#1 v1.5), what
 * `dockgate join`, openssl and the usual tools make; any other is refused.
 *
 * @example
 * ```ts
 * import { x509 } from "../pki/x509.ts";
 * import { csrPublicKey } from "./csr_sign.ts";
 * const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
 * const keys = await crypto.subtle.generateKey(alg, true, ["sign", "verify"]);
 * const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: "CN=x", keys, signingAlgorithm: alg });
 * const key = csrPublicKey(csr.toString("pem"));
 * if (key.algorithm.name !== "ECDSA") throw new Error();
 * ```
 */
export function csrPublicKey(pem: string): x509.PublicKey {
  if (typeof pem !== "string" || pem.length > MAX_CSR_BYTES) {
    throw new CsrRefused(`the CSR must be PEM text of at most ${MAX_CSR_BYTES} bytes`);
  }
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(pem);
  } catch {
    throw new CsrRefused("the CSR is not a PKCS#10 request");
  }
  // The key type first (the refusal that helps), then the proof of possession.
  const key = supportedKey(new Uint8Array(csr.publicKey.rawData));
  if (!key) {
    throw new CsrRefused("the CSR's key type is not supported (ECDSA P-256/P-384, RSA 2048-4096)");
  }
  let ok = false;
  try {
    ok = signatureMadeBy(signedPartsOf(new Uint8Array(csr.rawData)), key);
  } catch {
    ok = false;
  }
  if (!ok) throw new CsrRefused("the CSR's signature does not verify");
  return csr.publicKey;
}

/** The key of an SPKI when it is ECDSA P-256 or P-384 or RSA of 2048 to 4096 bits. */
function supportedKey(spki: Uint8Array): KeyObject | undefined {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" });
  } catch {
    return undefined;
  }
  const details = key.asymmetricKeyDetails ?? {};
  const bits = details.modulusLength ?? 0;
  const ec = key.asymmetricKeyType === "ec" &&
    (details.namedCurve === "prime256v1" || details.namedCurve === "secp384r1");
  const rsa = key.asymmetricKeyType === "rsa" && bits >= 2048 && bits <= 4096;
  return ec || rsa ? key : undefined;
}

/** How far back a certificate of lifetime `ttlMs` starts: the one skew rule of both below. */
function skewOf(ttlMs: number): number {
  return Math.min(SKEW_MS, ttlMs / 2);
}

/**
 * The lifetime an enrolled certificate was signed for (its `notAfter - notBefore` less the
 * skew {@linkcode signEnrolment} put before it): what its renewal gets again.
 *
 * @example
 * ```ts ignore
 * enrolledTtlOf(cert); // 86_400_000 for a certificate a 24h token bought
 * ```
 */
export function enrolledTtlOf(cert: x509.X509Certificate): number {
  const span = cert.notAfter.getTime() - cert.notBefore.getTime();
  // span = ttl + min(60 s, ttl / 2)
  return span >= 3 * SKEW_MS ? span - SKEW_MS : Math.round((span * 2) / 3);
}

/** What the gate certifies for an enrolled client. */
export interface EnrolledSubject {
  /** The CN (the token's name, or the renewing certificate's). */
  name: string;
  /** The OUs (the token's role, or the renewing certificate's). */
  organizationalUnits: string[];
  /** The lifetime from now, in milliseconds. */
  ttlMs: number;
}

/** A signed enrolment. */
export interface SignedEnrolment {
  /** The leaf, then the issuer's chain (the intermediate), PEM. */
  certPem: string;
  /** The leaf's serial, normalised hex. */
  serial: string;
  /** Its end. */
  notAfter: Date;
  /** What repairing the record took first, when a crash had left it torn (for the log). */
  repaired?: string;
}

/**
 * Certify `publicKey` for `subject` with `issuer` (clientAuth only, no SAN) and record it in
 * the issuer's issued record (`issued.jsonl`) under the name (so `keygen revoke NAME` finds it).
 *
 * @example
 * ```ts ignore
 * const signed = await signEnrolment(issuer, await csrPublicKey(csr), { name: "ci-7", organizationalUnits: [], ttlMs: 86_400_000 });
 * ```
 */
export async function signEnrolment(
  issuer: Issuer,
  publicKey: x509.PublicKey,
  subject: EnrolledSubject,
): Promise<SignedEnrolment> {
  const now = Date.now();
  const { pair, cert: leaf } = await issueClientLeaf(issuer.ca, subject.name, {
    publicKey,
    organizationalUnits: subject.organizationalUnits,
    extKeyUsages: ["clientAuth"],
    notBefore: new Date(now - skewOf(subject.ttlMs)),
    notAfter: new Date(now + subject.ttlMs),
  });
  // Recorded (and synced) before the certificate is returned, so before anyone receives it.
  const repaired = await recordIssued(issuer.caDir, [issuedEntry(leaf, subject.name, "client")]);
  return {
    certPem: pair.certPem + issuer.chainPem,
    serial: normalizeSerial(leaf.serialNumber),
    notAfter: leaf.notAfter,
    ...(repaired ? { repaired } : {}),
  };
}
