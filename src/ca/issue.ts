/**
 * In-memory certificate authority: creates a CA and issues server and client certificates
 * for mutual TLS, returning PEM strings. Nothing here touches the filesystem (see
 * `keygen.ts` for the on-disk layout).
 *
 * Certificates follow what the Docker CLI and Go's `crypto/tls` expect: server certificates
 * carry the `serverAuth` extended key usage and subject alternative names (IP literals as IP
 * SANs), client certificates carry `clientAuth`, and private keys are PKCS#8 PEM.
 *
 * @example Issue a CA, a server and a client certificate
 * ```ts
 * import { createCa, issueClient, issueServer } from "./issue.ts";
 * import { parseCertificatePem } from "../pki/pem.ts";
 * const ca = await createCa();
 * const server = await issueServer(ca, { sans: ["localhost", "127.0.0.1"] });
 * const alice = await issueClient(ca, "alice");
 * if (parseCertificatePem(alice.certPem).subject !== "CN=alice") throw new Error("unexpected");
 * if (!server.keyPem.startsWith("-----BEGIN PRIVATE KEY-----")) throw new Error("unexpected");
 * ```
 *
 * @module
 */

import { isIP } from "node:net";
import { hostname } from "node:os";
import { escapeControls } from "../observe/logger.ts";
import { x509, type X509Certificate } from "../pki/x509.ts";
import { certToPem, exportKeyPem, parseCertificatePem } from "../pki/pem.ts";
import { loadedCa } from "./ca_key_cache.ts";

/** Key algorithm of a generated key pair. */
export type KeyType = "p256" | "p384" | "rsa2048" | "rsa3072" | "rsa4096";

/** All {@linkcode KeyType} values, in order of preference. */
export const KEY_TYPES: readonly KeyType[] = ["p256", "p384", "rsa2048", "rsa3072", "rsa4096"];

/** A certificate and its private key, both PEM (the key is PKCS#8, `BEGIN PRIVATE KEY`). */
export interface PemPair {
  /** The certificate, `-----BEGIN CERTIFICATE-----`. */
  certPem: string;
  /** The unencrypted PKCS#8 private key, `-----BEGIN PRIVATE KEY-----`. */
  keyPem: string;
}

/** Validity options shared by every certificate kind. */
export interface ValidityOptions {
  /** Key algorithm of the new key pair. Default: `"p256"`. */
  keyType?: KeyType;
  /**
   * Lifetime in days from now: an integer from 1 to 36500. Ignored when `notAfter` is given.
   * Default: 3650 for a CA, 365 for leaf certificates.
   */
  days?: number;
  /** Start of validity. Default: now minus 5 minutes, to tolerate clock skew between peers. */
  notBefore?: Date;
  /** End of validity. Default: now plus `days`. */
  notAfter?: Date;
}

/** Options for {@linkcode createCa}. */
export interface CreateCaOptions extends ValidityOptions {
  /** Subject common name. Default: `"dockgate CA"`. */
  commonName?: string;
  /**
   * How many intermediates may stand between this CA and a leaf (`pathLenConstraint`).
   * Default: 1 (one level of `dockgate keygen intermediate`, which signs leaves only).
   */
  pathLength?: number;
}

/** Options for {@linkcode issueServer}. */
export interface IssueServerOptions extends ValidityOptions {
  /** Subject common name. Default: this machine's host name (`os.hostname()`). */
  commonName?: string;
  /**
   * Subject alternative names, the names clients verify. IPv4/IPv6 literals become IP SANs,
   * anything else a DNS SAN (`ip:`/`dns:` prefixes force the kind; IPv6 may be bracketed).
   * This list replaces the default; to add names, pass
   * `[...defaultServerSans(), "extra.example"]`. Default: {@linkcode defaultServerSans}.
   */
  sans?: string[];
}

/** Extended key usages a client certificate may carry. */
export type ClientExtKeyUsage = "clientAuth" | "serverAuth";

