/**
 * The on-disk PKI used by `dockgate keygen`:
 *
 * ```text
 * DIR/ca/ca.pem, DIR/ca/ca-key.pem          the CA (keep ca-key.pem offline if you can)
 * DIR/server/{ca.pem,cert.pem,key.pem}      for `dockgate serve` or dockerd --tlscacert/--tlscert/--tlskey
 * DIR/clients/NAME/{ca.pem,cert.pem,key.pem} usable as DOCKER_CERT_PATH
 * ```
 *
 * Private keys are written mode 0600, certificates 0644 and created directories 0700 (set
 * explicitly, whatever the umask). Files are written to a temporary file in the same
 * directory and then moved into place, and an existing key or certificate is never replaced
 * unless `force` is set.
 *
 * The tree itself is `layout.ts`'s; the writes are `files.ts`'s.
 *
 * @module
 */

import { readdir, readFile } from "node:fs/promises";
import { basename, dirname } from "node:path";
import {
  bundleCrlPath,
  type BundlePaths,
  bundlePaths,
  clientBundlePaths,
  fleetBundleDir,
  type PkiLayout,
  pkiLayout,
} from "./layout.ts";
import {
  createCa,
  defaultServerSans,
  issueClient,
  issueServer,
  KEY_TYPES,
  type KeyType,
  type PemPair,
  renewLeaf,
  validateClientName,
} from "./issue.ts";
import { keyMatchesCertificate, parseCertificatePem } from "../pki/pem.ts";
import { fsErrorText, pathExists, readText, writeFileAtomic } from "../util/fs_util.ts";
import { normalizeSerial } from "../pki/serial.ts";
import { parsePeerCertificate } from "../access/identity.ts";
import { addRevocations, combinedCrl, issuedEntry, publishCrl, recordIssued } from "./records.ts";
import {
  clientTrustPem,
  issuedByPreviousRoot,
  issuerNameOf,
  loadCa,
  loadIssuer,
  loadPreviousCa,
  pkiExists,
  rootChainPem,
  rotationUnderWay,
  serverTrustPem,
} from "./issuers.ts";
import { clientSerialsByCa, revokeByCa } from "./revoke.ts";
import {
  AlreadyExistsError,
  CERT_MODE,
  ensureDir,
  KEY_MODE,
  type KeygenReport,
  NO_FOLLOW,
  type PartState,
  partState,
  writeFileSafely,
} from "./files.ts";
import { retireCa } from "./retire_ca.ts";

/** Options shared by the keygen operations. */
export interface KeygenCommonOptions {
  /** PKI root directory. */
  dir: string;
  /** Key algorithm of new keys. Default: `"p256"`. */
  keyType?: KeyType;
  /** Lifetime of new server/client certificates in days, 1–36500. Default: 365. */
  days?: number;
  /** Replace existing keys and certificates. Default: `false`. */
  force?: boolean;
}

/** Options for {@linkcode initPki}. */
export interface InitPkiOptions extends KeygenCommonOptions {
  /** Lifetime of a new CA in days, 1–36500. Default: 3650. */
  caDays?: number;
  /** Server SANs added to {@linkcode defaultServerSans}. Default: none. */
  sans?: string[];
  /** Name of the client bundle to create. Default: `"default"`. */
  clientName?: string;
  /**
   * With `force`: also replace an existing CA (kept in `ca/retired/TIME/`). Every certificate
   * of the old CA stops working at serve's next reload, so `force` alone keeps the CA and
   * re-issues the server and client bundles from it. Default: `false`.
   */
  newCa?: boolean;
}

/** Options for {@linkcode issueServerBundle}. */
export interface IssueServerBundleOptions extends KeygenCommonOptions {
  /**
   * Server SANs: added to {@linkcode defaultServerSans}, or with `name` to the name itself.
   * Default: none.
   */
  sans?: string[];
  /**
   * One Docker host of a fleet: the bundle goes to `DIR/servers/NAME/`, its common name and
   * first SAN are `NAME`. Default: the single `DIR/server` bundle.
   */
  name?: string;
  /** Issue from intermediate `issuer` (`keygen intermediate`). Default: the root. */
  issuer?: string;
}

