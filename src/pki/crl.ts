/**
 * Reading CRLs: strict DER parsing (several, PEM or DER, a directory), each checked to be
 * signed by a CA of the bundle, and the rollback rule. Making them is `ca/crl_issue.ts`'s.
 *
 * Why serve parses the CRL itself: Deno's `node:tls` only syntax-checks the `crl` option, so
 * a revoked certificate would pass the runtime; the gate checks the serial on every
 * connection instead (see `authorize.ts`).
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import {
  childrenOf,
  contentOf,
  encodingOf,
  expectTag,
  integerHex,
  oidOf,
  readOnly,
  readTlv,
  TAG,
  timeOf,
  type Tlv,
} from "./der.ts";
import { x509 } from "./x509.ts";
import { errorMessage } from "../observe/errors.ts";
import { sameBytes, type SignedCrl, signerOf } from "./verify.ts";

/** OID of the CRL number extension. */
export const OID_CRL_NUMBER = "2.5.29.20";

/**
 * A CRL as the gate reads it (its own strict DER reader, see `der.ts`): what was signed, the
 * signature, the issuer, the dates, the CRL number and the revoked serials.
 */
export interface ParsedCrl extends SignedCrl {
  /** The whole CRL, DER. */
  der: Uint8Array;
  /** When it was issued. */
  thisUpdate: Date;
  /** When the issuer said it would publish the next one, if it did. */
  nextUpdate?: Date;
  /** Its CRL number, if it has one. */
  number?: bigint;
  /** Normalised revoked serials (see `normalizeSerial`). */
  serials: Set<string>;
}

/** CRL extensions: the CRL number, and the ones read to refuse what the gate cannot honour. */
const OID_AUTHORITY_KEY_ID = "2.5.29.35";
const OID_DELTA_CRL = "2.5.29.27";
const OID_ISSUING_DP = "2.5.29.28";
const OID_FRESHEST_CRL = "2.5.29.46";
const OID_AUTHORITY_INFO = "1.3.6.1.5.5.7.1.1";
/** Entry extensions: the reason and invalidity date are informative; an indirect CRL is not read. */
const OID_REASON = "2.5.29.21";
const OID_INVALIDITY_DATE = "2.5.29.24";
const OID_CERTIFICATE_ISSUER = "2.5.29.29";

/**
 * Parse a DER CRL (RFC 5280 5.1). Throws `TypeError` when it is not one, and for what the
 * gate will not read as a plain "these serials are revoked" list (fail closed): a delta CRL
 * (out of scope: publish full CRLs), an indirect or partitioned CRL, or an unknown critical
 * extension.
 *
 * @example
 * ```ts
 * import { parseCrlDer } from "./crl.ts";
 * try { parseCrlDer(new Uint8Array([0x30, 0x00])); throw new Error("should fail"); }
 * catch (e) { if (!(e instanceof TypeError)) throw e; }
 * ```
 */
