/**
 * The tree `dockgate keygen` writes, in one place, so that nothing else joins its paths by
 * hand (a hand-written `../ca/revoked.json` is how a fleet bundle once forgot its
 * revocations):
 *
 * ```text
 * DIR/ca/                 the root CA, its records (issued.jsonl, revoked.json, crlnumber, crl.pem)
 * DIR/ca/retired/TIME/    a CA replaced by keygen --force --new-ca or retired by retire-ca, kept
 * DIR/ca/cross.pem        during a rotation: the new root signed by the previous one
 * DIR/ca-previous/        during a rotation (keygen rotate-ca .. retire-ca): the old root, its
 *                         records and key, still trusted and still revoking
 * DIR/intermediates/NAME/ an intermediate CA, with records of its own
 * DIR/server/             the server bundle (cert.pem, key.pem, ca.pem, crl.pem)
 * DIR/servers/HOST/       a fleet server bundle (same files)
 * DIR/clients/NAME/       a client bundle
 * DIR/tokens/ID.json      a join token's record (hashed secret, name, expiry; 0600), ID.used once
 *                         redeemed
 * ```
 *
 * @example Compute the layout
 * ```ts
 * import { clientBundlePaths, pkiLayout } from "./layout.ts";
 * const layout = pkiLayout("/etc/dockgate");
 * if (layout.caKey !== "/etc/dockgate/ca/ca-key.pem") throw new Error("unexpected");
 * if (clientBundlePaths("/etc/dockgate", "alice").cert !== "/etc/dockgate/clients/alice/cert.pem") {
 *   throw new Error("unexpected");
 * }
 * ```
 *
 * @module
 */

import { readdir } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { pathExists } from "../util/fs_util.ts";
import { validateClientName } from "./issue.ts";
import { BUNDLE_FILES } from "../pki/credentials.ts";

/** The record files of one CA of a PKI (`DIR/ca` or `DIR/intermediates/NAME`). */
export interface RecordFileNames {
  /** The certificates the CA issued before the journal (a JSON list; no longer written). */
  issued: string;
  /** Every certificate the CA issued since: one JSON line each, appended (`record_journal.ts`). */
  issuedJournal: string;
  /** Every revocation (the evidence that something was revoked). */
  revoked: string;
  /** The number of the last CRL published. */
  crlNumber: string;
  /** The last CRL the CA published. */
  crl: string;
}

/**
 * The files of the records under `caDir`.
 *
 * @example
 * ```ts
 * import { recordFiles } from "./layout.ts";
 * if (recordFiles("pki/ca").revoked !== "pki/ca/revoked.json") throw new Error("unexpected");
 * ```
 */
export function recordFiles(caDir: string): RecordFileNames {
  return {
    issued: join(caDir, "issued.json"),
    issuedJournal: join(caDir, "issued.jsonl"),
    revoked: join(caDir, "revoked.json"),
    crlNumber: join(caDir, "crlnumber"),
    crl: join(caDir, "crl.pem"),
  };
}

/** Paths of one certificate bundle directory (server or client). */
export interface BundlePaths {
  /** The bundle directory. */
  dir: string;
  /** `DIR/ca.pem`: the CA certificate peers are verified against. */
  ca: string;
  /** `DIR/cert.pem`: the bundle's certificate. */
  cert: string;
  /** `DIR/key.pem`: the bundle's private key (mode 0600). */
  key: string;
}

/** Paths of a PKI directory. */
export interface PkiLayout {
  /** The PKI root directory. */
  dir: string;
  /** `DIR/ca`. */
  caDir: string;
  /** `DIR/ca/ca.pem`. */
  caCert: string;
  /** `DIR/ca/ca-key.pem`. */
  caKey: string;
  /** `DIR/ca-previous`: the root a rotation replaced, until `keygen retire-ca`. */
  previousCaDir: string;
  /** `DIR/ca/cross.pem`: during a rotation, the new root's certificate signed by the old root. */
  crossCert: string;
  /** `DIR/server` bundle. */
  server: BundlePaths;
  /** `DIR/clients`, holding one bundle directory per client name. */
  clientsDir: string;
}