/** Options for {@linkcode issueClientBundle}. */
export interface IssueClientBundleOptions extends KeygenCommonOptions {
  /** Organizational units in the client certificate's subject. Default: none. */
  organizationalUnits?: string[];
  /**
   * With `force`: revoke every earlier unexpired certificate of this client and publish the
   * CRL. Without it they stay valid until they expire (a note says so). Default: `false`.
   */
  revokeOld?: boolean;
  /**
   * Issue from intermediate `issuer` (`keygen intermediate`); `cert.pem` then holds the leaf
   * and the intermediate, as step-ca and Vault hand them out. Default: the root.
   */
  issuer?: string;
}

/**
 * Create whatever is missing of the PKI in `dir`: the CA, the server bundle and one client
 * bundle (`clientName`). Each part (a directory with its certificate and key) is created only
 * when absent and otherwise reported in `kept`; when the CA exists, new bundles are issued
 * from it. With `force`, everything is regenerated (a new CA, so other existing client
 * bundles stop working; a note says so); the server certificate keeps its names unless `sans`
 * are given.
 *
 * Throws {@linkcode AlreadyExistsError} without `force` when a part is incomplete (only its
 * key or only its certificate exists) or bundles exist without a CA; `TypeError` /
 * `RangeError` for bad options, before anything is written.
 *
 * @example
 * ```ts
 * import { initPki } from "./keygen.ts";
 * import { clientBundlePaths } from "./layout.ts";
 * import { mkdtemp, rm } from "node:fs/promises";
 * import { join } from "node:path";
 * import { tmpdir } from "node:os";
 * if ((await Deno.permissions.query({ name: "write" })).state === "granted") {
 *   const dir = await mkdtemp(join(tmpdir(), "dockgate-"));
 *   try {
 *     const first = await initPki({ dir, sans: ["docker.example"] });
 *     if (!first.created.includes(clientBundlePaths(dir, "default").key)) throw new Error("unexpected");
 *     const again = await initPki({ dir });
 *     if (again.created.length !== 0) throw new Error("keys must be kept");
 *   } finally {
 *     await rm(dir, { recursive: true });
 *   }
 * }
 * ```
 */
export async function initPki(options: InitPkiOptions): Promise<KeygenReport> {
  const layout = pkiLayout(options.dir);
  const clientName = options.clientName ?? "default";
  const client = clientBundlePaths(options.dir, clientName);
  const { keyType, force, newCa, caState, serverState, clientState } = await planInit(
    options,
    layout,
    client,
  );
  const report: Required<Omit<KeygenReport, "revoked">> = { created: [], kept: [], notes: [] };
  // Generate everything in memory first so that a bad option writes nothing.
  const ca = newCa
    ? await createCa({ keyType, days: options.caDays ?? 3650 })
    : await loadCa(options.dir);
  // A re-issue keeps the names clients connect by, unless new ones are given (as
  // `keygen server --force` does); read before anything is replaced.
  const keptSans = force && serverState !== "missing" && !options.sans?.length
    ? await certificateNames(layout.server.cert)
    : undefined;
  const server = force || serverState === "missing"
    ? await issueServer(ca, {
      keyType,
      days: options.days,
      sans: keptSans ?? [...defaultServerSans(), ...(options.sans ?? [])],
    })
    : undefined;
  const clientPair = force || clientState === "missing"
    ? await issueClient(ca, clientName, { keyType, days: options.days })
    : undefined;

  await ensureDir(options.dir, true);
  // The old CA is kept before anything is replaced: its key is the only way back.
  const retired = newCa && caState !== "missing" ? await retireCa(layout) : undefined;
  if (newCa) {
    await ensureDir(layout.caDir);
    await writeFileSafely(layout.caKey, ca.keyPem, KEY_MODE, force, report);
    await writeFileSafely(layout.caCert, ca.certPem, CERT_MODE, force, report);
  } else {
    report.kept.push(layout.caCert, layout.caKey);
    if (force) {
      report.notes.push(
        `The CA in "${layout.caDir}" was kept (its clients stay valid); to replace it too: ` +
          `--force --new-ca (every client certificate of the old CA then stops working)`,
      );
    }
  }
  const rotating = !newCa && await rotationUnderWay(options.dir);
  await writeBundle(
    layout.server,
    rotating ? await serverTrustPem(options.dir) : ca.certPem,
    server && rotating
      ? { ...server, certPem: server.certPem + await rootChainPem(layout.dir) }
      : server,
    force,
    report,
  );
  if (!server && options.sans?.length) {
    report.notes.push(
      `Server bundle "${layout.server.dir}" was kept, so the extra SANs were not applied: ` +
        `run "dockgate keygen server ${options.sans.map((n) => `--san ${n}`).join(" ")} ` +
        `--force" to reissue it`,
    );
  }
  await ensureDir(layout.clientsDir);
  await writeBundle(
    client,
    rotating ? await clientTrustPem(options.dir) : ca.certPem,
    clientPair,
    force,
    report,
  );
  await recordInit(layout, { ca: newCa ? ca : undefined, server, clientPair, clientName }, report);
  if (server && keptSans) report.notes.push(keptNamesNote(keptSans));
  if (force) report.notes.push(...await newCaNotes(layout, clientName, retired));
  return report.notes.length > 0 ? report : { created: report.created, kept: report.kept };
}

