/**
 * What certificates a PKI or bundle holds, for `dockgate inspect`: each one's role, names,
 * usages, serial, end date and days left, key type, and whether a CRL found beside it (signed
 * by its issuer) revokes it.
 *
 * @module
 */

import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { parsePeerCertificate } from "../access/identity.ts";
import { loadCrls } from "../pki/crl.ts";
import { parseCertificatesPem } from "../pki/pem.ts";
import type { X509Certificate } from "../pki/x509.ts";
import { EKU_CLIENT_AUTH, EKU_SERVER_AUTH } from "../pki/usage.ts";

/** One certificate as `inspect` shows it. */
export interface CertificateRow {
  /** The file it was found in (the first, when several files hold it). */
  path: string;
  /** `ca`, `server`, `client`, `server+client` or `other` (by CA flag and EKU). */
  role: string;
  /** Subject DN. */
  subject: string;
  /** Subject alternative names (`DNS:…`, `IP:…`, `URI:…`). */
  sans: string[];
  /** Extended key usages by name. */
  eku: string[];
  /** Serial, lower-case hex. */
  serial: string;
  /** Not after, ISO 8601. */
  notAfter: string;
  /** Whole days until then (negative: expired). */
  daysLeft: number;
  /** Revoked by a CRL found beside it; `undefined` when no CRL of its issuer was found. */
  revoked?: boolean;
  /** `ECDSA P-256`, `RSA 2048`, `Ed25519`, … */
  keyType: string;
}

const EKU_NAMES: Record<string, string> = {
  [EKU_SERVER_AUTH]: "serverAuth",
  [EKU_CLIENT_AUTH]: "clientAuth",
  "1.3.6.1.5.5.7.3.3": "codeSigning",
  "1.3.6.1.5.5.7.3.4": "emailProtection",
  "1.3.6.1.5.5.7.3.8": "timeStamping",
  "1.3.6.1.5.5.7.3.9": "OCSPSigning",
};

/** Every `.pem` file under `path` (a file is itself), sorted. */
async function pemFiles(path: string): Promise<string[]> {
  let info;
  try {
    info = await stat(path);
  } catch (err) {
    throw new Error(
      `Cannot read "${path}": ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  if (!info.isDirectory()) return [path];
  const out: string[] = [];
  for (
    const e of (await readdir(path, { withFileTypes: true })).sort((a, b) =>
      a.name < b.name ? -1 : 1
    )
  ) {
    const p = join(path, e.name);
    if (e.isDirectory()) out.push(...await pemFiles(p));
    else if (e.isFile() && e.name.endsWith(".pem")) out.push(p);
  }
  return out;
}

function keyType(cert: X509Certificate): string {
  const a = cert.publicKey.algorithm as {
    name: string;
    namedCurve?: string;
    modulusLength?: number;
  };
  if (a.name === "ECDSA" || a.name === "ECDH") return `ECDSA ${a.namedCurve ?? ""}`.trim();
  if (a.name.startsWith("RSA")) {
    // The modulus length is the bit length of the key's modulus (the public key's DER says it).
    return a.modulusLength ? `RSA ${a.modulusLength}` : "RSA";
  }
  return a.name;
}

/**
 * Inspect every certificate in `paths` (PKI directories, bundle directories or PEM files):
 * one row per distinct certificate, in the order found. Key files are skipped; CRLs are used
 * for the revoked column (each checked against the CA certificates found).
 *
 * @example
 * ```ts ignore
 * const rows = await inspectCertificates(["pki"]);
 * for (const r of rows) console.log(r.role, r.subject, r.daysLeft);
 * ```
 */
export async function inspectCertificates(
  paths: string[],
  now: Date = new Date(),
): Promise<CertificateRow[]> {
  const files = (await Promise.all(paths.map(pemFiles))).flat();
  const certs: { path: string; cert: X509Certificate }[] = [];
  const crlFiles: string[] = [];
  for (const f of files) {
    const text = await readFile(f, "utf8").catch((err) => {
      throw new Error(`Cannot read "${f}": ${(err as Error).message}`);
    });
    if (text.includes("-----BEGIN X509 CRL-----")) crlFiles.push(f);
    if (!text.includes("-----BEGIN CERTIFICATE-----")) continue;
    try {
      for (const cert of parseCertificatesPem(text)) certs.push({ path: f, cert });
    } catch (err) {
      throw new Error(`Cannot read certificates in "${f}": ${(err as Error).message}`);
    }
  }
  const cas = certs.map((c) => c.cert).filter((c) =>
    parsePeerCertificate(new Uint8Array(c.rawData)).identity.isCa
  );
  // Revoked serials by the issuer that signed the CRL.
  const revokedBy = new Map<string, Set<string>>();
  for (const f of crlFiles) {
    try {
      for (const crl of await loadCrls(f, cas)) {
        const set = revokedBy.get(crl.signer.subject) ?? new Set();
        for (const s of crl.serials) set.add(s);
        revokedBy.set(crl.signer.subject, set);
      }
    } catch {
      // A CRL we cannot verify says nothing about revocation.
    }
  }
  const seen = new Set<string>();
  const rows: CertificateRow[] = [];
  for (const { path, cert } of certs) {
    const { identity } = parsePeerCertificate(new Uint8Array(cert.rawData));
    if (seen.has(identity.fingerprint)) continue;
    seen.add(identity.fingerprint);
    const ekus = identity.extKeyUsages ?? [];
    const server = ekus.includes(EKU_SERVER_AUTH);
    const client = ekus.includes(EKU_CLIENT_AUTH);
    const role = identity.isCa
      ? "ca"
      : server && client
      ? "server+client"
      : server
      ? "server"
      : client
      ? "client"
      : "other";
    const revocations = revokedBy.get(identity.issuer);
    rows.push({
      path,
      role,
      subject: identity.subject,
      sans: [
        ...identity.dnsNames.map((n) => `DNS:${n}`),
        ...identity.ips.map((n) => `IP:${n}`),
        ...identity.uris.map((n) => `URI:${n}`),
      ],
      eku: ekus.map((o) => EKU_NAMES[o] ?? o),
      serial: identity.serial,
      notAfter: identity.notAfter.toISOString(),
      daysLeft: Math.floor((identity.notAfter.getTime() - now.getTime()) / 86_400_000),
      revoked: identity.isCa || revocations === undefined
        ? undefined
        : revocations.has(identity.serial),
      keyType: keyType(cert),
    });
  }
  return rows;
}
