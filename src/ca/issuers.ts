/**
 * The CAs of a PKI that issue: the root (`DIR/ca/`) and each intermediate
 * (`DIR/intermediates/NAME/`), loaded and checked; which of them issued a certificate; and the
 * trust bundle a server of the PKI gets.
 *
 * @module
 */

import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import { caFiles, intermediateDirs, intermediateLayout, pkiLayout } from "./layout.ts";
import type { PemPair } from "./issue.ts";
import { keyMatchesCertificate, parseCertificatePem } from "../pki/pem.ts";
import { signerOf } from "../pki/verify.ts";
import { x509 } from "../pki/x509.ts";
import { errorMessage } from "../observe/errors.ts";
import { pathExists, readText } from "../util/fs_util.ts";
import { NO_FOLLOW } from "./files.ts";

/**
 * Whether `dir` holds a CA certificate (`DIR/ca/ca.pem`).
 *
 * @example
 * ```ts
 * import { pkiExists } from "./issuers.ts";
 * // Needs read permission; on Deno run with --allow-read.
 * if ((await Deno.permissions.query({ name: "read" })).state === "granted") {
 *   if (await pkiExists("/nonexistent-dockgate-pki")) throw new Error("unexpected");
 * }
 * ```
 */
export async function pkiExists(dir: string): Promise<boolean> {
  return await pathExists(pkiLayout(dir).caCert, NO_FOLLOW);
}

/**
 * Load and check the CA of the PKI in `dir`: both files readable, the certificate a CA, and
 * the key matching it. Throws `Error` naming the file otherwise.
 *
 * @example
 * ```ts
 * import { initPki } from "./keygen.ts";
 * import { loadCa } from "./issuers.ts";
 * import { mkdtemp, rm } from "node:fs/promises";
 * import { join } from "node:path";
 * import { tmpdir } from "node:os";
 * if ((await Deno.permissions.query({ name: "write" })).state === "granted") {
 *   const dir = await mkdtemp(join(tmpdir(), "dockgate-"));
 *   try {
 *     await initPki({ dir });
 *     const ca = await loadCa(dir);
 *     if (!ca.keyPem.includes("PRIVATE KEY")) throw new Error("unexpected");
 *   } finally {
 *     await rm(dir, { recursive: true });
 *   }
 * }
 * ```
 */
export async function loadCa(dir: string): Promise<PemPair> {
  return await loadCaDir(pkiLayout(dir).caDir);
}

/**
 * Load and check the CA whose directory is `caDir` (the root, the previous root of a
 * rotation): as {@linkcode loadCa}.
 */
async function loadCaDir(caDir: string): Promise<PemPair> {
  const files = caFiles(caDir);
  const certPem = await readText(files.cert, "CA certificate");
  const keyPem = await readText(files.key, "CA private key");
  let cert;
  try {
    cert = parseCertificatePem(certPem);
  } catch (error) {
    throw new Error(`Invalid CA certificate "${files.cert}": ${errorMessage(error)}`, {
      cause: error,
    });
  }
  if (cert.getExtension(x509.BasicConstraintsExtension)?.ca !== true) {
    throw new Error(`"${files.cert}" is not a CA certificate (basicConstraints CA:FALSE)`);
  }
  let matches;
  try {
    matches = await keyMatchesCertificate(keyPem, certPem);
  } catch (error) {
    throw new Error(`Invalid CA private key "${files.key}": ${errorMessage(error)}`, {
      cause: error,
    });
  }
  if (!matches) {
    throw new Error(`CA private key "${files.key}" does not match CA certificate "${files.cert}"`);
  }
  return { certPem, keyPem };
}

/**
 * Whether a rotation is under way in `dir` (`keygen rotate-ca` ran, `retire-ca` not yet):
 * `DIR/ca-previous/ca.pem` exists.
 */
export async function rotationUnderWay(dir: string): Promise<boolean> {
  return await pathExists(caFiles(pkiLayout(dir).previousCaDir).cert, NO_FOLLOW);
}

/** The previous root of a rotation, loaded and checked (its key revokes what it issued). */
export async function loadPreviousCa(dir: string): Promise<PemPair> {
  return await loadCaDir(pkiLayout(dir).previousCaDir);
}

/**
 * The chain a server certificate issued by the root carries: during a rotation the
 * cross-certificate (the new root signed by the previous one), so that clients still
 * trusting only the previous root verify it; otherwise nothing.
 */
export async function rootChainPem(dir: string): Promise<string> {
  const cross = pkiLayout(dir).crossCert;
  return await pathExists(cross, NO_FOLLOW) ? await readFile(cross, "utf8") : "";
}

/**
 * The trust bundle of a client of the PKI: the root, and during a rotation the previous root
 * too (servers not yet re-issued still present certificates from it).
 */
export async function clientTrustPem(dir: string): Promise<string> {
  const layout = pkiLayout(dir);
  let pem = await readText(layout.caCert, "CA certificate");
  if (await rotationUnderWay(dir)) {
    pem += await readFile(caFiles(layout.previousCaDir).cert, "utf8");
  }
  return pem;
}

/** What a bundle is issued from: the CA pair, and the chain to send after the leaf. */
export interface Issuer {
  /** The CA that signs. */
  ca: PemPair;
  /** Its records' directory (`DIR/ca` or `DIR/intermediates/NAME`). */
  caDir: string;
  /** The certificates after the leaf in `cert.pem` (the intermediate; none for the root). */
  chainPem: string;
}