/** Options for {@linkcode issueClient}. */
export interface IssueClientOptions extends ValidityOptions {
  /** Organizational units added to the subject. Default: none. */
  organizationalUnits?: string[];
  /** Subject alternative names, as for {@linkcode IssueServerOptions.sans}. Default: none. */
  sans?: string[];
  /**
   * Extended key usages. Meant for tests and special cases (a certificate that serves both
   * ends); ordinary client certificates should keep the default. Default: `["clientAuth"]`.
   */
  extKeyUsages?: ClientExtKeyUsage[];
  /**
   * Certify this public key (a CSR's, checked by the caller) instead of generating a key pair;
   * `keyPem` is then `""`. Default: a new key of `keyType`.
   */
  publicKey?: CryptoKey;
}

/**
 * {@linkcode issueClientLeaf}'s options: the key to certify may also be a parsed SPKI (a
 * CSR's key, checked by `csr_sign.ts` and never imported as a `CryptoKey`).
 */
export interface IssueLeafOptions extends Omit<IssueClientOptions, "publicKey"> {
  /** As {@linkcode IssueClientOptions}'s `publicKey`, or the parsed SPKI of it. */
  publicKey?: CryptoKey | x509.PublicKey;
}

const MINUTE = 60_000;
const DAY = 86_400_000;
const CLOCK_SKEW = 5 * MINUTE;
const MAX_DAYS = 36500;
const OID_CN = "2.5.4.3";
const OID_OU = "2.5.4.11";

const KEY_TYPE_ALIASES: Record<string, KeyType> = {
  p256: "p256",
  ecdsap256: "p256",
  ecp256: "p256",
  prime256v1: "p256",
  secp256r1: "p256",
  p384: "p384",
  ecdsap384: "p384",
  ecp384: "p384",
  secp384r1: "p384",
  rsa2048: "rsa2048",
  rsa3072: "rsa3072",
  rsa4096: "rsa4096",
};

/**
 * Parse a key type name. Accepts the {@linkcode KeyType} values and common spellings such
 * as `P-256`, `ecdsa-p384`, `prime256v1` or `RSA-2048` (case-insensitive).
 * Throws `TypeError` listing the valid values otherwise.
 *
 * @example
 * ```ts
 * import { parseKeyType } from "./issue.ts";
 * if (parseKeyType("P-256") !== "p256") throw new Error("unexpected");
 * if (parseKeyType("rsa-4096") !== "rsa4096") throw new Error("unexpected");
 * ```
 */
export function parseKeyType(text: string): KeyType {
  const key = typeof text === "string" ? text.toLowerCase().replace(/[-_ ]/g, "") : "";
  const type = Object.hasOwn(KEY_TYPE_ALIASES, key) ? KEY_TYPE_ALIASES[key] : undefined;
  if (type === undefined) {
    throw new TypeError(`Invalid key type "${text}": expected one of ${KEY_TYPES.join(", ")}`);
  }
  return type;
}

/**
 * Throw `TypeError` unless `name` is usable as a client name: 1–64 characters from letters,
 * digits, `.`, `_`, `-` and `@`, not starting with a dot. Such a name is safe as a
 * directory name and as a certificate common name.
 *
 * @example
 * ```ts
 * import { validateClientName } from "./issue.ts";
 * validateClientName("alice@laptop");
 * let threw = false;
 * try { validateClientName("../etc"); } catch (e) { threw = e instanceof TypeError; }
 * if (!threw) throw new Error("expected TypeError");
 * ```
 */
export function validateClientName(name: string): void {
  if (typeof name !== "string" || !/^[A-Za-z0-9_@-][A-Za-z0-9._@-]{0,63}$/.test(name)) {
    throw new TypeError(
      `Invalid client name "${name}": use 1-64 letters, digits, ".", "_", "-" or "@", ` +
        `not starting with "."`,
    );
  }
}

/**
 * The server SANs used when none are given: `localhost`, `127.0.0.1`, `::1` and this
 * machine's host name (when it is a valid DNS name and can be read).
 *
 * @example
 * ```ts
 * import { defaultServerSans } from "./issue.ts";
 * const sans = defaultServerSans();
 * if (!sans.includes("localhost") || !sans.includes("::1")) throw new Error("unexpected");
 * ```
 */
