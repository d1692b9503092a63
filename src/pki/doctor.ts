/**
 * `dockgate doctor`'s checks of certificate bundles and a PKI: each check one result, with
 * the fix when it fails. The network checks (target, port, round trip) are in
 * `cli/run_doctor.ts`; these read files only.
 *
 * @module
 */

import { lstat, readFile } from "node:fs/promises";
import { basename, join } from "node:path";
import process from "node:process";
import { normalizeSerial, parsePeerCertificate } from "../access/identity.ts";
import { sanMatches } from "../access/policy.ts";
import { loadCrlFile, loadCrls } from "./crl.ts";
import { keyMatchesCertificate, parseCertificatePem, parseCertificatesPem } from "./pem.ts";
import { trustStoreOf, verifyChain } from "./chain.ts";
import { pkiLayout } from "./keygen.ts";
import {
  caDirs,
  clientsDir,
  fleetHostOf,
  intermediateDirs,
  recordFiles,
  serverBundleDirs,
  subdirs,
} from "./layout.ts";
import { readRevoked, recordedRevocations } from "./records.ts";
import type { X509Certificate } from "./x509.ts";

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

const SERVER_AUTH = "1.3.6.1.5.5.7.3.1";
const CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";

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
  /** Serials revoked by the PKI's CRL (a revoked bundle fails). */
  revoked?: ReadonlySet<string>;
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
  const out: CheckResult[] = [];
  const label = role.label;
  const files: Record<string, string> = {};
  for (const f of ["ca.pem", "cert.pem", "key.pem"]) {
    const path = join(dir, f);
    try {
      files[f] = await readFile(path, "utf8");
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      out.push({
        ok: false,
        what: `${label}: ${f} readable`,
        detail: `${path}: ${code}`,
        fix: code === "EACCES" ? `run as the user that owns ${path}` : role.reissue,
      });
    }
  }
  if (out.length > 0) return out;
  out.push({
    ok: true,
    what: `${label}: ca.pem, cert.pem, key.pem present and readable`,
    detail: dir,
  });
  out.push(await keyPermissions(join(dir, "key.pem"), label));
  let cert: X509Certificate;
  let cas: X509Certificate[];
  try {
    cert = parseCertificatePem(files["cert.pem"]);
    cas = parseCertificatesPem(files["ca.pem"]);
  } catch (err) {
    out.push({
      ok: false,
      what: `${label}: certificates parse`,
      detail: (err as Error).message,
      fix: role.reissue,
    });
    return out;
  }
  let matches = false;
  try {
    matches = await keyMatchesCertificate(files["key.pem"], files["cert.pem"]);
  } catch (err) {
    out.push({
      ok: false,
      what: `${label}: key matches certificate`,
      detail: (err as Error).message,
      fix: role.reissue,
    });
  }
  if (matches) out.push({ ok: true, what: `${label}: key matches certificate` });
  else if (!out.some((r) => r.what === `${label}: key matches certificate`)) {
    out.push({
      ok: false,
      what: `${label}: key matches certificate`,
      detail: `${join(dir, "key.pem")} is not the key of ${join(dir, "cert.pem")}`,
      fix: `put the bundle's own key back, or ${role.reissue}`,
    });
  }
  // The chain as the gate checks it: cert.pem's own intermediates, then ca.pem's.
  const sent = parseCertificatesPem(files["cert.pem"]).slice(1);
  const chain = await verifyChain(cert, sent, trustStoreOf(cas), role.role);
  out.push(
    chain.ok
      ? {
        ok: true,
        what: `${label}: certificate signed by the CA in ca.pem`,
        detail: chain.path.slice(1).map((c) => c.subject).join(" <- "),
      }
      : {
        ok: false,
        what: `${label}: certificate signed by the CA in ca.pem`,
        detail: chain.reason === "certificate not signed by a trusted CA"
          ? `issuer "${cert.issuer}" is not in ${join(dir, "ca.pem")}`
          : chain.reason,
        fix: `copy the issuing CA into ca.pem, or ${role.reissue}`,
      },
  );
  const { identity } = parsePeerCertificate(new Uint8Array(cert.rawData));
  const eku = role.role === "server" ? SERVER_AUTH : CLIENT_AUTH;
  const name = role.role === "server" ? "serverAuth" : "clientAuth";
  out.push(
    identity.extKeyUsages?.includes(eku)
      ? { ok: true, what: `${label}: extended key usage ${name}` }
      : {
        ok: false,
        what: `${label}: extended key usage ${name}`,
        detail: `the certificate's EKU is ${identity.extKeyUsages?.join(", ") ?? "absent"}`,
        fix: role.reissue,
      },
  );
  if (role.role === "server") {
    for (const host of role.hosts ?? []) {
      const covered = sanMatches(host, identity);
      out.push(
        covered ? { ok: true, what: `${label}: certificate names cover ${host}` } : {
          ok: false,
          what: `${label}: certificate names cover ${host}`,
          detail: `SANs: ${[...identity.dnsNames, ...identity.ips].join(", ") || "none"}`,
          fix:
            `dockgate keygen server --san ${host} --force (clients of ${host} fail to verify it)`,
        },
      );
    }
  }
  if (role.revoked) {
    out.push(
      role.revoked.has(identity.serial)
        ? {
          ok: false,
          what: `${label}: certificate not revoked`,
          detail: `serial ${identity.serial} is on the CRL`,
          fix: `${role.reissue}, or remove the bundle if it is retired`,
        }
        : { ok: true, what: `${label}: certificate not revoked` },
    );
  }
  const renew = role.renew ?? role.reissue;
  out.push(expiry(`${label}: certificate`, identity.notBefore, identity.notAfter, now, renew));
  for (const ca of cas) {
    out.push(
      expiry(`${label}: CA ${ca.subject}`, ca.notBefore, ca.notAfter, now, "issue a new CA"),
    );
  }
  const crlPath = join(dir, "crl.pem");
  if (await exists(crlPath)) out.push(await crlCheck(crlPath, cas, label, now));
  return out;
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
  const caCert = join(dir, "ca", "ca.pem");
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
  const pkiCas = await caCertificates(dir, cas);
  const revoked = await revokedSerials(dir, pkiCas, out);
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
    const label = caDir === join(dir, "ca") ? "CA" : `intermediate ${basename(caDir)}`;
    if (await exists(crl)) out.push(await crlCheck(crl, pkiCas, label, now));
  }
  return out;
}

