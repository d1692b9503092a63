/**
 * The PKI's own records, next to the CA in `DIR/ca/`, so that revocation never depends on
 * what happens to be in a bundle directory today:
 *
 * ```text
 * issued.jsonl   every certificate issued (keygen, the gate's enrolments and renewals): serial,
 *                name, role, not-after, fingerprint; one JSON line each, appended and synced
 *                (record_journal.ts), so recording costs the same however many there are
 * issued.json    the same as a JSON list, as PKIs made before the journal have it (read, never
 *                written again: readIssued returns both)
 * revoked.json   every revocation (a CRL is a full list, so each new CRL carries all of them)
 * crlnumber      the number of the last CRL published (hex, as OpenSSL's `crlnumber` file)
 * crl.pem        the last CRL, also copied to DIR/server/crl.pem for serve
 * ```
 *
 * Why records and not the bundles: `keygen client NAME --force` replaces `clients/NAME/`, but
 * the old certificate stays valid until it expires; only a record of everything issued lets
 * `revoke NAME` revoke all of them.
 *
 * @module
 */

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { createCrl, type RevokedEntry } from "./crl_issue.ts";
import { pathExists, writeFileAtomic } from "../util/fs_util.ts";
import { normalizeSerial } from "../pki/serial.ts";
import { type PemPair } from "./issue.ts";
import { parseCertificatePem } from "../pki/pem.ts";
import type { X509Certificate } from "../pki/x509.ts";
import {
  bundleCrlPath,
  caDirs,
  recordFiles,
  revocationCaDirs,
  serverBundleDirs,
} from "./layout.ts";
import { appendLines, readLines } from "./record_journal.ts";
import { withFileLock } from "../util/file_lock.ts";

/** One certificate keygen issued. */
export interface IssuedEntry {
  /** Serial, normalised hex. */
  serial: string;
  /** Client name, `server`, or the CA's common name. */
  name: string;
  /** What it is for. */
  role: "ca" | "server" | "client";
  /** Its notAfter, ISO 8601. */
  notAfter: string;
  /** SHA-256 of its DER, hex. */
  fingerprint: string;
  /** When keygen issued it, ISO 8601. */
  issuedAt: string;
}

/** One revocation. */
export interface RevokedRecord {
  /** Serial, normalised hex. */
  serial: string;
  /** When it was revoked, ISO 8601. */
  revokedAt: string;
  /** The client name, when known. */
  name?: string;
}

/** Where the records of one CA of a PKI live. */
export interface RecordPaths {
  /** `DIR/ca`, or `DIR/intermediates/NAME` for an intermediate. */
  caDir: string;
  /**
   * The PKI root `DIR`: each server bundle in it (`DIR/server`, `DIR/servers/HOST`) gets the
   * CRLs of every CA of the PKI, in one `crl.pem`.
   */
  pkiDir: string;
}

/** The record of certificate `certPem` (PEM, or parsed), issued now to `name` as `role`. */
export function issuedEntry(
  certPem: string | X509Certificate,
  name: string,
  role: IssuedEntry["role"],
): IssuedEntry {
  const cert = typeof certPem === "string" ? parseCertificatePem(certPem) : certPem;
  return {
    serial: normalizeSerial(cert.serialNumber),
    name,
    role,
    notAfter: cert.notAfter.toISOString(),
    fingerprint: createHash("sha256").update(new Uint8Array(cert.rawData)).digest("hex"),
    issuedAt: new Date().toISOString(),
  };
}

/**
 * Record `entries` as issued: appended to the CA's `issued.jsonl`, synced before this
 * returns, under the lock of the record (two gates enrolling from one PKI, or a gate and
 * keygen, never lose an entry). Returns a message when a torn last line left by a crash had
 * to be repaired first (see `record_journal.ts`), else `undefined`.
 */
export async function recordIssued(
  caDir: string,
  entries: IssuedEntry[],
): Promise<string | undefined> {
  const files = recordFiles(caDir);
  // The lock of issued.json, as before the journal: one lock per record, whichever file.
  return await appendLines(files.issuedJournal, entries, {
    lockPath: files.issued,
    check: isIssuedEntry,
    what: "issued-certificate record",
  });
}

/**
 * Every certificate recorded as issued: `issued.json` (PKIs made before the journal), then
 * `issued.jsonl`; empty for a PKI made before either.
 */