export function defaultServerSans(): string[] {
  const sans = ["localhost", "127.0.0.1", "::1"];
  const host = safeHostname().toLowerCase();
  try {
    parseSan(host);
    if (!sans.includes(host)) sans.push(host);
  } catch {
    // An odd host name is simply not advertised; the caller can add SANs explicitly.
  }
  return sans;
}

/**
 * Create a self-signed CA certificate: basicConstraints `CA:TRUE, pathlen:1` (critical; see
 * `pathLength`),
 * keyUsage `keyCertSign, cRLSign` (critical), a subject key identifier and a random
 * positive 128-bit serial number. Default lifetime: 3650 days.
 *
 * Throws `RangeError` for a bad `days` or validity range and `TypeError` for a bad name.
 *
 * @example
 * ```ts
 * import { createCa } from "./issue.ts";
 * import { parseCertificatePem } from "../pki/pem.ts";
 * const ca = await createCa({ commonName: "test CA", days: 30 });
 * const cert = parseCertificatePem(ca.certPem);
 * if (cert.subject !== "CN=test CA") throw new Error(cert.subject);
 * ```
 */
export async function createCa(options: CreateCaOptions = {}): Promise<PemPair> {
  const commonName = checkCommonName(options.commonName ?? "dockgate CA");
  const keyType = options.keyType ?? "p256";
  const { notBefore, notAfter } = validity(options, 3650);
  const keys = await generateKeyPair(keyType);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: [{ [OID_CN]: [commonName] }],
    issuer: [{ [OID_CN]: [commonName] }],
    notBefore,
    notAfter,
    publicKey: keys.publicKey,
    signingKey: keys.privateKey,
    signingAlgorithm: signingAlgorithm(keys.publicKey.algorithm),
    extensions: [
      // pathlen 1 by default: leaves, or intermediates that sign leaves only.
      new x509.BasicConstraintsExtension(true, pathLengthOf(options.pathLength), true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: certToPem(cert), keyPem: keys ? await exportKeyPem(keys.privateKey) : "" };
}

/** Options for {@linkcode issueIntermediate}. */
export interface IssueIntermediateOptions extends ValidityOptions {
  /** Subject common name. Default: the name given. */
  commonName?: string;
}

/**
 * Issue an intermediate CA certificate signed by `ca`, for teams that keep the root offline:
 * basicConstraints `CA:TRUE, pathlen:0` (critical: it signs leaves only), key usage
 * keyCertSign and cRLSign (critical), subject/authority key identifiers; 1825 days by
 * default, clamped to the root's end. Throws `RangeError` when `ca`'s own path length
 * constraint allows no intermediate, other errors as for {@linkcode issueServer}.
 *
 * @example
 * ```ts
 * import { createCa, issueClient, issueIntermediate } from "./issue.ts";
 * import { parseCertificatePem } from "../pki/pem.ts";
 * const root = await createCa();
 * const team = await issueIntermediate(root, "team");
 * const alice = await issueClient(team, "alice");
 * if (parseCertificatePem(alice.certPem).issuer !== "CN=team") throw new Error();
 * ```
 */
export async function issueIntermediate(
  ca: PemPair,
  name: string,
  options: IssueIntermediateOptions = {},
): Promise<PemPair> {
  const commonName = checkCommonName(options.commonName ?? name);
  const { caCert, caKey, caKeyId: caSki } = await loadedCa(ca);
  const rootLen = caCert.getExtension(x509.BasicConstraintsExtension)?.pathLength;
  if (rootLen === 0) {
    throw new RangeError(
      `CA "${caCert.subject}" has pathLenConstraint 0: it may sign leaf certificates only, ` +
        `not intermediates (roots made by earlier dockgate versions are such: make a new PKI for intermediates)`,
    );
  }
  const requested = validity(options, 1825);
  const notAfter = new Date(Math.min(requested.notAfter.getTime(), caCert.notAfter.getTime()));
  if (notAfter.getTime() <= Math.max(requested.notBefore.getTime(), Date.now())) {
    throw new RangeError("Invalid validity: the CA ends before the intermediate would start");
  }
  const keys = await generateKeyPair(options.keyType ?? "p256");
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: [{ [OID_CN]: [commonName] }],
    issuer: caCert.subjectName,
    notBefore: requested.notBefore,
    notAfter,
    publicKey: keys.publicKey,
    signingKey: caKey,
    signingAlgorithm: signingAlgorithm(caCert.publicKey.algorithm),
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      new x509.AuthorityKeyIdentifierExtension(caSki, false),
    ],
  });
  return { certPem: certToPem(cert), keyPem: await exportKeyPem(keys.privateKey) };
}

