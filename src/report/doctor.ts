/**
 * `dockgate doctor`'s checks of certificate bundles and a PKI: each check one result, with
 * the fix when it fails. The network checks (target, port, round trip) are in
 * `cli/run_doctor.ts`; these read files only.
 *
 * @module
 */

import { lstat, readFile } from "node:fs/promises";
import { basename } from "node:path";
import process from "node:process";
import { normalizeSerial } from "../pki/serial.ts";
import { parsePeerCertificate, type PeerIdentity } from "../access/identity.ts";
import { sanMatches } from "../access/policy.ts";
import { loadCrlFile, loadCrls } from "../pki/crl.ts";
import { keyMatchesCertificate, parseCertificatePem, parseCertificatesPem } from "../pki/pem.ts";
import { trustStoreOf, verifyChain } from "../pki/chain.ts";
import { signerOf } from "../pki/verify.ts";
import {
  bundleCrlPath,
  type BundlePaths,
  bundlePaths,
  caDirs,
  caFiles,
  clientsDir,
  fleetHostOf,
  pkiLayout,
  recordFiles,
  serverBundleDirs,
  subdirs,
} from "../ca/layout.ts";
import { readRevoked, recordedRevocations } from "../ca/records.ts";
import type { X509Certificate } from "../pki/x509.ts";
import { leafUsageProblem } from "../pki/usage.ts";

/** One check's outcome. */
export interface CheckResult {
  /** Passed. */
  ok: boolean;
  /** What was checked, e.g. `server: key matches certificate`. */
  what: string;
  /** What was found (a failure's cause, or a detail worth showing). */
  detail?: string;
  /** How to fix a failure. */
  fix?: string;
  /** Lines printed under the result (e.g. the shields active for a target). */
  lines?: readonly string[];
}

/** Days before expiry from which the expiry check fails. */
export const EXPIRY_DAYS = 30;

/** The serials each CA revoked, by the CA's certificate. */
export type RevokedByCa = ReadonlyMap<X509Certificate, ReadonlySet<string>>;

/** What a bundle is for, and how to remake it. */
export interface BundleRole {
  /** `server` or `client`. */
  role: "server" | "client";
  /** A label for the lines (`server`, `client alice`). */
  label: string;
  /** The command that re-issues it (for fixes). */
  reissue: string;
  /** The command that renews it (for the expiry fix). Default: `reissue`. */
  renew?: string;
  /**
   * The serials each CA of the PKI revoked (its records and its CRL), by CA certificate: a
   * bundle is revoked when the CA that signed it lists its serial, as serve decides (a serial
   * is only ever revoked by its own issuer; another CA's same serial is another certificate).
   */
  revoked?: RevokedByCa;
  /** For a server: the host names clients use (each must be covered by a SAN). */
  hosts?: string[];
}

/**
 * Check a bundle directory (`ca.pem`, `cert.pem`, `key.pem`): readable, key private and
 * matching, signed by its CA (and by `trustedCas` when given), the right usage, the hosts
 * covered, not expiring within {@linkcode EXPIRY_DAYS}, and its CRL (if any) signed and fresh.
 */
export async function checkBundle(
  dir: string,
  role: BundleRole,
  now: Date = new Date(),
): Promise<CheckResult[]> {
  const paths = bundlePaths(dir);
  const read = await readBundle(paths, role);
  if (!read.files) return read.out;
  const { out, files } = read;
  out.push(await keyPermissions(paths.key, role.label));
  let cert: X509Certificate;
  let cas: X509Certificate[];
  try {
    cert = parseCertificatePem(files.cert);
    cas = parseCertificatesPem(files.ca);
  } catch (err) {
    out.push({
      ok: false,
      what: `${role.label}: certificates parse`,
      detail: (err as Error).message,
      fix: role.reissue,
    });
    return out;
  }
  out.push(await keyMatch(paths, files, role));
  out.push(await chainCheck(paths, files, cert, cas, role));
  const { identity } = parsePeerCertificate(new Uint8Array(cert.rawData));
  out.push(usageCheck(identity, role, now));
  if (role.role === "server") {
    for (const host of role.hosts ?? []) out.push(hostCheck(host, identity, role));
  }
  if (role.revoked) out.push(await revokedCheck(cert, identity, role, role.revoked));
  const renew = role.renew ?? role.reissue;
  out.push(
    expiry(`${role.label}: certificate`, identity.notBefore, identity.notAfter, now, renew),
  );
  for (const ca of cas) {
    out.push(
      expiry(`${role.label}: CA ${ca.subject}`, ca.notBefore, ca.notAfter, now, "issue a new CA"),
    );
  }
  const crlPath = bundleCrlPath(dir);
  if (await exists(crlPath)) out.push(await crlCheck(crlPath, cas, role.label, now));
  return out;
}

