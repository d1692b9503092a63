/**
 * A join token's text and the CA pin it carries, shared by the PKI that makes tokens
 * (`ca/tokens.ts`), the gate that redeems them and the client that joins with one:
 *
 * ```text
 * DGTKN-1-<sha256 of the root CA's SubjectPublicKeyInfo, 64 hex>-<id, 16 hex>-<secret, 32 hex>
 * ```
 *
 * Why the root's SPKI (kubeadm's `--discovery-token-ca-cert-hash sha256:…`, Swarm's
 * `SWMTKN-1-<CA digest>-…`): the client needs nothing but the token to tell the real gate from
 * any other TLS server, and the pin survives a root re-signed with the same key. The id names
 * the record (`DIR/tokens/ID.json`); only the secret's SHA-256 is ever stored.
 *
 * @example
 * ```ts
 * import { formatJoinToken, parseJoinToken } from "./join_token.ts";
 * const t = formatJoinToken({ pin: "ab".repeat(32), id: "0123456789abcdef", secret: "cd".repeat(16) });
 * if (parseJoinToken(t).id !== "0123456789abcdef") throw new Error(t);
 * ```
 *
 * @module
 */

import { createHash } from "node:crypto";
import type { x509 } from "./x509.ts";

/** The token's prefix and version. */
export const JOIN_TOKEN_PREFIX = "DGTKN-1-";

/** The parts of a join token. */
export interface JoinTokenParts {
  /** SHA-256 of the root CA's SubjectPublicKeyInfo, lowercase hex. */
  pin: string;
  /** The record's id, 16 lowercase hex digits. */
  id: string;
  /** The secret, 32 lowercase hex digits (128 bits). */
  secret: string;
}

const TOKEN_RE = /^DGTKN-1-([0-9a-f]{64})-([0-9a-f]{16})-([0-9a-f]{32})$/;

/**
 * The token's text. Throws `TypeError` for parts of the wrong form.
 *
 * @example
 * ```ts
 * import { formatJoinToken } from "./join_token.ts";
 * const t = formatJoinToken({ pin: "0".repeat(64), id: "1".repeat(16), secret: "2".repeat(32) });
 * if (!t.startsWith("DGTKN-1-")) throw new Error(t);
 * ```
 */
export function formatJoinToken(parts: JoinTokenParts): string {
  const text = `${JOIN_TOKEN_PREFIX}${parts.pin}-${parts.id}-${parts.secret}`;
  parseJoinToken(text);
  return text;
}

/**
 * Read a token. Throws `TypeError` (that never repeats the secret) unless it has exactly the
 * form above.
 *
 * @example
 * ```ts
 * import { parseJoinToken } from "./join_token.ts";
 * let threw = false;
 * try { parseJoinToken("SWMTKN-1-x"); } catch (e) { threw = e instanceof TypeError; }
 * if (!threw) throw new Error("expected TypeError");
 * ```
 */
export function parseJoinToken(text: string): JoinTokenParts {
  const m = typeof text === "string" ? TOKEN_RE.exec(text.trim()) : null;
  if (!m) {
    throw new TypeError(
      `Invalid join token: expected DGTKN-1-<64 hex>-<16 hex>-<32 hex> (as "dockgate keygen token" prints it)`,
    );
  }
  return { pin: m[1], id: m[2], secret: m[3] };
}

/**
 * The pin of a CA certificate: SHA-256 of its SubjectPublicKeyInfo, lowercase hex (the same as
 * `openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | sha256sum`).
 *
 * @example
 * ```ts
 * import { createCa } from "../ca/issue.ts";
 * import { parseCertificatePem } from "./pem.ts";
 * import { caPinOf } from "./join_token.ts";
 * const pin = caPinOf(parseCertificatePem((await createCa()).certPem));
 * if (!/^[0-9a-f]{64}$/.test(pin)) throw new Error(pin);
 * ```
 */
export function caPinOf(cert: x509.X509Certificate): string {
  return createHash("sha256").update(new Uint8Array(cert.publicKey.rawData)).digest("hex");
}

/**
 * SHA-256 of a token's secret, lowercase hex: what the PKI stores instead of the secret.
 *
 * @example
 * ```ts
 * import { secretDigest } from "./join_token.ts";
 * if (secretDigest("00").length !== 64) throw new Error();
 * ```
 */
export function secretDigest(secret: string): string {
  return createHash("sha256").update(secret, "utf8").digest("hex");
}