/**
 * A new certificate, signed by `issuer`, for the subject and public key of the CA
 * certificate `subjectPem`: a cross-certificate (the new root of a rotation signed by the old
 * one, so clients that trust only the old root still verify what the new one issues) or an
 * intermediate re-signed under another root (same key and name, so everything it issued
 * stays valid). basicConstraints `CA:TRUE, pathlen` (critical), keyCertSign and cRLSign,
 * the subject's key identifier, the issuer's as authority key identifier; valid from now to
 * the earlier of both CAs' ends.
 *
 * @example
 * ```ts
 * import { createCa, signCaCertificate } from "./issue.ts";
 * import { parseCertificatePem } from "../pki/pem.ts";
 * const old = await createCa({ commonName: "old" });
 * const next = await createCa({ commonName: "new" });
 * const cross = parseCertificatePem(await signCaCertificate(next.certPem, old, 0));
 * if (cross.subject !== "CN=new" || cross.issuer !== "CN=old") throw new Error();
 * ```
 */
export async function signCaCertificate(
  subjectPem: string,
  issuer: PemPair,
  pathLength: number,
): Promise<string> {
  const subject = parseCertificatePem(subjectPem);
  if (subject.getExtension(x509.BasicConstraintsExtension)?.ca !== true) {
    throw new TypeError(`"${subject.subject}" is not a CA certificate`);
  }
  const { caCert, caKey, caKeyId: issuerSki } = await loadedCa(issuer);
  const notBefore = new Date(Date.now() - 60_000);
  const notAfter = new Date(Math.min(subject.notAfter.getTime(), caCert.notAfter.getTime()));
  if (notAfter.getTime() <= Date.now()) {
    throw new RangeError(`Cannot sign "${subject.subject}": "${caCert.subject}" has expired`);
  }
  const publicKey = await subject.publicKey.export();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: subject.subjectName,
    issuer: caCert.subjectName,
    notBefore,
    notAfter,
    publicKey,
    signingKey: caKey,
    signingAlgorithm: signingAlgorithm(caCert.publicKey.algorithm),
    extensions: [
      new x509.BasicConstraintsExtension(true, pathLengthOf(pathLength), true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
      new x509.AuthorityKeyIdentifierExtension(issuerSki, false),
    ],
  });
  return certToPem(cert);
}

function pathLengthOf(n: number | undefined): number {
  const value = n ?? 1;
  if (!Number.isInteger(value) || value < 0 || value > 8) {
    throw new RangeError(`Invalid pathLength ${n}: expected an integer from 0 to 8`);
  }
  return value;
}

/**
 * Issue a TLS server certificate signed by `ca`: extended key usage `serverAuth`, key usage
 * `digitalSignature` (plus `keyEncipherment` for RSA keys), basicConstraints `CA:FALSE`,
 * subject alternative names, and subject/authority key identifiers.
 *
 * The certificate never outlives the CA: `notAfter` is clamped to the CA's `notAfter`.
 * Throws `TypeError` for a bad SAN or a CA pair that is not a CA or whose key does not
 * match, `RangeError` for a bad `days` or validity range, and `Error` when the CA has
 * expired.
 *
 * @example
 * ```ts
 * import { createCa, issueServer } from "./issue.ts";
 * import { parseCertificatePem } from "../pki/pem.ts";
 * import { x509, type X509Certificate } from "../pki/x509.ts";
 * const ca = await createCa();
 * const server = await issueServer(ca, { commonName: "docker1", sans: ["docker1.lan", "10.0.0.5"] });
 * const san = parseCertificatePem(server.certPem)
 *   .getExtension(x509.SubjectAlternativeNameExtension)!;
 * const names = san.names.items.map((n) => `${n.type}:${n.value}`);
 * if (names.join() !== "dns:docker1.lan,ip:10.0.0.5") throw new Error(names.join());
 * ```
 */
