/**
 * Loading and checking the TLS credentials `serve` and `connect` use: a certificate, its
 * private key and the CA bundle that peers are verified against. Every problem becomes one
 * {@linkcode CredentialsError} naming the file and what to do, so the CLI can print a single
 * line instead of failing later inside the TLS handshake.
 *
 * @example Resolve the files of a Docker-style certificate directory
 * ```ts
 * import { resolveBundlePaths } from "./credentials.ts";
 * const paths = resolveBundlePaths({ certs: "/pki/clients/alice", ca: "/other/ca.pem" });
 * if (paths.key !== "/pki/clients/alice/key.pem" || paths.ca !== "/other/ca.pem") {
 *   throw new Error("unexpected");
 * }
 * ```
 *
 * @module
 */

import { stat } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { keyMatchesCertificate, parseCertificatePem, parseCertificatesPem } from "./pem.ts";
import { x509, type X509Certificate } from "./x509.ts";
import { errorMessage } from "../observe/errors.ts";
import { readText as readTextFile } from "../util/fs_util.ts";
import { checkTrustedPath } from "./trust_files.ts";
import { type TrustStore, trustStoreOf, verifyCaChain, verifyChain } from "./chain.ts";
import { leafUsageProblem, usageFactsOf, type UsageProblem } from "./usage.ts";

/** Loaded and validated TLS credentials. */
export interface TlsCredentials {
  /** The certificate PEM, as read. */
  certPem: string;
  /** The private key PEM, as read. */
  keyPem: string;
  /** The CA bundle PEM, as read. */
  caPem: string;
  /** Where the certificate was read from. */
  certPath: string;
  /** Where the private key was read from. */
  keyPath: string;
  /** Where the CA bundle was read from. */
  caPath: string;
}

/** A loaded and validated CA bundle. */
export interface CaBundle {
  /** The CA bundle PEM, as read. */
  caPem: string;
  /** Where it was read from. */
  caPath: string;
  /** The parsed CA certificates, in file order. */
  caCertificates: X509Certificate[];
}

/** The three files of a credential set. */
export interface CredentialPaths {
  /** Certificate PEM file. */
  cert: string;
  /** Private key PEM file. */
  key: string;
  /** CA bundle PEM file. */
  ca: string;
}

/** Inputs of {@linkcode resolveBundlePaths}, mirroring the CLI flags. */
export interface BundlePathOptions {
  /** A directory holding `cert.pem`, `key.pem` and `ca.pem` (like `DOCKER_CERT_PATH`). */
  certs?: string;
  /** Certificate file; overrides `certs`. */
  cert?: string;
  /** Private key file; overrides `certs`. */
  key?: string;
  /** CA bundle file; overrides `certs`. */
  ca?: string;
}

/** Options for {@linkcode loadCredentials}. */
export interface LoadCredentialsOptions {
  /**
   * Which end of the connection the certificate is for: a `"server"` certificate needs the
   * `serverAuth` extended key usage, a `"client"` one `clientAuth` (when the certificate
   * restricts its usages at all).
   */
  role: "server" | "client";
  /**
   * Accept a private key file that group or others can read or write. Default: `false`.
   */
  insecureKeyPerms?: boolean;
  /** The time validity is checked at. Default: now. */
  now?: Date;
}

/** Options for {@linkcode loadCaBundle}. */
export interface LoadCaBundleOptions {
  /** Also require every CA certificate to be valid at this time. Default: no date check. */
  now?: Date;
}

/**
 * Credentials that cannot be used; the message names the file and the fix. `path` is the
 * offending file.
 *
 * @example
 * ```ts
 * import { CredentialsError } from "./credentials.ts";
 * const error = new CredentialsError('Cannot read certificate "c.pem": ENOENT', "c.pem");
 * if (!(error instanceof Error) || error.name !== "CredentialsError" || error.path !== "c.pem") {
 *   throw new Error("unexpected");
 * }
 * ```
 */
export class CredentialsError extends Error {
  /** The file the problem is about. */
  readonly path: string;

  /** Create the error about `path`. */
  constructor(message: string, path: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "CredentialsError";
    this.path = path;
  }
}