/** The bundle's three files, or the failures to read them. */
async function readBundle(
  paths: BundlePaths,
  role: BundleRole,
): Promise<{ out: CheckResult[]; files?: { ca: string; cert: string; key: string } }> {
  const out: CheckResult[] = [];
  const text: string[] = [];
  for (const path of [paths.ca, paths.cert, paths.key]) {
    try {
      text.push(await readFile(path, "utf8"));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      out.push({
        ok: false,
        what: `${role.label}: ${basename(path)} readable`,
        detail: `${path}: ${code}`,
        fix: code === "EACCES" ? `run as the user that owns ${path}` : role.reissue,
      });
    }
  }
  if (out.length > 0) return { out };
  out.push({
    ok: true,
    what: `${role.label}: ca.pem, cert.pem, key.pem present and readable`,
    detail: paths.dir,
  });
  return { out, files: { ca: text[0], cert: text[1], key: text[2] } };
}

/** Whether `key.pem` is the key of `cert.pem`. */
async function keyMatch(
  paths: BundlePaths,
  files: { cert: string; key: string },
  role: BundleRole,
): Promise<CheckResult> {
  const what = `${role.label}: key matches certificate`;
  try {
    if (await keyMatchesCertificate(files.key, files.cert)) return { ok: true, what };
  } catch (err) {
    return { ok: false, what, detail: (err as Error).message, fix: role.reissue };
  }
  return {
    ok: false,
    what,
    detail: `${paths.key} is not the key of ${paths.cert}`,
    fix: `put the bundle's own key back, or ${role.reissue}`,
  };
}

/** The chain as the gate checks it: cert.pem's own intermediates, then ca.pem's. */
async function chainCheck(
  paths: BundlePaths,
  files: { cert: string },
  cert: X509Certificate,
  cas: X509Certificate[],
  role: BundleRole,
): Promise<CheckResult> {
  const what = `${role.label}: certificate signed by the CA in ca.pem`;
  const sent = parseCertificatesPem(files.cert).slice(1);
  const chain = await verifyChain(cert, sent, trustStoreOf(cas), role.role);
  if (chain.ok) {
    return {
      ok: true,
      what,
      detail: chain.path.slice(1).map((c) => c.subject).join(" <- "),
    };
  }
  return {
    ok: false,
    what,
    detail: chain.reason === "certificate not signed by a trusted CA"
      ? `issuer "${cert.issuer}" is not in ${paths.ca}`
      : chain.reason,
    fix: `copy the issuing CA into ca.pem, or ${role.reissue}`,
  };
}

/** The one usage rule, as serve and the gate apply it (the EKU named in the line). */
function usageCheck(identity: PeerIdentity, role: BundleRole, now: Date): CheckResult {
  const usage = leafUsageProblem(identity, role.role, now);
  const what = `${role.label}: usable as a TLS ${role.role} (extended key usage ` +
    `${role.role}Auth, not a CA, key usage, dates)`;
  if (!usage) return { ok: true, what };
  const detail = usage.rule === "eku"
    ? `${usage.reason}: the certificate's EKU is ${identity.extKeyUsages?.join(", ") ?? "absent"}`
    : usage.reason;
  return { ok: false, what, detail, fix: role.reissue };
}

/** Whether the server certificate's names cover `host`. */
function hostCheck(host: string, identity: PeerIdentity, role: BundleRole): CheckResult {
  const what = `${role.label}: certificate names cover ${host}`;
  if (sanMatches(host, identity)) return { ok: true, what };
  return {
    ok: false,
    what,
    detail: `SANs: ${[...identity.dnsNames, ...identity.ips].join(", ") || "none"}`,
    fix: `dockgate keygen server --san ${host} --force (clients of ${host} fail to verify it)`,
  };
}

