/**
 * The gate's own decision on every connection, taken once, right after the handshake and
 * before a single byte is forwarded.
 *
 * Why not trust the runtime's verdict alone: Node rejects a bad client certificate only
 * after the handshake completes; Deno's `node:tls` resumes sessions without re-verifying the
 * client and ignores `crl`; older Deno accepted anyone. So we check, every time, resumed or
 * not: the runtime said `authorized`, there is a peer certificate, it is not a CA, it carries
 * the clientAuth EKU, its key usage (when present) allows digitalSignature, it is within its
 * validity period, its chain up to a trust anchor of the CA bundle is valid link by link
 * (`pki/chain.ts`: signatures, CA flags, keyCertSign, path lengths, dates of every CA, the
 * anchor's included, since Deno's `node:tls` checks neither anchor dates nor path lengths;
 * name constraints), neither it nor an intermediate is revoked by its issuer's CRL, the CRLs
 * are current when `--crl-stale refuse` asks for that, and the access policy in force now
 * allows it.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import type { DetailedPeerCertificate, TLSSocket } from "node:tls";
import { type ParsedPeer, parsePeerCertificate, type PeerIdentity } from "./identity.ts";
import { leafUsageProblem } from "../pki/usage.ts";
import { type AccessPolicy, evaluatePolicy } from "./policy.ts";
import { type ApiPolicy, type Role, roleFor } from "../docker/api_policy.ts";
import { ownerProblem } from "../docker/isolation.ts";
import { x509 } from "../pki/x509.ts";
import {
  MAX_INTERMEDIATES,
  type RevocationLink,
  revocationLinks,
  type TrustStore,
  trustStoreOf,
  verifyChainPresented,
} from "../pki/chain.ts";

/**
 * Revoked certificates, as loaded from CRLs: one list per issuing CA (a certificate is
 * looked up in the list of the CA that issued it on its verified path), and optionally
 * serials revoked whoever issued them.
 */
export interface Revocations {
  /** Per issuing CA, by `issuerKeyOf` of the CA certificate that signed the CRL. */
  byIssuer?: ReadonlyMap<string, RevocationList>;
  /** Normalised serials (see `normalizeSerial`) revoked under any issuer. Default: none. */
  serials?: ReadonlySet<string>;
  /** When the CRL was issued (`thisUpdate`), for `serials`. */
  thisUpdate?: Date;
  /** When its issuer promised the next one (`nextUpdate`), for `serials`. */
  nextUpdate?: Date;
  /**
   * What a CRL outside its `thisUpdate`..`nextUpdate` window means: `"warn"` keeps using it
   * (the serve CLI warns at load and every hour), `"refuse"` refuses the certificates it
   * covers until a current CRL is loaded (fail closed). Default: `"warn"`.
   */
  stale?: "warn" | "refuse";
}

/** The revoked serials of one CA, from its CRL (or several of its CRLs, merged). */
export interface RevocationList {
  /** Normalised serials. */
  serials: ReadonlySet<string>;
  /** The CA's subject, for messages. */
  issuer: string;
  /** When the CRL was issued (the newest, when several were merged). */
  thisUpdate?: Date;
  /** When the next CRL is due (the newest's promise). */
  nextUpdate?: Date;
}

/** Everything a decision depends on; swapped as a whole on reload. */
export interface GateRules {
  /**
   * The CA bundle clients are checked against: its self-issued certificates are the trust
   * anchors, the others intermediates that help build a path (`pki/chain.ts`).
   */
  caCertificates: readonly x509.X509Certificate[];
  /** Who may pass. */
  policy: AccessPolicy;
  /** Revoked serials, if a CRL is loaded. */
  revocations?: Revocations;
  /** Per-identity Docker API rules; an identity without a role there is refused. */
  apiPolicy?: ApiPolicy;
}

/** The outcome of {@linkcode authorizePeer}. */
export type Decision =
  | { allow: true; identity: PeerIdentity; reason: string; links?: RevocationLink[] }
  | { allow: false; reason: string; identity?: PeerIdentity; kind?: RefusalKind };

/** What kind of refusal a decision is (for metrics: a few values, never a name). */
export type RefusalKind = "certificate" | "revoked" | "not_allowed";

