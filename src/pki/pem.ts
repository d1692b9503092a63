/**
 * PEM in and out: certificates (one or a bundle), and private keys in every form OpenSSL
 * writes. Reading is done by the libraries we have, not by hand: certificates through
 * @peculiar/x509's PEM reader, private keys through node:crypto `createPrivateKey` (PKCS#8,
 * SEC 1, PKCS#1, on Deno and Node alike), whose PKCS#8 export WebCrypto then imports.
 *
 * @example
 * ```ts
 * import { createCa } from "../ca/issue.ts";
 * import { keyMatchesCertificate, parseCertificatePem } from "./pem.ts";
 * const ca = await createCa();
 * if (parseCertificatePem(ca.certPem).subject !== "CN=dockgate CA") throw new Error();
 * if (!(await keyMatchesCertificate(ca.keyPem, ca.certPem))) throw new Error();
 * ```
 *
 * @module
 */

import { createPrivateKey, createPublicKey, type KeyObject } from "node:crypto";
import { errorMessage } from "../observe/errors.ts";
import { x509, type X509Certificate } from "./x509.ts";

/**
 * Parse the first certificate of a PEM text. Throws `TypeError` when there is no
 * `CERTIFICATE` block or it is malformed.
 *
 * @example
 * ```ts
 * import { createCa } from "../ca/issue.ts";
 * import { parseCertificatePem } from "./pem.ts";
 * const { certPem } = await createCa();
 * if (parseCertificatePem(certPem).subject !== "CN=dockgate CA") throw new Error("unexpected");
 * ```
 */
export function parseCertificatePem(pem: string): X509Certificate {
  return parseCertificatesPem(pem)[0];
}

/**
 * Parse every certificate of a PEM bundle, in order; other PEM blocks are ignored. Throws
 * `TypeError` when there is no `CERTIFICATE` block or one is malformed.
 *
 * @example
 * ```ts
 * import { createCa } from "../ca/issue.ts";
 * import { parseCertificatesPem } from "./pem.ts";
 * const a = await createCa({ commonName: "A" });
 * const b = await createCa({ commonName: "B" });
 * const certs = parseCertificatesPem(a.certPem + b.certPem);
 * if (certs.map((c) => c.subject).join() !== "CN=A,CN=B") throw new Error("unexpected");
 * ```
 */
export function parseCertificatesPem(pem: string): X509Certificate[] {
  if (typeof pem !== "string") throw new TypeError("PEM input must be a string");
  const blocks = x509.PemConverter.decodeWithHeaders(pem).filter((b) => b.type === "CERTIFICATE");
  if (blocks.length === 0) throw new TypeError('no PEM "CERTIFICATE" block found');
  return blocks.map((block, i) => {
    try {
      return new x509.X509Certificate(block.rawData);
    } catch (error) {
      throw new TypeError(`malformed certificate #${i + 1}: ${errorMessage(error)}`, {
        cause: error,
      });
    }
  });
}

/**
 * Import a PEM private key for signing with the algorithm of `cert`'s public key. Accepts
 * PKCS#8 (`BEGIN PRIVATE KEY`) and the legacy OpenSSL forms `BEGIN EC PRIVATE KEY` (SEC 1)
 * and `BEGIN RSA PRIVATE KEY` (PKCS#1); encrypted keys are not supported. Throws `TypeError`
 * when the key is missing, malformed, encrypted, or of a different algorithm than `cert`.
 * The returned key is not extractable.
 *
 * @example
 * ```ts
 * import { createCa } from "../ca/issue.ts";
 * import { importPrivateKeyPem, parseCertificatePem } from "./pem.ts";
 * const ca = await createCa();
 * const key = await importPrivateKeyPem(ca.keyPem, parseCertificatePem(ca.certPem));
 * if (key.type !== "private") throw new Error("unexpected");
 * ```
 */
export async function importPrivateKeyPem(
  pem: string,
  cert: X509Certificate,
): Promise<CryptoKey> {
  const key = privateKeyObject(pem);
  if (!sameAlgorithm(key, cert)) {
    throw new TypeError(
      `private key algorithm differs from the certificate's (${describeKey(cert)})`,
    );
  }
  const pkcs8 = new Uint8Array(key.export({ type: "pkcs8", format: "der" }));
  return await importPkcs8(pkcs8, importAlgorithm(cert), false);
}

