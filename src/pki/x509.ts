/**
 * The one place that loads `@peculiar/x509`. The library needs the `reflect-metadata`
 * polyfill evaluated before it (its dependency-injection container reads decorator metadata
 * at load time) and a WebCrypto provider; importing x509 through this module guarantees both,
 * on Deno and on Node alike.
 *
 * @example Parse a certificate
 * ```ts
 * import { x509 } from "./x509.ts";
 * const keys = await crypto.subtle.generateKey(
 *   { name: "ECDSA", namedCurve: "P-256" },
 *   true,
 *   ["sign", "verify"],
 * );
 * const cert = await x509.X509CertificateGenerator.createSelfSigned({ name: "CN=demo", keys });
 * const again = new x509.X509Certificate(cert.toString("pem"));
 * if (again.subject !== "CN=demo") throw new Error(again.subject);
 * ```
 *
 * @module
 */

// Order matters: ES modules evaluate imports in source order, and @peculiar/x509 needs the
// Reflect metadata API to exist when it is evaluated.
import "reflect-metadata";
import * as x509 from "@peculiar/x509";

// The global WebCrypto object (Deno, Node >= 19, browsers). Setting it explicitly avoids the
// library's own lookup, which differs between runtimes.
x509.cryptoProvider.set(crypto);

export { x509 };

/** A parsed X.509 certificate (re-exported type of `x509.X509Certificate`). */
export type X509Certificate = x509.X509Certificate;