/**
 * The paths of the PKI under `dir` (nothing is read or written).
 *
 * @example
 * ```ts
 * import { pkiLayout } from "./layout.ts";
 * const { server } = pkiLayout("pki");
 * if (server.key !== "pki/server/key.pem") throw new Error(server.key);
 * ```
 */
export function pkiLayout(dir: string): PkiLayout {
  checkDir(dir);
  const caDir = join(dir, ROOT_CA);
  const root = caFiles(caDir);
  return {
    dir,
    caDir,
    caCert: root.cert,
    caKey: root.key,
    previousCaDir: join(dir, PREVIOUS_CA),
    crossCert: join(caDir, "cross.pem"),
    server: bundlePaths(join(dir, SERVER)),
    clientsDir: clientsDir(dir),
  };
}

/**
 * The paths of client `name`'s bundle under `dir`. Throws `TypeError` for a name that fails
 * `validateClientName` (so the name can never escape `DIR/clients`).
 *
 * @example
 * ```ts
 * import { clientBundlePaths } from "./layout.ts";
 * if (clientBundlePaths("pki", "bob").dir !== "pki/clients/bob") throw new Error("unexpected");
 * ```
 */
export function clientBundlePaths(dir: string, name: string): BundlePaths {
  validateClientName(name);
  return bundlePaths(join(pkiLayout(dir).clientsDir, name));
}

/**
 * The files of the bundle directory `dir` (server or client).
 *
 * @example
 * ```ts
 * import { bundlePaths } from "./layout.ts";
 * if (bundlePaths("pki/server").key !== "pki/server/key.pem") throw new Error("unexpected");
 * ```
 */
export function bundlePaths(dir: string): BundlePaths {
  return {
    dir,
    ca: join(dir, BUNDLE_FILES.ca),
    cert: join(dir, BUNDLE_FILES.cert),
    key: join(dir, BUNDLE_FILES.key),
  };
}

/**
 * The CRL of the bundle directory `dir`: every CA's CRLs of the PKI as one file, which serve
 * loads beside the bundle.
 *
 * @example
 * ```ts
 * import { bundleCrlPath } from "./layout.ts";
 * if (bundleCrlPath("pki/servers/h1") !== "pki/servers/h1/crl.pem") throw new Error("unexpected");
 * ```
 */
export function bundleCrlPath(dir: string): string {
  return join(dir, BUNDLE_FILES.crl);
}

/** The certificate and key of one CA directory (`DIR/ca` or `DIR/intermediates/NAME`). */
export interface CaFilePaths {
  /** The CA directory (its records live here too). */
  dir: string;
  /** Its certificate, `ca.pem`. */
  cert: string;
  /** Its private key, `ca-key.pem` (0600). */
  key: string;
}

/**
 * The certificate and key of the CA whose directory is `caDir`, root or intermediate.
 *
 * @example
 * ```ts
 * import { caFiles } from "./layout.ts";
 * if (caFiles("pki/intermediates/t").key !== "pki/intermediates/t/ca-key.pem") throw new Error();
 * ```
 */
export function caFiles(caDir: string): CaFilePaths {
  return { dir: caDir, cert: join(caDir, "ca.pem"), key: join(caDir, "ca-key.pem") };
}

/**
 * An intermediate's certificate under the previous root while a rotation is under way
 * (`DIR/intermediates/NAME/ca-previous.pem`; `ca.pem` is the one under the new root).
 *
 * @example
 * ```ts
 * import { previousIntermediateCert } from "./layout.ts";
 * if (previousIntermediateCert("pki/intermediates/t") !== "pki/intermediates/t/ca-previous.pem") throw new Error();
 * ```
 */
export function previousIntermediateCert(intermediateDir: string): string {
  return join(intermediateDir, "ca-previous.pem");
}

/** The files of intermediate `name` of the PKI under `dir`. */
export interface IntermediateLayout {
  /** `DIR/intermediates/NAME`: its records live here too. */
  dir: string;
  /** Its certificate. */
  cert: string;
  /** Its private key (0600). */
  key: string;
}

/**
 * The paths of intermediate `name` (a name as for clients: it cannot escape the directory).
 *
 * @example
 * ```ts
 * import { intermediateLayout } from "./layout.ts";
 * if (intermediateLayout("pki", "team-a").cert !== "pki/intermediates/team-a/ca.pem") throw new Error();
 * ```
 */
