/**
 * Certificate chains, verified by the gate itself from the leaf up to a trust anchor: what
 * lets certificates from step-ca, Vault, cfssl or an `openssl ca` with an intermediate in
 * through the gate without trusting the runtime's own chain check (Deno's `node:tls` ignores
 * path length and anchor dates; rustls treats every certificate in `ca` as an anchor).
 *
 * The rules, one function each:
 * - Trust anchors are the self-issued certificates of the CA bundle; the bundle's other
 *   certificates, and what the peer sent after its leaf, are intermediates that may be used
 *   to build the path but are never trusted on their own ({@linkcode trustStoreOf}).
 * - Each link: the issuer's name is the child's issuer name byte for byte and its key made
 *   the child's signature (`verify.ts` `signerOf`).
 * - Each issuer, anchor included ({@linkcode issuerProblem}): within its validity period,
 *   `CA:TRUE`, `keyCertSign` in its key usage (an intermediate must have a key usage at
 *   all), its path length constraint not exceeded, its extended key usage (if any) allowing
 *   the purpose, no critical extension the gate does not understand, and its name
 *   constraints (if any) met by every certificate below it, or the chain refused when they
 *   cannot be enforced (`name_constraints.ts`).
 * - At most {@linkcode MAX_INTERMEDIATES} intermediates, and at most 64 candidate links tried
 *   (a peer's namesakes sharing one key cannot make the search explode).
 *
 * The leaf's own checks (not a CA, EKU, key usage, dates) stay with the caller (the gate's
 * `checkIdentity`, `loadCredentials`), and so does revocation, which needs the CRLs: the
 * verified path says which issuer's CRL covers each certificate ({@linkcode issuerKeyOf}).
 *
 * @module
 */

import { createHash } from "node:crypto";
import { x509 } from "./x509.ts";
import { caAllowsPurpose, leafUsageProblem, type Purpose, usageFactsOf } from "./usage.ts";
import { nameDer, sameBytes, signerOf } from "./verify.ts";
import {
  type ConstrainedNames,
  constrainedNamesOf,
  nameConstraintsOf,
  nameConstraintViolation,
  OID_NAME_CONSTRAINTS,
} from "./name_constraints.ts";
import { normalizeSerial } from "./serial.ts";

type Cert = x509.X509Certificate;

/** The most intermediates between a leaf and its anchor. */
export const MAX_INTERMEDIATES = 8;

/** The most candidate issuers one verification tries (each a signature check at most). */
const MAX_LINK_TRIES = 64;

/** What a chain is verified against: the anchors, and intermediates that may help. */
export interface TrustStore {
  /** Self-issued certificates of the CA bundle: the only ones trusted as such. */
  anchors: readonly Cert[];
  /** The bundle's other CA certificates: path building only. */
  intermediates: readonly Cert[];
}

/** Why a chain is verified: the extended key usage its leaf is used for (`usage.ts`). */
export type { Purpose } from "./usage.ts";

/** The outcome of {@linkcode verifyChain}. */
export type ChainResult =
  | { ok: true; path: Cert[] }
  | { ok: false; reason: string };

/**
 * Split a CA bundle into anchors and intermediates.
 *
 * @example
 * ```ts
 * import { createCa } from "../ca/issue.ts";
 * import { parseCertificatePem } from "./pem.ts";
 * import { trustStoreOf } from "./chain.ts";
 * const root = parseCertificatePem((await createCa()).certPem);
 * const store = trustStoreOf([root]);
 * if (store.anchors[0] !== root || store.intermediates.length !== 0) throw new Error();
 * ```
 */
export function trustStoreOf(bundle: readonly Cert[]): TrustStore {
  const anchors = bundle.filter(selfIssued);
  return { anchors, intermediates: bundle.filter((c) => !selfIssued(c)) };
}

/** Whether a certificate names itself as its issuer (a root, by RFC 5280's word). */
export function selfIssued(cert: Cert): boolean {
  return sameBytes(nameDer(cert, "issuer"), nameDer(cert, "subject"));
}

