/**
 * `dockgate keygen revoke NAME|SERIAL`: record a revocation with the CA that issued the
 * certificate (the root in `DIR/ca/`, an intermediate in `DIR/intermediates/NAME/`) and
 * publish that CA's fresh signed CRL, then the CRLs of every CA as one `crl.pem` in each
 * server bundle (`DIR/server/`, `DIR/servers/HOST/`), which a running serve picks up on its
 * next reload.
 *
 * The records live in `DIR/ca/` (see `records.ts`): revoking a client by name revokes
 * every unexpired certificate ever issued to that name, not only the one in its bundle today.
 *
 * @module
 */

import { normalizeSerial } from "../pki/serial.ts";
import { readFile } from "node:fs/promises";
import {
  caFiles,
  clientBundlePaths,
  intermediateDirs,
  pkiLayout,
  previousIntermediateCert,
} from "./layout.ts";
import { issuingCas, loadCa, rotationUnderWay } from "./issuers.ts";
import { pathExists, readText } from "../util/fs_util.ts";
import { addRevocations, publishCrl, type PublishReport, readIssued } from "./records.ts";
import { parseCertificatePem } from "../pki/pem.ts";

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
  const name = subjectAsName(subject);
  const cas = await issuingCas(dir);
  const byCa = new Map<string, string[]>();
  let byName: string | undefined;
  if (name && (await pathExists(clientBundlePaths(dir, name).cert) || await issuedTo(dir, name))) {
    byName = name;
    for (const [k, v] of await clientSerialsByCa(dir, name)) byCa.set(k, v);
    if ([...byCa.values()].every((v) => v.length === 0)) {
      throw new Error(`Cannot revoke "${name}": every certificate issued to it has expired`);
    }
  } else if (/^[0-9a-fA-F:]+$/.test(subject) && /[0-9a-fA-F]/.test(subject)) {
    const serial = normalizeSerial(subject);
    const owners = [];
    for (const ca of cas) {
      if ((await readIssued(ca.caDir)).some((e) => normalizeSerial(e.serial) === serial)) {
        owners.push(ca);
      }
    }
    if (owners.length > 1) {
      throw new Error(
        `Cannot revoke serial ${serial}: issued by ${owners.map((o) => o.label).join(" and ")}; ` +
          `revoke by client name instead`,
      );
    }
    byCa.set((owners[0] ?? cas[0]).caDir, [serial]);
    await addIntermediateTwin(dir, serial, byCa);
  } else {
    throw new Error(
      `Cannot revoke "${subject}": no client of that name in "${layout.clientsDir}" and not a hex serial`,
    );
  }
  return await revokeByCa(dir, byCa, byName);
}

/**
 * During a rotation an intermediate has two certificates for one key and name: `ca.pem` under
 * the new root and `ca-previous.pem` under the old. Revoking either by serial revokes the
 * other with its own issuer too: else the other keeps everything the intermediate issued valid.
 */
async function addIntermediateTwin(
  dir: string,
  serial: string,
  byCa: Map<string, string[]>,
): Promise<void> {
  if (!(await rotationUnderWay(dir))) return;
  const layout = pkiLayout(dir);
  for (const d of await intermediateDirs(layout.dir)) {
    const twins: { serial: string; caDir: string }[] = [];
    for (
      const [path, caDir] of [
        [caFiles(d).cert, layout.caDir],
        [previousIntermediateCert(d), layout.previousCaDir],
      ]
    ) {
      if (!(await pathExists(path))) continue;
      const cert = parseCertificatePem(await readFile(path, "utf8"));
      twins.push({ serial: normalizeSerial(cert.serialNumber), caDir });
    }
    if (!twins.some((t) => t.serial === serial)) continue;
    for (const t of twins) {
      const listed = byCa.get(t.caDir) ?? [];
      if (!listed.includes(t.serial)) byCa.set(t.caDir, [...listed, t.serial]);
    }
  }
}

/**
 * Every unexpired certificate of client `name`, by the records' directory of the CA that
 * issued it (the root's `DIR/ca`, an intermediate's `DIR/intermediates/NAME`): the CAs'
 * records and the certificate in its bundle now.
 */
export async function clientSerialsByCa(dir: string, name: string): Promise<Map<string, string[]>> {
  const cas = await issuingCas(dir);
  const byCa = new Map<string, string[]>();
  // The root's records (and the bundle's certificate, as before), then each intermediate's.
  byCa.set(cas[0].caDir, await clientSerials(dir, name));
  const now = new Date();
  for (const ca of cas.slice(1)) {
    const mine = (await readIssued(ca.caDir)).filter((e) =>
      e.role === "client" && e.name === name && new Date(e.notAfter) > now
    ).map((e) => normalizeSerial(e.serial));
    if (mine.length) byCa.set(ca.caDir, mine);
  }
  await assignBundleCertificate(dir, name, cas, byCa);
  return byCa;
}

/**
 * The serials of every unexpired certificate of client `name`: its records in
 * `DIR/ca/issued.jsonl` (and an older `issued.json`) and the certificate in its bundle now (a PKI made before the record
 * existed has only that).
 *
 * @example
 * ```ts ignore
 * const serials = await clientSerials("pki", "alice");
 * ```
 */