export async function readIssued(caDir: string): Promise<IssuedEntry[]> {
  const files = recordFiles(caDir);
  return [
    ...await readList<IssuedEntry>(files.issued, "issued-certificate record"),
    ...await readLines<IssuedEntry>(files.issuedJournal, {
      check: isIssuedEntry,
      what: "issued-certificate record",
    }),
  ];
}

/** Whether `value` is an {@linkcode IssuedEntry} (what a line of the journal must be). */
function isIssuedEntry(value: unknown): boolean {
  const e = value as Partial<IssuedEntry> | null;
  return typeof e === "object" && e !== null && typeof e.serial === "string" &&
    typeof e.name === "string" && typeof e.role === "string";
}

/**
 * Every revocation recorded. A missing record is an empty list only when no CRL was ever
 * published: with a CRL present it means the record was lost, and an empty list would
 * silently un-revoke everything at the next publication.
 */
export async function readRevoked(caDir: string): Promise<RevokedRecord[]> {
  const files = recordFiles(caDir);
  if (!(await pathExists(files.revoked)) && (await pathExists(files.crl))) {
    throw new Error(
      `Revocation record "${files.revoked}" is missing but "${files.crl}" exists: restore the ` +
        `record from a backup (an empty list would un-revoke every certificate)`,
    );
  }
  return await readRevokedFile(files.revoked);
}

/** What the records of a PKI list, from {@linkcode recordedRevocations}. */
export interface RecordedRevocations {
  /** Revocations listed, over every record. */
  count: number;
  /** The records that list at least one. */
  files: string[];
}

/**
 * How many revocations the records of every CA of the PKI of bundle directory `bundleDir`
 * list (see `revocationCaDirs`), and which records list any; none without a bundle, a PKI or
 * a record. The evidence that a CRL must be in force: serve refuses to start without one, and
 * doctor fails the same bundle.
 *
 * @example
 * ```ts ignore
 * import { recordedRevocations } from "./records.ts";
 * const { count, files } = await recordedRevocations("pki/servers/host1");
 * ```
 */
export async function recordedRevocations(
  bundleDir: string | undefined,
): Promise<RecordedRevocations> {
  const out: RecordedRevocations = { count: 0, files: [] };
  for (const caDir of bundleDir ? await revocationCaDirs(bundleDir) : []) {
    const n = (await readRevoked(caDir)).length;
    if (n === 0) continue;
    out.count += n;
    out.files.push(recordFiles(caDir).revoked);
  }
  return out;
}

/**
 * The revocation record at `path`, empty when there is none; anything else unreadable or
 * malformed is an error (it is the evidence that something was revoked).
 */
export async function readRevokedFile(path: string): Promise<RevokedRecord[]> {
  return await readList<RevokedRecord>(path, "revocation record");
}

/** What {@linkcode addRevocations} and {@linkcode publishCrl} did. */
export interface PublishReport {
  /** Serials newly recorded as revoked. */
  added: string[];
  /** Total revocations listed in the CRL. */
  total: number;
  /** The CRL number written. */
  number: bigint;
  /** The CRL files written. */
  written: string[];
}

/**
 * Record `serials` as revoked (those already recorded are left as they are) and publish a
 * new CRL signed by `ca` to `DIR/ca/crl.pem` and, when the server bundle exists, to
 * `DIR/server/crl.pem`.
 */
export async function addRevocations(
  paths: RecordPaths,
  ca: PemPair,
  revoke: { serial: string; name?: string }[],
): Promise<PublishReport> {
  const files = recordFiles(paths.caDir);
  return await withRevocationLock(paths, async () => {
    const entries = await readRevoked(paths.caDir);
    const known = new Set(entries.map((e) => normalizeSerial(e.serial)));
    const added: string[] = [];
    for (const r of revoke) {
      const serial = normalizeSerial(r.serial);
      if (known.has(serial)) continue;
      known.add(serial);
      added.push(serial);
      entries.push({ serial, revokedAt: new Date().toISOString(), name: r.name });
    }
    // The record first: a CRL must never list less than the record.
    await replaceFile(files.revoked, JSON.stringify(entries, null, 2) + "\n", 0o600);
    return { ...(await publishCrlHeld(paths, ca)), added };
  });
}