/**
 * Record what {@linkcode initPki} issued, and give a new CA its CRL (or a new server bundle
 * the CRL in force).
 */
async function recordInit(
  layout: PkiLayout,
  made: { ca?: PemPair; server?: PemPair; clientPair?: PemPair; clientName: string },
  report: KeygenReport,
): Promise<void> {
  const { ca, server, clientPair } = made;
  await recordIssued(layout.caDir, [
    ...(ca ? [issuedEntry(ca.certPem, "ca", "ca" as const)] : []),
    ...(server ? [issuedEntry(server.certPem, "server", "server" as const)] : []),
    ...(clientPair ? [issuedEntry(clientPair.certPem, made.clientName, "client" as const)] : []),
  ]);
  if (ca) {
    // A new CA gets its own CRL at once, in the same step: a server bundle holding the old
    // CA's CRL next to the new CA would make every reload (and restart) of serve fail. Every
    // recorded revocation is carried over, and the CRL number keeps growing.
    const published = await publishCrl({ caDir: layout.caDir, pkiDir: layout.dir }, ca);
    report.created.push(...published.written);
  } else if (server) {
    await copyCrlToServer(layout.dir, layout.server.dir, report);
  }
}

/** What {@linkcode initPki} will make: its options checked, each part's state, refusals. */
async function planInit(options: InitPkiOptions, layout: PkiLayout, client: BundlePaths) {
  const keyType = checkKeyType(options.keyType);
  checkDays(options.days, "days");
  checkDays(options.caDays, "caDays");
  const force = options.force === true;
  const caState = await partState(layout.caCert, layout.caKey);
  const serverState = await partState(layout.server.cert, layout.server.key);
  const clientState = await partState(client.cert, client.key);
  if (!force) {
    refuseMixedParts(layout, client, { ca: caState, server: serverState, client: clientState });
  }

  if (options.newCa === true && !force) {
    throw new TypeError("newCa replaces the CA only together with force (--force --new-ca)");
  }
  // A CA that is there stays unless asked twice over: a new one locks every client out.
  if (force && caState === "partial" && options.newCa !== true) {
    throw new AlreadyExistsError(
      `Incomplete CA in "${layout.caDir}" (ca.pem or ca-key.pem missing): restore it, or ` +
        `make a new CA with --force --new-ca (every client certificate must then be re-issued)`,
    );
  }
  const newCa = (force && options.newCa === true) || caState === "missing";
  if (newCa && await rotationUnderWay(options.dir)) {
    throw new AlreadyExistsError(
      layout.previousCaDir,
      `A CA rotation is under way in "${layout.dir}": finish it with "dockgate keygen ` +
        `retire-ca" before replacing the CA`,
    );
  }
  return { keyType, force, newCa, caState, serverState, clientState };
}

/**
 * Without `force`, initPki refuses a half-written part (only a key or only a certificate) and
 * bundles without a CA: a new CA would not have signed them, and PKIs are never mixed.
 */