/**
 * Build and verify the path from `leaf` to an anchor of `store`, using `presented` (what the
 * peer sent after its leaf; self-issued ones are ignored) and the store's intermediates; the
 * leaf itself must pass the usage rule for `purpose` (`usage.ts`: not a CA, the EKU, key
 * usage, dates). Returns the path, leaf first, anchor last, or why none is valid (the first
 * problem met). Never throws.
 *
 * @example
 * ```ts
 * import { createCa, issueClient } from "../ca/issue.ts";
 * import { parseCertificatePem } from "./pem.ts";
 * import { trustStoreOf, verifyChain } from "./chain.ts";
 * const ca = await createCa();
 * const leaf = parseCertificatePem((await issueClient(ca, "alice")).certPem);
 * const store = trustStoreOf([parseCertificatePem(ca.certPem)]);
 * const result = await verifyChain(leaf, [], store, "client");
 * if (!result.ok || result.path.length !== 2) throw new Error();
 * ```
 */
export async function verifyChain(
  leaf: Cert,
  presented: readonly Cert[],
  store: TrustStore,
  purpose: Purpose,
  now: Date = new Date(),
): Promise<ChainResult> {
  const usage = leafUsageProblem(usageFactsOf(leaf), purpose, now);
  if (usage) return { ok: false, reason: usage.reason };
  return await verifyPath(leaf, presented, store, purpose, now);
}

/**
 * {@linkcode verifyChain} from the store alone first, and only when that finds no path with
 * what the peer presented (`presented` is called then only: reading a peer's chain costs a
 * parse per certificate). One rule for both ends: the gate's clients and `connect`'s server.
 *
 * @example
 * ```ts
 * import { createCa, issueClient } from "../ca/issue.ts";
 * import { parseCertificatePem } from "./pem.ts";
 * import { trustStoreOf, verifyChainPresented } from "./chain.ts";
 * const ca = await createCa();
 * const leaf = parseCertificatePem((await issueClient(ca, "alice")).certPem);
 * const store = trustStoreOf([parseCertificatePem(ca.certPem)]);
 * const result = await verifyChainPresented(leaf, () => { throw new Error("not needed"); }, store, "client");
 * if (!result.ok) throw new Error(result.reason);
 * ```
 */
export async function verifyChainPresented(
  leaf: Cert,
  presented: () => readonly Cert[],
  store: TrustStore,
  purpose: Purpose,
  now: Date = new Date(),
): Promise<ChainResult> {
  const chain = await verifyChain(leaf, [], store, purpose, now);
  if (chain.ok) return chain;
  const sent = presented();
  return sent.length > 0 ? await verifyChain(leaf, sent, store, purpose, now) : chain;
}

/**
 * {@linkcode verifyChain} for a CA of a bundle instead of a leaf: does `ca` chain to an
 * anchor of `store` (whose own rules apply to each link), with no leaf rule for `ca` itself.
 *
 * @example
 * ```ts
 * import { createCa, issueIntermediate } from "../ca/issue.ts";
 * import { parseCertificatePem } from "./pem.ts";
 * import { trustStoreOf, verifyCaChain } from "./chain.ts";
 * const root = await createCa();
 * const team = parseCertificatePem((await issueIntermediate(root, "team")).certPem);
 * const store = trustStoreOf([parseCertificatePem(root.certPem), team]);
 * if (!(await verifyCaChain(team, store)).ok) throw new Error("the intermediate chains");
 * ```
 */
export async function verifyCaChain(
  ca: Cert,
  store: TrustStore,
  now: Date = new Date(),
): Promise<ChainResult> {
  // "client": a root that restricts its EKU to serverAuth admits no client through it.
  return await verifyPath(ca, [], store, "client", now);
}

async function verifyPath(
  leaf: Cert,
  presented: readonly Cert[],
  store: TrustStore,
  purpose: Purpose,
  now: Date,
): Promise<ChainResult> {
  try {
    const leafWhy = unknownCritical(leaf, "the certificate");
    if (leafWhy) return { ok: false, reason: leafWhy };
    const helpers = [...store.intermediates, ...presented.filter((c) => !selfIssued(c))];
    const budget = { links: MAX_LINK_TRIES };
    const found = await extend([leaf], store.anchors, helpers, purpose, now, budget);
    return typeof found === "string" ? { ok: false, reason: found } : { ok: true, path: found };
  } catch (err) {
    return { ok: false, reason: `chain check failed: ${(err as Error).message}` };
  }
}