/**
 * Publish a CRL of every recorded revocation, signed by `ca`, with the next CRL number (the
 * number keeps growing across a re-keyed CA, so no CRL ever looks older than one before it).
 */
export async function publishCrl(paths: RecordPaths, ca: PemPair): Promise<PublishReport> {
  return await withRevocationLock(paths, () => publishCrlHeld(paths, ca));
}

/**
 * Run `fn` holding the PKI's revocation lock (`DIR/revocations.lock`), from the read of a
 * record to the last server bundle's CRL. Why one lock for the whole PKI: two `keygen revoke`s
 * (or two gates on one PKI) that each read `revoked.json` and wrote back their own addition
 * lost the other's revocation, and the CRL number could repeat; and two CAs' publications
 * racing in {@linkcode syncServerCrls} could leave a bundle with the older CRL of one of them.
 */
function withRevocationLock<T>(paths: RecordPaths, fn: () => Promise<T>): Promise<T> {
  return withFileLock(join(paths.pkiDir, "revocations"), fn);
}

/** {@linkcode publishCrl} for a caller that holds the revocation record's lock. */
async function publishCrlHeld(paths: RecordPaths, ca: PemPair): Promise<PublishReport> {
  const files = recordFiles(paths.caDir);
  const entries = await readRevoked(paths.caDir);
  const number = (await readCrlNumber(files.crlNumber)) + 1n;
  const crl = await createCrl(
    ca,
    entries.map((e): RevokedEntry => ({ serial: e.serial, revokedAt: new Date(e.revokedAt) })),
    { number },
  );
  if (!(await pathExists(files.revoked))) await replaceFile(files.revoked, "[]\n", 0o600);
  await replaceFile(
    files.crlNumber,
    number.toString(16).padStart(2, "0").toUpperCase() + "\n",
    0o600,
  );
  await replaceFile(files.crl, crl, 0o644);
  const written = [files.crl, ...await syncServerCrls(paths.pkiDir)];
  return { added: [], total: entries.length, number, written };
}

/**
 * Every CA's CRL of the PKI under `pkiDir` (the root's `ca/crl.pem`, then each
 * `intermediates/NAME/crl.pem`) as one PEM text, or `undefined` when there is none.
 */
export async function combinedCrl(pkiDir: string): Promise<string | undefined> {
  const files = (await caDirs(pkiDir)).map((d) => recordFiles(d).crl);
  let text = "";
  for (const f of files) if (await pathExists(f)) text += await readFile(f, "utf8");
  return text === "" ? undefined : text;
}

/**
 * Write {@linkcode combinedCrl} into every server bundle of the PKI (`server/`,
 * `servers/HOST/`); returns the files written. Why every one: a gate started from any of
 * them must know every revocation of every CA.
 */
export async function syncServerCrls(pkiDir: string): Promise<string[]> {
  const crl = await combinedCrl(pkiDir);
  if (crl === undefined) return [];
  const written: string[] = [];
  for (const dir of await serverBundleDirs(pkiDir)) {
    await replaceFile(bundleCrlPath(dir), crl, 0o644);
    written.push(bundleCrlPath(dir));
  }
  return written;
}

async function readCrlNumber(path: string): Promise<bigint> {
  let text: string;
  try {
    text = (await readFile(path, "utf8")).trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return 0n;
    throw new Error(`Cannot read CRL number "${path}": ${(err as Error).message}`);
  }
  if (!/^[0-9A-Fa-f]{1,40}$/.test(text)) {
    throw new Error(`Cannot read CRL number "${path}": not a hex number`);
  }
  return BigInt(`0x${text}`);
}

async function readList<T extends { serial: string }>(path: string, what: string): Promise<T[]> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw new Error(`Cannot read ${what} "${path}": ${(err as Error).message}`);
  }
  try {
    const data = JSON.parse(text);
    if (!Array.isArray(data) || !data.every((e) => typeof e?.serial === "string")) {
      throw new Error("not a list of entries");
    }
    return data;
  } catch (err) {
    throw new Error(`Cannot read ${what} "${path}": ${(err as Error).message}`);
  }
}

/** Replace `path` atomically with exactly `mode` (a running serve never sees half a file). */
function replaceFile(path: string, content: string, mode: number): Promise<void> {
  return writeFileAtomic(path, content, { mode, replace: true });
}
