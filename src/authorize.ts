/**
 * The gate's own decision on every connection, taken once, right after the handshake and
 * before a single byte is forwarded.
 *
 * Why not trust the runtime's verdict alone: Node rejects a bad client certificate only
 * after the handshake completes; Deno's `node:tls` resumes sessions without re-verifying the
 * client and ignores `crl`; older Deno accepted anyone. So we check, every time, resumed or
 * not: the runtime said `authorized`, there is a peer certificate, it is not a CA, it carries
 * the clientAuth EKU, it is within its validity period, it is signed by one of our CAs, it is
 * not revoked, and the access policy in force now allows it.
 *
 * @module
 */

import type { TLSSocket } from "node:tls";
import {
  EKU_CLIENT_AUTH,
  type ParsedPeer,
  parsePeerCertificate,
  type PeerIdentity,
} from "./identity.ts";
import { type AccessPolicy, evaluatePolicy } from "./policy.ts";
import type { x509 } from "./x509.ts";

/** Revoked certificates, as loaded from a CRL. */
export interface Revocations {
  /** Normalised serial numbers (see `normalizeSerial`). */
  serials: ReadonlySet<string>;
}

/** Everything a decision depends on; swapped as a whole on reload. */
export interface GateRules {
  /** The CA certificates we trust for clients. */
  caCertificates: readonly x509.X509Certificate[];
  /** Who may pass. */
  policy: AccessPolicy;
  /** Revoked serials, if a CRL is loaded. */
  revocations?: Revocations;
}

/** The outcome of {@linkcode authorizePeer}. */
export type Decision =
  | { allow: true; identity: PeerIdentity; reason: string }
  | { allow: false; reason: string; identity?: PeerIdentity };

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
    const peer = socket.getPeerCertificate(true);
    const raw = peer?.raw;
    if (!raw || raw.length === 0) return { allow: false, reason: "no client certificate" };
    const parsed = parsePeerCertificate(new Uint8Array(raw));
    // Only the identity goes on with the connection; the parsed certificate is dropped here.
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
): Promise<{ allow: boolean; reason: string }> {
  const { identity } = peer;
  if (identity.isCa) return { allow: false, reason: "a CA certificate cannot be a client" };
  if (!identity.extKeyUsages?.includes(EKU_CLIENT_AUTH)) {
    return { allow: false, reason: "certificate lacks the clientAuth extended key usage" };
  }
  if (now < identity.notBefore) {
    return {
      allow: false,
      reason: `certificate not valid before ${identity.notBefore.toISOString()}`,
    };
  }
  if (now > identity.notAfter) {
    return { allow: false, reason: `certificate expired ${identity.notAfter.toISOString()}` };
  }
  if (!(await signedByOneOf(peer.certificate, rules.caCertificates))) {
    return { allow: false, reason: "certificate not signed by a trusted CA" };
  }
  if (rules.revocations?.serials.has(identity.serial)) {
    return { allow: false, reason: `certificate serial ${identity.serial} is revoked` };
  }
  return evaluatePolicy(rules.policy, identity);
}

async function signedByOneOf(
  cert: x509.X509Certificate,
  cas: readonly x509.X509Certificate[],
): Promise<boolean> {
  for (const ca of cas) {
    if (ca.subject !== cert.issuer) continue;
    try {
      if (await cert.verify({ publicKey: ca, signatureOnly: true })) return true;
    } catch {
      // Algorithm mismatch or malformed signature: not this CA.
    }
  }
  return false;
}