function refuseMixedParts(
  layout: PkiLayout,
  client: BundlePaths,
  state: { ca: PartState; server: PartState; client: PartState },
): void {
  const incomplete = (what: string, dir: string, cert: string, key: string, s: PartState) => {
    if (s !== "partial") return;
    throw new AlreadyExistsError(
      dir,
      `Incomplete ${what} in "${dir}" (only one of "${basename(cert)}" and "${basename(key)}" ` +
        `exists): use --force to replace it`,
    );
  };
  incomplete("CA", layout.caDir, layout.caCert, layout.caKey, state.ca);
  const server = layout.server;
  incomplete("server bundle", server.dir, server.cert, server.key, state.server);
  incomplete("client bundle", client.dir, client.cert, client.key, state.client);
  if (state.ca === "missing" && (state.server !== "missing" || state.client !== "missing")) {
    const existing = state.server !== "missing" ? server.dir : client.dir;
    throw new AlreadyExistsError(
      existing,
      `"${existing}" exists but there is no CA in "${layout.caDir}": ` +
        `use --force to recreate the whole PKI`,
    );
  }
}

/** What `keygen --force --new-ca` says: where the old CA went, what serve and the clients will see. */
async function newCaNotes(
  layout: PkiLayout,
  clientName: string,
  retired: string | undefined,
): Promise<string[]> {
  const notes: string[] = [];
  if (retired) {
    notes.push(
      `The old CA was kept in "${retired}" (ca.pem, ca-key.pem): clients still holding ` +
        `certificates from it are refused from the next reload on`,
    );
  }
  notes.push(
    `A new CA was created: a running "dockgate serve" using "${layout.server.dir}" switches ` +
      `to the new CA, server certificate and CRL at its next reload`,
  );
  const others = (await readdir(layout.clientsDir)).filter((n) => n !== clientName);
  if (others.length > 0) {
    notes.push(
      `Existing client bundles (${others.join(", ")}) were issued by the old CA and no ` +
        `longer get in: reissue each with "dockgate keygen client NAME --force"`,
    );
  }
  return notes;
}

/**
 * Issue the server bundle `DIR/server` from the existing CA, with SANs
 * {@linkcode defaultServerSans} plus `sans`. Throws `Error` when there is no CA and
 * {@linkcode AlreadyExistsError} when the bundle's key or certificate exists and `force` is
 * not set.
 *
 * @example
 * ```ts
 * import { initPki, issueServerBundle } from "./keygen.ts";
 * import { mkdtemp, rm } from "node:fs/promises";
 * import { join } from "node:path";
 * import { tmpdir } from "node:os";
 * if ((await Deno.permissions.query({ name: "write" })).state === "granted") {
 *   const dir = await mkdtemp(join(tmpdir(), "dockgate-"));
 *   try {
 *     await initPki({ dir });
 *     await issueServerBundle({ dir, sans: ["10.0.0.7"], force: true });
 *   } finally {
 *     await rm(dir, { recursive: true });
 *   }
 * }
 * ```
 */
export async function issueServerBundle(options: IssueServerBundleOptions): Promise<KeygenReport> {
  const layout = pkiLayout(options.dir);
  const keyType = checkKeyType(options.keyType);
  checkDays(options.days, "days");
  const force = options.force === true;
  if (options.name !== undefined) validateHostName(options.name);
  const paths = options.name === undefined
    ? layout.server
    : bundlePaths(fleetBundleDir(layout.dir, options.name));
  await requireCa(options.dir, options.issuer !== undefined);
  const issuer = await loadIssuer(options.dir, options.issuer);
  await refuseExisting(`Server bundle "${paths.dir}"`, paths, force);
  // A re-issue keeps the names clients connect by, unless new ones are given.
  const kept = force && !options.sans?.length ? await certificateNames(paths.cert) : undefined;
  const pair = await issueServer(issuer.ca, {
    keyType,
    days: options.days,
    commonName: options.name,
    sans: kept ??
      (options.name === undefined
        ? [...defaultServerSans(), ...(options.sans ?? [])]
        : [options.name, ...(options.sans ?? [])]),
  });
  const report: KeygenReport = { created: [], kept: [] };
  if (kept) report.notes = [keptNamesNote(kept)];
  if (options.name !== undefined) await ensureDir(dirname(paths.dir));
  // The chain goes with the certificate; the trust bundle holds every CA of the PKI, so the
  // gate can verify each intermediate's CRL (only the root is a trust anchor).
  await writeBundle(
    paths,
    await serverTrustPem(options.dir),
    {
      ...pair,
      certPem: pair.certPem +
        (options.issuer === undefined ? await rootChainPem(options.dir) : issuer.chainPem),
    },
    force,
    report,
  );
  await recordIssued(issuer.caDir, [issuedEntry(pair.certPem, options.name ?? "server", "server")]);
  await copyCrlToServer(layout.dir, paths.dir, report);
  return report;
}