/** The path completed from `path` (leaf first), or why it cannot be. Anchors are tried first. */
async function extend(
  path: Cert[],
  anchors: readonly Cert[],
  helpers: readonly Cert[],
  purpose: Purpose,
  now: Date,
  budget: { links: number },
): Promise<Cert[] | string> {
  const child = path[path.length - 1];
  const wanted = nameDer(child, "issuer");
  let firstWhy: string | undefined;
  const spend = () => {
    // A peer can send namesakes sharing one key, each "signing" the others: without a
    // bound, the search would try every ordering of them.
    if (--budget.links < 0) throw new Error(`more than ${MAX_LINK_TRIES} candidate links`);
  };
  for (const anchor of anchors) {
    if (!sameBytes(nameDer(anchor, "subject"), wanted)) continue;
    spend();
    if ((await signerOf(child, [anchor])) !== anchor) continue;
    const why = issuerProblem(anchor, path, purpose, now, true);
    if (!why) return [...path, anchor];
    firstWhy ??= why;
  }
  if (path.length - 1 < MAX_INTERMEDIATES) {
    for (const ca of helpers) {
      if (!sameBytes(nameDer(ca, "subject"), wanted) || path.some((p) => sameCert(p, ca))) continue;
      spend();
      if ((await signerOf(child, [ca])) !== ca) continue;
      const why = issuerProblem(ca, path, purpose, now, false);
      if (why) {
        firstWhy ??= why;
        continue;
      }
      const found = await extend([...path, ca], anchors, helpers, purpose, now, budget);
      if (typeof found !== "string") return found;
      firstWhy ??= found;
    }
  } else {
    firstWhy ??= `the chain has more than ${MAX_INTERMEDIATES} intermediates`;
  }
  return firstWhy ??
    (path.length === 1
      ? "certificate not signed by a trusted CA"
      : `intermediate CA (${child.subject}) does not chain to a trusted CA`);
}

/**
 * Why `ca` may not issue the last certificate of `below` (leaf first), or `undefined`. One
 * rule for anchors and intermediates; an anchor alone may lack a key usage extension (a root
 * made by `openssl req -x509` often does).
 */
export function issuerProblem(
  ca: Cert,
  below: readonly Cert[],
  purpose: Purpose,
  now: Date,
  anchor: boolean,
): string | undefined {
  const label = anchor ? `issuing CA (${ca.subject})` : `intermediate CA (${ca.subject})`;
  if (now < ca.notBefore) return `${label} not valid before ${ca.notBefore.toISOString()}`;
  if (now > ca.notAfter) return `${label} expired ${ca.notAfter.toISOString()}`;
  const facts = factsOf(ca);
  if (!facts.ca) return `${label} is not a CA (basicConstraints lacks CA:TRUE)`;
  if (facts.keyUsage === undefined && !anchor) {
    return `${label} has no key usage extension (a CA certificate must allow keyCertSign)`;
  }
  if (facts.keyUsage !== undefined && (facts.keyUsage & x509.KeyUsageFlags.keyCertSign) === 0) {
    return `${label} may not sign certificates (its key usage lacks keyCertSign)`;
  }
  const intermediatesBelow = below.length - 1;
  if (facts.pathLength !== undefined && intermediatesBelow > facts.pathLength) {
    return `${label} allows ${facts.pathLength} intermediate(s) below it (pathLenConstraint), ` +
      `the chain has ${intermediatesBelow}`;
  }
  if (!caAllowsPurpose(facts.ekus, purpose)) {
    return `${label} restricts its extended key usage and does not allow ${purpose}Auth`;
  }
  const critical = unknownCritical(ca, label);
  if (critical) return critical;
  return constraintProblem(ca, below, label);
}

/** Why a certificate below `ca` breaks its name constraints (or they cannot be enforced). */
function constraintProblem(ca: Cert, below: readonly Cert[], label: string): string | undefined {
  let nc;
  try {
    nc = nameConstraintsOf(ca);
  } catch (err) {
    return `${label}: ${(err as Error).message}: refusing the chain`;
  }
  if (!nc) return undefined;
  for (const cert of below) {
    const why = nameConstraintViolation(namesOf(cert, cert === below[0]), nc);
    if (why) {
      return `${cert === below[0] ? "certificate" : `CA ${cert.subject}`}: ${why} (${label})`;
    }
  }
  return undefined;
}

