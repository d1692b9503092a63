/**
 * Replacing the root CA without an outage: `keygen rotate-ca` and `keygen retire-ca`.
 *
 * `rotate-ca` makes a new root in `DIR/ca/` and keeps the old one, its key and its records in
 * `DIR/ca-previous/`. From then on everything is issued and renewed by the new root, while
 * both are trusted: server bundles get both roots in `ca.pem` (clients of either CA get in,
 * and the old root's CRL stays in their `crl.pem`), servers issued by the root are re-issued
 * by the new one with a cross-certificate (`DIR/ca/cross.pem`, the new root signed by the
 * old) after the leaf, so clients that still trust only the old root verify them;
 * intermediates are re-signed by the new root with the same key and name, so what they issued
 * stays valid. Once every certificate of the old root has expired or been renewed,
 * `retire-ca` stops trusting it: the old root moves to `DIR/ca/retired/TIME/` and the
 * bundles are rewritten without it.
 *
 * @module
 */

import { readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { createCa, type KeyType, type PemPair, renewLeaf, signCaCertificate } from "./issue.ts";
import {
  bundlePaths,
  caFiles,
  clientBundlePaths,
  fleetHostOf,
  intermediateDirs,
  pkiLayout,
  previousIntermediateCert,
  retiredCasDir,
  serverBundleDirs,
  subdirs,
} from "./layout.ts";
import {
  clientTrustPem,
  issuedByPreviousRoot,
  loadCa,
  rootChainPem,
  rotationUnderWay,
  serverTrustPem,
} from "./issuers.ts";
import {
  AlreadyExistsError,
  CERT_MODE,
  ensureDir,
  KEY_MODE,
  type KeygenReport,
  NO_FOLLOW,
  writeFileSafely,
} from "./files.ts";
import {
  issuedEntry,
  publishCrl,
  readIssued,
  readRevoked,
  recordIssued,
  syncServerCrls,
} from "./records.ts";
import { certToPem, parseCertificatePem, parseCertificatesPem } from "../pki/pem.ts";
import { normalizeSerial } from "../pki/serial.ts";
import { pathExists } from "../util/fs_util.ts";

/** Options for {@linkcode rotateCa}. */
export interface RotateCaOptions {
  /** The PKI directory. */
  dir: string;
  /** The new root's key type. Default: p256. */
  keyType?: KeyType;
  /** The new root's lifetime in days. Default: 3650. */
  caDays?: number;
}

/**
 * Start a rotation: a new root, both trusted, the new one issuing (see the module doc).
 * Throws {@linkcode AlreadyExistsError} when a rotation is already under way.
 *
 * @example
 * ```ts ignore
 * import { rotateCa } from "./rotate_ca.ts";
 * const report = await rotateCa({ dir: "pki" });
 * ```
 */
export async function rotateCa(options: RotateCaOptions): Promise<KeygenReport> {
  const layout = pkiLayout(options.dir);
  if (await rotationUnderWay(options.dir)) {
    throw new AlreadyExistsError(
      layout.previousCaDir,
      `A CA rotation is already under way ("${layout.previousCaDir}" exists): finish it with ` +
        `"dockgate keygen retire-ca --dir ${layout.dir}"`,
    );
  }
  const old = await loadCa(options.dir);
  const stamp = new Date().toISOString().slice(0, 16).replace(":", "-");
  // A name of its own: two roots of one name make every path search ambiguous.
  const next = await createCa({
    keyType: options.keyType,
    days: options.caDays ?? 3650,
    commonName: `dockgate CA ${stamp}Z`,
  });
  const cross = await signCaCertificate(next.certPem, old, 0);
  const report: Required<Omit<KeygenReport, "revoked">> = { created: [], kept: [], notes: [] };
  await writeNextRoot(layout.dir, next, cross, report);
  await resignIntermediates(layout.dir, next, report);
  await publishCrl({ caDir: layout.caDir, pkiDir: layout.dir }, next);
  const reissued = await rewriteServerBundles(layout.dir, next, report);
  await rewriteClientTrust(layout.dir, report);
  report.created.push(...await syncServerCrls(layout.dir));
  report.notes.push(
    `The previous root was kept in "${layout.previousCaDir}": it stays trusted, and its ` +
      `revocations in force, until "dockgate keygen retire-ca"`,
    `Re-issued by the new root, with the cross-certificate: ${reissued.join(", ") || "none"}; ` +
      `copy each server bundle to its host (a running serve reloads it)`,
    `Renew each client ("dockgate keygen renew NAME"): the new certificate comes from the new ` +
      `root and its ca.pem trusts both; then run "dockgate keygen retire-ca"`,
  );
  return report;
}

/**
 * Write the new root into `DIR/ca-next/`, then swap: `DIR/ca` → `DIR/ca-previous`,
 * `DIR/ca-next` → `DIR/ca`. Why two renames: each is atomic, and no moment has a half-written
 * root in `DIR/ca`.
 */
async function writeNextRoot(
  dir: string,
  next: PemPair,
  cross: string,
  report: KeygenReport,
): Promise<void> {
  const layout = pkiLayout(dir);
  const staging = join(dir, "ca-next");
  if (await pathExists(staging, NO_FOLLOW)) {
    throw new AlreadyExistsError(
      staging,
      `"${staging}" exists (an interrupted rotate-ca?): look at it and remove it first`,
    );
  }
  await ensureDir(staging);
  const files = caFiles(staging);
  const scratch: KeygenReport = { created: [], kept: [] };
  await writeFileSafely(files.key, next.keyPem, KEY_MODE, false, scratch);
  await writeFileSafely(files.cert, next.certPem, CERT_MODE, false, scratch);
  await writeFileSafely(join(staging, "cross.pem"), cross, CERT_MODE, false, scratch);
  // The CRL number keeps growing: no CRL of this PKI ever looks older than one before it.
  const number = join(layout.caDir, "crlnumber");
  if (await pathExists(number, NO_FOLLOW)) {
    await writeFileSafely(
      join(staging, "crlnumber"),
      await readFile(number, "utf8"),
      KEY_MODE,
      false,
      scratch,
    );
  }
  await recordIssued(staging, [issuedEntry(next.certPem, "ca", "ca")]);
  await rename(layout.caDir, layout.previousCaDir);
  await rename(staging, layout.caDir);
  report.created.push(layout.caCert, layout.caKey, layout.crossCert, layout.previousCaDir);
}

/**
 * Re-sign each intermediate under the new root, same key and name; the certificate signed by
 * the old root stays beside it as `ca-previous.pem` (server chains keep it until retire-ca,
 * for clients that trust only the old root).
 */
async function resignIntermediates(
  dir: string,
  next: PemPair,
  report: Required<Omit<KeygenReport, "revoked">>,
) {
  const revoked = await revokedByPreviousRoot(dir);
  for (const d of await intermediateDirs(dir)) {
    const files = caFiles(d);
    if (!(await pathExists(files.cert, NO_FOLLOW))) continue;
    const current = await readFile(files.cert, "utf8");
    // A revoked intermediate signed by the new root would be a clean path to what it issued:
    // it stays with its old certificate, which the old root's CRL revokes and retire-ca ends.
    if (revoked.has(normalizeSerial(parseCertificatePem(current).serialNumber))) {
      report.notes.push(
        `Not re-signed: intermediate "${d}" (the previous root revoked it); remove it before ` +
          `"dockgate keygen retire-ca" (after it, its certificate chains to no trusted root)`,
      );
      continue;
    }
    await writeFileSafely(previousIntermediateCert(d), current, CERT_MODE, true, report);
    await writeFileSafely(
      files.cert,
      await signCaCertificate(current, next, 0),
      CERT_MODE,
      true,
      report,
    );
  }
}

/**
 * Each server bundle gets the trust of the rotation (both roots); one the old root issued is
 * re-issued by the new root for the same key and names, with the cross-certificate after it.
 * Returns the bundles re-issued.
 */
async function rewriteServerBundles(dir: string, next: PemPair, report: KeygenReport) {
  const reissued: string[] = [];
  const revoked = await revokedByPreviousRoot(dir);
  const trust = await serverTrustPem(dir);
  for (const bundle of await serverBundleDirs(dir)) {
    const paths = bundlePaths(bundle);
    await writeFileSafely(paths.ca, trust, CERT_MODE, true, report);
    if (!(await pathExists(paths.cert, NO_FOLLOW))) continue;
    const certPem = await readFile(paths.cert, "utf8");
    const leaf = parseCertificatePem(certPem);
    if (!(await issuedByPreviousRoot(dir, leaf))) continue;
    if (revoked.has(normalizeSerial(leaf.serialNumber))) continue; // no fresh one for a revoked
    const renewed = await renewLeaf(next, certToPem(leaf), {
      days: daysLeft(leaf.notAfter),
    });
    await writeFileSafely(
      paths.cert,
      renewed.certPem + await rootChainPem(dir),
      CERT_MODE,
      true,
      report,
    );
    await recordIssued(pkiLayout(dir).caDir, [
      // The record's name, as keygen server --name wrote it.
      issuedEntry(renewed.certPem, fleetHostOf(bundle) ?? "server", "server"),
    ]);
    reissued.push(bundle);
  }
  return reissued;
}

/** The client bundles' `ca.pem` in the PKI directory, rewritten to {@linkcode clientTrustPem}. */
async function rewriteClientTrust(dir: string, report: KeygenReport): Promise<void> {
  const trust = await clientTrustPem(dir);
  for (const name of await subdirs(pkiLayout(dir).clientsDir)) {
    const paths = clientBundlePaths(dir, name);
    if (await pathExists(paths.cert, NO_FOLLOW)) {
      await writeFileSafely(paths.ca, trust, CERT_MODE, true, report);
    }
  }
}

/** The serials the previous root revoked (normalised), once it is `DIR/ca-previous`. */
async function revokedByPreviousRoot(dir: string): Promise<Set<string>> {
  const records = await readRevoked(pkiLayout(dir).previousCaDir);
  return new Set(records.map((r) => normalizeSerial(r.serial)));
}

/** Whole days until `end` (at least 1): a re-issue keeps the certificate's lifetime. */
function daysLeft(end: Date): number {
  return Math.max(1, Math.min(36500, Math.ceil((end.getTime() - Date.now()) / 86_400_000)));
}

/** Options for {@linkcode retirePreviousCa}. */
export interface RetireCaOptions {
  /** The PKI directory. */
  dir: string;
  /** Retire even though certificates of the old root are still valid and not renewed. */
  force?: boolean;
  /** Now, for the expiry of the old root's certificates. Default: the clock. */
  now?: Date;
}

/**
 * End a rotation: the old root is no longer trusted; it moves (key, records) to
 * `DIR/ca/retired/TIME/`, and the bundles are rewritten without it. Refuses, naming them,
 * while certificates of the old root are unexpired, unrevoked and not renewed by the new one,
 * unless `force`.
 *
 * @example
 * ```ts ignore
 * import { retirePreviousCa } from "./rotate_ca.ts";
 * await retirePreviousCa({ dir: "pki" });
 * ```
 */
export async function retirePreviousCa(options: RetireCaOptions): Promise<KeygenReport> {
  const layout = pkiLayout(options.dir);
  if (!(await rotationUnderWay(options.dir))) {
    throw new Error(
      `No CA rotation is under way in "${layout.dir}" (no "${layout.previousCaDir}"): start ` +
        `one with "dockgate keygen rotate-ca"`,
    );
  }
  const left = await notRenewed(options.dir, options.now ?? new Date());
  if (left.length > 0 && options.force !== true) {
    throw new Error(
      `Cannot retire the previous root: ${left.length} certificate(s) it issued are still ` +
        `valid and not renewed (${left.join(", ")}): renew them with "dockgate keygen renew ` +
        `NAME", or pass --force to lock them out`,
    );
  }
  const report: Required<Omit<KeygenReport, "revoked">> = { created: [], kept: [], notes: [] };
  const stale = await bundlesOfPreviousRoot(options.dir);
  const kept = await moveToRetired(options.dir);
  for (const d of await intermediateDirs(layout.dir)) {
    await rm(previousIntermediateCert(d), { force: true });
  }
  await rewriteAfterRetire(options.dir, report);
  report.created.push(...await syncServerCrls(layout.dir));
  report.notes.push(
    `The previous root was kept in "${kept}" and is no longer trusted: copy the server ` +
      `bundles to their hosts, and give clients their new ca.pem (it trusts the new root only)`,
  );
  if (stale.length > 0) {
    report.notes.push(
      `These client bundles hold a certificate of the retired root and no longer get in: ` +
        `${stale.join(", ")} (remove them, or re-issue with "dockgate keygen client NAME --force")`,
    );
  }
  return report;
}

/** The client bundles of the PKI directory whose certificate the previous root issued. */
async function bundlesOfPreviousRoot(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const name of await subdirs(pkiLayout(dir).clientsDir)) {
    const cert = clientBundlePaths(dir, name).cert;
    if (!(await pathExists(cert, NO_FOLLOW))) continue;
    const leaf = parseCertificatePem(await readFile(cert, "utf8"));
    if (await issuedByPreviousRoot(dir, leaf)) out.push(name);
  }
  return out;
}