/** Whether the CA that signed `cert` (verify.ts's one rule) revoked its serial. */
async function revokedCheck(
  cert: X509Certificate,
  identity: PeerIdentity,
  role: BundleRole,
  revoked: RevokedByCa,
): Promise<CheckResult> {
  const what = `${role.label}: certificate not revoked`;
  const issuer = await signerOf(cert, [...revoked.keys()]);
  if (issuer === undefined || !revoked.get(issuer)!.has(identity.serial)) return { ok: true, what };
  return {
    ok: false,
    what,
    detail: `serial ${identity.serial} is revoked by ${issuer.subject}`,
    fix: `${role.reissue}, or remove the bundle if it is retired`,
  };
}

/**
 * Check a whole PKI in keygen's layout: the CA's own files, the server bundle (covering
 * `hosts`) and each fleet bundle `servers/HOST` (covering HOST), with the CRL serve needs,
 * every client bundle, revocations by the root or any intermediate (records and CRLs), and
 * each CA's CRL.
 */
export async function checkPki(
  dir: string,
  hosts: string[],
  now: Date = new Date(),
): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  const caCert = pkiLayout(dir).caCert;
  let cas: X509Certificate[] = [];
  try {
    cas = parseCertificatesPem(await readFile(caCert, "utf8"));
    out.push({ ok: true, what: `CA: ${caCert} readable`, detail: cas[0]?.subject });
  } catch (err) {
    out.push({
      ok: false,
      what: `CA: ${caCert} readable`,
      detail: (err as Error).message,
      fix: `dockgate keygen --dir ${dir}`,
    });
    return out;
  }
  out.push(await keyPermissions(pkiLayout(dir).caKey, "CA"));
  const revoked = await revokedByCa(dir, cas, out);
  const pkiCas = [...revoked.keys()];
  for (const bundleDir of await serverBundleDirs(dir)) {
    const host = fleetHostOf(bundleDir);
    const reissue = `dockgate keygen server${host ? ` --name ${host}` : ""} --dir ${dir} --force`;
    const label = host ? `server ${host}` : "server";
    out.push(
      ...await checkBundle(bundleDir, {
        role: "server",
        label,
        reissue,
        renew: host ? reissue : `dockgate keygen renew server --dir ${dir}`,
        hosts: host ? [host] : hosts,
        revoked,
      }, now),
    );
    out.push(...await crlPresent(bundleDir, label));
  }
  for (const name of await subdirs(clientsDir(dir))) {
    out.push(
      ...await checkBundle(clientsDir(dir, name), {
        role: "client",
        label: `client ${name}`,
        reissue: `dockgate keygen client ${name} --dir ${dir} --force`,
        renew: `dockgate keygen renew ${name} --dir ${dir}`,
        revoked,
      }, now),
    );
  }
  for (const caDir of await caDirs(dir)) {
    const crl = recordFiles(caDir).crl;
    const layout = pkiLayout(dir);
    const label = caDir === layout.caDir
      ? "CA"
      : caDir === layout.previousCaDir
      ? "previous CA (rotation under way)"
      : `intermediate ${basename(caDir)}`;
    if (await exists(crl)) out.push(await crlCheck(crl, pkiCas, label, now));
  }
  return out;
}

/**
 * Every CA of the PKI (the root `root`, then each intermediate) with the serials it revoked:
 * listed by its record or by its CRL, as serve (the record decides whether a CRL must be in
 * force) and inspect (the CRLs) see them. A record that cannot be read is a failure in `out`.
 */
async function revokedByCa(
  dir: string,
  root: X509Certificate[],
  out: CheckResult[],
): Promise<Map<X509Certificate, Set<string>>> {
  const byCa = new Map<X509Certificate, Set<string>>();
  const cas: X509Certificate[] = [];
  for (const caDir of await caDirs(dir)) {
    // An unreadable intermediate is reported by its bundles' chain checks.
    const own = caDir === pkiLayout(dir).caDir
      ? root
      : await readFile(caFiles(caDir).cert, "utf8").then(parseCertificatesPem, () => []);
    if (own.length === 0) continue;
    cas.push(...own);
    const serials = new Set<string>();
    for (const ca of own) byCa.set(ca, serials);
    try {
      for (const r of await readRevoked(caDir)) serials.add(normalizeSerial(r.serial));
    } catch (err) {
      out.push({
        ok: false,
        what: `${caDir}: revocation record readable`,
        detail: (err as Error).message,
        fix: "restore revoked.json from a backup",
      });
    }
  }
  for (const caDir of await caDirs(dir)) {
    const crl = recordFiles(caDir).crl;
    if (!(await exists(crl))) continue;
    // A CRL that does not verify is reported by crlCheck; one that does counts for its signer.
    const loaded = await loadCrlFile(crl, cas).catch(() => undefined);
    if (loaded) { for (const s of loaded.serials) byCa.get(loaded.signer)?.add(s); }
  }
  return byCa;
}

