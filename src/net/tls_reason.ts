/**
 * One short reason for a failed TLS handshake, for the refusal log line. Node hands over
 * OpenSSL's whole error string (`error:0A000418:SSL routines:ssl3_read_bytes:tlsv1 alert
 * unknown ca:../deps/openssl/openssl/ssl/record/rec_layer_s3.c:1605:SSL alert number 48`):
 * the library and function names and the source file path tell an operator nothing.
 *
 * @module
 */

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