export async function clientSerials(
  dir: string,
  name: string,
  now = new Date(),
): Promise<string[]> {
  const serials = new Set<string>();
  const bundleCert = clientBundlePaths(dir, name).cert;
  if (await pathExists(bundleCert)) {
    const pem = await readText(bundleCert, "client certificate");
    try {
      serials.add(normalizeSerial(parseCertificatePem(pem).serialNumber));
    } catch {
      // A damaged bundle certificate (what --force is often run to fix) has no serial to
      // give; the issued record still has it.
    }
  }
  for (const e of await readIssued(pkiLayout(dir).caDir)) {
    if (e.role === "client" && e.name === name && new Date(e.notAfter) > now) {
      serials.add(normalizeSerial(e.serial));
    }
  }
  return [...serials];
}

/** Revoke each CA's serials with that CA's key and publish its CRL (and every server's). */
export async function revokeByCa(
  dir: string,
  byCa: Map<string, string[]>,
  byName: string | undefined,
): Promise<RevokeReport> {
  const layout = pkiLayout(dir);
  const cas = await issuingCas(dir);
  let last: PublishReport | undefined;
  const all: string[] = [];
  const added: string[] = [];
  const written: string[] = [];
  let total = 0;
  for (const [caDir, serials] of byCa) {
    if (serials.length === 0) continue;
    const ca = cas.find((c) => c.caDir === caDir)!;
    last = await addRevocations(
      { caDir, pkiDir: layout.dir },
      await ca.load(),
      serials.map((serial) => ({ serial, name: byName })),
    );
    all.push(...serials);
    added.push(...last.added);
    written.push(...last.written.filter((w) => !written.includes(w)));
    total += last.total;
  }
  if (!last) throw new Error("Nothing to revoke");
  return revokeReport(all, byName, { ...last, added, total, written });
}

/**
 * The bundle's certificate belongs to the CA that issued it: `clientSerials` put it with the
 * root, so move it when an intermediate issued it.
 */
async function assignBundleCertificate(
  dir: string,
  name: string,
  cas: { caDir: string; subject: string }[],
  byCa: Map<string, string[]>,
): Promise<void> {
  const path = clientBundlePaths(dir, name).cert;
  if (!(await pathExists(path))) return;
  let cert;
  try {
    cert = parseCertificatePem(await readFile(path, "utf8"));
  } catch {
    return;
  }
  const owner = cas.find((c) => c.subject === cert.issuer);
  if (!owner || owner.caDir === cas[0].caDir) return;
  const serial = normalizeSerial(cert.serialNumber);
  const root = byCa.get(cas[0].caDir) ?? [];
  const rootRecords = (await readIssued(cas[0].caDir)).some((e) =>
    normalizeSerial(e.serial) === serial
  );
  if (!rootRecords) byCa.set(cas[0].caDir, root.filter((s) => s !== serial));
  const mine = byCa.get(owner.caDir) ?? [];
  if (!mine.includes(serial)) byCa.set(owner.caDir, [...mine, serial]);
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
    { caDir: layout.caDir, pkiDir: layout.dir },
    ca,
    serials.map((serial) => ({ serial, name })),
  );
  return revokeReport(serials.map(normalizeSerial), name, report);
}

/** What {@linkcode republishCrl} did, per CA. */
export interface RepublishReport {
  /** The CAs whose CRL was published, with its number and how many it lists. */
  published: { label: string; number: bigint; total: number }[];
  /** The CAs whose key is not here (offline root): their CRL stays as it was. */
  skipped: string[];
  /** The CRL files written. */
  written: string[];
}

/**
 * Publish every CA's CRL again from its record (`dockgate keygen crl`): after one was lost,
 * or before a CRL's nextUpdate. Each CA whose key is here publishes (the root, the previous
 * root during a rotation, each intermediate); one whose key is offline is skipped and named,
 * so an intermediate's CRL is kept fresh while the root key stays offline. Throws when no
 * CA's key is here.
 */
export async function republishCrl(dir: string): Promise<RepublishReport> {
  const layout = pkiLayout(dir);
  const report: RepublishReport = { published: [], skipped: [], written: [] };
  for (const ca of await issuingCas(dir)) {
    if (!(await pathExists(caFiles(ca.caDir).key))) {
      report.skipped.push(ca.label);
      continue;
    }
    const r = await publishCrl({ caDir: ca.caDir, pkiDir: layout.dir }, await ca.load());
    report.published.push({ label: ca.label, number: r.number, total: r.total });
    for (const f of r.written) if (!report.written.includes(f)) report.written.push(f);
  }
  if (report.published.length === 0) {
    throw new Error(
      `Cannot publish a CRL: no CA key in "${layout.dir}" (${report.skipped.join(", ")} offline)`,
    );
  }
  return report;
}

async function issuedTo(dir: string, name: string): Promise<boolean> {
  for (const ca of await issuingCas(dir)) {
    if ((await readIssued(ca.caDir)).some((e) => e.role === "client" && e.name === name)) {
      return true;
    }
  }
  return false;
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