/**
 * The files of a certificate directory (`--certs DIR`, `DOCKER_CERT_PATH`, every bundle keygen
 * writes): Docker's names, and serve's `crl.pem` beside them.
 *
 * @example
 * ```ts
 * import { BUNDLE_FILES } from "./credentials.ts";
 * if (BUNDLE_FILES.key !== "key.pem") throw new Error("unexpected");
 * ```
 */
export const BUNDLE_FILES = {
  ca: "ca.pem",
  cert: "cert.pem",
  key: "key.pem",
  crl: "crl.pem",
} as const;

/**
 * Resolve the certificate, key and CA files: `certs` means `certs/cert.pem`,
 * `certs/key.pem` and `certs/ca.pem`, and each of `cert`, `key`, `ca` overrides its file.
 * Throws `TypeError` naming the missing ones when not all three can be resolved.
 *
 * @example
 * ```ts
 * import { resolveBundlePaths } from "./credentials.ts";
 * const paths = resolveBundlePaths({ cert: "c.pem", key: "k.pem", ca: "ca.pem" });
 * if (paths.cert !== "c.pem") throw new Error("unexpected");
 * ```
 */
export function resolveBundlePaths(options: BundlePathOptions): CredentialPaths {
  const { certs } = options;
  if (certs !== undefined && (typeof certs !== "string" || certs === "")) {
    throw new TypeError(`Invalid certificate directory "${certs}"`);
  }
  const pick = (value: string | undefined, file: string) =>
    value !== undefined && value !== ""
      ? value
      : certs !== undefined
      ? join(certs, file)
      : undefined;
  const cert = pick(options.cert, BUNDLE_FILES.cert);
  const key = pick(options.key, BUNDLE_FILES.key);
  const ca = pick(options.ca, BUNDLE_FILES.ca);
  if (cert === undefined || key === undefined || ca === undefined) {
    const missing = [["--cert", cert], ["--key", key], ["--ca", ca]]
      .filter(([, v]) => v === undefined).map(([flag]) => flag);
    throw new TypeError(
      `Missing ${missing.join(", ")}: give --certs DIR or all of --cert, --key and --ca`,
    );
  }
  return { cert, key, ca };
}

/**
 * Read and validate a credential set. Checks, in order: all three files readable; the key
 * file not accessible by group or others, and all three files and every directory above them
 * owned by us or root and not writable by others (both unless `insecureKeyPerms`, see
 * `trust_files.ts`); each file well-formed
 * PEM; every certificate in the CA file a CA (basicConstraints CA:TRUE); the certificate not
 * a CA itself; the key matching the certificate; the certificate signed by a CA in the CA
 * file; certificate and issuing CA valid at `now`; and the extended key usage fitting `role`.
 * Any failure throws one {@linkcode CredentialsError}.
 *
 * @example
 * ```ts
 * import { CredentialsError, loadCredentials } from "./credentials.ts";
 * // Needs read permission; on Deno run with --allow-read.
 * if ((await Deno.permissions.query({ name: "read" })).state === "granted") {
 *   try {
 *     await loadCredentials(
 *       { cert: "/nonexistent/cert.pem", key: "/nonexistent/key.pem", ca: "/nonexistent/ca.pem" },
 *       { role: "server" },
 *     );
 *     throw new Error("should have failed");
 *   } catch (error) {
 *     if (!(error instanceof CredentialsError)) throw error;
 *     if (!error.message.startsWith('Cannot read certificate "/nonexistent/cert.pem"')) throw error;
 *   }
 * }
 * ```
 */
