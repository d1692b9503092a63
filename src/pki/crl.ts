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
import { normalizeSerial } from "../access/identity.ts";
import { type PemPair } from "./pki.ts";
import { importPrivateKeyPem, parseCertificatePem } from "./pem.ts";
import { x509 } from "./x509.ts";
import { signingAlgorithm } from "./pki.ts";
import { errorMessage } from "../observe/errors.ts";
import { signerOf } from "./verify.ts";

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

/** OID of the CRL number extension. */
const OID_CRL_NUMBER = "2.5.29.20";

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
 * Parse a PEM (or DER) CRL. Throws `TypeError` when it is not one.
 *
 * @example
 * ```ts
 * import { parseCrlPem } from "./crl.ts";
 * try { parseCrlPem("garbage"); throw new Error("should fail"); } catch (e) { if (!(e instanceof TypeError)) throw e; }
 * ```
 */
export function parseCrlPem(pem: string): x509.X509Crl {
  const block = typeof pem === "string"
    ? x509.PemConverter.decodeWithHeaders(pem).find((b) =>
      b.type === "X509 CRL" || b.type === "CRL"
    )
    : undefined;
  if (!block) throw new TypeError("no X509 CRL PEM block");
  try {
    return new x509.X509Crl(block.rawData);
  } catch (err) {
    throw new TypeError(`malformed CRL: ${errorMessage(err)}`);
  }
}

/** A CRL loaded for serve. */
export interface LoadedCrl {
  /** The file it was read from. */
  path: string;
  /** Normalised revoked serials. */
  serials: Set<string>;
  /** Its CRL number, if it has one. */
  number?: bigint;
  /** When it was issued. */
  thisUpdate: Date;
  /** When the issuer said it would publish the next CRL, if it did. */
  nextUpdate?: Date;
  /** The CA certificate whose key signed it. */
  signer: x509.X509Certificate;
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
  const signer = await signerOf(crl, caCertificates);
  if (!signer) throw new Error(`Cannot load CRL "${path}": not signed by the configured CA`);
  let number: bigint | undefined;
  const ext = crl.extensions.find((e) => e.type === OID_CRL_NUMBER);
  if (ext) {
    try {
      number = parseDerInteger(new Uint8Array(ext.value));
    } catch (err) {
      throw new Error(`Cannot load CRL "${path}": bad CRL number: ${(err as Error).message}`);
    }
  }
  return {
    path,
    serials: new Set(crl.entries.map((e) => normalizeSerial(e.serialNumber))),
    number,
    thisUpdate: crl.thisUpdate,
    nextUpdate: crl.nextUpdate,
    signer,
  };
}

/**
 * Why `next` may not replace `previous`, or `undefined` when it may. A CRL from the same CA
 * key that is older than the one in force (a lower CRL number, or an earlier `thisUpdate`)
 * is a rollback: an old copy put back would un-revoke what was revoked since. A CRL from
 * another CA key (the CA was re-keyed) is not compared.
 *
 * @example
 * ```ts ignore
 * const why = crlRollback(current, candidate);
 * if (why) throw new Error(why);
 * ```
 */
export function crlRollback(
  previous: LoadedCrl | undefined,
  next: LoadedCrl,
): string | undefined {
  if (!previous || !sameKey(previous.signer, next.signer)) return undefined;
  if (previous.number !== undefined && next.number !== undefined && next.number < previous.number) {
    return `CRL "${next.path}" has CRL number ${next.number}, lower than ${previous.number} ` +
      `in force: refusing a rollback`;
  }
  if (next.thisUpdate < previous.thisUpdate) {
    return `CRL "${next.path}" was issued ${next.thisUpdate.toISOString()}, before the one in ` +
      `force (${previous.thisUpdate.toISOString()}): refusing a rollback`;
  }
  return undefined;
}

function sameKey(a: x509.X509Certificate, b: x509.X509Certificate): boolean {
  const x = new Uint8Array(a.publicKey.rawData);
  const y = new Uint8Array(b.publicKey.rawData);
  return x.length === y.length && x.every((v, i) => v === y[i]);
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

function parseDerInteger(der: Uint8Array): bigint {
  if (der.length < 3 || der[0] !== 0x02 || der[1] !== der.length - 2 || der[1] > 21) {
    throw new TypeError("not a short DER INTEGER");
  }
  if (der[2] & 0x80) throw new TypeError("negative");
  return BigInt(`0x${Array.from(der.slice(2), (b) => b.toString(16).padStart(2, "0")).join("")}`);
}

function evenHex(hex: string): string {
  return hex.length % 2 ? `0${hex}` : hex;
}