export function parseCrlDer(der: Uint8Array): ParsedCrl {
  const top = childrenOf(expectTag(readOnly(der), TAG.sequence, "a CRL (SEQUENCE)"));
  if (top.length !== 3) throw new TypeError("a CRL has three parts");
  const [tbsTlv, algTlv, sigTlv] = top;
  const tbsParts = childrenOf(expectTag(tbsTlv, TAG.sequence, "tbsCertList"));
  let i = 0;
  if (tbsParts[i]?.tag === TAG.integer) {
    if (integerHex(tbsParts[i]) !== "1") throw new TypeError("unknown CRL version");
    i++;
  }
  const innerAlg = expectTag(tbsParts[i++], TAG.sequence, "the signature algorithm");
  if (!sameBytes(encodingOf(innerAlg), encodingOf(algTlv))) {
    throw new TypeError("the signed and the outer signature algorithms differ");
  }
  const issuer = expectTag(tbsParts[i++], TAG.sequence, "the issuer name");
  const thisUpdate = timeOf(tbsParts[i++] ?? fail("thisUpdate missing"));
  let nextUpdate: Date | undefined;
  const maybeTime = tbsParts[i]?.tag;
  if (maybeTime === TAG.utcTime || maybeTime === TAG.generalizedTime) {
    nextUpdate = timeOf(tbsParts[i++]);
  }
  const serials = new Set<string>();
  if (tbsParts[i]?.tag === TAG.sequence) readEntries(tbsParts[i++], serials);
  let number: bigint | undefined;
  if (tbsParts[i]?.tag === 0xa0) {
    const exts = childrenOf(tbsParts[i++]);
    if (exts.length !== 1) throw new TypeError("malformed crlExtensions");
    number = readCrlExtensions(exts[0]);
  }
  if (i !== tbsParts.length) throw new TypeError("unexpected data in tbsCertList");
  const sig = contentOf(expectTag(sigTlv, TAG.bitString, "the signature BIT STRING"));
  if (sig.length === 0 || sig[0] !== 0) throw new TypeError("signature BIT STRING has unused bits");
  return {
    der,
    tbs: encodingOf(tbsTlv),
    signatureOid: oidOf(childrenOf(algTlv)[0]),
    signature: sig.subarray(1),
    issuerDer: encodingOf(issuer),
    thisUpdate,
    nextUpdate,
    number,
    serials,
  };
}

/** The revoked serials into `out`. Why by hand and lean: 100,000 entries load in milliseconds. */
function readEntries(list: Tlv, out: Set<string>): void {
  for (let at = list.contentStart; at < list.end;) {
    const entry = expectTag(readTlv(list.bytes, at, list.end), TAG.sequence, "a CRL entry");
    at = entry.end;
    const serial = readTlv(entry.bytes, entry.contentStart, entry.end);
    const date = readTlv(entry.bytes, serial.end, entry.end);
    if (date.tag !== TAG.utcTime && date.tag !== TAG.generalizedTime) {
      throw new TypeError("a CRL entry without a revocation date");
    }
    if (date.end < entry.end) {
      const exts = expectTag(
        readTlv(entry.bytes, date.end, entry.end),
        TAG.sequence,
        "entry extensions",
      );
      if (exts.end !== entry.end) throw new TypeError("unexpected data in a CRL entry");
      for (const ext of childrenOf(exts)) {
        const { oid, critical } = readExtension(ext);
        if (oid === OID_CERTIFICATE_ISSUER) {
          throw new TypeError(
            "an indirect CRL (entries with a certificateIssuer) is not supported",
          );
        }
        if (critical && oid !== OID_REASON && oid !== OID_INVALIDITY_DATE) {
          throw new TypeError(`unknown critical CRL entry extension ${oid}`);
        }
      }
    }
    out.add(integerHex(serial));
  }
}

/** The CRL number, after refusing the CRL extensions the gate cannot honour. */
function readCrlExtensions(list: Tlv): bigint | undefined {
  let number: bigint | undefined;
  for (const ext of childrenOf(expectTag(list, TAG.sequence, "crlExtensions"))) {
    const { oid, critical, value } = readExtension(ext);
    if (oid === OID_CRL_NUMBER) {
      number = parseDerInteger(value);
    } else if (oid === OID_DELTA_CRL) {
      throw new TypeError("a delta CRL is not supported (load the full CRL)");
    } else if (oid === OID_ISSUING_DP) {
      // Only a distribution point name: a CRL scoped to some certificates, some reasons or
      // other issuers (onlyContains*, onlySomeReasons, indirectCRL) would be misread as whole.
      const parts = childrenOf(
        expectTag(readOnly(value), TAG.sequence, "issuingDistributionPoint"),
      );
      if (parts.some((p) => p.tag !== 0xa0)) {
        throw new TypeError(
          "a partitioned or indirect CRL (issuingDistributionPoint with only*/indirectCRL) is not supported",
        );
      }
    } else if (
      critical && oid !== OID_AUTHORITY_KEY_ID && oid !== OID_FRESHEST_CRL &&
      oid !== OID_AUTHORITY_INFO
    ) {
      throw new TypeError(`unknown critical CRL extension ${oid}`);
    }
  }
  return number;
}