export async function loadCredentials(
  paths: CredentialPaths,
  options: LoadCredentialsOptions,
): Promise<TlsCredentials> {
  const { cert: certPath, key: keyPath, ca: caPath } = paths;
  const role = options.role;
  if (role !== "server" && role !== "client") {
    throw new TypeError(`Invalid role "${role}": expected "server" or "client"`);
  }
  const now = options.now ?? new Date();

  const certPem = await readText(certPath, "certificate");
  const keyPem = await readText(keyPath, "private key");
  const caPem = await readText(caPath, "CA certificate");
  if (options.insecureKeyPerms !== true) {
    await checkKeyMode(keyPath);
    await checkTrusted(caPath, "CA certificate");
    await checkTrusted(certPath, "certificate");
    await checkTrusted(keyPath, "private key");
  }

  let certificate: X509Certificate;
  try {
    certificate = parseCertificatePem(certPem);
  } catch (error) {
    throw new CredentialsError(
      `Invalid certificate "${certPath}": ${errorMessage(error)}`,
      certPath,
      {
        cause: error,
      },
    );
  }
  const { caCertificates } = parseCaBundle(caPem, caPath);
  // The one usage rule (CA flag, EKU, key usage, dates), as the gate applies it to peers.
  const usage = leafUsageProblem(usageFactsOf(certificate), role, now);
  if (usage) throw new CredentialsError(usageMessage(usage, certPath, certificate, role), certPath);

  let matches: boolean;
  try {
    matches = await keyMatchesCertificate(keyPem, certPem);
  } catch (error) {
    throw new CredentialsError(
      `Invalid private key "${keyPath}": ${errorMessage(error)}`,
      keyPath,
      {
        cause: error,
      },
    );
  }
  if (!matches) {
    throw new CredentialsError(
      `Private key "${keyPath}" does not match certificate "${certPath}"`,
      keyPath,
    );
  }

  const store = trustStoreOf(caCertificates);
  await checkBundleChains(store, caPath, now);
  // The certificates after the first in cert.pem are its chain (leaf + intermediates, as
  // step-ca and Vault hand them out); the runtime sends them in the handshake too.
  const sent = parseCertificatesPem(certPem).slice(1);
  const chain = await verifyChain(certificate, sent, store, role, now);
  if (!chain.ok) {
    throw new CredentialsError(
      chain.reason === "certificate not signed by a trusted CA"
        ? `Certificate "${certPath}" (${certificate.subject}, issued by ${certificate.issuer}) ` +
          `is not signed by a CA in "${caPath}"`
        : `Certificate "${certPath}" (${certificate.subject}) does not chain to a CA in ` +
          `"${caPath}": ${chain.reason}`,
      certPath,
    );
  }

  return { certPem, keyPem, caPem, certPath, keyPath, caPath };
}

/**
 * Read and validate a CA bundle (for instance on reload): readable, at least one PEM
 * certificate, every certificate a CA (basicConstraints CA:TRUE) and, when `now` is given,
 * valid at that time. Throws {@linkcode CredentialsError} otherwise.
 *
 * @example
 * ```ts
 * import { CredentialsError, loadCaBundle } from "./credentials.ts";
 * // Needs read permission; on Deno run with --allow-read.
 * if ((await Deno.permissions.query({ name: "read" })).state === "granted") {
 *   const failed = await loadCaBundle("/nonexistent/ca.pem").then(() => false, (e) => e instanceof CredentialsError);
 *   if (!failed) throw new Error("expected CredentialsError");
 * }
 * ```
 */
export async function loadCaBundle(
  path: string,
  options: LoadCaBundleOptions = {},
): Promise<CaBundle> {
  const caPem = await readText(path, "CA certificate");
  const { caCertificates } = parseCaBundle(caPem, path);
  if (options.now) {
    for (const ca of caCertificates) {
      checkValidity(ca, options.now, `CA certificate "${ca.subject}" in "${path}"`, path);
    }
  }
  return { caPem, caPath: path, caCertificates };
}

// ---------------------------------------------------------------------------------------------

/**
 * Every intermediate of a CA bundle must chain to one of its roots: the gate trusts the
 * bundle's self-issued certificates only (as Node's OpenSSL does; rustls would take any), so
 * an intermediate alone in `ca.pem` would trust nobody, and is said so at load.
 */
async function checkBundleChains(store: TrustStore, caPath: string, now: Date): Promise<void> {
  for (const ca of store.intermediates) {
    const chain = await verifyCaChain(ca, store, now);
    if (!chain.ok) {
      throw new CredentialsError(
        `"${caPath}" holds "${ca.subject}", an intermediate CA that does not chain to a root ` +
          `in the bundle (${chain.reason}): only the bundle's self-signed roots are trust ` +
          `anchors, so add its root`,
        caPath,
      );
    }
  }
}

