/**
 * Access policy: a pure function from a verified peer identity to allow/deny.
 *
 * The policy never sees a socket or a file; it is decided on parsed certificate fields (not
 * on subject strings, cf. Node CVE-2021-44532). A policy with no rules and no `allowAny`
 * denies everyone: the CLI builds `allowAny: true` explicitly when no allow flag is given.
 *
 * @module
 */

import type { PeerIdentity } from "./identity.ts";

/** Who may pass once the certificate chain, EKU, validity and revocation checks succeeded. */
export interface AccessPolicy {
  /** Accept every certificate our CA signed. Default: `false`. */
  allowAny?: boolean;
  /** Exact subject common names (or `*` label globs, see {@linkcode matchName}). */
  allowCn?: readonly string[];
  /** Subject alternative names: DNS names (globs allowed), URIs or IP addresses, exact. */
  allowSan?: readonly string[];
  /** Exact subject organizational units. */
  allowOu?: readonly string[];
}

/** The outcome of {@linkcode evaluatePolicy}. */
export interface PolicyDecision {
  /** Whether the peer may pass. */
  allow: boolean;
  /** Which rule matched, or why nothing did (for the log). */
  reason: string;
}

/**
 * Match a name against a pattern: exact (case-insensitive for DNS-like names), or a `*` that
 * stands for exactly one whole DNS label (`*.ci.example` matches `a.ci.example`, not
 * `a.b.ci.example` nor `ci.example`).
 *
 * @example
 * ```ts
 * import { matchName } from "./policy.ts";
 * if (!matchName("*.ci.example", "runner1.ci.example")) throw new Error();
 * if (matchName("*.ci.example", "a.b.ci.example")) throw new Error();
 * if (matchName("alice", "alice2")) throw new Error();
 * ```
 */
export function matchName(pattern: string, name: string): boolean {
  const p = pattern.toLowerCase();
  const n = name.toLowerCase();
  if (!p.includes("*")) return p === n;
  const pl = p.split(".");
  const nl = n.split(".");
  if (pl.length !== nl.length) return false;
  return pl.every((label, i) => label === "*" ? nl[i].length > 0 : label === nl[i]);
}

/**
 * Decide whether `peer` may pass under `policy`. Rules are OR-ed.
 *
 * @example
 * ```ts
 * import { evaluatePolicy } from "./policy.ts";
 * const peer = { commonName: "alice", organizationalUnits: ["ops"], dnsNames: [], uris: [], ips: [] };
 * if (!evaluatePolicy({ allowCn: ["alice"] }, peer).allow) throw new Error();
 * if (evaluatePolicy({ allowOu: ["dev"] }, peer).allow) throw new Error();
 * if (evaluatePolicy({}, peer).allow) throw new Error("empty policy must deny");
 * ```
 */
export function evaluatePolicy(
  policy: AccessPolicy,
  peer: Pick<PeerIdentity, "commonName" | "organizationalUnits" | "dnsNames" | "uris" | "ips">,
): PolicyDecision {
  if (policy.allowAny) return { allow: true, reason: "any certificate from our CA" };
  for (const cn of policy.allowCn ?? []) {
    if (peer.commonName !== undefined && matchName(cn, peer.commonName)) {
      return { allow: true, reason: `allow-cn ${cn}` };
    }
  }
  for (const san of policy.allowSan ?? []) {
    if (peer.dnsNames.some((d) => matchName(san, d))) {
      return { allow: true, reason: `allow-san ${san}` };
    }
    if (peer.uris.includes(san)) return { allow: true, reason: `allow-san ${san}` };
    if (peer.ips.some((ip) => sameIp(ip, san))) return { allow: true, reason: `allow-san ${san}` };
  }
  for (const ou of policy.allowOu ?? []) {
    if (peer.organizationalUnits.includes(ou)) return { allow: true, reason: `allow-ou ${ou}` };
  }
  const rules = (policy.allowCn?.length ?? 0) + (policy.allowSan?.length ?? 0) +
    (policy.allowOu?.length ?? 0);
  return {
    allow: false,
    reason: rules === 0 ? "policy allows nobody" : "not on any allow-list",
  };
}

/**
 * Describe a policy in one line for the startup log.
 *
 * @example
 * ```ts
 * import { describePolicy } from "./policy.ts";
 * if (describePolicy({ allowCn: ["a", "b"] }) !== "allow-cn a,b") throw new Error();
 * ```
 */
export function describePolicy(policy: AccessPolicy): string {
  if (policy.allowAny) return "any certificate signed by the CA is accepted (no allow-list)";
  const parts: string[] = [];
  if (policy.allowCn?.length) parts.push(`allow-cn ${policy.allowCn.join(",")}`);
  if (policy.allowSan?.length) parts.push(`allow-san ${policy.allowSan.join(",")}`);
  if (policy.allowOu?.length) parts.push(`allow-ou ${policy.allowOu.join(",")}`);
  return parts.length ? parts.join("; ") : "nobody is allowed (empty policy)";
}

function sameIp(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}