/**
 * Decide whether a freshly handshaken TLS socket may be relayed. Never throws: any
 * unexpected failure is a refusal (fail closed).
 *
 * @example Refuses a socket the runtime did not authorize
 * ```ts
 * import { authorizePeer } from "./authorize.ts";
 * const fake = { authorized: false, authorizationError: "UNABLE_TO_VERIFY_LEAF_SIGNATURE" };
 * // deno-lint-ignore no-explicit-any
 * const d = await authorizePeer(fake as any, { caCertificates: [], policy: { allowAny: true } });
 * if (d.allow) throw new Error("must refuse");
 * ```
 */
export async function authorizePeer(
  socket: Pick<TLSSocket, "authorized" | "authorizationError" | "getPeerCertificate">,
  rules: GateRules,
  now: Date = new Date(),
): Promise<Decision> {
  // Only the identity goes on with the connection (the parsed certificate stays in the
  // bounded cache at most: ~17 KiB per idle connection otherwise).
  return (await authorizeLeaf(socket, rules, now)).decision;
}

/**
 * {@linkcode authorizePeer}'s decision and the peer's parsed leaf it was taken on (when the
 * socket had one), for a caller that goes on to use the certificate itself (the enrolment
 * port's renewal): one parse per connection, and the leaf object whose signature the chain
 * check verified (`verify.ts` `signerOf` knows it from then on). Never throws.
 *
 * @example
 * ```ts
 * import { authorizeLeaf } from "./authorize.ts";
 * const fake = { authorized: true, getPeerCertificate: () => ({}) };
 * // deno-lint-ignore no-explicit-any
 * const r = await authorizeLeaf(fake as any, { caCertificates: [], policy: { allowAny: true } });
 * if (r.decision.allow || r.certificate !== undefined) throw new Error("no certificate, refused");
 * ```
 */
export async function authorizeLeaf(
  socket: Pick<TLSSocket, "authorized" | "authorizationError" | "getPeerCertificate">,
  rules: GateRules,
  now: Date = new Date(),
): Promise<{ decision: Decision; certificate?: x509.X509Certificate }> {
  try {
    if (socket.authorized !== true) {
      const why = socket.authorizationError ? String(socket.authorizationError) : "not authorized";
      return { decision: { allow: false, reason: `certificate not verified: ${why}` } };
    }
    // Only the DER of the leaf at first: `detailed` (the chain the peer sent, as objects)
    // costs ~0.4 ms per handshake on Node, so it is asked for only when the bundle alone
    // does not complete the path (a leaf under an intermediate the bundle lacks).
    // Why not getPeerX509Certificate (no object of every field): on Node 20 it copies the
    // certificate with X509_dup, which re-decodes its key through OpenSSL 3.0's decoder
    // lookup: ~140 µs per handshake in `perf` against ~70 µs for this.
    const raw = socket.getPeerCertificate(false)?.raw;
    if (!raw || raw.length === 0) {
      return { decision: { allow: false, reason: "no client certificate" } };
    }
    const parsed = parseCached(new Uint8Array(raw));
    const presented = () => presentedChain(socket, parsed.certificate);
    const checked = await checkIdentity(parsed, rules, now, presented);
    return {
      decision: { ...checked, identity: parsed.identity },
      certificate: parsed.certificate,
    };
  } catch (err) {
    return {
      decision: { allow: false, reason: `internal check failed: ${(err as Error).message}` },
    };
  }
}

/**
 * The certificate checks of {@linkcode authorizePeer} on an already parsed peer certificate.
 *
 * @example
 * ```ts
 * import { checkIdentity } from "./authorize.ts";
 * // deno-lint-ignore no-explicit-any
 * const ca = { identity: { isCa: true } } as any;
 * const d = await checkIdentity(ca, { caCertificates: [], policy: { allowAny: true } });
 * if (d.allow || !d.reason.includes("CA certificate")) throw new Error(d.reason);
 * ```
 */