/**
 * The old root's leaves still in force: not expired, not revoked, and with no certificate of
 * the same name and role from the new root issued after them. As `NAME (serial S)`.
 */
async function notRenewed(dir: string, now: Date): Promise<string[]> {
  const layout = pkiLayout(dir);
  const revoked = new Set(
    (await readRevoked(layout.previousCaDir)).map((r) => normalizeSerial(r.serial)),
  );
  const renewed = await readIssued(layout.caDir);
  const left: string[] = [];
  for (const e of await readIssued(layout.previousCaDir)) {
    if (e.role === "ca" || new Date(e.notAfter) <= now) continue;
    if (revoked.has(normalizeSerial(e.serial))) continue;
    const successor = renewed.some((n) =>
      n.role === e.role && n.name === e.name && n.issuedAt >= e.issuedAt
    );
    if (!successor) left.push(`${e.name} (serial ${e.serial})`);
  }
  return left;
}

/** Move `DIR/ca-previous` and the cross-certificate into `DIR/ca/retired/TIME-rotated/`. */
async function moveToRetired(dir: string): Promise<string> {
  const layout = pkiLayout(dir);
  const parent = retiredCasDir(layout.caDir);
  await ensureDir(parent);
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  let target = join(parent, `${stamp}-rotated`);
  for (let n = 2; await pathExists(target, NO_FOLLOW); n++) {
    target = join(parent, `${stamp}-rotated-${n}`);
  }
  await rename(layout.previousCaDir, target);
  if (await pathExists(layout.crossCert, NO_FOLLOW)) {
    await rename(layout.crossCert, join(target, "cross.pem"));
  }
  return target;
}

