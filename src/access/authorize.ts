/**
 * The gate's own decision on every connection, taken once, right after the handshake and
 * before a single byte is forwarded.
 *
 * Why not trust the runtime's verdict alone: Node rejects a bad client certificate only
 * after the handshake completes; Deno's `node:tls` resumes sessions without re-verifying the
 * client and ignores `crl`; older Deno accepted anyone. So we check, every time, resumed or
 * not: the runtime said `authorized`, there is a peer certificate, it is not a CA, it carries
 * the clientAuth EKU, its key usage (when present) allows digitalSignature, it is within its
 * validity period, it is signed by one of our CAs and that CA is within its own validity
 * period (Deno's `node:tls` does not check trust anchor dates), it is not revoked, the CRL
 * is current when `--crl-stale refuse` asks for that, and the access policy in force now
 * allows it.
 *
 * @module
 */

import { createHash } from "node:crypto";
import type { TLSSocket } from "node:tls";
import {
  EKU_CLIENT_AUTH,
  type ParsedPeer,
  parsePeerCertificate,
  type PeerIdentity,
} from "./identity.ts";
import { type AccessPolicy, evaluatePolicy } from "./policy.ts";
import { type ApiPolicy, type Role, roleFor } from "../docker/api_policy.ts";
import { x509 } from "../pki/x509.ts";
import { signerOf } from "../pki/verify.ts";

/** Revoked certificates, as loaded from a CRL. */
export interface Revocations {
  /** Normalised serial numbers (see `normalizeSerial`). */
  serials: ReadonlySet<string>;
  /** When the CRL was issued (`thisUpdate`). */
  thisUpdate?: Date;
  /** When its issuer promised the next one (`nextUpdate`), if it did. */
  nextUpdate?: Date;
  /**
   * What a CRL outside its `thisUpdate`..`nextUpdate` window means: `"warn"` keeps using it
   * (the serve CLI warns at load and every hour), `"refuse"` refuses every client until a
   * current CRL is loaded (fail closed). Default: `"warn"`.
   */
  stale?: "warn" | "refuse";
}

/** Everything a decision depends on; swapped as a whole on reload. */
export interface GateRules {
  /** The CA certificates we trust for clients. */
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
  | { allow: true; identity: PeerIdentity; reason: string }
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
  try {
    if (socket.authorized !== true) {
      const why = socket.authorizationError ? String(socket.authorizationError) : "not authorized";
      return { allow: false, reason: `certificate not verified: ${why}` };
    }
    // Only the DER is used: `detailed` (the issuer chain as objects) cost ~0.4 ms per
    // handshake on Node for nothing.
    const peer = socket.getPeerCertificate(false);
    const raw = peer?.raw;
    if (!raw || raw.length === 0) return { allow: false, reason: "no client certificate" };
    const parsed = parseCached(new Uint8Array(raw));
    // Only the identity goes on with the connection (the parsed certificate stays in the
    // bounded cache at most).
    return { ...(await checkIdentity(parsed, rules, now)), identity: parsed.identity };
  } catch (err) {
    return { allow: false, reason: `internal check failed: ${(err as Error).message}` };
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
): Promise<{ allow: boolean; reason: string; kind?: RefusalKind }> {
  const { identity } = peer;
  if (identity.isCa) return { allow: false, reason: "a CA certificate cannot be a client" };
  if (!identity.extKeyUsages?.includes(EKU_CLIENT_AUTH)) {
    return { allow: false, reason: "certificate lacks the clientAuth extended key usage" };
  }
  // A TLS client proves its key by signing: a key usage that rules that out is a misissued
  // or repurposed certificate (keyAgreement-only, keyCertSign-only).
  if (
    identity.keyUsage !== undefined &&
    (identity.keyUsage & x509.KeyUsageFlags.digitalSignature) === 0
  ) {
    return { allow: false, reason: "certificate key usage lacks digitalSignature" };
  }
  const dates = outsideValidity("certificate", identity, now);
  if (dates) return { allow: false, reason: dates };
  const ca = await signerOf(peer.certificate, rules.caCertificates);
  if (!ca) return { allow: false, reason: "certificate not signed by a trusted CA" };
  const caDates = outsideValidity(`issuing CA (${ca.subject})`, ca, now);
  if (caDates) return { allow: false, reason: caDates };
  const revoked = revocationVerdict(identity.serial, rules.revocations, now);
  if (revoked) return { allow: false, reason: revoked, kind: "revoked" };
  const admitted = admission(identity, rules);
  return admitted.allow ? admitted : { ...admitted, kind: "not_allowed" };
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
  return { allow: true, reason: `${listed.reason}; role ${role.name}`, role };
}

/** Why `what` is not valid at `now`, or `undefined` when it is. */
function outsideValidity(
  what: string,
  dates: { notBefore: Date; notAfter: Date },
  now: Date,
): string | undefined {
  if (now < dates.notBefore) return `${what} not valid before ${dates.notBefore.toISOString()}`;
  if (now > dates.notAfter) return `${what} expired ${dates.notAfter.toISOString()}`;
  return undefined;
}

/**
 * Why the CRL in force refuses `serial`, or `undefined`. One rule, used for new connections
 * and for open ones at reload.
 *
 * @example
 * ```ts
 * import { revocationVerdict } from "./authorize.ts";
 * const crl = { serials: new Set(["a1"]), nextUpdate: new Date(0), stale: "refuse" as const };
 * if (!revocationVerdict("a1", crl)?.includes("revoked")) throw new Error();
 * if (!revocationVerdict("b2", crl)?.includes("CRL")) throw new Error("stale CRL must refuse");
 * if (revocationVerdict("b2", { serials: new Set() }) !== undefined) throw new Error();
 * ```
 */
export function revocationVerdict(
  serial: string,
  revocations: Revocations | undefined,
  now: Date = new Date(),
): string | undefined {
  if (!revocations) return undefined;
  if (revocations.serials.has(serial)) return `certificate serial ${serial} is revoked`;
  if (revocations.stale === "refuse") {
    const stale = crlStaleness(revocations, now);
    if (stale) return `${stale} (--crl-stale refuse)`;
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
 * Parsed peer certificates by SHA-256 of their DER, most recently used last. Why: parsing a
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
  const key = createHash("sha256").update(der).digest("hex");
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