/** The loader's words for a usage problem: the file, what is wrong, and the fix. */
function usageMessage(
  usage: UsageProblem,
  certPath: string,
  cert: X509Certificate,
  role: "server" | "client",
): string {
  const file = `Certificate "${certPath}"`;
  switch (usage.rule) {
    case "ca":
      return `${file} (${cert.subject}) is a CA certificate: use a ${role} certificate issued ` +
        `by it (see "dockgate keygen")`;
    case "not-yet-valid":
      return `${file} is not valid until ${cert.notBefore.toISOString()} (check the clock)`;
    case "expired":
      return `${file} expired on ${cert.notAfter.toISOString()}`;
    case "eku":
      return `${file} cannot be used by a TLS ${role}: its extended key usage lacks ` +
        `${role}Auth${usage.reason.includes("no extended key usage") ? " (it has none)" : ""} ` +
        `(issue one with "dockgate keygen ${role}")`;
    case "key-usage":
      return `${file} cannot be used by a TLS ${role}: its key usage lacks digitalSignature ` +
        `(issue one with "dockgate keygen ${role}")`;
  }
}

/** {@linkcode readTextFile}, its failure as a {@linkcode CredentialsError} about `path`. */
async function readText(path: string, what: string): Promise<string> {
  try {
    return await readTextFile(path, what);
  } catch (error) {
    if (error instanceof TypeError) throw error;
    throw new CredentialsError(errorMessage(error), path, { cause: error });
  }
}

async function checkKeyMode(path: string): Promise<void> {
  // Windows has no POSIX modes; Node reports synthetic ones there.
  if (process.platform === "win32") return;
  let mode: number;
  try {
    mode = (await stat(path)).mode & 0o777;
  } catch (error) {
    throw new CredentialsError(`Cannot read private key "${path}": ${errorMessage(error)}`, path, {
      cause: error,
    });
  }
  if ((mode & 0o077) === 0) return;
  const how = mode & 0o044 ? "readable" : mode & 0o022 ? "writable" : "accessible";
  throw new CredentialsError(
    `Private key "${path}" is ${how} by others (mode ${mode.toString(8).padStart(4, "0")}): ` +
      `run chmod 600 "${path}"`,
    path,
  );
}

/** {@linkcode checkTrustedPath}, its refusal as a {@linkcode CredentialsError}. */
async function checkTrusted(path: string, what: string): Promise<void> {
  try {
    await checkTrustedPath(path, what);
  } catch (error) {
    throw new CredentialsError(errorMessage(error), path, { cause: error });
  }
}

function parseCaBundle(caPem: string, caPath: string): { caCertificates: X509Certificate[] } {
  let caCertificates: X509Certificate[];
  try {
    caCertificates = parseCertificatesPem(caPem);
  } catch (error) {
    throw new CredentialsError(
      `Invalid CA certificate "${caPath}": ${errorMessage(error)}`,
      caPath,
      {
        cause: error,
      },
    );
  }
  for (const ca of caCertificates) {
    if (!isCa(ca)) {
      const constraints = ca.getExtension(x509.BasicConstraintsExtension)
        ? "basicConstraints CA:FALSE"
        : "no basicConstraints";
      throw new CredentialsError(
        `"${caPath}" contains "${ca.subject}", which is not a CA certificate (${constraints})`,
        caPath,
      );
    }
  }
  return { caCertificates };
}

function isCa(cert: X509Certificate): boolean {
  if (cert.getExtension(x509.BasicConstraintsExtension)?.ca !== true) return false;
  const usage = cert.getExtension(x509.KeyUsagesExtension);
  return !usage || (usage.usages & x509.KeyUsageFlags.keyCertSign) !== 0;
}

function checkValidity(cert: X509Certificate, now: Date, label: string, path: string): void {
  if (now.getTime() < cert.notBefore.getTime()) {
    throw new CredentialsError(
      `${label} is not valid until ${cert.notBefore.toISOString()} (check the clock)`,
      path,
    );
  }
  if (now.getTime() > cert.notAfter.getTime()) {
    throw new CredentialsError(`${label} expired on ${cert.notAfter.toISOString()}`, path);
  }
}
