/**
 * `connect`'s own check of the server it dialled, after the runtime's handshake said yes.
 *
 * Why: the runtime's verdict is not enough on either end. Deno's `node:tls` checks neither
 * the anchor's dates nor path lengths, and resumes sessions without re-verifying; a server
 * certificate without the serverAuth EKU, or with a CA flag, passes OpenSSL's default
 * client checks. So `connect` applies the same chain walk and usage rule (`pki/chain.ts`,
 * `pki/usage.ts`) the gate applies to its clients, for the "server" purpose.
 *
 * @module
 */

import type { TLSSocket } from "node:tls";
import { parsePeerCertificate } from "./identity.ts";
import { presentedChain } from "./authorize.ts";
import { type TrustStore, trustStoreOf, verifyChainPresented } from "../pki/chain.ts";
import { parseCertificatesPem } from "../pki/pem.ts";

/** The trust anchors and intermediates `connect` accepts its server under. */
export function serverTrust(caPem: string): TrustStore {
  return trustStoreOf(parseCertificatesPem(caPem));
}

/**
 * Why the server on `socket` must not be used, or `undefined` when its certificate chains to
 * `store` and is fit to serve (not a CA, serverAuth, key usage, dates of every link). Never
 * throws.
 *
 * @example
 * ```ts
 * import { serverProblem, serverTrust } from "./server_check.ts";
 * import { createCa, issueClient } from "../ca/issue.ts";
 * import { parseCertificatePem } from "../pki/pem.ts";
 * const ca = await createCa();
 * const client = parseCertificatePem((await issueClient(ca, "alice")).certPem);
 * const socket = { getPeerCertificate: () => ({ raw: new Uint8Array(client.rawData) }) };
 * // deno-lint-ignore no-explicit-any
 * const why = await serverProblem(socket as any, serverTrust(ca.certPem));
 * if (why === undefined) throw new Error("a client certificate cannot serve");
 * ```
 */
export async function serverProblem(
  socket: Pick<TLSSocket, "getPeerCertificate">,
  store: TrustStore,
  now: Date = new Date(),
): Promise<string | undefined> {
  try {
    const raw = socket.getPeerCertificate(false)?.raw;
    if (!raw || raw.length === 0) return "the server sent no certificate";
    const leaf = parsePeerCertificate(new Uint8Array(raw)).certificate;
    const presented = () => presentedChain(socket, leaf);
    const chain = await verifyChainPresented(leaf, presented, store, "server", now);
    return chain.ok ? undefined : chain.reason;
  } catch (err) {
    return `server check failed: ${(err as Error).message}`;
  }
}
