/**
 * The one usage rule for a leaf certificate (a client's at the handshake, the gate's own and a
 * client bundle's at load, a leaf in a chain check, and doctor's): may this certificate act as
 * a TLS `client` or `server` at time `now`? It must
 *
 * 1. not be a CA (basicConstraints CA:TRUE): a CA signs, it does not log in;
 * 2. name the purpose in its extended key usage: `clientAuth` for a client, `serverAuth` for a
 *    server. **A leaf without the extension is refused**, and `anyExtendedKeyUsage` does not
 *    count. Why, against RFC 5280's "absent means any": whoever passes the gate is root on the
 *    host, and the EKU is what tells a certificate meant for this apart from everything else a
 *    shared CA signs (an old web server's certificate, a code-signing leaf, `openssl x509 -req`
 *    without an extension file). Every issuer we know of names the purpose: keygen, easy-rsa,
 *    cfssl, step-ca, Vault, mkcert and Docker's own recipe;
 * 3. allow `digitalSignature` when it has a key usage extension: both TLS sides prove their
 *    key by signing (the gate offers ECDHE suites only), so keyAgreement- or keyCertSign-only
 *    keys are misissued or repurposed;
 * 4. be within its dates.
 *
 * CAs follow their own rule (`chain.ts` `issuerProblem`): there an absent EKU means
 * unrestricted, as RFC 5280 and every verifier read it.
 *
 * @module
 */

import { x509 } from "./x509.ts";

/** What a leaf is used for. */
export type Purpose = "client" | "server";

/** The `id-kp-clientAuth` extended key usage. */
export const EKU_CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";
/** The `id-kp-serverAuth` extended key usage. */
export const EKU_SERVER_AUTH = "1.3.6.1.5.5.7.3.1";
/** `anyExtendedKeyUsage`: accepted on a CA (no restriction), never on a leaf. */
export const EKU_ANY = "2.5.29.37.0";

/** The EKU OID of each purpose. */
export const EKU_OF: Readonly<Record<Purpose, string>> = {
  client: EKU_CLIENT_AUTH,
  server: EKU_SERVER_AUTH,
};

/**
 * The facts of a certificate the rule reads. `access/identity.ts`'s `PeerIdentity` has them
 * (so the handshake passes the identity it already parsed); {@linkcode usageFactsOf} reads
 * them from a parsed certificate.
 */
export interface UsageFacts {
  /** basicConstraints CA:TRUE. */
  isCa: boolean;
  /** Extended key usage OIDs, `undefined` when the extension is absent. */
  extKeyUsages?: readonly string[];
  /** Key usage bits (`x509.KeyUsageFlags`), `undefined` when the extension is absent. */
  keyUsage?: number;
  /** Validity start. */
  notBefore: Date;
  /** Validity end. */
  notAfter: Date;
}

/** Which part of the rule a certificate breaks. */
export type UsageRule = "ca" | "eku" | "key-usage" | "not-yet-valid" | "expired";

/** Why a certificate may not be used for a purpose. */
export interface UsageProblem {
  /** The part of the rule. */
  rule: UsageRule;
  /** One line, starting with "certificate" or "a CA certificate". */
  reason: string;
}

/**
 * Why `cert` may not act as a TLS `purpose` at `now`, or `undefined` when it may. Never
 * throws.
 *
 * @example
 * ```ts
 * import { leafUsageProblem } from "./usage.ts";
 * const dates = { notBefore: new Date(0), notAfter: new Date(Date.now() + 86_400_000) };
 * const client = { isCa: false, extKeyUsages: ["1.3.6.1.5.5.7.3.2"], ...dates };
 * if (leafUsageProblem(client, "client") !== undefined) throw new Error("a client");
 * if (leafUsageProblem(client, "server")?.rule !== "eku") throw new Error("not a server");
 * if (leafUsageProblem({ isCa: false, ...dates }, "client")?.rule !== "eku") {
 *   throw new Error("no EKU is refused");
 * }
 * ```
 */
export function leafUsageProblem(
  cert: UsageFacts,
  purpose: Purpose,
  now: Date = new Date(),
): UsageProblem | undefined {
  if (purpose !== "client" && purpose !== "server") {
    return { rule: "eku", reason: `unknown purpose ${String(purpose)}` };
  }
  if (cert.isCa) return { rule: "ca", reason: `a CA certificate cannot be a ${purpose}` };
  if (!cert.extKeyUsages?.includes(EKU_OF[purpose])) {
    const absent = cert.extKeyUsages === undefined ? " (it has no extended key usage at all)" : "";
    return {
      rule: "eku",
      reason: `certificate lacks the ${purpose}Auth extended key usage${absent}`,
    };
  }
  if (
    cert.keyUsage !== undefined && (cert.keyUsage & x509.KeyUsageFlags.digitalSignature) === 0
  ) {
    return { rule: "key-usage", reason: "certificate key usage lacks digitalSignature" };
  }
  if (now.getTime() < cert.notBefore.getTime()) {
    return {
      rule: "not-yet-valid",
      reason: `certificate not valid before ${cert.notBefore.toISOString()}`,
    };
  }
  if (now.getTime() > cert.notAfter.getTime()) {
    return { rule: "expired", reason: `certificate expired ${cert.notAfter.toISOString()}` };
  }
  return undefined;
}

/**
 * The {@linkcode UsageFacts} of a parsed certificate, read once per certificate object.
 *
 * @example
 * ```ts
 * import { createCa, issueClient } from "../ca/issue.ts";
 * import { parseCertificatePem } from "./pem.ts";
 * import { usageFactsOf } from "./usage.ts";
 * const alice = parseCertificatePem((await issueClient(await createCa(), "alice")).certPem);
 * if (usageFactsOf(alice).extKeyUsages?.[0] !== "1.3.6.1.5.5.7.3.2") throw new Error();
 * ```
 */
export function usageFactsOf(cert: x509.X509Certificate): UsageFacts {
  let facts = factsCache.get(cert);
  if (!facts) {
    const eku = cert.getExtension(x509.ExtendedKeyUsageExtension);
    const ku = cert.getExtension(x509.KeyUsagesExtension);
    facts = {
      isCa: cert.getExtension(x509.BasicConstraintsExtension)?.ca === true,
      extKeyUsages: eku ? eku.usages.map(String) : undefined,
      keyUsage: ku ? ku.usages : undefined,
      notBefore: cert.notBefore,
      notAfter: cert.notAfter,
    };
    factsCache.set(cert, facts);
  }
  return facts;
}
const factsCache = new WeakMap<x509.X509Certificate, UsageFacts>();

/**
 * Whether a CA's extended key usage lets it issue for `purpose`: absent (unrestricted), the
 * purpose itself, or `anyExtendedKeyUsage`. The CA half of the rule (see the module doc).
 *
 * @example
 * ```ts
 * import { caAllowsPurpose } from "./usage.ts";
 * if (!caAllowsPurpose(undefined, "client")) throw new Error("no EKU on a CA: unrestricted");
 * if (caAllowsPurpose(["1.3.6.1.5.5.7.3.1"], "client")) throw new Error("serverAuth only");
 * ```
 */
export function caAllowsPurpose(ekus: readonly string[] | undefined, purpose: Purpose): boolean {
  return ekus === undefined || ekus.includes(EKU_OF[purpose]) || ekus.includes(EKU_ANY);
}
