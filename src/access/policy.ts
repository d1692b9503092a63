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
  /** Subject common names, compared exactly as written (or `*` label globs, see {@linkcode matchName}). */
  allowCn?: readonly string[];
  /** Subject alternative names: DNS names (ASCII case-insensitive, globs allowed), URIs (exact) or IP addresses (by value, IP SANs only). */
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
 * Lower-case ASCII letters only. The one case rule for DNS names (RFC 4343: DNS compares
 * ASCII case-insensitively and nothing else); full Unicode case mapping would let a Kelvin
 * sign (U+212A) stand for `k`.
 *
 * @example
 * ```ts
 * import { asciiLower } from "./policy.ts";
 * if (asciiLower("Docker.EXAMPLE") !== "docker.example") throw new Error();
 * if (asciiLower("\u212Aevin") !== "\u212Aevin") throw new Error("only ASCII is folded");
 * ```
 */
export function asciiLower(text: string): string {
  return text.replace(/[A-Z]+/g, (m) => m.toLowerCase());
}

/**
 * Match a name against a pattern, exactly as bytes, where a `*` label stands for exactly one
 * whole non-empty label (`*.ci.example` matches `a.ci.example`, not `a.b.ci.example` nor
 * `ci.example`). With `dns: true` ASCII letters compare case-insensitively
 * ({@linkcode asciiLower}), as DNS does; common names compare exactly, the way keygen tells
 * client names apart (`alice` and `Alice` are two clients).
 *
 * @example
 * ```ts
 * import { matchName } from "./policy.ts";
 * if (!matchName("*.ci.example", "runner1.ci.example")) throw new Error();
 * if (matchName("*.ci.example", "a.b.ci.example")) throw new Error();
 * if (matchName("alice", "alice2") || matchName("default", "DEFAULT")) throw new Error();
 * if (!matchName("Runner.CI.example", "runner.ci.example", { dns: true })) throw new Error();
 * ```
 */
export function matchName(pattern: string, name: string, options: { dns?: boolean } = {}): boolean {
  const p = options.dns ? asciiLower(pattern) : pattern;
  const n = options.dns ? asciiLower(name) : name;
  if (!p.includes("*")) return p === n;
  const pl = p.split(".");
  const nl = n.split(".");
  if (pl.length !== nl.length) return false;
  return pl.every((label, i) => label === "*" ? nl[i].length > 0 : label === nl[i]);
}

/**
 * The canonical text of an IP address, so that forms of one address compare equal: IPv4
 * dotted decimal, IPv6 as eight 4-digit lower-case hex groups (`::1` and `0:0:0:0:0:0:0:1`
 * both become `0000:…:0001`; an embedded IPv4 tail is converted). `undefined` when `text`
 * is not an IP address (brackets around IPv6 are accepted; zone ids are not).
 *
 * @example
 * ```ts
 * import { canonicalIp } from "./policy.ts";
 * if (canonicalIp("::1") !== canonicalIp("0:0:0:0:0:0:0:1")) throw new Error();
 * if (canonicalIp("::ffff:1.2.3.4") !== canonicalIp("::ffff:102:304")) throw new Error();
 * if (canonicalIp("example.com") !== undefined || canonicalIp("1.2.3") !== undefined) throw new Error();
 * ```
 */
export function canonicalIp(text: string): string | undefined {
  const t = /^\[(.*)\]$/.exec(text)?.[1] ?? text;
  const v4 = parseIpv4(t);
  if (v4) return v4.join(".");
  if (!/^[0-9a-fA-F:.]+$/.test(t) || !t.includes(":")) return undefined;
  let head = t;
  let tail: number[] = [];
  const lastColon = t.lastIndexOf(":");
  if (t.slice(lastColon + 1).includes(".")) {
    const quad = parseIpv4(t.slice(lastColon + 1));
    if (!quad) return undefined;
    tail = [(quad[0] << 8) | quad[1], (quad[2] << 8) | quad[3]];
    head = t.slice(0, lastColon + 1);
    if (head.endsWith(":") && !head.endsWith("::")) head = head.slice(0, -1);
  }
  const halves = head.split("::");
  if (halves.length > 2) return undefined;
  const groups = (s: string) => (s === "" ? [] : s.split(":"));
  const left = groups(halves[0]);
  const right = halves.length === 2 ? groups(halves[1]) : [];
  if (![...left, ...right].every((g) => /^[0-9a-fA-F]{1,4}$/.test(g))) return undefined;
  const explicit = left.length + right.length + tail.length;
  const missing = 8 - explicit;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const all = [
    ...left.map((g) => parseInt(g, 16)),
    ...Array(halves.length === 2 ? missing : 0).fill(0),
    ...right.map((g) => parseInt(g, 16)),
    ...tail,
  ];
  return all.map((g) => g.toString(16).padStart(4, "0")).join(":");
}

function parseIpv4(text: string): number[] | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  // No leading zeros: "010" is octal to some parsers and decimal to others.
  if (!parts.every((p) => /^(0|[1-9][0-9]{0,2})$/.test(p) && Number(p) <= 255)) return undefined;
  return parts.map(Number);
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
    if (sanMatches(san, peer)) return { allow: true, reason: `allow-san ${san}` };
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

/**
 * An allow-list SAN written as an IP address matches only IP SANs, by value; anything else
 * matches DNS SANs (ASCII case-insensitively, globs allowed) or URIs (exactly). Why: a DNS
 * SAN `127.0.0.1` is not the IP address 127.0.0.1, and a CA may issue one unknowingly. The
 * one SAN rule: allow-lists and the API policy's identities both use it.
 *
 * @example
 * ```ts
 * import { sanMatches } from "./policy.ts";
 * const peer = { dnsNames: ["Runner.ci.example"], uris: [], ips: ["::1"] };
 * if (!sanMatches("*.ci.example", peer) || !sanMatches("0:0:0:0:0:0:0:1", peer)) throw new Error();
 * ```
 */
export function sanMatches(
  san: string,
  peer: Pick<PeerIdentity, "dnsNames" | "uris" | "ips">,
): boolean {
  const ip = canonicalIp(san);
  if (ip !== undefined) return peer.ips.some((p) => canonicalIp(p) === ip);
  return peer.dnsNames.some((d) => matchName(san, d, { dns: true })) || peer.uris.includes(san);
}