/** Extensions whose meaning the gate applies (or that carry no rule a client must apply). */
const UNDERSTOOD = new Set([
  "2.5.29.19", // basicConstraints
  "2.5.29.15", // keyUsage
  "2.5.29.37", // extKeyUsage
  "2.5.29.17", // subjectAltName
  OID_NAME_CONSTRAINTS,
  "2.5.29.14", // subjectKeyIdentifier
  "2.5.29.35", // authorityKeyIdentifier
  "2.5.29.32", // certificatePolicies (no policy is required here, as with OpenSSL's default)
  "2.5.29.31", // cRLDistributionPoints
  "1.3.6.1.5.5.7.1.1", // authorityInfoAccess
]);

/** Why `cert` has a critical extension the gate does not apply (RFC 5280: refuse it). */
function unknownCritical(cert: Cert, label: string): string | undefined {
  const ext = cert.extensions.find((e) => e.critical && !UNDERSTOOD.has(e.type));
  return ext
    ? `${label} has a critical extension ${ext.type} that is not enforced here`
    : undefined;
}

/** The extension facts of a CA certificate, read once per certificate object. */
interface CaFacts {
  ca: boolean;
  pathLength?: number;
  keyUsage?: number;
  ekus?: string[];
}
const facts = new WeakMap<Cert, CaFacts>();
function factsOf(cert: Cert): CaFacts {
  let f = facts.get(cert);
  if (!f) {
    const bc = cert.getExtension(x509.BasicConstraintsExtension);
    const ku = cert.getExtension(x509.KeyUsagesExtension);
    const eku = cert.getExtension(x509.ExtendedKeyUsageExtension);
    f = {
      ca: bc?.ca === true,
      pathLength: bc?.ca === true ? bc.pathLength : undefined,
      keyUsage: ku?.usages,
      ekus: eku?.usages.map(String),
    };
    facts.set(cert, f);
  }
  return f;
}

const names = new WeakMap<Cert, ConstrainedNames>();
const caNames = new WeakMap<Cert, ConstrainedNames>();
/** A certificate's constrained names; the CN-as-host-name rule is for the leaf only. */
function namesOf(cert: Cert, leaf: boolean): ConstrainedNames {
  const memo = leaf ? names : caNames;
  let n = memo.get(cert);
  if (!n) {
    n = constrainedNamesOf(cert, { cnAsDns: leaf });
    memo.set(cert, n);
  }
  return n;
}

/**
 * Which CA a CRL or a path link belongs to: its subject name and key, so a CRL is applied to
 * the certificates of the very CA that signed it (not to a namesake's).
 *
 * @example
 * ```ts
 * import { createCa } from "../ca/issue.ts";
 * import { parseCertificatePem } from "./pem.ts";
 * import { issuerKeyOf } from "./chain.ts";
 * const pem = (await createCa()).certPem;
 * if (issuerKeyOf(parseCertificatePem(pem)) !== issuerKeyOf(parseCertificatePem(pem))) throw new Error();
 * ```
 */
export function issuerKeyOf(ca: Cert): string {
  let key = issuerKeys.get(ca);
  if (!key) {
    key = createHash("sha256").update(nameDer(ca, "subject"))
      .update(new Uint8Array(ca.publicKey.rawData)).digest("hex");
    issuerKeys.set(ca, key);
  }
  return key;
}
const issuerKeys = new WeakMap<Cert, string>();

/** One certificate of a verified path as revocation sees it: its serial and its issuer. */
export interface RevocationLink {
  /** Normalised serial. */
  serial: string;
  /** {@linkcode issuerKeyOf} its issuer. */
  issuer: string;
  /** Its subject, for messages; `undefined` for the leaf. */
  intermediate?: string;
}

/**
 * The links of a verified path (every certificate but the anchor), leaf first.
 *
 * @example
 * ```ts ignore
 * const links = revocationLinks(result.path); // [{ serial: "1a", issuer: "…" }]
 * ```
 */
export function revocationLinks(path: readonly Cert[]): RevocationLink[] {
  return path.slice(0, -1).map((cert, i) => ({
    serial: normalizeSerial(cert.serialNumber),
    issuer: issuerKeyOf(path[i + 1]),
    intermediate: i === 0 ? undefined : cert.subject,
  }));
}

function sameCert(a: Cert, b: Cert): boolean {
  return a === b || sameBytes(new Uint8Array(a.rawData), new Uint8Array(b.rawData));
}