/**
 * The issuer `name` names: the root when `undefined`, else that intermediate (whose key must
 * be there; the root's need not be).
 */
export async function loadIssuer(dir: string, name: string | undefined): Promise<Issuer> {
  if (name === undefined) {
    return { ca: await loadCa(dir), caDir: pkiLayout(dir).caDir, chainPem: "" };
  }
  const layout = intermediateLayout(dir, name);
  if (!(await pathExists(layout.cert))) {
    throw new Error(
      `No intermediate "${name}" in "${layout.dir}": create it with "dockgate keygen intermediate ${name}"`,
    );
  }
  const ca = { certPem: await readFile(layout.cert, "utf8"), keyPem: "" };
  try {
    ca.keyPem = await readFile(layout.key, "utf8");
  } catch (err) {
    throw new Error(
      `Cannot read the key of intermediate "${name}" ("${layout.key}"): ${(err as Error).message}`,
    );
  }
  if (!(await keyMatchesCertificate(ca.keyPem, ca.certPem))) {
    throw new Error(`The key of intermediate "${name}" does not match its certificate`);
  }
  return { ca, caDir: layout.dir, chainPem: ca.certPem };
}

/**
 * The trust bundle of a server of the PKI: the root (both roots during a rotation) and every
 * intermediate (so its CRL can be verified; only roots are trust anchors).
 */
export async function serverTrustPem(dir: string): Promise<string> {
  // Both roots while a rotation is under way: clients of either get in.
  let pem = await clientTrustPem(dir);
  for (const d of await intermediateDirs(pkiLayout(dir).dir)) {
    const cert = caFiles(d).cert;
    if (await pathExists(cert)) pem += await readFile(cert, "utf8");
  }
  return pem;
}

/**
 * Which CA of the PKI issues `cert`'s successor: `undefined` for the root (and, during a
 * rotation, for the previous root: the new one renews what it issued), else the
 * intermediate's name. Throws when none of them did (a bundle from elsewhere).
 */
export async function issuerNameOf(
  dir: string,
  cert: x509.X509Certificate,
): Promise<string | undefined> {
  const root = parseCertificatePem(await readFile(pkiLayout(dir).caCert, "utf8"));
  if (await signerOf(cert, [root])) return undefined;
  // The previous root's leaves are renewed by the new root: that is what a rotation is for.
  if (await issuedByPreviousRoot(dir, cert)) return undefined;
  for (const d of await intermediateDirs(pkiLayout(dir).dir)) {
    const path = caFiles(d).cert;
    if (!(await pathExists(path))) continue;
    if (await signerOf(cert, [parseCertificatePem(await readFile(path, "utf8"))])) {
      return basename(d);
    }
  }
  throw new Error(`"${cert.subject}" was not issued by the root or an intermediate of "${dir}"`);
}
/** Whether the previous root of a rotation under way issued `cert`. */
export async function issuedByPreviousRoot(
  dir: string,
  cert: x509.X509Certificate,
): Promise<boolean> {
  if (!(await rotationUnderWay(dir))) return false;
  const path = caFiles(pkiLayout(dir).previousCaDir).cert;
  return await signerOf(cert, [parseCertificatePem(await readFile(path, "utf8"))]) !== undefined;
}

/** One CA of a PKI that issues, as {@linkcode issuingCas} lists them. */
export interface IssuingCa {
  /** Its records' directory (`DIR/ca` or `DIR/intermediates/NAME`). */
  caDir: string;
  /** How messages name it: `the root`, `intermediate "NAME"`. */
  label: string;
  /** Its subject, as `@peculiar/x509` prints it. */
  subject: string;
  /** Loads its certificate and key (checked to match). */
  load: () => Promise<PemPair>;
}

/**
 * The CAs of the PKI: the root first, then each intermediate, with how to load their keys.
 *
 * @example
 * ```ts ignore
 * for (const ca of await issuingCas("pki")) console.log(ca.label, ca.caDir);
 * ```
 */
export async function issuingCas(dir: string): Promise<IssuingCa[]> {
  const layout = pkiLayout(dir);
  const out: IssuingCa[] = [{
    caDir: layout.caDir,
    label: "the root",
    subject: parseCertificatePem(await readFile(layout.caCert, "utf8")).subject,
    load: () => loadCa(dir),
  }];
  if (await rotationUnderWay(dir)) {
    // It issues nothing new, but revokes what it issued until retire-ca.
    out.push({
      caDir: layout.previousCaDir,
      label: "the previous root",
      subject: parseCertificatePem(await readFile(caFiles(layout.previousCaDir).cert, "utf8"))
        .subject,
      load: () => loadPreviousCa(dir),
    });
  }
  for (const d of await intermediateDirs(layout.dir)) {
    const name = basename(d);
    const i = intermediateLayout(dir, name);
    if (!(await pathExists(i.cert))) continue;
    out.push({
      caDir: i.dir,
      label: `intermediate "${name}"`,
      subject: parseCertificatePem(await readFile(i.cert, "utf8")).subject,
      load: async () => (await loadIssuer(dir, name)).ca,
    });
  }
  return out;
}