/**
 * Whether the PEM private key `keyPem` belongs to the first certificate in `certPem`, by
 * comparing the public key derived from the private key with the certificate's. Resolves
 * `false` for a key of another algorithm or curve; throws `TypeError` for input that is not
 * a usable certificate or private key.
 *
 * @example
 * ```ts
 * import { createCa } from "../ca/issue.ts";
 * import { keyMatchesCertificate } from "./pem.ts";
 * const a = await createCa();
 * const b = await createCa();
 * if (!await keyMatchesCertificate(a.keyPem, a.certPem)) throw new Error("should match");
 * if (await keyMatchesCertificate(b.keyPem, a.certPem)) throw new Error("should not match");
 * ```
 */
export async function keyMatchesCertificate(keyPem: string, certPem: string): Promise<boolean> {
  const cert = parseCertificatePem(certPem);
  const key = privateKeyObject(keyPem);
  if (!sameAlgorithm(key, cert)) return false;
  // The public half of the private key, as SubjectPublicKeyInfo, against the certificate's.
  const spki = new Uint8Array(createPublicKey(key).export({ type: "spki", format: "der" }));
  const theirs = new Uint8Array(cert.publicKey.rawData);
  return await Promise.resolve(
    spki.length === theirs.length && spki.every((b, i) => b === theirs[i]),
  );
}

export function certToPem(cert: X509Certificate): string {
  return `${cert.toString("pem")}\n`;
}

export async function exportKeyPem(key: CryptoKey): Promise<string> {
  const pkcs8 = await crypto.subtle.exportKey("pkcs8", key);
  return `${x509.PemConverter.encode(pkcs8, "PRIVATE KEY")}\n`;
}

/**
 * A PEM private key in any form OpenSSL writes (PKCS#8, SEC 1 `EC PRIVATE KEY`, PKCS#1
 * `RSA PRIVATE KEY`), read by node:crypto on both runtimes. Encrypted keys are refused with
 * a clear line (the Docker CLI cannot use them either).
 */
function privateKeyObject(pem: string): KeyObject {
  if (typeof pem !== "string") throw new TypeError("PEM input must be a string");
  if (!/-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/.test(pem)) {
    throw new TypeError('no PEM "PRIVATE KEY" block found');
  }
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type:\s*4,ENCRYPTED/i.test(pem)) {
    throw new TypeError("encrypted private keys are not supported; decrypt it with openssl first");
  }
  try {
    return createPrivateKey({ key: pem, format: "pem" });
  } catch (error) {
    throw new TypeError(`malformed private key: ${errorMessage(error)}`, { cause: error });
  }
}

/** Whether `key` is of the certificate's key algorithm (and curve). */
function sameAlgorithm(key: KeyObject, cert: X509Certificate): boolean {
  const spki = createPublicKey(key).export({ type: "spki", format: "der" });
  const ours = new x509.PublicKey(new Uint8Array(spki)).algorithm as Algorithm & {
    namedCurve?: string;
  };
  const theirs = cert.publicKey.algorithm as Algorithm & { namedCurve?: string };
  return ours.name === theirs.name && ours.namedCurve === theirs.namedCurve;
}

function importAlgorithm(cert: X509Certificate): EcKeyImportParams | RsaHashedImportParams {
  const alg = cert.publicKey.algorithm as Algorithm & { namedCurve?: string };
  if (alg.name === "ECDSA" && (alg.namedCurve === "P-256" || alg.namedCurve === "P-384")) {
    return { name: "ECDSA", namedCurve: alg.namedCurve };
  }
  if (alg.name === "RSASSA-PKCS1-v1_5") return { name: alg.name, hash: "SHA-256" };
  throw new TypeError(`unsupported certificate key algorithm (${describeKey(cert)})`);
}

async function importPkcs8(
  pkcs8: Uint8Array<ArrayBuffer>,
  algorithm: EcKeyImportParams | RsaHashedImportParams,
  extractable: boolean,
): Promise<CryptoKey> {
  try {
    return await crypto.subtle.importKey("pkcs8", pkcs8, algorithm, extractable, ["sign"]);
  } catch (error) {
    throw new TypeError(`malformed private key: ${errorMessage(error)}`, { cause: error });
  }
}

function describeKey(cert: X509Certificate): string {
  const alg = cert.publicKey.algorithm as Algorithm & {
    namedCurve?: string;
    modulusLength?: number;
  };
  return [alg.name, alg.namedCurve ?? alg.modulusLength].filter((x) => x !== undefined).join(" ");
}