export function intermediateLayout(dir: string, name: string): IntermediateLayout {
  validateClientName(name);
  return caFiles(intermediateDir(pkiLayout(dir).dir, name));
}

function checkDir(dir: string): void {
  if (typeof dir !== "string" || dir === "" || dir.includes("\0")) {
    throw new TypeError(`Invalid PKI directory "${dir}"`);
  }
}

/** `DIR/ca`, the root CA and its records. */
const ROOT_CA = "ca";
/** `DIR/ca-previous`, the root a rotation replaced. */
const PREVIOUS_CA = "ca-previous";
/** `DIR/server`, the single server bundle. */
const SERVER = "server";
/** `DIR/servers`, where the fleet bundles go. */
const SERVERS = "servers";
/** `DIR/clients`, where the client bundles go. */
const CLIENTS = "clients";
/** `DIR/intermediates`, where the intermediate CAs go. */
const INTERMEDIATES = "intermediates";
/** `DIR/tokens`, where the join tokens' records go. */
const TOKENS = "tokens";

/**
 * The directory of join token records, `DIR/tokens`.
 *
 * @example
 * ```ts
 * import { tokensDir } from "./layout.ts";
 * if (tokensDir("pki") !== "pki/tokens") throw new Error("unexpected");
 * ```
 */
export function tokensDir(pkiDir: string): string {
  return join(pkiDir, TOKENS);
}

/**
 * The record of join token `id` (16 hex digits, else `TypeError`): `DIR/tokens/ID.json`, and
 * where it goes once redeemed, `DIR/tokens/ID.used`.
 *
 * @example
 * ```ts
 * import { tokenFiles } from "./layout.ts";
 * if (tokenFiles("pki", "0123456789abcdef").used !== "pki/tokens/0123456789abcdef.used") throw new Error();
 * ```
 */
export function tokenFiles(pkiDir: string, id: string): { live: string; used: string } {
  if (!/^[0-9a-f]{16}$/.test(id)) throw new TypeError(`Invalid token id "${id}"`);
  return {
    live: join(tokensDir(pkiDir), `${id}.json`),
    used: join(tokensDir(pkiDir), `${id}.used`),
  };
}

/**
 * The directory of fleet server bundle `host`: `DIR/servers/HOST` (the caller validates `host`).
 *
 * @example
 * ```ts
 * import { fleetBundleDir, fleetHostOf } from "./layout.ts";
 * if (fleetBundleDir("pki", "host1") !== "pki/servers/host1") throw new Error("unexpected");
 * if (fleetHostOf("pki/servers/host1") !== "host1" || fleetHostOf("pki/server")) throw new Error();
 * ```
 */
export function fleetBundleDir(pkiDir: string, host: string): string {
  return join(pkiDir, SERVERS, host);
}

/** The host of a fleet bundle directory `DIR/servers/HOST`, `undefined` for any other. */
export function fleetHostOf(bundleDir: string): string | undefined {
  return basename(dirname(bundleDir)) === SERVERS ? basename(bundleDir) : undefined;
}

/**
 * The directory of client bundles, `DIR/clients` (`DIR/clients/NAME` with `name`; the caller
 * validates `name`).
 *
 * @example
 * ```ts
 * import { clientsDir } from "./layout.ts";
 * if (clientsDir("pki", "bob") !== "pki/clients/bob") throw new Error("unexpected");
 * ```
 */
export function clientsDir(pkiDir: string, name?: string): string {
  return name === undefined ? join(pkiDir, CLIENTS) : join(pkiDir, CLIENTS, name);
}

/**
 * The directory of intermediate CA `name`, `DIR/intermediates/NAME` (the caller validates it).
 *
 * @example
 * ```ts
 * import { intermediateDir } from "./layout.ts";
 * if (intermediateDir("pki", "team") !== "pki/intermediates/team") throw new Error("unexpected");
 * ```
 */
export function intermediateDir(pkiDir: string, name: string): string {
  return join(pkiDir, INTERMEDIATES, name);
}