function readExtension(ext: Tlv): { oid: string; critical: boolean; value: Uint8Array } {
  const parts = childrenOf(expectTag(ext, TAG.sequence, "an extension"));
  const oid = oidOf(parts[0]);
  let critical = false;
  let k = 1;
  if (parts[k]?.tag === TAG.boolean) {
    critical = contentOf(parts[k])[0] === 0xff;
    k++;
  }
  const value = contentOf(expectTag(parts[k], TAG.octetString, "an extension value"));
  if (k + 1 !== parts.length) throw new TypeError("malformed extension");
  return { oid, critical, value };
}

function fail(message: string): never {
  throw new TypeError(message);
}

/**
 * The CRLs in a file's text or bytes: every `X509 CRL` PEM block, or one DER CRL. Throws
 * `TypeError` when there is none or one is malformed (naming which).
 *
 * @example
 * ```ts
 * import { parseCrls } from "./crl.ts";
 * try { parseCrls(new TextEncoder().encode("garbage")); throw new Error("should fail"); }
 * catch (e) { if (!(e instanceof TypeError)) throw e; }
 * ```
 */
export function parseCrls(data: Uint8Array): ParsedCrl[] {
  if (data[0] === TAG.sequence) return [parseCrlDer(data)];
  const blocks = crlPemBlocks(new TextDecoder().decode(data));
  if (blocks.length === 0) throw new TypeError("no X509 CRL PEM block and not a DER CRL");
  return blocks.map((b, n) => {
    try {
      return parseCrlDer(b);
    } catch (err) {
      const which = blocks.length > 1 ? ` (CRL ${n + 1} of ${blocks.length})` : "";
      throw new TypeError(`malformed CRL${which}: ${errorMessage(err)}`);
    }
  });
}

/**
 * The DER of each `X509 CRL` (or `CRL`) PEM block. Why not the x509 package's PEM reader:
 * decoding a 4 MB CRL through it took ~0.4 s; `Buffer`'s base64 takes milliseconds. The
 * body must be base64 and nothing else, so a block cannot be read two ways.
 */
function crlPemBlocks(text: string): Uint8Array[] {
  const out: Uint8Array[] = [];
  const re = /-----BEGIN (X509 CRL|CRL)-----([^-]*)-----END ([A-Z0-9 ]+)-----/g;
  for (const m of text.matchAll(re)) {
    if (m[3] !== m[1]) throw new TypeError(`PEM block "${m[1]}" ends as "${m[3]}"`);
    const body = m[2].replace(/\s+/g, "");
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body) || body.length % 4 !== 0) {
      throw new TypeError("a CRL PEM block that is not base64");
    }
    out.push(new Uint8Array(Buffer.from(body, "base64")));
  }
  return out;
}

/**
 * Parse the one CRL of a PEM text. Throws `TypeError` when it is not one.
 *
 * @example
 * ```ts
 * import { parseCrlPem } from "./crl.ts";
 * try { parseCrlPem("garbage"); throw new Error("should fail"); } catch (e) { if (!(e instanceof TypeError)) throw e; }
 * ```
 */
export function parseCrlPem(pem: string): ParsedCrl {
  if (typeof pem !== "string") throw new TypeError("no X509 CRL PEM block");
  return parseCrls(new TextEncoder().encode(pem))[0];
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
  /** When the issuer said it would publish the next one, if it did. */
  nextUpdate?: Date;
  /** The CA certificate whose key signed it. */
  signer: x509.X509Certificate;
}