export async function issueServer(ca: PemPair, options: IssueServerOptions = {}): Promise<PemPair> {
  const commonName = checkCommonName(options.commonName ?? defaultServerCommonName());
  const sans = options.sans ?? defaultServerSans();
  if (sans.length === 0) {
    // Go and the Docker CLI ignore the common name: a server without SANs matches nothing.
    throw new TypeError("A server certificate needs at least one subject alternative name");
  }
  return (await issueLeaf(ca, options, [{ [OID_CN]: [commonName] }], sans, [
    x509.ExtendedKeyUsage.serverAuth,
  ])).pair;
}

/**
 * Issue a TLS client certificate signed by `ca` with common name `name`: extended key usage
 * `clientAuth` (see {@linkcode IssueClientOptions.extKeyUsages}), key usage
 * `digitalSignature` (plus `keyEncipherment` for RSA keys), basicConstraints `CA:FALSE`, and
 * subject/authority key identifiers.
 *
 * `name` must pass {@linkcode validateClientName} (else `TypeError`). The certificate never
 * outlives the CA: `notAfter` is clamped to the CA's `notAfter`. Other errors as for
 * {@linkcode issueServer}.
 *
 * @example
 * ```ts
 * import { createCa, issueClient } from "./issue.ts";
 * import { parseCertificatePem } from "../pki/pem.ts";
 * const ca = await createCa();
 * const bob = await issueClient(ca, "bob", { organizationalUnits: ["ops"], days: 7 });
 * if (parseCertificatePem(bob.certPem).subject !== "OU=ops, CN=bob") throw new Error("unexpected");
 * ```
 */
export async function issueClient(
  ca: PemPair,
  name: string,
  options: IssueClientOptions = {},
): Promise<PemPair> {
  return (await issueClientLeaf(ca, name, options)).pair;
}

/** A leaf just issued: its PEM pair and the certificate itself (no need to parse it back). */
export interface IssuedLeaf {
  /** The certificate and its new key (`keyPem` is `""` for a given public key). */
  pair: PemPair;
  /** The certificate, parsed. */
  cert: X509Certificate;
}

/**
 * {@linkcode issueClient}, with the certificate object beside the PEM (what enrolment records
 * and answers without parsing its own certificate again).
 *
 * @example
 * ```ts
 * import { createCa, issueClientLeaf } from "./issue.ts";
 * const { pair, cert } = await issueClientLeaf(await createCa(), "bob");
 * if (cert.subject !== "CN=bob" || !pair.certPem.includes("CERTIFICATE")) throw new Error();
 * ```
 */
export async function issueClientLeaf(
  ca: PemPair,
  name: string,
  options: IssueLeafOptions = {},
): Promise<IssuedLeaf> {
  validateClientName(name);
  const subject: Record<string, string[]>[] = [];
  for (const ou of options.organizationalUnits ?? []) {
    subject.push({ [OID_OU]: [checkCommonName(ou, "organizational unit")] });
  }
  subject.push({ [OID_CN]: [name] });
  const ekus = options.extKeyUsages ?? ["clientAuth"];
  if (ekus.length === 0) throw new TypeError("extKeyUsages must not be empty");
  for (const eku of ekus) {
    if (eku !== "clientAuth" && eku !== "serverAuth") {
      throw new TypeError(`Invalid extended key usage "${eku}": expected clientAuth or serverAuth`);
    }
  }
  const key = options.publicKey;
  return await issueLeaf(
    ca,
    key ? { ...options, keyType: keyTypeOf(key.algorithm) } : options,
    subject,
    options.sans ?? [],
    ekus.map((e) => x509.ExtendedKeyUsage[e]),
    key ? { publicKey: key } : {},
  );
}

// ---------------------------------------------------------------------------------------------

/** The host name, or "" when it cannot be read (e.g. Deno without `--allow-sys`). */
function safeHostname(): string {
  try {
    return hostname();
  } catch {
    return "";
  }
}

function defaultServerCommonName(): string {
  const host = safeHostname();
  return host !== "" && host.length <= 64 ? host : "dockgate server";
}

