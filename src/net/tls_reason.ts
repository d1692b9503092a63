/**
 * One short reason for a failed TLS handshake, for the refusal log line. Node hands over
 * OpenSSL's whole error string (`error:0A000418:SSL routines:ssl3_read_bytes:tlsv1 alert
 * unknown ca:../deps/openssl/openssl/ssl/record/rec_layer_s3.c:1605:SSL alert number 48`):
 * the library and function names and the source file path tell an operator nothing.
 *
 * For a refused client chain the runtime's verdict code is the reason, except that the gate
 * says which date rule a certificate of its own CA broke, and when (Deno gives one code for
 * every chain failure; see `runtime_deno.ts`).
 *
 * @module
 */

import { selfIssued, trustStoreOf, verifyCaChain } from "../pki/chain.ts";
import { leafUsageProblem, usageFactsOf } from "../pki/usage.ts";
import { x509, type X509Certificate } from "../pki/x509.ts";

/** OpenSSL's `[THREAD:]error:CODE:LIB:FUNC:REASON[:FILE:LINE][:DATA]` form. */
const OPENSSL_ERROR =
  /^(?:[0-9A-Fa-f]+:)?error:[0-9A-Fa-f]+:[^:]*:[^:]*:([^:]+)(?::[^:]*\.[ch]:\d+)?(?::(.*))?$/;

/**
 * The reason of a handshake error `err`: OpenSSL's reason (and its extra data, such as the
 * alert number) without the codes and the source path, else the message; the error code
 * when the message does not already say it.
 *
 * @example
 * ```ts
 * import { tlsErrorReason } from "./tls_reason.ts";
 * const err = Object.assign(
 *   new Error(
 *     "error:0A000418:SSL routines:ssl3_read_bytes:tlsv1 alert unknown ca:" +
 *       "../deps/openssl/openssl/ssl/record/rec_layer_s3.c:1605:SSL alert number 48\n",
 *   ),
 *   { code: "ERR_SSL_TLSV1_ALERT_UNKNOWN_CA" },
 * );
 * const reason = tlsErrorReason(err);
 * if (reason !== "tlsv1 alert unknown ca (SSL alert number 48)") throw new Error(reason);
 * if (tlsErrorReason(new Error("socket hang up")) !== "socket hang up") throw new Error();
 * ```
 */
export function tlsErrorReason(err: Error): string {
  const code = (err as { code?: unknown }).code;
  const msg = err.message.replace(/\s+/g, " ").trim();
  const openssl = OPENSSL_ERROR.exec(msg);
  if (openssl) {
    const extra = openssl[2]?.trim();
    return extra ? `${openssl[1]} (${extra})` : openssl[1];
  }
  return typeof code === "string" && !msg.includes(code) ? `${msg} (${code})` : msg;
}

/**
 * The refusal line's reason for a client chain the runtime's TLS refused with `verdict` (its
 * code). When the `presented` certificates (DER, leaf first) chain to `caCertificates` at a
 * moment the leaf was valid, and the leaf is outside its dates now, the gate's own words with
 * the date (`certificate expired 2026-12-06T10:00:00.000Z`), whatever code the runtime chose;
 * else the runtime's verdict as it is (`certificate not verified: CERT_HAS_EXPIRED`: Node's
 * OpenSSL also says that of a foreign CA's expired certificate). Never throws.
 *
 * @example
 * ```ts
 * import { refusedChainReason } from "./tls_reason.ts";
 * const other = await refusedChainReason("UNABLE_TO_VERIFY_LEAF_SIGNATURE", [], []);
 * if (other !== "certificate not verified: UNABLE_TO_VERIFY_LEAF_SIGNATURE") throw new Error(other);
 * ```
 */
export async function refusedChainReason(
  verdict: string,
  presented: readonly Uint8Array[],
  caCertificates: readonly X509Certificate[],
  now: Date = new Date(),
): Promise<string> {
  const dated = await datedReason(presented, caCertificates, now).catch(() => undefined);
  return dated ?? `certificate not verified: ${verdict}`;
}

/** The leaf's date problem, when that is its only problem with our CAs; else `undefined`. */
async function datedReason(
  presented: readonly Uint8Array[],
  caCertificates: readonly X509Certificate[],
  now: Date,
): Promise<string | undefined> {
  if (presented.length === 0 || caCertificates.length === 0) return undefined;
  const [leaf, ...sent] = presented.map((der) => new x509.X509Certificate(new Uint8Array(der)));
  const usage = leafUsageProblem(usageFactsOf(leaf), "client", now);
  if (usage?.rule !== "expired" && usage?.rule !== "not-yet-valid") return undefined;
  // Would the gate's own chain check pass but for the leaf's dates? Its other leaf rules passed
  // (they come first), so the path alone is left: verifyCaChain is the path without a leaf
  // rule. Only then is the date the reason (a foreign CA's expired certificate is not
  // "expired" to us). Presented CAs only help build the path, never anchor it.
  const store = trustStoreOf([...caCertificates, ...sent.filter((c) => !selfIssued(c))]);
  const chain = await verifyCaChain(leaf, store, now);
  return chain.ok ? usage.reason : undefined;
}
