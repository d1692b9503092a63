/**
 * The CA pairs a process signs with, parsed, checked and imported once: the certificate
 * object, the private key as a non-extractable `CryptoKey`, and the key identifier its leaves
 * name as their authority. Importing and checking a CA key costs milliseconds of JavaScript
 * ASN.1 and key derivation; a gate that enrols signs with the same pair thousands of times.
 *
 * Entries are found by the SHA-256 of the PEM texts themselves, so a changed file (a rotated
 * intermediate, a new key) is never served from the cache: other bytes, another entry, checked
 * from scratch. The PEM texts are not kept (only their digest). A failed check is not cached.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { x509, type X509Certificate } from "../pki/x509.ts";
import { importPrivateKeyPem, keyMatchesCertificate, parseCertificatePem } from "../pki/pem.ts";
import { errorMessage } from "../observe/errors.ts";

/** A certificate and its private key, PEM (`issue.ts` `PemPair`). */
export interface CaPemPair {
  /** The CA certificate. */
  certPem: string;
  /** Its PKCS#8 private key. */
  keyPem: string;
}

/** A CA pair ready to sign. */
export interface LoadedCa {
  /** The CA certificate. */
  caCert: X509Certificate;
  /** Its private key, imported for signing (not extractable). */
  caKey: CryptoKey;
  /** The key identifier a certificate it issues names as its authority key. */
  caKeyId: string;
}

/** How many pairs are kept (a process signs with one or a few: the root, an intermediate). */
const MAX_ENTRIES = 8;
const entries = new Map<string, Promise<LoadedCa>>();

/**
 * `ca` parsed, checked (a CA certificate, the key matching it) and imported: from the cache
 * when these exact PEM texts were loaded before. Throws `TypeError` for a pair that is not a
 * CA or whose key does not match (never cached).
 *
 * @example
 * ```ts
 * import { createCa } from "./issue.ts";
 * import { loadedCa } from "./ca_key_cache.ts";
 * const ca = await createCa();
 * const a = await loadedCa(ca);
 * if (a !== await loadedCa({ ...ca })) throw new Error("same bytes, same entry");
 * if (a === await loadedCa(await createCa())) throw new Error("other bytes, other entry");
 * ```
 */
export function loadedCa(ca: CaPemPair): Promise<LoadedCa> {
  if (ca === null || typeof ca !== "object") throw new TypeError("CA must be a PemPair");
  const id = digestOf(ca);
  let entry = entries.get(id);
  if (entry) {
    // Most recently used last: the map's order is the eviction order.
    entries.delete(id);
    entries.set(id, entry);
    return entry;
  }
  entry = load(ca);
  entries.set(id, entry);
  entry.catch(() => entries.get(id) === entry && entries.delete(id));
  while (entries.size > MAX_ENTRIES) entries.delete(entries.keys().next().value!);
  return entry;
}

function digestOf(ca: CaPemPair): string {
  if (typeof ca.certPem !== "string" || typeof ca.keyPem !== "string") {
    throw new TypeError("CA must be a PemPair of two PEM strings");
  }
  // Both lengths first, so no split of the same bytes between the two texts collides.
  return createHash("sha256").update(`${ca.certPem.length}:${ca.keyPem.length}:`)
    .update(ca.certPem).update(ca.keyPem).digest("hex");
}

async function load(ca: CaPemPair): Promise<LoadedCa> {
  let caCert: X509Certificate;
  try {
    caCert = parseCertificatePem(ca.certPem);
  } catch (error) {
    throw new TypeError(`Invalid CA certificate: ${errorMessage(error)}`, { cause: error });
  }
  if (caCert.getExtension(x509.BasicConstraintsExtension)?.ca !== true) {
    throw new TypeError(`Certificate "${caCert.subject}" is not a CA certificate`);
  }
  let matches: boolean;
  try {
    matches = await keyMatchesCertificate(ca.keyPem, ca.certPem);
  } catch (error) {
    throw new TypeError(`Invalid CA private key: ${errorMessage(error)}`, { cause: error });
  }
  if (!matches) throw new TypeError("CA private key does not match the CA certificate");
  const caKey = await importPrivateKeyPem(ca.keyPem, caCert);
  return { caCert, caKey, caKeyId: await caKeyIdOf(caCert) };
}

/**
 * The key identifier a certificate issued by `caCert` names as its authority key: the CA's
 * own subject key identifier, or one derived from its public key when it carries none.
 */
async function caKeyIdOf(caCert: X509Certificate): Promise<string> {
  return caCert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId ??
    (await x509.SubjectKeyIdentifierExtension.create(caCert.publicKey)).keyId;
}