/**
 * A new certificate for the same subject, names and usages as `oldCertPem` (a leaf this CA
 * issued), valid for `days` from now: for the same public key, or with `newKey` for a new key
 * of the same type (then `keyPem` is the new key). The old certificate stays valid.
 *
 * @example
 * ```ts
 * import { createCa, issueClient, renewLeaf } from "./issue.ts";
 * import { parseCertificatePem } from "../pki/pem.ts";
 * const ca = await createCa();
 * const old = await issueClient(ca, "alice", { days: 10 });
 * const renewed = await renewLeaf(ca, old.certPem, { days: 90 });
 * const a = parseCertificatePem(old.certPem), b = parseCertificatePem(renewed.certPem);
 * if (b.subject !== a.subject || b.serialNumber === a.serialNumber || renewed.keyPem) throw new Error();
 * ```
 */
export async function renewLeaf(
  ca: PemPair,
  oldCertPem: string,
  options: ValidityOptions & { newKey?: boolean } = {},
): Promise<{ certPem: string; keyPem?: string }> {
  const old = parseCertificatePem(oldCertPem);
  if (old.getExtension(x509.BasicConstraintsExtension)?.ca) {
    throw new TypeError(`"${old.subject}" is a CA certificate: renew leaves only`);
  }
  const ekus = old.getExtension(x509.ExtendedKeyUsageExtension)?.usages.map(String) ?? [];
  const sans = old.getExtension(x509.SubjectAlternativeNameExtension);
  const keyType = keyTypeOf(old.publicKey.algorithm);
  const { pair } = await issueLeaf(ca, { ...options, keyType }, old.subjectName, [], ekus, {
    publicKey: options.newKey ? undefined : await old.publicKey.export(),
    sanExtension: sans ?? undefined,
  });
  return options.newKey ? pair : { certPem: pair.certPem };
}

/** The {@linkcode KeyType} of a certificate's public key algorithm. */
function keyTypeOf(algorithm: Algorithm): KeyType {
  const a = algorithm as { name: string; namedCurve?: string; modulusLength?: number };
  if (a.name === "ECDSA") return a.namedCurve === "P-384" ? "p384" : "p256";
  const bits = a.modulusLength ?? 2048;
  return bits >= 4096 ? "rsa4096" : bits >= 3072 ? "rsa3072" : "rsa2048";
}

async function issueLeaf(
  ca: PemPair,
  options: ValidityOptions,
  subject: Record<string, string[]>[] | x509.Name,
  sans: string[],
  ekus: string[],
  reuse: {
    publicKey?: CryptoKey | x509.PublicKey;
    sanExtension?: x509.SubjectAlternativeNameExtension;
  } = {},
): Promise<IssuedLeaf> {
  const keyType = options.keyType ?? "p256";
  const names = dedupeSans(sans);
  const requested = validity(options, 365);
  const { caCert, caKey, caKeyId: caSki } = await loadedCa(ca);
  if (caCert.notAfter.getTime() <= Date.now()) {
    throw new Error(
      `CA certificate "${caCert.subject}" expired on ${caCert.notAfter.toISOString()}`,
    );
  }
  // A leaf that outlives its CA would fail verification after the CA expires anyway; clamp
  // so the certificate says what will actually happen.
  const notAfter = new Date(Math.min(requested.notAfter.getTime(), caCert.notAfter.getTime()));
  if (notAfter.getTime() <= requested.notBefore.getTime()) {
    throw new RangeError("Invalid validity: notAfter (clamped to the CA's) is not after notBefore");
  }
  const keys = reuse.publicKey ? undefined : await generateKeyPair(keyType);
  // The key's SPKI once, for the key identifier and the certificate both (each exported a
  // CryptoKey of its own: ~0.2 ms of every signing on Node).
  const publicKey = await x509.PublicKey.create(reuse.publicKey ?? keys!.publicKey);
  const usages = x509.KeyUsageFlags.digitalSignature |
    // RSA key exchange (TLS 1.2 RSA kx) encrypts the premaster secret with the leaf key.
    (keyType.startsWith("rsa") ? x509.KeyUsageFlags.keyEncipherment : 0);
  const same = sameForEveryLeaf(usages, ekus, caSki);
  const extensions: x509.Extension[] = [
    ...same.usage,
    await x509.SubjectKeyIdentifierExtension.create(publicKey),
    same.authority,
  ];
  if (reuse.sanExtension) extensions.push(reuse.sanExtension);
  else if (names.length > 0) {
    extensions.push(new x509.SubjectAlternativeNameExtension(names, false));
  }
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject,
    // The issuer must be byte-identical to the CA's subject for chain building.
    issuer: caCert.subjectName,
    notBefore: requested.notBefore,
    notAfter,
    publicKey,
    signingKey: caKey,
    signingAlgorithm: signingAlgorithm(caCert.publicKey.algorithm),
    extensions,
  });
  const pair = {
    certPem: certToPem(cert),
    keyPem: keys ? await exportKeyPem(keys.privateKey) : "",
  };
  return { pair, cert };
}