/** The root CA certificates `root` and every intermediate's certificate of the PKI. */
async function caCertificates(dir: string, root: X509Certificate[]): Promise<X509Certificate[]> {
  const all = [...root];
  for (const d of await intermediateDirs(dir)) {
    // An unreadable intermediate is reported by its bundles' chain checks.
    const text = await readFile(join(d, "ca.pem"), "utf8").catch(() => "");
    if (text) all.push(...parseCertificatesPem(text));
  }
  return all;
}

/**
 * Every serial revoked by a CA of the PKI: listed by its record or by its CRL, as serve
 * (the record decides whether a CRL must be in force) and inspect (the CRLs) see them.
 * A record that cannot be read is a failure in `out`.
 */
async function revokedSerials(
  dir: string,
  cas: X509Certificate[],
  out: CheckResult[],
): Promise<Set<string>> {
  const serials = new Set<string>();
  for (const caDir of await caDirs(dir)) {
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
    const crl = recordFiles(caDir).crl;
    if (!(await exists(crl))) continue;
    // A CRL that does not verify is reported by crlCheck.
    const loaded = await loadCrlFile(crl, cas).catch(() => undefined);
    for (const s of loaded?.serials ?? []) serials.add(s);
  }
  return serials;
}

/** A server bundle without `crl.pem` while the PKI's records list revocations: serve refuses. */
async function crlPresent(bundleDir: string, label: string): Promise<CheckResult[]> {
  const crl = join(bundleDir, "crl.pem");
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