export async function checkIdentity(
  peer: ParsedPeer,
  rules: GateRules,
  now: Date = new Date(),
  presented: () => x509.X509Certificate[] = () => [],
): Promise<{ allow: boolean; reason: string; kind?: RefusalKind; links?: RevocationLink[] }> {
  const { identity } = peer;
  // The one usage rule (CA flag, EKU, key usage, dates), on the identity already parsed:
  // refused before any signature is checked.
  const usage = leafUsageProblem(identity, "client", now);
  if (usage) return { allow: false, reason: usage.reason };
  const store = trustOf(rules.caCertificates);
  const chain = await verifyChainPresented(peer.certificate, presented, store, "client", now);
  if (!chain.ok) return { allow: false, reason: chain.reason };
  const links = revocationLinks(chain.path);
  const revoked = revocationVerdict(links, rules.revocations, now);
  if (revoked) return { allow: false, reason: revoked, kind: "revoked" };
  const admitted = admission(identity, rules);
  return admitted.allow ? { ...admitted, links } : { ...admitted, kind: "not_allowed" };
}

/** The trust store of a CA bundle, split once per bundle array. */
function trustOf(bundle: readonly x509.X509Certificate[]): TrustStore {
  let store = stores.get(bundle);
  if (!store) {
    store = trustStoreOf(bundle);
    stores.set(bundle, store);
  }
  return store;
}
const stores = new WeakMap<readonly x509.X509Certificate[], TrustStore>();

/**
 * The certificates the peer sent after its leaf (parsed through the same bounded cache).
 * Why walk `issuerCertificate`: both runtimes give the presented chain that way; Node stops
 * at a self-reference, and a chain longer than the path limit is cut. Used for both ends:
 * the gate's client and `connect`'s server.
 *
 * @example
 * ```ts
 * import { presentedChain } from "./authorize.ts";
 * // deno-lint-ignore no-explicit-any
 * const none = { getPeerCertificate: () => ({}) } as any;
 * // deno-lint-ignore no-explicit-any
 * if (presentedChain(none, {} as any).length !== 0) throw new Error();
 * ```
 */
export function presentedChain(
  socket: Pick<TLSSocket, "getPeerCertificate">,
  leaf: x509.X509Certificate,
): x509.X509Certificate[] {
  const out: x509.X509Certificate[] = [];
  const seen = new Set<string>();
  let node: DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
  while (node && out.length <= MAX_INTERMEDIATES + 1) {
    const raw = node.raw;
    if (!raw || raw.length === 0) break;
    const der = new Uint8Array(raw);
    const key = derKey(der);
    if (seen.has(key)) break;
    seen.add(key);
    const cert = parseCached(der).certificate;
    if (cert !== leaf) out.push(cert);
    const next: DetailedPeerCertificate | undefined = node.issuerCertificate;
    node = next && next !== node ? next : undefined;
  }
  return out;
}

/**
 * Whether the rules in force admit an identity whose certificate checks passed: the
 * allow-lists, then (with an API policy) a role for it. One rule, used for new connections
 * and for open ones at reload.
 *
 * @example
 * ```ts
 * import { admission } from "./authorize.ts";
 * const peer = { commonName: "a", organizationalUnits: [], dnsNames: [], uris: [], ips: [] };
 * if (!admission(peer, { policy: { allowAny: true } }).allow) throw new Error();
 * ```
 */
export function admission(
  identity: Pick<PeerIdentity, "commonName" | "organizationalUnits" | "dnsNames" | "uris" | "ips">,
  rules: Pick<GateRules, "policy" | "apiPolicy">,
): { allow: boolean; reason: string; role?: Role } {
  const listed = evaluatePolicy(rules.policy, identity);
  if (!listed.allow || !rules.apiPolicy) return listed;
  const role = roleFor(rules.apiPolicy, identity);
  if (!role) return { allow: false, reason: "no role for this identity in the API policy" };
  const unnamed = role.isolate ? ownerProblem(identity, role.owner) : undefined;
  if (unnamed) return { allow: false, reason: `role ${role.name}: ${unnamed}` };
  return { allow: true, reason: `${listed.reason}; role ${role.name}`, role };
}