/**
 * The extensions that are the same in every leaf of one kind by one CA (basic constraints, key
 * usage, EKU; the authority key identifier), built once: each costs a serialisation and a
 * parse in @peculiar/x509, ~0.4 ms of every signing on Deno. Found by their very inputs (the
 * usage bits, the EKUs, the CA's key identifier), so another CA or another kind of leaf gets
 * its own. The generator only reads them.
 */
function sameForEveryLeaf(
  usages: number,
  ekus: string[],
  caSki: string,
): { usage: readonly x509.Extension[]; authority: x509.Extension } {
  const id = `${usages}/${ekus.join(",")}/${caSki}`;
  let entry = leafExtensions.get(id);
  if (!entry) {
    entry = {
      usage: Object.freeze([
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(usages, true),
        new x509.ExtendedKeyUsageExtension(ekus, false),
      ]),
      authority: new x509.AuthorityKeyIdentifierExtension(caSki, false),
    };
    if (leafExtensions.size >= 32) leafExtensions.delete(leafExtensions.keys().next().value!);
    leafExtensions.set(id, entry);
  }
  return entry;
}
const leafExtensions = new Map<
  string,
  { usage: readonly x509.Extension[]; authority: x509.Extension }
>();

function keyGenParams(keyType: KeyType): EcKeyGenParams | RsaHashedKeyGenParams {
  switch (keyType) {
    case "p256":
      return { name: "ECDSA", namedCurve: "P-256" };
    case "p384":
      return { name: "ECDSA", namedCurve: "P-384" };
    case "rsa2048":
    case "rsa3072":
    case "rsa4096":
      return {
        name: "RSASSA-PKCS1-v1_5",
        modulusLength: Number(keyType.slice(3)),
        publicExponent: new Uint8Array([1, 0, 1]),
        hash: "SHA-256",
      };
    default:
      throw new TypeError(`Invalid key type "${keyType}": expected one of ${KEY_TYPES.join(", ")}`);
  }
}

async function generateKeyPair(keyType: KeyType): Promise<CryptoKeyPair> {
  return await crypto.subtle.generateKey(keyGenParams(keyType), true, ["sign", "verify"]);
}

/** Signature parameters for a signer key: ECDSA hashes match the curve size. */
export function signingAlgorithm(keyAlgorithm: Algorithm): EcdsaParams | Algorithm {
  if (keyAlgorithm.name === "ECDSA") {
    const curve = (keyAlgorithm as EcKeyAlgorithm).namedCurve;
    return { name: "ECDSA", hash: curve === "P-384" ? "SHA-384" : "SHA-256" } as EcdsaParams;
  }
  return { name: keyAlgorithm.name, hash: "SHA-256" } as Algorithm;
}

