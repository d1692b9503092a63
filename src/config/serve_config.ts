/**
 * Everything serve reads from disk, loaded and validated as one unit: certificate, key, CA
 * bundle, CRL and access policy. Startup and every reload go through {@linkcode loadServeConfig},
 * so a reload is accepted only if it would also have been a valid startup.
 *
 * @module
 */

import type { Revocations } from "../access/authorize.ts";
import { parseCertificatesPem } from "../pki/pem.ts";
import { type CredentialPaths, loadCredentials } from "../pki/credentials.ts";
import { crlRollback, loadCrlFile, type LoadedCrl } from "../pki/crl.ts";
import { crlStaleness } from "../access/authorize.ts";
import { checkTrustedPath } from "../pki/trust_files.ts";
import { readRevokedFile } from "../pki/records.ts";
import type { AccessPolicy } from "../access/policy.ts";
import type { TlsMaterial } from "../net/tls_config.ts";
import { pathExists } from "../pki/fs_util.ts";
import type { ApiPolicy } from "../docker/api_policy.ts";
import { loadApiPolicyFile } from "./policy_file.ts";

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
  /**
   * The PKI's revocation record (`DIR/ca/revoked.json` of `dockgate keygen`). When it lists
   * revoked certificates, a missing optional CRL is an error, not "nothing revoked".
   * Default: none.
   */
  revocationRecord?: string;
  /** What a CRL past its `nextUpdate` means (see `Revocations.stale`). Default: `"warn"`. */
  crlStale?: "warn" | "refuse";
  /** Who may pass. */
  policy: AccessPolicy;
  /** The API policy file (`--policy`), JSON or YAML. Default: none. */
  apiPolicyPath?: string;
  /**
   * Accept a key file readable by group or others, and trust files or directories that
   * others could write. Default: false.
   */
  insecureKeyPerms?: boolean;
}

/** A loaded configuration, ready for `serve` or `ServeHandle.reload`. */
export interface ServeConfig {
  /** TLS material for the listener (its CA bundle is what clients must chain to). */
  tls: TlsMaterial;
  /** Who may pass. */
  policy: AccessPolicy;
  /** Revoked certificates, when a CRL was loaded. */
  revocations?: Revocations;
  /** Per-identity Docker API rules, when a policy file was given. */
  apiPolicy?: ApiPolicy;
  /** The files it was read from (for change watching). */
  files: string[];
  /** Number of revoked serials in the CRL, if one was loaded. */
  revokedCount?: number;
  /** Why the CRL is outside its validity window, if it is (for a loud warning). */
  crlWarning?: string;
}

/**
 * The CRL each configuration enforces, for the next load to compare against (a rollback
 * check) and for the hourly staleness warning. Kept beside the configuration, not in it: it
 * holds parsed certificates, which are no part of the public API.
 */
const crlOf = new WeakMap<ServeConfig, LoadedCrl>();

/** The CRL `config` enforces, if any. */
export function crlInForce(config: ServeConfig): LoadedCrl | undefined {
  return crlOf.get(config);
}

/**
 * Load and validate serve's configuration. Rejects with a one-line error naming the file at
 * fault; nothing partial is ever returned. With `previous` (a reload), revocations can only
 * grow: a CRL that was in force may not disappear, and an older one may not replace it.
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
export async function loadServeConfig(
  source: ServeConfigSource,
  previous?: ServeConfig,
): Promise<ServeConfig> {
  const creds = await loadCredentials(source.paths, {
    role: "server",
    insecureKeyPerms: source.insecureKeyPerms,
  });
  const files = [source.paths.cert, source.paths.key, source.paths.ca];
  // The CA bundle was validated by loadCredentials; the CRL is checked against it.
  const crl = await loadCrl(source, parseCertificatesPem(creds.caPem), previous);
  if (source.crlPath) files.push(source.crlPath); // watched, so the first revocation is picked up
  const apiPolicy = source.apiPolicyPath
    ? await loadApiPolicyFile(source.apiPolicyPath, { insecurePerms: source.insecureKeyPerms })
    : undefined;
  if (source.apiPolicyPath) files.push(source.apiPolicyPath);
  const stale = source.crlStale ?? "warn";
  const crlWarning = crl ? crlStaleness(crl) : undefined;
  if (crlWarning && stale === "refuse") {
    throw new Error(`Cannot use CRL "${crl!.path}": ${crlWarning} and --crl-stale is refuse`);
  }
  const config: ServeConfig = {
    tls: { certPem: creds.certPem, keyPem: creds.keyPem, caPem: creds.caPem },
    policy: source.policy,
    revocations: crl && {
      serials: crl.serials,
      thisUpdate: crl.thisUpdate,
      nextUpdate: crl.nextUpdate,
      stale,
    },
    apiPolicy,
    files,
    revokedCount: crl?.serials.size,
    crlWarning,
  };
  if (crl) crlOf.set(config, crl);
  return config;
}

/** The CRL to enforce, or `undefined` when there is none and that is allowed. */
async function loadCrl(
  source: ServeConfigSource,
  cas: Parameters<typeof loadCrlFile>[1],
  previous: ServeConfig | undefined,
): Promise<LoadedCrl | undefined> {
  const path = source.crlPath;
  if (!path) return undefined;
  // lstat: a dangling symlink is a broken CRL, not an absent one.
  const present = await pathExists(path, { follow: false, what: "CRL" });
  const before = previous && crlOf.get(previous);
  if (!present && before) {
    throw new Error(
      `CRL "${path}" was in force (${before.serials.size} revoked) and is now missing: ` +
        `keeping the revocations in force (restore it, or run "dockgate keygen crl")`,
    );
  }
  if (!present && source.crlOptional) {
    const recorded = await recordedRevocations(source.revocationRecord);
    if (recorded > 0) {
      throw new Error(
        `No CRL at "${path}", but the revocation record "${source.revocationRecord}" lists ` +
          `${recorded} revoked certificate(s): refusing to run without it ` +
          `(run "dockgate keygen crl" to publish it again)`,
      );
    }
    return undefined;
  }
  if (source.insecureKeyPerms !== true) await checkTrustedPath(path, "CRL");
  const crl = await loadCrlFile(path, cas);
  const rollback = crlRollback(before, crl);
  if (rollback) throw new Error(rollback);
  return crl;
}

/** How many revocations the PKI's record lists (0 when there is no record). */
async function recordedRevocations(path: string | undefined): Promise<number> {
  return path ? (await readRevokedFile(path)).length : 0;
}
