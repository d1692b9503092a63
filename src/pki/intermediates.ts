/**
 * A fleet's PKI: intermediates under the root (`DIR/intermediates/NAME/`, for teams that keep
 * the root key offline) and the issuers bundles are made from. An intermediate's directory
 * has the same layout and records as `DIR/ca/` (`ca.pem`, `ca-key.pem`, `issued.json`,
 * `revoked.json`, `crlnumber`, `crl.pem`), so issuing and revoking work the same with either.
 *
 * @module
 */

import { mkdir, readFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { intermediateDir } from "./layout.ts";
import { issueIntermediate, type KeyType, type PemPair, validateClientName } from "./pki.ts";
import { keyMatchesCertificate, parseCertificatePem } from "./pem.ts";
import { signerOf } from "./verify.ts";
import type { x509 } from "./x509.ts";
import { pathExists, writeFileAtomic } from "./fs_util.ts";
import {
  intermediateDirs,
  issuedEntry,
  publishCrl,
  recordIssued,
  serverBundleDirs,
} from "./records.ts";
import { AlreadyExistsError, type KeygenReport, loadCa, pkiExists, pkiLayout } from "./keygen.ts";

/** The files of intermediate `name` of the PKI under `dir`. */
export interface IntermediateLayout {
  /** `DIR/intermediates/NAME`: its records live here too. */
  dir: string;
  /** Its certificate. */
  cert: string;
  /** Its private key (0600). */
  key: string;
}

/**
 * The paths of intermediate `name` (a name as for clients: it cannot escape the directory).
 *
 * @example
 * ```ts
 * import { intermediateLayout } from "./intermediates.ts";
 * if (intermediateLayout("pki", "team-a").cert !== "pki/intermediates/team-a/ca.pem") throw new Error();
 * ```
 */
export function intermediateLayout(dir: string, name: string): IntermediateLayout {
  validateClientName(name);
  const d = intermediateDir(pkiLayout(dir).dir, name);
  return { dir: d, cert: join(d, "ca.pem"), key: join(d, "ca-key.pem") };
}

/** Options for {@linkcode createIntermediate}. */
export interface CreateIntermediateOptions {
  /** PKI root directory (its root key is needed, once). */
  dir: string;
  /** Key algorithm. Default: `"p256"`. */
  keyType?: KeyType;
  /** Lifetime in days. Default: 1825, never past the root's end. */
  days?: number;
  /** Replace an existing intermediate of that name. Default: `false`. */
  force?: boolean;
}

/**
 * Create intermediate `name` signed by the root, with an empty CRL, and add it to the trust
 * bundle (`ca.pem`) of every server bundle of the PKI, so a gate can verify its CRL. Throws
 * {@linkcode AlreadyExistsError} when it exists and `force` is not set.
 *
 * @example
 * ```ts ignore
 * await createIntermediate("team-a", { dir: "pki" });
 * // now: dockgate keygen client alice --issuer team-a
 * ```
 */
export async function createIntermediate(
  name: string,
  options: CreateIntermediateOptions,
): Promise<KeygenReport> {
  const layout = intermediateLayout(options.dir, name);
  if (!(await pkiExists(options.dir))) {
    throw new Error(`No CA in "${pkiLayout(options.dir).caDir}": run "dockgate keygen" first`);
  }
  if (!options.force && await pathExists(layout.cert, { follow: false })) {
    throw new AlreadyExistsError(
      layout.cert,
      `Intermediate "${name}" already exists ("${layout.cert}"): use --force to replace it`,
    );
  }
  const root = await loadCa(options.dir);
  const pair = await issueIntermediate(root, name, {
    keyType: options.keyType,
    days: options.days,
  });
  const report: KeygenReport = { created: [], kept: [] };
  await mkdir(layout.dir, { recursive: true, mode: 0o700 });
  await writeFileAtomic(layout.key, pair.keyPem, { mode: 0o600, replace: options.force === true });
  await writeFileAtomic(layout.cert, pair.certPem, {
    mode: 0o644,
    replace: options.force === true,
  });
  report.created.push(layout.key, layout.cert);
  await recordIssued(pkiLayout(options.dir).caDir, [issuedEntry(pair.certPem, name, "ca")]);
  const published = await publishCrl({ caDir: layout.dir, pkiDir: options.dir }, pair);
  report.created.push(...published.written);
  report.created.push(...await trustInServers(options.dir, pair.certPem));
  return report;
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
    const cert = join(d, "ca.pem");
    if (await pathExists(cert)) pem += await readFile(cert, "utf8");
  }
  return pem;
}

/** Add `certPem` to the `ca.pem` of every server bundle that lacks it; the files written. */
async function trustInServers(dir: string, certPem: string): Promise<string[]> {
  const written: string[] = [];
  for (const b of await serverBundleDirs(pkiLayout(dir).dir)) {
    const ca = join(b, "ca.pem");
    if (!(await pathExists(ca))) continue;
    const text = await readFile(ca, "utf8");
    if (text.includes(certPem.trim())) continue;
    await writeFileAtomic(ca, text.endsWith("\n") ? text + certPem : `${text}\n${certPem}`, {
      mode: 0o644,
      replace: true,
    });
    written.push(ca);
  }
  return written;
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
    const path = join(d, "ca.pem");
    if (!(await pathExists(path))) continue;
    if (await signerOf(cert, [parseCertificatePem(await readFile(path, "utf8"))])) {
      return basename(d);
    }
  }
  throw new Error(`"${cert.subject}" was not issued by the root or an intermediate of "${dir}"`);
}
