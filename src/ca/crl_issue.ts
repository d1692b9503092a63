/**
 * Making CRLs: a signed X.509 CRL of the PKI's own list of revoked certificates, numbered
 * (the CRL number only grows; serve refuses a lower one). Reading and checking them is
 * `pki/crl.ts`'s.
 *
 * @module
 */

import { normalizeSerial } from "../pki/serial.ts";
import { type PemPair, signingAlgorithm } from "./issue.ts";
import { importPrivateKeyPem, parseCertificatePem } from "../pki/pem.ts";
import { x509 } from "../pki/x509.ts";
import { OID_CRL_NUMBER } from "../pki/crl.ts";

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
  /**
   * The CRL number (RFC 5280 5.2.3), which must grow with every CRL the CA issues: serve
   * refuses a CRL whose number is lower than the one in force (a rollback). Default: none.
   */
  number?: bigint;
}

/**
 * Create a CRL signed by `ca` listing `entries`, as PEM.
 *
 * @example
 * ```ts
 * import { createCa } from "./issue.ts";
 * import { createCrl } from "./crl_issue.ts";
 * import { parseCrlPem } from "../pki/crl.ts";
 * const ca = await createCa();
 * const pem = await createCrl(ca, [{ serial: "0abc", revokedAt: new Date() }]);
 * if (!parseCrlPem(pem).serials.has("abc")) throw new Error();
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
    signingAlgorithm: signingAlgorithm(signingKey.algorithm),
    signingKey,
    extensions: options.number === undefined ? [] : [
      new x509.Extension(OID_CRL_NUMBER, false, derInteger(options.number)),
    ],
    entries: entries.map((e) => ({
      serialNumber: evenHex(normalizeSerial(e.serial)),
      revocationDate: e.revokedAt,
    })),
  });
  // OpenSSL (and so stunnel, nginx, dockerd tooling) expects the "X509 CRL" PEM label.
  return x509.PemConverter.encode(crl.rawData, "X509 CRL") + "\n";
}

/**
 * DER of a non-negative INTEGER. Why by hand: the CRL number is the one ASN.1 value we
 * write that @peculiar/x509 has no class for, and 8 lines beat a direct dependency on its
 * internal ASN.1 packages.
 */
function derInteger(value: bigint): ArrayBuffer {
  if (value < 0n) throw new RangeError("CRL number must be >= 0");
  let hex = value.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  if (parseInt(hex.slice(0, 2), 16) >= 0x80) hex = `00${hex}`; // keep it positive
  const body = hex.match(/../g)!.map((h) => parseInt(h, 16));
  if (body.length > 20) throw new RangeError("CRL number longer than 20 octets");
  return new Uint8Array([0x02, body.length, ...body]).buffer;
}

function evenHex(hex: string): string {
  return hex.length % 2 ? `0${hex}` : hex;
}