/**
 * Where the CAs that `keygen --force --new-ca` replaced are kept: `CADIR/retired` (one `TIME/` each).
 *
 * @example
 * ```ts
 * import { retiredCasDir } from "./layout.ts";
 * if (retiredCasDir("pki/ca") !== "pki/ca/retired") throw new Error("unexpected");
 * ```
 */
export function retiredCasDir(caDir: string): string {
  return join(caDir, "retired");
}

/**
 * The PKI root `DIR` of a bundle directory of keygen's tree: `DIR/server`, `DIR/ca` → `DIR`;
 * `DIR/servers/HOST`, `DIR/clients/NAME`, `DIR/intermediates/NAME` → `DIR`. Any other
 * directory is taken as a bundle kept beside its PKI (its parent), as serve always did.
 *
 * @example
 * ```ts
 * import { pkiRootOf } from "./layout.ts";
 * if (pkiRootOf("pki/servers/host1") !== "pki") throw new Error("fleet bundle");
 * if (pkiRootOf("pki/server") !== "pki") throw new Error("server bundle");
 * ```
 */
export function pkiRootOf(bundleDir: string): string {
  const parent = dirname(bundleDir);
  const group = basename(parent);
  return group === SERVERS || group === CLIENTS || group === INTERMEDIATES
    ? dirname(parent)
    : parent;
}

/**
 * Every CA directory of the PKI that a bundle directory belongs to whose revocation records
 * apply to it: the root `DIR/ca`, then each `DIR/intermediates/NAME` (sorted). All of them:
 * keygen gives every server bundle the CRLs of every CA of its PKI, so a revocation by any
 * of them must be known to a gate started from any bundle.
 *
 * @example
 * ```ts ignore
 * import { revocationCaDirs } from "./layout.ts";
 * console.log(await revocationCaDirs("pki/servers/host1")); // ["pki/ca", "pki/intermediates/team"]
 * ```
 */
export async function revocationCaDirs(bundleDir: string): Promise<string[]> {
  return await caDirs(pkiRootOf(bundleDir));
}

/**
 * Every CA directory of the PKI under `pkiDir`: `ca/`, `ca-previous/` while a rotation is
 * under way (its revocations stay in force while its certificates are trusted), then each
 * `intermediates/NAME/`.
 *
 * @example
 * ```ts ignore
 * import { caDirs } from "./layout.ts";
 * console.log(await caDirs("pki")); // ["pki/ca", "pki/intermediates/team"]
 * ```
 */
export async function caDirs(pkiDir: string): Promise<string[]> {
  const previous = join(pkiDir, PREVIOUS_CA);
  return [
    join(pkiDir, ROOT_CA),
    ...(await pathExists(previous) ? [previous] : []),
    ...await intermediateDirs(pkiDir),
  ];
}

/**
 * Every server bundle directory of the PKI that exists: `server/`, then each `servers/HOST/`.
 *
 * @example
 * ```ts ignore
 * import { serverBundleDirs } from "./layout.ts";
 * console.log(await serverBundleDirs("pki")); // ["pki/server", "pki/servers/host1"]
 * ```
 */
export async function serverBundleDirs(pkiDir: string): Promise<string[]> {
  const dirs = [join(pkiDir, SERVER)];
  for (const host of await subdirs(join(pkiDir, SERVERS))) dirs.push(fleetBundleDir(pkiDir, host));
  const present: string[] = [];
  for (const d of dirs) if (await pathExists(d)) present.push(d);
  return present;
}

/**
 * Every intermediate's directory of the PKI (`intermediates/NAME/`), sorted by name.
 *
 * @example
 * ```ts ignore
 * import { intermediateDirs } from "./layout.ts";
 * console.log(await intermediateDirs("pki")); // ["pki/intermediates/team"]
 * ```
 */
export async function intermediateDirs(pkiDir: string): Promise<string[]> {
  return (await subdirs(join(pkiDir, INTERMEDIATES))).map((n) => intermediateDir(pkiDir, n));
}

/**
 * The names of the directories in `dir`, sorted (none when it does not exist).
 *
 * @example
 * ```ts ignore
 * import { subdirs } from "./layout.ts";
 * console.log(await subdirs("pki/clients")); // ["alice", "bob"]
 * ```
 */
export async function subdirs(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir, { withFileTypes: true })).filter((e) => e.isDirectory())
      .map((e) => e.name).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
}