/**
 * Read the CRLs of a file (PEM, several blocks allowed, or DER) or of every file in a
 * directory (not dot-files, not subdirectories), check that one of `caCertificates` signed
 * each, and return them. `checkFile` is called on each file before it is read (the
 * ownership and mode checks of trusted files). Rejects with one line naming the file when one is unreadable,
 * malformed, or not signed by a CA in the bundle (a CRL anyone could forge would let them
 * hide nothing but refuse everyone, or pass a rollback).
 *
 * @example
 * ```ts ignore
 * import { loadCrls } from "./crl.ts";
 * const crls = await loadCrls("/etc/dockgate/crls", caCertificates);
 * console.log(crls.length);
 * ```
 */
export async function loadCrls(
  path: string,
  caCertificates: readonly x509.X509Certificate[],
  options: { checkFile?: (path: string) => Promise<void> } = {},
): Promise<LoadedCrl[]> {
  let files = [path];
  try {
    if ((await stat(path)).isDirectory()) {
      files = (await readdir(path)).filter((n) => !n.startsWith(".")).sort().map((n) =>
        join(path, n)
      );
      files = (await Promise.all(files.map(async (f) => (await stat(f)).isFile() ? f : "")))
        .filter((f) => f !== "");
      if (files.length === 0) throw new Error("the directory holds no CRL file");
    }
  } catch (err) {
    throw new Error(`Cannot read CRL "${path}": ${(err as Error).message}`);
  }
  const out: LoadedCrl[] = [];
  for (const file of files) {
    await options.checkFile?.(file);
    out.push(...await loadOneFile(file, caCertificates));
  }
  return out;
}

/**
 * {@linkcode loadCrls} for a file that holds exactly one CRL (a PKI's own `crl.pem`).
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
  const crls = await loadOneFile(path, caCertificates);
  if (crls.length !== 1) {
    throw new Error(`Cannot load CRL "${path}": it holds ${crls.length} CRLs, expected one`);
  }
  return crls[0];
}

async function loadOneFile(
  path: string,
  caCertificates: readonly x509.X509Certificate[],
): Promise<LoadedCrl[]> {
  let data: Uint8Array;
  try {
    data = new Uint8Array(await readFile(path));
  } catch (err) {
    throw new Error(`Cannot read CRL "${path}": ${(err as Error).message}`);
  }
  try {
    return await verifiedCrls(data, caCertificates, path);
  } catch (err) {
    throw new Error(`Cannot load CRL "${path}": ${(err as Error).message}`);
  }
}

/**
 * The CRLs of a file's bytes (as {@linkcode parseCrls} reads them), each checked to be signed
 * by one of `caCertificates`, as loaded CRLs recorded as coming from `path`. Rejects naming
 * what is wrong; used for files and for fetched CRLs alike.
 *
 * @example
 * ```ts ignore
 * const crls = await verifiedCrls(bytes, caCertificates, "https://ca.example/crl");
 * ```
 */
export async function verifiedCrls(
  data: Uint8Array,
  caCertificates: readonly x509.X509Certificate[],
  path: string,
): Promise<LoadedCrl[]> {
  const out: LoadedCrl[] = [];
  for (const crl of parseCrls(data)) {
    const signer = await signerOf(crl, caCertificates);
    if (!signer) {
      throw new Error(
        `not signed by a CA in the CA bundle (issuer ${nameText(crl.issuerDer)}; an ` +
          `intermediate's CRL needs the intermediate in ca.pem)`,
      );
    }
    const { serials, number, thisUpdate, nextUpdate } = crl;
    out.push({ path, serials, number, thisUpdate, nextUpdate, signer });
  }
  return out;
}

/** A name's printed form, for messages only. */
function nameText(der: Uint8Array): string {
  try {
    return new x509.Name(der.slice().buffer).toString();
  } catch {
    return "(unreadable name)";
  }
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

function parseDerInteger(der: Uint8Array): bigint {
  if (der.length < 3 || der[0] !== 0x02 || der[1] !== der.length - 2 || der[1] > 21) {
    throw new TypeError("not a short DER INTEGER");
  }
  if (der[2] & 0x80) throw new TypeError("negative");
  return BigInt(`0x${Array.from(der.slice(2), (b) => b.toString(16).padStart(2, "0")).join("")}`);
}