/** A server bundle without `crl.pem` while the PKI's records list revocations: serve refuses. */
async function crlPresent(bundleDir: string, label: string): Promise<CheckResult[]> {
  const crl = bundleCrlPath(bundleDir);
  if (await exists(crl)) return [];
  const recorded = await recordedRevocations(bundleDir).catch(() => undefined);
  if (!recorded || recorded.count === 0) return [];
  return [{
    ok: false,
    what: `${label}: CRL present (${crl})`,
    detail: `missing, but ${recorded.files.join(", ")} list ${recorded.count} revoked: ` +
      `serve refuses to start`,
    fix: "dockgate keygen crl (publishes it again from the records)",
  }];
}

async function exists(path: string): Promise<boolean> {
  return await lstat(path).then(() => true, () => false);
}

async function keyPermissions(path: string, label: string): Promise<CheckResult> {
  const what = `${label}: private key ${path} is private`;
  try {
    const info = await lstat(path);
    const uid = process.getuid?.();
    if (info.isSymbolicLink()) {
      return {
        ok: false,
        what,
        detail: "it is a symlink",
        fix: `replace the link by the file itself`,
      };
    }
    if ((info.mode & 0o077) !== 0) {
      return {
        ok: false,
        what,
        detail: `mode ${(info.mode & 0o777).toString(8).padStart(4, "0")}`,
        fix: `chmod 600 ${path}`,
      };
    }
    if (uid !== undefined && info.uid !== uid && info.uid !== 0) {
      return { ok: false, what, detail: `owned by uid ${info.uid}`, fix: `chown ${uid} ${path}` };
    }
    return { ok: true, what, detail: `mode ${(info.mode & 0o777).toString(8).padStart(4, "0")}` };
  } catch (err) {
    return {
      ok: false,
      what,
      detail: (err as NodeJS.ErrnoException).code ?? String(err),
      fix: `restore ${path}`,
    };
  }
}

function expiry(
  what: string,
  notBefore: Date,
  notAfter: Date,
  now: Date,
  fix: string,
): CheckResult {
  const days = Math.floor((notAfter.getTime() - now.getTime()) / 86_400_000);
  const label = `${what} valid for ${EXPIRY_DAYS}+ days`;
  if (now < notBefore) {
    return {
      ok: false,
      what: label,
      detail: `not valid before ${notBefore.toISOString()}`,
      fix: "check the clock",
    };
  }
  if (days < 0) return { ok: false, what: label, detail: `expired ${notAfter.toISOString()}`, fix };
  if (days < EXPIRY_DAYS) {
    return {
      ok: false,
      what: label,
      detail: `expires in ${days} days (${notAfter.toISOString()})`,
      fix,
    };
  }
  return { ok: true, what: label, detail: `${days} days left` };
}

async function crlCheck(
  path: string,
  cas: X509Certificate[],
  label: string,
  now: Date,
): Promise<CheckResult> {
  const what = `${label}: CRL ${path} signed by the CA and fresh`;
  try {
    // One CRL per CA of the PKI (the root's, each intermediate's), each checked.
    const crls = await loadCrls(path, cas);
    for (const crl of crls) {
      if (crl.nextUpdate && crl.nextUpdate < now) {
        return {
          ok: false,
          what,
          detail:
            `the nextUpdate of ${crl.signer.subject}'s CRL (${crl.nextUpdate.toISOString()}) has passed`,
          fix: "dockgate keygen crl (publish a fresh one)",
        };
      }
    }
    const revoked = crls.reduce((n, c) => n + c.serials.size, 0);
    return { ok: true, what, detail: `${revoked} revoked (${crls.length} CRL(s))` };
  } catch (err) {
    return { ok: false, what, detail: (err as Error).message, fix: "dockgate keygen crl" };
  }
}
