/**
 * The identity of a TLS peer, parsed once from its DER certificate. Everything after the
 * handshake (policy, revocation, relay strategy, audit log) works on this, never on
 * subject strings.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { x509 } from "../pki/x509.ts";
import { normalizeSerial } from "../pki/serial.ts";

/** Fields of a peer certificate that access decisions use. */
export interface PeerIdentity {
  /** Subject CN, if exactly one is present (several CNs are treated as none). */
  commonName?: string;
  /** Subject OU values. */
  organizationalUnits: string[];
  /** SAN DNS names. */
  dnsNames: string[];
  /** SAN URIs. */
  uris: string[];
  /** SAN IP addresses. */
  ips: string[];
  /** Serial number, lower-case hex without leading zeros. */
  serial: string;
  /** SHA-256 of the DER certificate, lower-case hex. */
  fingerprint: string;
  /** Full subject DN (for logs only). */
  subject: string;
  /** Issuer DN (for logs only). */
  issuer: string;
  /** Validity start. */
  notBefore: Date;
  /** Validity end. */
  notAfter: Date;
  /** Extended key usage OIDs, or `undefined` when the extension is absent. */
  extKeyUsages?: string[];
  /** Whether basicConstraints says CA:TRUE. */
  isCa: boolean;
  /** Key usage bits (`x509.KeyUsageFlags`), or `undefined` when the extension is absent. */
  keyUsage?: number;
}

/**
 * A peer certificate as parsed for the access decision: the {@linkcode PeerIdentity} that
 * lives as long as the connection, and the parsed certificate that is only needed for the
 * signature check. Why apart: the parsed certificate is ~17 KiB of objects per connection;
 * keeping it in the identity kept it alive for every idle connection.
 */
export interface ParsedPeer {
  /** The fields the decision, the relay strategy and the logs use. */
  identity: PeerIdentity;
  /** The parsed certificate, for the signature check only: drop it after the decision. */
  certificate: x509.X509Certificate;
}

/**
 * Parse a DER certificate into its {@linkcode PeerIdentity} and the parsed certificate.
 * Throws `TypeError` on garbage.
 *
 * @example
 * ```ts
 * import { parsePeerCertificate } from "./identity.ts";
 * import { x509 } from "../pki/x509.ts";
 * const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
 * const keys = await crypto.subtle.generateKey(alg, true, ["sign", "verify"]);
 * const cert = await x509.X509CertificateGenerator.createSelfSigned({
 *   name: "CN=carol", keys, signingAlgorithm: alg, serialNumber: "01",
 * });
 * const { identity, certificate } = parsePeerCertificate(new Uint8Array(cert.rawData));
 * if (identity.commonName !== "carol" || !("subject" in certificate)) throw new Error();
 * if ("certificate" in identity) throw new Error("the identity must not keep the certificate");
 * ```
 */
export function parsePeerCertificate(der: Uint8Array): ParsedPeer {
  let cert: x509.X509Certificate;
  try {
    cert = new x509.X509Certificate(new Uint8Array(der));
  } catch (err) {
    throw new TypeError(`Cannot parse peer certificate: ${(err as Error).message}`);
  }
  const cns = cert.subjectName.getField("CN");
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const names = san?.names.items ?? [];
  const eku = cert.getExtension(x509.ExtendedKeyUsageExtension);
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  const ku = cert.getExtension(x509.KeyUsagesExtension);
  const identity: PeerIdentity = {
    commonName: cns.length === 1 ? cns[0] : undefined,
    organizationalUnits: cert.subjectName.getField("OU"),
    dnsNames: names.filter((n) => n.type === "dns").map((n) => n.value),
    uris: names.filter((n) => n.type === "url").map((n) => n.value),
    ips: names.filter((n) => n.type === "ip").map((n) => n.value),
    serial: normalizeSerial(cert.serialNumber),
    fingerprint: createHash("sha256").update(der).digest("hex"),
    subject: cert.subject,
    issuer: cert.issuer,
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    extKeyUsages: eku ? eku.usages.map(String) : undefined,
    isCa: bc?.ca === true,
    keyUsage: ku ? ku.usages : undefined,
  };
  return { identity, certificate: cert };
}

/**
 * A short name for logs: the CN when there is one, else the fingerprint prefix.
 *
 * @example
 * ```ts
 * import { displayName } from "./identity.ts";
 * if (displayName({ commonName: "bob", fingerprint: "ab12" }) !== "bob") throw new Error();
 * ```
 */
export function displayName(peer: Pick<PeerIdentity, "commonName" | "fingerprint">): string {
  return peer.commonName ?? `sha256:${peer.fingerprint.slice(0, 16)}`;
}
