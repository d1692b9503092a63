/**
 * A TLS connection to a gate trusted by a CA pin alone (the token's, or that of the `ca.pem`
 * a join wrote): the runtime's own verification is off because the client has no CA file
 * yet, and this module does all of it before the caller may write a byte: the chain the gate
 * presented must contain a self-issued CA whose SubjectPublicKeyInfo has the pinned SHA-256,
 * the gate's leaf must chain to it (`pki/chain.ts` `verifyChain`, purpose `server`: EKU,
 * dates, every link's signature and CA rules), and the leaf must name the host dialled. A
 * gate with another CA, or a leaf of our CA meant for a client, is refused: no trust on first
 * use.
 *
 * @module
 */

import tls from "node:tls";
import type { DetailedPeerCertificate } from "node:tls";
import { x509 } from "../pki/x509.ts";
import { selfIssued, trustStoreOf, verifyChain } from "../pki/chain.ts";
import { caPinOf } from "../pki/join_token.ts";
import { parsePeerCertificate } from "../access/identity.ts";
import { canonicalIp, matchName } from "../access/policy.ts";
import { MIN_TLS_VERSION, TLS12_CIPHERS } from "../net/tls_config.ts";

/** Where and how to connect. */
export interface PinnedTarget {
  /** The gate's host (name or IP) as dialled; the leaf must name it. */
  host: string;
  /** Its enrolment port. */
  port: number;
  /** The name the leaf must carry instead of `host`. Default: `host`. */
  serverName?: string;
  /** SHA-256 of the root's SubjectPublicKeyInfo, hex (`caPinOf`). */
  pin: string;
  /** A client certificate chain and key to present (renewal). Default: none. */
  client?: { certPem: string; keyPem: string };
  /** Deadline for the connection and the checks. */
  timeoutMs: number;
}

/** A connection whose gate passed the checks, and the pinned root it chains to. */
export interface PinnedConnection {
  /** The socket; nothing was written to it yet. */
  socket: tls.TLSSocket;
  /** The pinned root as the gate presented it. */
  root: x509.X509Certificate;
}

/** The gate is not the one the pin names; nothing was sent. */
export class PinMismatch extends Error {
  /** Create it. */
  constructor(message: string) {
    super(message);
    this.name = "PinMismatch";
  }
}

/**
 * Connect and check the gate against `target.pin`; rejects with {@linkcode PinMismatch}
 * (the socket destroyed, nothing written) when it fails.
 *
 * @example
 * ```ts ignore
 * const { socket, root } = await connectPinned({ host: "gate", port: 2377, pin, timeoutMs: 10_000 });
 * ```
 */
export async function connectPinned(target: PinnedTarget): Promise<PinnedConnection> {
  const name = target.serverName ?? target.host;
  const socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
    const s = tls.connect({
      host: target.host,
      port: target.port,
      // Verified below, against the pin: there is no CA file to give the runtime yet.
      rejectUnauthorized: false,
      servername: canonicalIp(name) === undefined ? name : undefined,
      minVersion: MIN_TLS_VERSION,
      ciphers: TLS12_CIPHERS,
      ...(target.client ? { cert: target.client.certPem, key: target.client.keyPem } : {}),
    });
    const timer = setTimeout(() => {
      s.destroy();
      reject(
        new Error(
          `no TLS handshake with ${target.host}:${target.port} within ${target.timeoutMs} ms`,
        ),
      );
    }, target.timeoutMs);
    s.once("secureConnect", () => {
      clearTimeout(timer);
      resolve(s);
    });
    s.once("error", (err) => {
      clearTimeout(timer);
      reject(new Error(`Cannot connect to ${target.host}:${target.port}: ${err.message}`));
    });
  });
  try {
    const root = await checkGate(socket, target.pin, name);
    return { socket, root };
  } catch (err) {
    socket.destroy();
    throw err;
  }
}

/** The checks, on the chain the handshake presented; the pinned root, or throws. */
async function checkGate(
  socket: tls.TLSSocket,
  pin: string,
  name: string,
): Promise<x509.X509Certificate> {
  const chain = presentedChain(socket.getPeerCertificate(true));
  if (chain.length === 0) throw new PinMismatch("the gate presented no certificate");
  const [leaf, ...rest] = chain;
  const root = rest.find((c) => selfIssued(c) && caPinOf(c) === pin);
  if (!root) {
    throw new PinMismatch(
      `the gate's CA does not match the token's pin sha256:${pin} (it presented ${
        rest.filter(selfIssued).map((c) => `sha256:${caPinOf(c)}`).join(", ") || "no root"
      }): refused, nothing was sent`,
    );
  }
  const verdict = await verifyChain(
    leaf,
    rest.filter((c) => !selfIssued(c)),
    trustStoreOf([root]),
    "server",
  );
  if (!verdict.ok) {
    throw new PinMismatch(
      `the gate's certificate does not chain to the pinned CA: ${verdict.reason}`,
    );
  }
  if (!namesHost(new Uint8Array(leaf.rawData), name)) {
    throw new PinMismatch(`the gate's certificate does not name "${name}" (give --server-name)`);
  }
  return root;
}

/** The certificates the peer presented, leaf first (at most 10; a loop ends the walk). */
function presentedChain(peer: DetailedPeerCertificate | undefined): x509.X509Certificate[] {
  const out: x509.X509Certificate[] = [];
  const seen = new Set<string>();
  let c: DetailedPeerCertificate | undefined = peer;
  while (c?.raw && c.raw.length > 0 && out.length < 10) {
    const key = c.raw.toString("base64");
    if (seen.has(key)) break;
    seen.add(key);
    out.push(new x509.X509Certificate(new Uint8Array(c.raw)));
    c = c.issuerCertificate;
  }
  return out;
}

/** Whether a leaf's SANs name `host`: an IP by value, a DNS name as DNS compares it. */
function namesHost(der: Uint8Array, host: string): boolean {
  const { identity } = parsePeerCertificate(der);
  const ip = canonicalIp(host);
  if (ip !== undefined) return identity.ips.some((i) => canonicalIp(i) === ip);
  return identity.dnsNames.some((d) => matchName(d, host, { dns: true }));
}
