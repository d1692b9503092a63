/**
 * Everything serve reads from disk, loaded and validated as one unit: certificate, key, CA
 * bundle, CRL and access policy. Startup and every reload go through {@linkcode loadServeConfig},
 * so a reload is accepted only if it would also have been a valid startup.
 *
 * @module
 */

import type { GateRules } from "./authorize.ts";
import { type CredentialPaths, loadCredentials } from "./credentials.ts";
import { loadCrlFile } from "./crl.ts";
import type { AccessPolicy } from "./policy.ts";
import type { TlsMaterial } from "./tls_config.ts";
import { pathExists } from "./fs_util.ts";

/** Where serve's configuration comes from. */
export interface ServeConfigSource {
  /** Server certificate, key and client CA bundle. */
  paths: CredentialPaths;
  /** CRL file; when absent no certificate is considered revoked. */
  crlPath?: string;
  /**
   * Treat a missing `crlPath` as "no CRL yet" instead of an error (the `crl.pem` looked for
   * in the `--certs` directory, which appears with the first revocation). Default: false.
   */
  crlOptional?: boolean;
  /** Who may pass. */
  policy: AccessPolicy;
  /** Accept a key file readable by group or others. Default: false. */
  insecureKeyPerms?: boolean;
}

/** A loaded configuration, ready for `serve` or `ServeHandle.reload`. */
export interface ServeConfig {
  /** TLS material for the listener. */
  tls: TlsMaterial;
  /** Decision rules. */
  rules: GateRules;
  /** The files it was read from (for change watching). */
  files: string[];
  /** Number of revoked serials in the CRL, if one was loaded. */
  revokedCount?: number;
}

/**
 * Load and validate serve's configuration. Rejects with a one-line error naming the file at
 * fault; nothing partial is ever returned.
 *
 * @example
 * ```ts ignore
 * import { loadServeConfig } from "./serve_config.ts";
 * const config = await loadServeConfig({
 *   paths: { cert: "pki/server/cert.pem", key: "pki/server/key.pem", ca: "pki/server/ca.pem" },
 *   policy: { allowAny: true },
 * });
 * ```
 */
export async function loadServeConfig(source: ServeConfigSource): Promise<ServeConfig> {
  const creds = await loadCredentials(source.paths, {
    role: "server",
    insecureKeyPerms: source.insecureKeyPerms,
  });
  const files = [source.paths.cert, source.paths.key, source.paths.ca];
  let revocations: GateRules["revocations"];
  let revokedCount: number | undefined;
  if (
    source.crlPath && source.crlOptional && !(await pathExists(source.crlPath, { what: "CRL" }))
  ) {
    files.push(source.crlPath); // watched, so the first revocation is picked up
  } else if (source.crlPath) {
    const crl = await loadCrlFile(source.crlPath, creds.caCertificates);
    revocations = { serials: crl.serials };
    revokedCount = crl.serials.size;
    files.push(source.crlPath);
  }
  return {
    tls: { certPem: creds.certPem, keyPem: creds.keyPem, caPem: creds.caPem },
    rules: { caCertificates: creds.caCertificates, policy: source.policy, revocations },
    files,
    revokedCount,
  };
}