/**
 * Why the CRLs in force refuse a verified path, or `undefined`: each certificate but the
 * anchor is looked up in the CRL of its own issuer (and in the any-issuer serials). A stale
 * CRL refuses the certificates it covers when `--crl-stale refuse` asks for that. One rule,
 * used for new connections and for open ones at reload.
 *
 * @example
 * ```ts
 * import { revocationVerdict } from "./authorize.ts";
 * const links = [{ serial: "a1", issuer: "ca1" }];
 * const list = { serials: new Set(["a1"]), issuer: "CN=ca", nextUpdate: new Date(0) };
 * const crl = { byIssuer: new Map([["ca1", list]]), stale: "refuse" as const };
 * if (!revocationVerdict(links, crl)?.includes("revoked")) throw new Error();
 * const other = [{ serial: "b2", issuer: "ca1" }];
 * if (!revocationVerdict(other, crl)?.includes("CRL")) throw new Error("stale CRL must refuse");
 * if (revocationVerdict(other, { serials: new Set() }) !== undefined) throw new Error();
 * ```
 */
export function revocationVerdict(
  links: readonly RevocationLink[],
  revocations: Revocations | undefined,
  now: Date = new Date(),
): string | undefined {
  if (!revocations) return undefined;
  for (const link of links) {
    const what = link.intermediate === undefined
      ? "certificate"
      : `intermediate CA (${link.intermediate})`;
    const list = revocations.byIssuer?.get(link.issuer);
    if (revocations.serials?.has(link.serial) || list?.serials.has(link.serial)) {
      return `${what} serial ${link.serial} is revoked`;
    }
    if (revocations.stale === "refuse") {
      const stale = (list && crlStaleness(list, now)) ??
        (revocations.serials && crlStaleness(revocations, now));
      if (stale) return `${stale} (--crl-stale refuse)`;
    }
  }
  return undefined;
}

/**
 * Why a CRL is outside its validity window at `now` (`nextUpdate` passed, or `thisUpdate`
 * still to come, which means a wrong clock here or at the CA), or `undefined`.
 *
 * @example
 * ```ts
 * import { crlStaleness } from "./authorize.ts";
 * if (!crlStaleness({ nextUpdate: new Date(0) })?.startsWith("CRL expired")) throw new Error();
 * if (crlStaleness({ thisUpdate: new Date(0) }) !== undefined) throw new Error();
 * ```
 */
export function crlStaleness(
  crl: { thisUpdate?: Date; nextUpdate?: Date },
  now: Date = new Date(),
): string | undefined {
  if (crl.nextUpdate && now > crl.nextUpdate) {
    return `CRL expired (nextUpdate ${crl.nextUpdate.toISOString()})`;
  }
  if (crl.thisUpdate && now < crl.thisUpdate) {
    return `CRL not valid yet (thisUpdate ${crl.thisUpdate.toISOString()}; check the clock)`;
  }
  return undefined;
}

/**
 * The cache key of a DER certificate: its bytes themselves, as a latin1 string (one char per
 * byte). Why not its SHA-256: `createHash` cost ~20-30 µs per handshake on Node (a digest
 * object fetched from OpenSSL each time), and the bytes are an exact key: a hit is the same
 * certificate, byte for byte.
 */
function derKey(der: Uint8Array): string {
  return Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString("latin1");
}

/**
 * Parsed peer certificates by their DER (`derKey`), most recently used last. Why: parsing a
 * certificate with @peculiar/x509 was ~1.5 ms of JavaScript per handshake on Node, 38 % of
 * the gate's main thread at 16 concurrent new connections, and the same few client
 * certificates reconnect all the time (the Docker CLI opens a connection per command). Only
 * what follows from the DER alone is reused: the parse, and (in verify.ts) which CA object's
 * signature check it passed. Validity dates, EKU, revocation and policy are checked anew
 * for every connection.
 */
const PARSE_CACHE_SIZE = 128;
const parsed = new Map<string, ParsedPeer>();

function parseCached(der: Uint8Array): ParsedPeer {
  const key = derKey(der);
  let peer = parsed.get(key);
  if (peer) {
    parsed.delete(key);
  } else {
    peer = parsePeerCertificate(der);
    // Shared by every connection of this certificate: nobody may change it.
    Object.freeze(peer);
    deepFreeze(peer.identity);
    if (parsed.size >= PARSE_CACHE_SIZE) parsed.delete(parsed.keys().next().value!);
  }
  parsed.set(key, peer);
  return peer;
}

function deepFreeze(o: object): void {
  for (const v of Object.values(o)) if (v && typeof v === "object") deepFreeze(v);
  Object.freeze(o);
}