/** A random positive 128-bit serial: high bit cleared (positive), first byte nonzero. */
function randomSerial(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] &= 0x7f;
  if (bytes[0] === 0) bytes[0] = 1;
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function validity(
  options: ValidityOptions,
  defaultDays: number,
): { notBefore: Date; notAfter: Date } {
  const days = options.days ?? defaultDays;
  if (!Number.isInteger(days) || days < 1 || days > MAX_DAYS) {
    throw new RangeError(`Invalid days ${days}: expected an integer from 1 to ${MAX_DAYS}`);
  }
  const now = Date.now();
  const notBefore = options.notBefore ?? new Date(now - CLOCK_SKEW);
  const notAfter = options.notAfter ?? new Date(now + days * DAY);
  for (const [label, date] of [["notBefore", notBefore], ["notAfter", notAfter]] as const) {
    if (!(date instanceof Date) || Number.isNaN(date.getTime())) {
      throw new TypeError(`Invalid ${label}: expected a valid Date`);
    }
  }
  if (notAfter.getTime() <= notBefore.getTime()) {
    throw new RangeError("Invalid validity: notAfter must be after notBefore");
  }
  return { notBefore, notAfter };
}

// C0/C1 controls, Unicode format characters (bidi overrides) and line separators: they would
// forge or reorder what an operator reads in a log or a certificate listing.
const CONTROL_CHARS = /[\p{Cc}\p{Cf}\u2028\u2029]/u;

function checkCommonName(value: string, what = "common name"): string {
  // ub-common-name is 64; control characters would be misleading in logs and DNs.
  if (
    typeof value !== "string" || value.length < 1 || value.length > 64 ||
    CONTROL_CHARS.test(value)
  ) {
    throw new TypeError(
      `Invalid ${what} "${escapeControls(String(value))}": expected 1-64 printable characters`,
    );
  }
  return value;
}

/** Parse one SAN into the library's JSON form, canonicalising IPs and DNS names. */
function parseSan(text: string): x509.JsonGeneralName {
  const bad = (why: string) => new TypeError(`Invalid SAN "${text}": ${why}`);
  if (typeof text !== "string") throw bad("not a string");
  let value = text;
  let kind: "ip" | "dns" | undefined;
  const prefix = /^(ip|dns):/i.exec(value);
  if (prefix) {
    kind = prefix[1].toLowerCase() as "ip" | "dns";
    value = value.slice(prefix[0].length);
  }
  const unbracketed = /^\[(.*)\]$/.exec(value)?.[1] ?? value;
  const family = isIP(unbracketed);
  if (kind === "ip" || (kind === undefined && family !== 0)) {
    if (family === 4) return { type: "ip", value: unbracketed.split(".").map(Number).join(".") };
    if (family === 6 && !unbracketed.includes("%")) {
      return { type: "ip", value: ipv6Groups(unbracketed).map((g) => g.toString(16)).join(":") };
    }
    throw bad("not an IPv4 or IPv6 address (zone indexes are not allowed)");
  }
  const name = value.toLowerCase().replace(/\.$/, "");
  if (name === "" || name.length > 253) throw bad("empty or longer than 253 characters");
  const labels = name.split(".");
  labels.forEach((label, i) => {
    if (i === 0 && label === "*" && labels.length > 2) return; // wildcard: *.example.com
    if (!/^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/.test(label)) {
      throw bad("not a valid DNS name or IP address");
    }
  });
  return { type: "dns", value: name };
}

/** The eight 16-bit groups of an IPv6 literal already accepted by `isIP` (handles `::`, v4 tail). */
function ipv6Groups(text: string): number[] {
  const side = (part: string): number[] => {
    if (part === "") return [];
    return part.split(":").flatMap((piece) => {
      if (!piece.includes(".")) return [parseInt(piece, 16)];
      const [a, b, c, d] = piece.split(".").map(Number);
      return [(a << 8) | b, (c << 8) | d];
    });
  };
  const [left, right] = text.split("::");
  if (right === undefined) return side(left);
  const l = side(left);
  const r = side(right);
  return [...l, ...new Array(8 - l.length - r.length).fill(0), ...r];
}

function dedupeSans(sans: string[]): x509.JsonGeneralName[] {
  if (!Array.isArray(sans)) throw new TypeError("sans must be an array of strings");
  const seen = new Set<string>();
  const out: x509.JsonGeneralName[] = [];
  for (const san of sans) {
    const parsed = parseSan(san);
    const key = `${parsed.type}:${parsed.value}`;
    if (!seen.has(key)) {
      seen.add(key);
      out.push(parsed);
    }
  }
  return out;
}
