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
  const layout = pkiLayout(dir);
  const certPem = await readText(layout.caCert, "CA certificate");
  const keyPem = await readText(layout.caKey, "CA private key");
  let cert;
  try {
    cert = parseCertificatePem(certPem);
  } catch (error) {
    throw new Error(`Invalid CA certificate "${layout.caCert}": ${errorMessage(error)}`, {
      cause: error,
    });
  }
  if (cert.getExtension(x509.BasicConstraintsExtension)?.ca !== true) {
    throw new Error(`"${layout.caCert}" is not a CA certificate (basicConstraints CA:FALSE)`);
  }
  let matches;
  try {
    matches = await keyMatchesCertificate(keyPem, certPem);
  } catch (error) {
    throw new Error(`Invalid CA private key "${layout.caKey}": ${errorMessage(error)}`, {
      cause: error,
    });
  }
  if (!matches) {
    throw new Error(
      `CA private key "${layout.caKey}" does not match CA certificate "${layout.caCert}"`,
    );
  }
  return { certPem, keyPem };
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
 * The trust bundle of a server of the PKI: the root and every intermediate (so its CRL can be
 * verified; only the root is a trust anchor).
 */
export async function serverTrustPem(dir: string): Promise<string> {
  let pem = await readFile(pkiLayout(dir).caCert, "utf8");
  for (const d of await intermediateDirs(pkiLayout(dir).dir)) {
    const cert = caFiles(d).cert;
    if (await pathExists(cert)) pem += await readFile(cert, "utf8");
  }
  return pem;
}

/**
 * Which CA of the PKI issued `cert`: `undefined` for the root, else the intermediate's name.
 * Throws when none of them did (a bundle from elsewhere).
 */
export async function issuerNameOf(
  dir: string,
  cert: x509.X509Certificate,
): Promise<string | undefined> {
  const root = parseCertificatePem(await readFile(pkiLayout(dir).caCert, "utf8"));
  if (await signerOf(cert, [root])) return undefined;
  for (const d of await intermediateDirs(pkiLayout(dir).dir)) {
    const path = caFiles(d).cert;
    if (!(await pathExists(path))) continue;
    if (await signerOf(cert, [parseCertificatePem(await readFile(path, "utf8"))])) {
      return basename(d);
    }
  }
  throw new Error(`"${cert.subject}" was not issued by the root or an intermediate of "${dir}"`);
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
