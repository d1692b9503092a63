/**
 * `dockgate keygen revoke NAME|SERIAL`: record a revocation in the PKI directory and publish
 * a fresh signed CRL to `DIR/ca/crl.pem` and the server bundle's `DIR/server/crl.pem`, which
 * a running serve picks up on its next reload.
 *
 * The records live in `DIR/ca/` (see `pki_records.ts`): revoking a client by name revokes
 * every unexpired certificate ever issued to that name, not only the one in its bundle today.
 *
 * @module
 */

import { normalizeSerial } from "../access/identity.ts";
import { clientBundlePaths, clientSerials, loadCa, pkiLayout } from "./keygen.ts";
import { pathExists } from "./fs_util.ts";
import { addRevocations, publishCrl, type PublishReport, readIssued } from "./records.ts";

/** What {@linkcode revokeCertificate} did. */
export interface RevokeReport {
  /** The serials revoked by this call or before (normalised hex); the first is the subject's. */
  serials: string[];
  /** The first of `serials` (kept for callers that revoke one serial). */
  serial: string;
  /** The client name, when revoked by name. */
  name?: string;
  /** Serials this call newly revoked (the CRL is re-issued all the same). */
  newlyRevokedSerials: string[];
  /** True when at least one serial was newly revoked. */
  newlyRevoked: boolean;
  /** Total revoked certificates now listed. */
  total: number;
  /** The CRL number of the CRL written. */
  crlNumber: bigint;
  /** The CRL files written. */
  written: string[];
}

/**
 * Revoke by client name (every unexpired certificate recorded as issued to NAME, plus the one
 * in `DIR/clients/NAME/cert.pem`) or by serial number (hex, colons allowed), then publish the
 * CRL.
 *
 * @example
 * ```ts
 * import { mkdtemp, rm } from "node:fs/promises";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import { initPki, issueClientBundle } from "./keygen.ts";
 * import { revokeCertificate } from "./revoke.ts";
 * const dir = await mkdtemp(join(tmpdir(), "dg-revoke-"));
 * try {
 *   await initPki({ dir });
 *   await issueClientBundle("default", { dir, force: true }); // the first one stays valid
 *   const r = await revokeCertificate(dir, "default");
 *   if (r.newlyRevokedSerials.length !== 2 || r.total !== 2) throw new Error(JSON.stringify(r));
 * } finally {
 *   await rm(dir, { recursive: true });
 * }
 * ```
 */
export async function revokeCertificate(dir: string, subject: string): Promise<RevokeReport> {
  const layout = pkiLayout(dir);
  const ca = await loadCa(dir);
  const name = subjectAsName(subject);
  let serials: string[];
  let byName: string | undefined;
  if (name && (await pathExists(clientBundlePaths(dir, name).cert) || await issuedTo(dir, name))) {
    byName = name;
    serials = await clientSerials(dir, name);
    if (serials.length === 0) {
      throw new Error(`Cannot revoke "${name}": every certificate issued to it has expired`);
    }
  } else if (/^[0-9a-fA-F:]+$/.test(subject) && /[0-9a-fA-F]/.test(subject)) {
    serials = [normalizeSerial(subject)];
  } else {
    throw new Error(
      `Cannot revoke "${subject}": no client of that name in "${layout.clientsDir}" and not a hex serial`,
    );
  }
  const report = await addRevocations(
    { caDir: layout.caDir, serverDir: layout.server.dir },
    ca,
    serials.map((serial) => ({ serial, name: byName })),
  );
  return revokeReport(serials, byName, report);
}

/**
 * Revoke `serials` (the earlier certificates of client `name`, for `keygen client --force
 * --revoke-old`) and publish the CRL.
 */
export async function revokeSerials(
  dir: string,
  serials: string[],
  name?: string,
): Promise<RevokeReport> {
  const layout = pkiLayout(dir);
  const ca = await loadCa(dir);
  const report = await addRevocations(
    { caDir: layout.caDir, serverDir: layout.server.dir },
    ca,
    serials.map((serial) => ({ serial, name })),
  );
  return revokeReport(serials.map(normalizeSerial), name, report);
}

/** Publish the CRL again from the record (`dockgate keygen crl`): e.g. after it was lost. */
export async function republishCrl(dir: string): Promise<PublishReport> {
  const layout = pkiLayout(dir);
  return await publishCrl({ caDir: layout.caDir, serverDir: layout.server.dir }, await loadCa(dir));
}

async function issuedTo(dir: string, name: string): Promise<boolean> {
  return (await readIssued(pkiLayout(dir).caDir)).some((e) =>
    e.role === "client" && e.name === name
  );
}

function revokeReport(serials: string[], name: string | undefined, r: PublishReport): RevokeReport {
  return {
    serials,
    serial: serials[0],
    name,
    newlyRevokedSerials: r.added,
    newlyRevoked: r.added.length > 0,
    total: r.total,
    crlNumber: r.number,
    written: r.written,
  };
}

function subjectAsName(subject: string): string | undefined {
  return /^[A-Za-z0-9_@-][A-Za-z0-9._@-]*$/.test(subject) ? subject : undefined;
}