/**
 * The DNS and IP names of the server certificate at `path`, or `undefined` when there is
 * none or it cannot be read (a damaged certificate is what `--force` is often run to fix).
 */
async function certificateNames(path: string): Promise<string[] | undefined> {
  try {
    if (!(await pathExists(path, NO_FOLLOW))) return undefined;
    const cert = parseCertificatePem(await readFile(path, "utf8"));
    const { identity } = parsePeerCertificate(new Uint8Array(cert.rawData));
    const names = [...identity.dnsNames, ...identity.ips];
    return names.length > 0 ? names : undefined;
  } catch {
    return undefined;
  }
}

/** What a re-issue that kept the old certificate's names says. */
function keptNamesNote(names: string[]): string {
  return `Re-issued with the names of the certificate it replaces (${names.join(", ")}): ` +
    `give --san to change them`;
}

/** A fleet host's name: a DNS name or an IP address, usable as a directory name. */
function validateHostName(name: string): void {
  if (
    typeof name !== "string" || !/^[A-Za-z0-9]([A-Za-z0-9.:-]*[A-Za-z0-9])?$/.test(name) ||
    name.length > 253 || name.includes("..")
  ) {
    throw new TypeError(
      `Invalid server name "${name}": expected a host name or IP address (letters, digits, . - :)`,
    );
  }
}

/**
 * Issue client `name`'s bundle `DIR/clients/NAME` from the existing CA. Throws `TypeError`
 * for a bad name, `Error` when there is no CA and {@linkcode AlreadyExistsError} when the
 * bundle's key or certificate exists and `force` is not set.
 *
 * @example
 * ```ts
 * import { initPki, issueClientBundle } from "./keygen.ts";
 * import { clientBundlePaths } from "./layout.ts";
 * import { mkdtemp, rm } from "node:fs/promises";
 * import { join } from "node:path";
 * import { tmpdir } from "node:os";
 * if ((await Deno.permissions.query({ name: "write" })).state === "granted") {
 *   const dir = await mkdtemp(join(tmpdir(), "dockgate-"));
 *   try {
 *     await initPki({ dir });
 *     const report = await issueClientBundle("alice", { dir, organizationalUnits: ["dev"] });
 *     if (!report.created.includes(clientBundlePaths(dir, "alice").cert)) throw new Error("unexpected");
 *   } finally {
 *     await rm(dir, { recursive: true });
 *   }
 * }
 * ```
 */
export async function issueClientBundle(
  name: string,
  options: IssueClientBundleOptions,
): Promise<KeygenReport> {
  const paths = clientBundlePaths(options.dir, name);
  const keyType = checkKeyType(options.keyType);
  checkDays(options.days, "days");
  const force = options.force === true;
  if (options.revokeOld && !force) {
    throw new TypeError("revokeOld (--revoke-old) goes with force (--force)");
  }
  await requireCa(options.dir, options.issuer !== undefined);
  const issuer = await loadIssuer(options.dir, options.issuer);
  const ca = issuer.ca;
  await refuseExisting(`Client bundle "${name}"`, paths, force);
  // Each earlier certificate with the CA that issued it (the root or an intermediate).
  const earlierByCa = force ? await clientSerialsByCa(options.dir, name) : new Map();
  const earlier = [...earlierByCa.values()].flat() as string[];
  const issued = await issueClient(ca, name, {
    keyType,
    days: options.days,
    organizationalUnits: options.organizationalUnits,
  });
  const layout = pkiLayout(options.dir);
  const report: Required<KeygenReport> = { created: [], kept: [], notes: [], revoked: [] };
  await ensureDir(layout.clientsDir);
  // The client trusts the root alone (both roots during a rotation); its chain goes with its
  // certificate.
  const pair = { ...issued, certPem: issued.certPem + issuer.chainPem };
  await writeBundle(paths, await clientTrustPem(options.dir), pair, force, report);
  await recordIssued(issuer.caDir, [issuedEntry(issued.certPem, name, "client")]);
  if (earlier.length && options.revokeOld) {
    const r = await revokeByCa(options.dir, earlierByCa, name);
    report.revoked.push(...earlier);
    report.created.push(...r.written);
    report.notes.push(
      `Revoked the ${earlier.length} earlier certificate(s) of "${name}" (serial ` +
        `${earlier.join(", ")}); a running serve refuses them after its next reload`,
    );
  } else if (earlier.length) {
    report.notes.push(
      `The ${earlier.length} earlier certificate(s) of "${name}" (serial ${earlier.join(", ")}) ` +
        `STAY VALID until they expire: revoke them with "dockgate keygen revoke SERIAL", or ` +
        `re-issue with --force --revoke-old`,
    );
  }
  return report;
}