/**
 * Server bundles: the trust of the new root alone; every bundle's certificate (servers and
 * clients) with its chain as it is issued now: nothing after a root's leaf (the
 * cross-certificate goes), an intermediate's certificate under the new root. Client bundles:
 * `ca.pem` with the new root alone.
 */
async function rewriteAfterRetire(dir: string, report: KeygenReport): Promise<void> {
  const trust = await serverTrustPem(dir);
  const intermediates: string[] = [];
  for (const d of await intermediateDirs(dir)) {
    const cert = caFiles(d).cert;
    if (await pathExists(cert, NO_FOLLOW)) intermediates.push(await readFile(cert, "utf8"));
  }
  for (const bundle of await serverBundleDirs(dir)) {
    const paths = bundlePaths(bundle);
    await writeFileSafely(paths.ca, trust, CERT_MODE, true, report);
    await rechain(paths.cert, intermediates, report);
  }
  for (const name of await subdirs(pkiLayout(dir).clientsDir)) {
    await rechain(clientBundlePaths(dir, name).cert, intermediates, report);
  }
  await rewriteClientTrust(dir, report);
}

/** Rewrite `certPath`'s chain: each intermediate swapped for its current certificate. */
async function rechain(certPath: string, intermediates: string[], report: KeygenReport) {
  if (!(await pathExists(certPath, NO_FOLLOW))) return;
  const [leaf, ...chain] = parseCertificatesPem(await readFile(certPath, "utf8"));
  const current = chain.flatMap((c) => {
    const same = intermediates.find((pem) => parseCertificatePem(pem).subject === c.subject);
    return same === undefined ? [] : [same];
  });
  await writeFileSafely(certPath, certToPem(leaf) + current.join(""), CERT_MODE, true, report);
}
