/**
 * The TLS parameters every dockgate endpoint uses, in one place so the server, the client
 * and the self-test cannot drift apart.
 *
 * Why set them explicitly: Node's default cipher list still offers CBC suites and its
 * default trust store is the system's (plus `NODE_EXTRA_CA_CERTS`). dockgate trusts only the
 * CA bundle it is given and only AEAD suites with forward secrecy (Mozilla "intermediate").
 *
 * @module
 */

import { constants } from "node:crypto";

/**
 * TLS 1.2 suites allowed: ECDHE key exchange with AES-GCM or ChaCha20-Poly1305 only.
 * TLS 1.3 suites are all AEAD and are left at the runtime's defaults.
 *
 * @example
 * ```ts
 * import { TLS12_CIPHERS } from "./tls_config.ts";
 * if (TLS12_CIPHERS.includes("CBC") || TLS12_CIPHERS.includes("SHA:")) throw new Error("non-AEAD");
 * ```
 */
export const TLS12_CIPHERS = [
  "ECDHE-ECDSA-AES128-GCM-SHA256",
  "ECDHE-RSA-AES128-GCM-SHA256",
  "ECDHE-ECDSA-AES256-GCM-SHA384",
  "ECDHE-RSA-AES256-GCM-SHA384",
  "ECDHE-ECDSA-CHACHA20-POLY1305",
  "ECDHE-RSA-CHACHA20-POLY1305",
].join(":");

/** Lowest protocol version offered or accepted. */
export const MIN_TLS_VERSION = "TLSv1.2" as const;

/**
 * OpenSSL option bits: no renegotiation (a renegotiation could swap the client
 * certificate after we authorized it), no compression (CRIME), no session tickets (a
 * resumed session skips certificate verification on some runtimes; we re-check every
 * connection anyway). Missing constants (other runtimes) count as 0.
 */
export const SECURE_OPTIONS: number = (constants.SSL_OP_NO_RENEGOTIATION ?? 0) |
  (constants.SSL_OP_NO_COMPRESSION ?? 0) | (constants.SSL_OP_NO_TICKET ?? 0);

/** PEM material for one endpoint. */
export interface TlsMaterial {
  /** Our certificate (PEM; may carry intermediates after the leaf). */
  certPem: string;
  /** Our private key (PEM). */
  keyPem: string;
  /** The only CA(s) we trust for the peer (PEM bundle). */
  caPem: string;
}

/**
 * Options for `node:tls` `createServer` that demand and verify a client certificate
 * against exactly `material.caPem`.
 *
 * @example
 * ```ts
 * import { serverTlsOptions } from "./tls_config.ts";
 * const o = serverTlsOptions({ certPem: "C", keyPem: "K", caPem: "A" });
 * if (!o.requestCert || !o.rejectUnauthorized || o.minVersion !== "TLSv1.2") throw new Error();
 * ```
 */
export function serverTlsOptions(material: TlsMaterial) {
  return {
    cert: material.certPem,
    key: material.keyPem,
    ca: [material.caPem],
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: MIN_TLS_VERSION,
    ciphers: TLS12_CIPHERS,
    honorCipherOrder: true,
    secureOptions: SECURE_OPTIONS,
    // Half-close: Docker signals stdin EOF with close_notify alone; keep the other way open.
    allowHalfOpen: true,
  };
}

/**
 * Options for `node:tls` `connect` that present our client certificate and verify the
 * server against exactly `material.caPem` and `serverName`.
 *
 * @example
 * ```ts
 * import { clientTlsOptions } from "./tls_config.ts";
 * const o = clientTlsOptions({ certPem: "C", keyPem: "K", caPem: "A" }, "localhost");
 * if (o.rejectUnauthorized !== true || o.servername !== "localhost") throw new Error();
 * ```
 */
export function clientTlsOptions(material: TlsMaterial, serverName: string) {
  // SNI must not carry an IP literal; the identity check still uses serverName.
  const isIp = /^[\d.]+$/.test(serverName) || serverName.includes(":");
  return {
    cert: material.certPem,
    key: material.keyPem,
    ca: [material.caPem],
    rejectUnauthorized: true,
    minVersion: MIN_TLS_VERSION,
    ciphers: TLS12_CIPHERS,
    servername: isIp ? undefined : serverName,
    allowHalfOpen: true,
  };
}