// ---------------------------------------------------------------------------------------------

/**
 * A new server bundle gets the CA's current CRL: without it, serve would start as if nothing
 * had ever been revoked.
 */
async function copyCrlToServer(
  pkiDir: string,
  serverDir: string,
  report: KeygenReport,
): Promise<void> {
  const crl = await combinedCrl(pkiDir);
  if (crl === undefined) return;
  const copy = bundleCrlPath(serverDir);
  await writeFileAtomic(copy, crl, { mode: CERT_MODE, replace: true });
  report.created.push(copy);
}

function checkKeyType(keyType: KeyType | undefined): KeyType {
  if (keyType === undefined) return "p256";
  if (!KEY_TYPES.includes(keyType)) {
    throw new TypeError(`Invalid key type "${keyType}": expected one of ${KEY_TYPES.join(", ")}`);
  }
  return keyType;
}

function checkDays(days: number | undefined, label: string): void {
  if (days === undefined) return;
  if (!Number.isInteger(days) || days < 1 || days > 36500) {
    throw new RangeError(`Invalid ${label} ${days}: expected an integer from 1 to 36500`);
  }
}

/**
 * The root CA (its key too, unless `certOnly`: an intermediate issues, the root may be
 * offline).
 */
async function requireCa(dir: string, certOnly = false): Promise<PemPair> {
  const layout = pkiLayout(dir);
  if (!await pkiExists(dir)) {
    throw new Error(`No CA in "${layout.caDir}": run "dockgate keygen" first`);
  }
  // Whoever could write these could have swapped the CA we are about to issue from.
  await ensureDir(layout.dir);
  await ensureDir(layout.caDir);
  if (certOnly) return { certPem: await readText(layout.caCert, "CA certificate"), keyPem: "" };
  return await loadCa(dir);
}

async function refuseExisting(what: string, paths: BundlePaths, force: boolean): Promise<void> {
  if (force) return;
  for (const path of [paths.key, paths.cert]) {
    if (await pathExists(path, NO_FOLLOW)) {
      throw new AlreadyExistsError(
        path,
        `${what} already exists ("${path}"): use --force to replace it`,
      );
    }
  }
}

/** Write a bundle (key, certificate, CA copy), or record it as kept when `pair` is absent. */
async function writeBundle(
  paths: BundlePaths,
  caPem: string,
  pair: PemPair | undefined,
  force: boolean,
  report: KeygenReport,
): Promise<void> {
  await ensureDir(paths.dir);
  if (pair) {
    await writeFileSafely(paths.key, pair.keyPem, KEY_MODE, force, report);
    await writeFileSafely(paths.cert, pair.certPem, CERT_MODE, force, report);
    await writeFileSafely(paths.ca, caPem, CERT_MODE, force, report);
    return;
  }
  report.kept.push(paths.cert, paths.key);
  // The CA copy is public and derivable: restore it if someone deleted it.
  if (await pathExists(paths.ca, NO_FOLLOW)) report.kept.push(paths.ca);
  else await writeFileSafely(paths.ca, caPem, CERT_MODE, false, report);
}

/** Options for {@linkcode renewBundle}. */
export interface RenewBundleOptions {
  /** The PKI directory. */
  dir: string;
  /** Days the new certificate is valid. Default: 365. */
  days?: number;
  /** A new key of the same type instead of the same key. Default: false. */
  newKey?: boolean;
  /** Revoke the old certificate (and publish the CRL). Default: false: it stays valid. */
  revokeOld?: boolean;
  /** With `"server"`: renew fleet host `DIR/servers/HOST/` instead of `DIR/server`. */
  host?: string;
}

