/**
 * Everything serve reads from disk, loaded and validated as one unit: certificate, key, CA
 * bundle, CRL and access policy. Startup and every reload go through {@linkcode loadServeConfig},
 * so a reload is accepted only if it would also have been a valid startup.
 *
 * @module
 */

import type { RevocationList, Revocations } from "../access/authorize.ts";
import { issuerKeyOf } from "../pki/chain.ts";
import type { x509 } from "../pki/x509.ts";
import { parseCertificatesPem } from "../pki/pem.ts";
import { type CredentialPaths, loadCredentials } from "../pki/credentials.ts";
import { crlRollback, loadCrls as loadCrlsFrom, type LoadedCrl } from "../pki/crl.ts";
import { crlStaleness } from "../access/authorize.ts";
import { checkTrustedPath } from "../pki/trust_files.ts";
import { recordedRevocations } from "../ca/records.ts";
import type { AccessPolicy } from "../access/policy.ts";
import type { TlsMaterial } from "../net/tls_config.ts";
import { pathExists } from "../util/fs_util.ts";
import type { ApiPolicy } from "../docker/api_policy.ts";
import { loadApiPolicyFile } from "./policy_file.ts";

/** Where serve's configuration comes from. */
export interface ServeConfigSource {
  /** Server certificate, key and client CA bundle. */
  paths: CredentialPaths;
  /**
   * CRL files or directories (PEM with one or more CRLs, or DER; a directory: each file in
   * it). Without any, no certificate is considered revoked. Default: none.
   */
  crls?: CrlSource[];
  /**
   * A bundle directory of `dockgate keygen`'s tree (`DIR/server`, `DIR/servers/HOST`): the
   * revocation records of every CA of its PKI (read again at each load, see
   * `revocationCaDirs`) say whether anything was revoked. When they list revoked
   * certificates, a missing optional CRL is an error, not "nothing revoked". Default: none.
   */
  pkiBundleDir?: string;
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

/** One place CRLs are read from. */
export interface CrlSource {
  /** A file (PEM, several CRLs allowed, or DER) or a directory of such files. */
  path: string;
  /**
   * Treat a missing `path` as "no CRL yet" instead of an error (the `crl.pem` looked for in
   * the `--certs` directory, which appears with the first revocation). Default: false.
   */
  optional?: boolean;
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
  /** Number of revoked serials in the CRLs, if any was loaded. */
  revokedCount?: number;
  /** How many CAs have a CRL in force. */
  crlIssuers?: number;
  /** Why a CRL is outside its validity window, if one is (for a loud warning). */
  crlWarning?: string;
}

/**
 * The CRLs each configuration enforces, the newest per issuing CA, for the next load to
 * compare against (the rollback check) and for the hourly staleness warning. Kept beside the
 * configuration, not in it: they hold parsed certificates, which are no part of the public API.
 */
const crlsOf = new WeakMap<ServeConfig, LoadedCrl[]>();

/** The CRLs `config` enforces, the newest per issuing CA (empty when none). */
export function crlsInForce(config: ServeConfig): LoadedCrl[] {
  return crlsOf.get(config) ?? [];
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
  // The CA bundle was validated by loadCredentials; the CRLs are checked against it.
  const bundle = parseCertificatesPem(creds.caPem);
  const crls = await loadCrls(source, bundle, previous);
  for (const c of source.crls ?? []) files.push(c.path); // watched: the first revocation is picked up
  const apiPolicy = source.apiPolicyPath
    ? await loadApiPolicyFile(source.apiPolicyPath, { insecurePerms: source.insecureKeyPerms })
    : undefined;
  if (source.apiPolicyPath) files.push(source.apiPolicyPath);
  const stale = source.crlStale ?? "warn";
  const staleOne = crls.newest.find((c) => crlStaleness(c));
  const crlWarning = staleOne && `CRL "${staleOne.path}": ${crlStaleness(staleOne)}`;
  if (crlWarning && stale === "refuse") {
    throw new Error(`Cannot use ${crlWarning} and --crl-stale is refuse`);
  }
  const some = crls.newest.length > 0;
  const config: ServeConfig = {
    tls: { certPem: creds.certPem, keyPem: creds.keyPem, caPem: creds.caPem },
    policy: source.policy,
    revocations: some ? { byIssuer: crls.byIssuer, stale } : undefined,
    apiPolicy,
    files,
    revokedCount: some
      ? [...crls.byIssuer.values()].reduce((n, l) => n + l.serials.size, 0)
      : undefined,
    crlIssuers: some ? crls.byIssuer.size : undefined,
    crlWarning,
  };
  if (some) crlsOf.set(config, crls.newest);
  return config;
}

/** The CRLs of a load: per issuing CA, the merged list, and the newest CRL. */
interface CrlSet {
  byIssuer: Map<string, RevocationList>;
  newest: LoadedCrl[];
}

/**
 * Every CRL source read, grouped by the CA that signed each CRL. Revocations may only grow:
 * a source in force may not go missing, the newest CRL of a CA may not be older than the one
 * in force (a rollback), and a CA that is still in the bundle may not lose its CRL.
 */
async function loadCrls(
  source: ServeConfigSource,
  bundle: x509.X509Certificate[],
  previous: ServeConfig | undefined,
): Promise<CrlSet> {
  const before = previous ? crlsInForce(previous) : [];
  const all: LoadedCrl[] = [];
  for (const c of source.crls ?? []) all.push(...await loadSource(source, c, bundle, before));
  const groups = new Map<string, LoadedCrl[]>();
  for (const crl of all) {
    const key = issuerKeyOf(crl.signer);
    groups.set(key, [...(groups.get(key) ?? []), crl]);
  }
  const byIssuer = new Map<string, RevocationList>();
  const newest: LoadedCrl[] = [];
  for (const [key, list] of groups) {
    const top = list.reduce((a, b) => (newerCrl(b, a) ? b : a));
    const old = before.find((p) => issuerKeyOf(p.signer) === key);
    const rollback = crlRollback(old, top);
    if (rollback) throw new Error(rollback);
    newest.push(top);
    // Several CRLs of one CA: every entry counts (an old copy beside a new one adds, never hides).
    const serials = list.length === 1 ? top.serials : new Set(list.flatMap((l) => [...l.serials]));
    byIssuer.set(key, {
      serials,
      issuer: top.signer.subject,
      thisUpdate: top.thisUpdate,
      nextUpdate: top.nextUpdate,
    });
  }
  const stillTrusted = new Set(bundle.map(issuerKeyOf));
  for (const old of before) {
    const key = issuerKeyOf(old.signer);
    if (!byIssuer.has(key) && stillTrusted.has(key)) {
      throw new Error(
        `The CRL of "${old.signer.subject}" (from "${old.path}", ${old.serials.size} revoked) ` +
          `was in force and is gone now: keeping the revocations in force (restore it)`,
      );
    }
  }
  return { byIssuer, newest };
}

/** Whether `a` supersedes `b` (same CA): a higher CRL number, else a later `thisUpdate`. */
function newerCrl(a: LoadedCrl, b: LoadedCrl): boolean {
  if (a.number !== undefined && b.number !== undefined && a.number !== b.number) {
    return a.number > b.number;
  }
  return a.thisUpdate > b.thisUpdate;
}

/** The CRLs of one source, `[]` when it is absent and that is allowed. */
async function loadSource(
  source: ServeConfigSource,
  crl: CrlSource,
  bundle: x509.X509Certificate[],
  before: LoadedCrl[],
): Promise<LoadedCrl[]> {
  const { path } = crl;
  // lstat: a dangling symlink is a broken CRL, not an absent one.
  const present = await pathExists(path, { follow: false, what: "CRL" });
  const inForce = before.filter((b) => b.path === path || b.path.startsWith(`${path}/`));
  if (!present && inForce.length > 0) {
    const count = inForce.reduce((n, b) => n + b.serials.size, 0);
    throw new Error(
      `CRL "${path}" was in force (${count} revoked) and is now missing: ` +
        `keeping the revocations in force (restore it, or run "dockgate keygen crl")`,
    );
  }
  if (!present && crl.optional) {
    const recorded = await recordedRevocations(source.pkiBundleDir);
    if (recorded.count > 0) {
      const files = recorded.files.map((f) => `"${f}"`).join(", ");
      throw new Error(
        `No CRL at "${path}", but the revocation record${recorded.files.length > 1 ? "s" : ""} ` +
          `${files} list${recorded.files.length > 1 ? "" : "s"} ${recorded.count} revoked ` +
          `certificate(s): refusing to run without it ` +
          `(run "dockgate keygen crl" to publish it again)`,
      );
    }
    return [];
  }
  const checkFile = source.insecureKeyPerms === true
    ? undefined
    : (file: string) => checkTrustedPath(file, "CRL");
  return await loadCrlsFrom(path, bundle, { checkFile });
}
