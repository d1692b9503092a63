/**
 * Revocation: signed X.509 CRLs made from the PKI's own list of revoked certificates, and
 * loading a CRL for serve.
 *
 * Why serve parses the CRL itself: Deno's `node:tls` only syntax-checks the `crl` option, so
 * a revoked certificate would pass the runtime; the gate checks the serial on every
 * connection instead (see `authorize.ts`).
 *
 * @module
 */

import { readFile } from "node:fs/promises";
import { normalizeSerial } from "./identity.ts";
import { importPrivateKeyPem, parseCertificatePem, type PemPair } from "./pki.ts";
import { x509 } from "./x509.ts";

/** One revoked certificate. */
export interface RevokedEntry {
  /** Serial number, hex. */
  serial: string;
  /** When it was revoked. */
  revokedAt: Date;
}

/** Options for {@linkcode createCrl}. */
export interface CreateCrlOptions {
  /** Issue time. Default: now. */
  thisUpdate?: Date;
  /** Days until the CRL should be refreshed. Default: 365. */
  days?: number;
}

/**
 * Create a CRL signed by `ca` listing `entries`, as PEM.
 *
 * @example
 * ```ts
 * import { createCa } from "./pki.ts";
 * import { createCrl, parseCrlPem } from "./crl.ts";
 * const ca = await createCa();
 * const pem = await createCrl(ca, [{ serial: "0abc", revokedAt: new Date() }]);
 * if (!parseCrlPem(pem).entries.some((e) => e.serialNumber.toLowerCase().endsWith("abc"))) throw new Error();
 * ```
 */
export async function createCrl(
  ca: PemPair,
  entries: readonly RevokedEntry[],
  options: CreateCrlOptions = {},
): Promise<string> {
  const caCert = parseCertificatePem(ca.certPem);
  const signingKey = await importPrivateKeyPem(ca.keyPem, caCert);
  const thisUpdate = options.thisUpdate ?? new Date();
  const days = options.days ?? 365;
  const crl = await x509.X509CrlGenerator.create({
    issuer: caCert.subjectName,
    thisUpdate,
    nextUpdate: new Date(thisUpdate.getTime() + days * 86_400_000),
    signingAlgorithm: crlSigningAlgorithm(signingKey.algorithm),
    signingKey,
    entries: entries.map((e) => ({
      serialNumber: evenHex(normalizeSerial(e.serial)),
      revocationDate: e.revokedAt,
    })),
  });
  // OpenSSL (and so stunnel, nginx, dockerd tooling) expects the "X509 CRL" PEM label.
  return x509.PemConverter.encode(crl.rawData, "X509 CRL") + "\n";
}

/**
 * Parse a PEM (or DER) CRL. Throws `TypeError` when it is not one.
 *
 * @example
 * ```ts
 * import { parseCrlPem } from "./crl.ts";
 * try { parseCrlPem("garbage"); throw new Error("should fail"); } catch (e) { if (!(e instanceof TypeError)) throw e; }
 * ```
 */
export function parseCrlPem(pem: string): x509.X509Crl {
  const m = /-----BEGIN (?:X509 )?CRL-----([\s\S]*?)-----END (?:X509 )?CRL-----/.exec(pem);
  if (!m) throw new TypeError("no X509 CRL PEM block");
  try {
    return new x509.X509Crl(
      Uint8Array.from(atob(m[1].replace(/\s+/g, "")), (c) => c.charCodeAt(0)),
    );
  } catch (err) {
    throw new TypeError(`malformed CRL: ${(err as Error).message}`);
  }
}

/** A CRL loaded for serve. */
export interface LoadedCrl {
  /** Normalised revoked serials. */
  serials: Set<string>;
  /** When the issuer said it would publish the next CRL, if it did. */
  nextUpdate?: Date;
}

/**
 * Read a CRL, check that one of `caCertificates` signed it, and return its revoked serials.
 * Rejects with one line naming the file when it is unreadable, malformed, or not signed by
 * our CA (a CRL anyone could forge would let them un-revoke nothing but hide revocations
 * from us).
 *
 * @example
 * ```ts ignore
 * import { loadCrlFile } from "./crl.ts";
 * const crl = await loadCrlFile("pki/server/crl.pem", caCertificates);
 * console.log(crl.serials.size);
 * ```
 */
export async function loadCrlFile(
  path: string,
  caCertificates: readonly x509.X509Certificate[],
): Promise<LoadedCrl> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw new Error(`Cannot read CRL "${path}": ${(err as Error).message}`);
  }
  let crl: x509.X509Crl;
  try {
    crl = parseCrlPem(text);
  } catch (err) {
    throw new Error(`Cannot load CRL "${path}": ${(err as Error).message}`);
  }
  let signed = false;
  for (const ca of caCertificates) {
    if (ca.subject !== crl.issuer) continue;
    try {
      if (await crl.verify({ publicKey: ca })) signed = true;
    } catch {
      // Not this CA.
    }
  }
  if (!signed) throw new Error(`Cannot load CRL "${path}": not signed by the configured CA`);
  return {
    serials: new Set(crl.entries.map((e) => normalizeSerial(e.serialNumber))),
    nextUpdate: crl.nextUpdate,
  };
}

function evenHex(hex: string): string {
  return hex.length % 2 ? `0${hex}` : hex;
}

function crlSigningAlgorithm(key: KeyAlgorithm): Algorithm | EcdsaParams {
  if (key.name === "ECDSA") {
    const curve = (key as EcKeyAlgorithm).namedCurve;
    return { name: "ECDSA", hash: curve === "P-384" ? "SHA-384" : "SHA-256" } as EcdsaParams;
  }
  return { name: key.name, hash: "SHA-256" } as Algorithm;
}