/**
 * Renew `which` (`"server"` or a client name): a new certificate with the same subject, names
 * and usages, for the same key (or with `newKey` a new one), written over the bundle's
 * certificate (and key). The old certificate stays valid until it expires, unless
 * `revokeOld`, so clients rotate without an outage; a running serve picks a renewed server
 * certificate up at its next reload (it watches the files).
 *
 * @example
 * ```ts ignore
 * const report = await renewBundle("alice", { dir: "pki", days: 90 });
 * ```
 */
export async function renewBundle(
  which: string,
  options: RenewBundleOptions,
): Promise<Required<KeygenReport>> {
  checkDays(options.days, "days");
  const layout = pkiLayout(options.dir);
  const server = which === "server";
  if (!server) validateClientName(which);
  if (options.host !== undefined) {
    if (!server) throw new TypeError(`host goes with "server", not client "${which}"`);
    validateHostName(options.host);
  }
  const paths = !server
    ? clientBundlePaths(options.dir, which)
    : options.host === undefined
    ? layout.server
    : bundlePaths(fleetBundleDir(layout.dir, options.host));
  const what = !server
    ? `Client bundle "${which}"`
    : options.host === undefined
    ? "Server bundle"
    : `Server bundle "${paths.dir}"`;
  // The record's name: as keygen server --name wrote it.
  const recordName = server ? options.host ?? "server" : which;
  const read = (path: string) =>
    readFile(path, "utf8").catch((err) => {
      throw new Error(`Cannot renew ${what}: cannot read "${path}": ${fsErrorText(err)}`);
    });
  const [certPem, keyPem] = [await read(paths.cert), await read(paths.key)];
  if (!(await keyMatchesCertificate(keyPem, certPem))) {
    throw new Error(`Cannot renew ${what}: "${paths.key}" is not the key of "${paths.cert}"`);
  }
  const old = parseCertificatePem(certPem);
  // Renewed by the CA that issued it: an intermediate's leaf stays under that intermediate.
  const issuerName = await issuerNameOf(options.dir, old);
  await requireCa(options.dir, issuerName !== undefined);
  const issuer = await loadIssuer(options.dir, issuerName);
  const ca = issuer.ca;
  // During a rotation a leaf of the previous root is renewed by the new one, and revoked
  // (with --revoke-old) by the one that issued it.
  const fromPrevious = await issuedByPreviousRoot(options.dir, old);
  const revoker = fromPrevious
    ? { caDir: layout.previousCaDir, ca: await loadPreviousCa(options.dir) }
    : { caDir: issuer.caDir, ca };
  const renewed = await renewLeaf(ca, certPem, { days: options.days, newKey: options.newKey });
  const report: Required<KeygenReport> = { created: [], kept: [], notes: [], revoked: [] };
  const chain = server && issuerName === undefined
    ? await rootChainPem(options.dir)
    : issuer.chainPem;
  // The key first: a certificate is never on disk beside a key that is not its own for long.
  if (renewed.keyPem) await writeFileSafely(paths.key, renewed.keyPem, KEY_MODE, true, report);
  await writeFileSafely(paths.cert, renewed.certPem + chain, CERT_MODE, true, report);
  const trust = server ? await serverTrustPem(options.dir) : await clientTrustPem(options.dir);
  await writeFileSafely(paths.ca, trust, CERT_MODE, true, report);
  await recordIssued(issuer.caDir, [
    issuedEntry(renewed.certPem, recordName, server ? "server" : "client"),
  ]);
  const oldSerial = normalizeSerial(old.serialNumber);
  const until = parseCertificatePem(renewed.certPem).notAfter.toISOString();
  report.notes.push(`renewed ${server ? `the server ${paths.dir}` : `"${which}"`} until ${until}`);
  if (options.revokeOld) {
    const r = await addRevocations(
      { caDir: revoker.caDir, pkiDir: layout.dir },
      revoker.ca,
      [{ serial: oldSerial, name: recordName }],
    );
    report.revoked.push(oldSerial);
    report.created.push(...r.written);
    report.notes.push(`revoked the old certificate (serial ${oldSerial})`);
  } else {
    report.notes.push(
      `the old certificate (serial ${oldSerial}) STAYS VALID until ${old.notAfter.toISOString()}: ` +
        `revoke it with "dockgate keygen revoke ${oldSerial}" once nothing uses it`,
    );
  }
  return report;
}
