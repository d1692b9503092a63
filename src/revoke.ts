/**
 * `dockgate keygen revoke NAME|SERIAL`: record a revocation in the PKI directory and publish
 * a fresh signed CRL to `DIR/ca/crl.pem` and the server bundle's `DIR/server/crl.pem`, which
 * a running serve picks up on its next reload.
 *
 * The list of revocations lives in `DIR/ca/revoked.json` so every new CRL carries all of
 * them (a CRL is a full list, not a delta).
 *
 * @module
 */

import { chmod, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { createCrl, type RevokedEntry } from "./crl.ts";
import { normalizeSerial } from "./identity.ts";
import { clientBundlePaths, loadCa, pkiLayout } from "./keygen.ts";
import { parseCertificatePem } from "./pki.ts";
import { pathExists } from "./fs_util.ts";

/** One entry of `revoked.json`. */
interface StoredEntry {
  serial: string;
  revokedAt: string;
  name?: string;
}

/** What {@linkcode revokeCertificate} did. */
export interface RevokeReport {
  /** The revoked serial (normalised hex). */
  serial: string;
  /** The client name, when revoked by name. */
  name?: string;
  /** False when the serial was already revoked (the CRL is re-issued all the same). */
  newlyRevoked: boolean;
  /** Total revoked certificates now listed. */
  total: number;
  /** The CRL files written. */
  written: string[];
}

/**
 * Revoke a client certificate by client name (`DIR/clients/NAME/cert.pem`) or by serial
 * number (hex, colons allowed), then write the CRL.
 *
 * @example
 * ```ts
 * import { mkdtemp, rm } from "node:fs/promises";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import { initPki } from "./keygen.ts";
 * import { revokeCertificate } from "./revoke.ts";
 * const dir = await mkdtemp(join(tmpdir(), "dg-revoke-"));
 * try {
 *   await initPki({ dir });
 *   const r = await revokeCertificate(dir, "default");
 *   if (!r.newlyRevoked || r.total !== 1) throw new Error();
 * } finally {
 *   await rm(dir, { recursive: true });
 * }
 * ```
 */
export async function revokeCertificate(dir: string, subject: string): Promise<RevokeReport> {
  const layout = pkiLayout(dir);
  const ca = await loadCa(dir);
  let serial: string;
  let name: string | undefined;
  const clientCert = clientBundlePaths(dir, subjectAsName(subject) ?? "_").cert;
  if (subjectAsName(subject) && await pathExists(clientCert)) {
    name = subject;
    const pem = await readFile(clientCert, "utf8");
    serial = normalizeSerial(parseCertificatePem(pem).serialNumber);
  } else if (/^[0-9a-fA-F:]+$/.test(subject) && /[0-9a-fA-F]/.test(subject)) {
    serial = normalizeSerial(subject);
  } else {
    throw new Error(
      `Cannot revoke "${subject}": no client of that name in "${layout.clientsDir}" and not a hex serial`,
    );
  }
  const dbPath = join(layout.caDir, "revoked.json");
  const entries = await readDb(dbPath);
  const newlyRevoked = !entries.some((e) => normalizeSerial(e.serial) === serial);
  if (newlyRevoked) entries.push({ serial, revokedAt: new Date().toISOString(), name });
  const crl = await createCrl(
    ca,
    entries.map((e): RevokedEntry => ({ serial: e.serial, revokedAt: new Date(e.revokedAt) })),
  );
  await writePublic(dbPath, JSON.stringify(entries, null, 2) + "\n", 0o600);
  const written = [join(layout.caDir, "crl.pem"), join(layout.server.dir, "crl.pem")];
  for (const path of written) {
    if (path.startsWith(layout.server.dir) && !(await pathExists(layout.server.dir))) continue;
    await writePublic(path, crl, 0o644);
  }
  return { serial, name, newlyRevoked, total: entries.length, written };
}

function subjectAsName(subject: string): string | undefined {
  return /^[A-Za-z0-9_@-][A-Za-z0-9._@-]*$/.test(subject) ? subject : undefined;
}

async function readDb(path: string): Promise<StoredEntry[]> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw new Error(`Cannot read revocation list "${path}": ${(err as Error).message}`);
  }
  try {
    const data = JSON.parse(text);
    if (!Array.isArray(data) || !data.every((e) => typeof e?.serial === "string")) {
      throw new Error("not a list of entries");
    }
    return data;
  } catch (err) {
    throw new Error(`Cannot read revocation list "${path}": ${(err as Error).message}`);
  }
}

/** Replace a file atomically (write a temporary sibling, then rename over). */
async function writePublic(path: string, content: string, mode: number): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  await writeFile(tmp, content, { mode, flag: "wx" });
  await chmod(tmp, mode);
  await rename(tmp, path);
}
