/**
 * Name constraints (RFC 5280 4.2.1.10), enforced by the gate itself: Deno's `node:tls`
 * (rustls) and Node's OpenSSL differ in what they check, and a constrained intermediate is
 * exactly how a team's sub-CA is kept to its own names. Enforced: `dNSName` (on SAN DNS
 * names, and on a CN that looks like a host name when there is no SAN DNS name, as OpenSSL
 * does), `iPAddress`, `uniformResourceIdentifier` (its host) and `directoryName` (the
 * subject). Any other constraint type (email, otherName, …), or a `minimum`/`maximum`, makes
 * the chain refused: fail closed, never ignored.
 *
 * @module
 */

import {
  childrenOf,
  contentOf,
  encodingOf,
  expectTag,
  oidOf,
  readOnly,
  TAG,
  type Tlv,
} from "./der.ts";
import type { x509 } from "./x509.ts";

/** OID of the name constraints extension. */
export const OID_NAME_CONSTRAINTS = "2.5.29.30";
const OID_SAN = "2.5.29.17";

/** The constraints of one CA certificate. */
export interface NameConstraints {
  permitted: Subtree[];
  excluded: Subtree[];
}

/** One subtree of a supported type. */
export type Subtree =
  | { type: "dns"; value: string }
  | { type: "ip"; address: Uint8Array; mask: Uint8Array }
  | { type: "uri"; value: string }
  | { type: "dn"; rdns: string[] };

/** The names of a certificate that constraints apply to. */
export interface ConstrainedNames {
  dns: string[];
  ips: Uint8Array[];
  uris: string[];
  /** The subject's RDNs, canonical each (see `canonicalRdn`; empty for an empty subject). */
  rdns: string[];
}

/**
 * The name constraints of `ca`, `undefined` when it has none. Throws `TypeError` for a
 * constraint the gate does not enforce (the chain is then refused).
 *
 * @example
 * ```ts ignore
 * const nc = nameConstraintsOf(intermediate); // { permitted: [{ type: "dns", value: "team.example" }], excluded: [] }
 * ```
 */
export function nameConstraintsOf(ca: x509.X509Certificate): NameConstraints | undefined {
  const cached = constraintsMemo.get(ca);
  if (cached !== undefined) {
    if (cached instanceof TypeError) throw cached;
    return cached ?? undefined;
  }
  const ext = ca.extensions.find((e) => e.type === OID_NAME_CONSTRAINTS);
  let result: NameConstraints | null | TypeError = null;
  if (ext) {
    try {
      result = parseNameConstraints(new Uint8Array(ext.value));
    } catch (err) {
      result = err instanceof TypeError ? err : new TypeError(String(err));
    }
  }
  constraintsMemo.set(ca, result);
  if (result instanceof TypeError) throw result;
  return result ?? undefined;
}
const constraintsMemo = new WeakMap<x509.X509Certificate, NameConstraints | null | TypeError>();

function parseNameConstraints(der: Uint8Array): NameConstraints {
  const out: NameConstraints = { permitted: [], excluded: [] };
  for (const part of childrenOf(expectTag(readOnly(der), TAG.sequence, "NameConstraints"))) {
    const list = part.tag === 0xa0 ? out.permitted : part.tag === 0xa1 ? out.excluded : undefined;
    if (!list) throw new TypeError("malformed name constraints");
    for (const subtree of childrenOf(part)) {
      const [base, ...rest] = childrenOf(expectTag(subtree, TAG.sequence, "GeneralSubtree"));
      if (rest.length > 0) {
        throw new TypeError("name constraints with minimum/maximum are not supported");
      }
      list.push(subtreeOf(base));
    }
  }
  return out;
}

const GENERAL_NAME_TYPES: Record<number, string> = {
  0xa0: "otherName",
  0x81: "rfc822Name (email)",
  0x82: "dNSName",
  0xa3: "x400Address",
  0xa4: "directoryName",
  0xa5: "ediPartyName",
  0x86: "uniformResourceIdentifier",
  0x87: "iPAddress",
  0x88: "registeredID",
};

function subtreeOf(base: Tlv): Subtree {
  const text = () => new TextDecoder().decode(contentOf(base)).toLowerCase();
  switch (base.tag) {
    case 0x82:
      return { type: "dns", value: text().replace(/\.$/, "") };
    case 0x86:
      return { type: "uri", value: text() };
    case 0x87: {
      const c = contentOf(base);
      if (c.length !== 8 && c.length !== 32) throw new TypeError("malformed iPAddress constraint");
      const half = c.length / 2;
      return { type: "ip", address: c.slice(0, half), mask: c.slice(half) };
    }
    case 0xa4: {
      const [name] = childrenOf(base);
      return {
        type: "dn",
        rdns: childrenOf(expectTag(name, TAG.sequence, "a Name")).map(canonicalRdn),
      };
    }
    default:
      throw new TypeError(
        `a ${GENERAL_NAME_TYPES[base.tag] ?? "unknown"} name constraint is not enforced here`,
      );
  }
}

/**
 * The names of `cert` that constraints apply to: its SAN DNS names, IPs and URIs, and its
 * subject; plus its CN as a DNS name when it has no SAN DNS name and the CN looks like a
 * host name (so a constrained CA cannot issue `CN=evil.example` without a SAN and pass;
 * `cnAsDns: false` for a CA certificate, whose CN names the CA).
 */
export function constrainedNamesOf(
  cert: x509.X509Certificate,
  options: { cnAsDns?: boolean } = {},
): ConstrainedNames {
  const names: ConstrainedNames = { dns: [], ips: [], uris: [], rdns: [] };
  const san = cert.extensions.find((e) => e.type === OID_SAN);
  if (san) {
    const list = readOnly(new Uint8Array(san.value));
    for (const n of childrenOf(expectTag(list, TAG.sequence, "GeneralNames"))) {
      const text = () => new TextDecoder().decode(contentOf(n)).toLowerCase();
      if (n.tag === 0x82) names.dns.push(text().replace(/\.$/, ""));
      else if (n.tag === 0x86) names.uris.push(text());
      else if (n.tag === 0x87) names.ips.push(contentOf(n).slice());
    }
  }
  const subject = readOnly(new Uint8Array(cert.subjectName.toArrayBuffer()));
  names.rdns = childrenOf(subject).map(canonicalRdn);
  if (names.dns.length === 0 && options.cnAsDns !== false) {
    for (const cn of cert.subjectName.getField("CN")) {
      if (/^[a-z0-9*]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$/i.test(cn)) {
        names.dns.push(cn.toLowerCase());
      }
    }
  }
  return names;
}

/**
 * Why `names` break `nc`, or `undefined` when they do not. Per type: a name must be inside
 * one permitted subtree of its type (when the CA permits any of that type) and inside no
 * excluded one.
 *
 * @example
 * ```ts
 * import { nameConstraintViolation } from "./name_constraints.ts";
 * const nc = { permitted: [{ type: "dns" as const, value: "team.example" }], excluded: [] };
 * const names = { dns: ["a.team.example"], ips: [], uris: [], rdns: [] };
 * if (nameConstraintViolation(names, nc) !== undefined) throw new Error();
 * if (!nameConstraintViolation({ ...names, dns: ["evil.example"] }, nc)) throw new Error();
 * ```
 */
export function nameConstraintViolation(
  names: ConstrainedNames,
  nc: NameConstraints,
): string | undefined {
  const checks: [Subtree["type"], string, (s: Subtree) => boolean][] = [];
  for (const d of names.dns) checks.push(["dns", `DNS name "${d}"`, (s) => dnsWithin(d, s)]);
  for (const u of names.uris) checks.push(["uri", `URI "${u}"`, (s) => uriWithin(u, s)]);
  for (const ip of names.ips) checks.push(["ip", `IP ${ipText(ip)}`, (s) => ipWithin(ip, s)]);
  if (names.rdns.length > 0) checks.push(["dn", "the subject", (s) => dnWithin(names.rdns, s)]);
  for (const [type, what, within] of checks) {
    const excluded = nc.excluded.find((s) => s.type === type && within(s));
    if (excluded) return `${what} is in an excluded subtree of the issuer's name constraints`;
    const permitted = nc.permitted.filter((s) => s.type === type);
    if (permitted.length > 0 && !permitted.some(within)) {
      return `${what} is outside the permitted subtrees of the issuer's name constraints`;
    }
  }
  return undefined;
}

function dnsWithin(name: string, s: Subtree): boolean {
  if (s.type !== "dns") return false;
  if (s.value === "") return true;
  if (s.value.startsWith(".")) return name.endsWith(s.value);
  return name === s.value || name.endsWith(`.${s.value}`);
}

function uriWithin(uri: string, s: Subtree): boolean {
  if (s.type !== "uri") return false;
  let host: string;
  try {
    host = new URL(uri).hostname.toLowerCase();
  } catch {
    return false; // no host to match: outside every subtree (and so refused where permitted)
  }
  if (host === "" || host.startsWith("[") || /^\d+(\.\d+){3}$/.test(host)) return false;
  if (s.value.startsWith(".")) return host.endsWith(s.value);
  return host === s.value;
}

function ipWithin(ip: Uint8Array, s: Subtree): boolean {
  if (s.type !== "ip" || ip.length !== s.address.length) return false;
  return ip.every((b, i) => (b & s.mask[i]) === (s.address[i] & s.mask[i]));
}

function dnWithin(rdns: string[], s: Subtree): boolean {
  if (s.type !== "dn" || s.rdns.length > rdns.length) return false;
  return s.rdns.every((r, i) => r === rdns[i]);
}

/** ASN.1 string types whose text is compared (RFC 5280 7.1: case and spaces folded). */
const STRING_TAGS = new Set([0x0c, 0x13, 0x14, 0x16]);

/**
 * An RDN in a form that compares as RFC 5280 7.1 asks, as OpenSSL does: each attribute as
 * `OID=value`, the value's text with case folded and runs of spaces collapsed whatever its
 * string type (PrintableString and UTF8String alike), other values as their DER in hex; the
 * attributes of a multi-valued RDN sorted.
 */
function canonicalRdn(rdn: Tlv): string {
  return childrenOf(expectTag(rdn, TAG.set, "an RDN")).map((atv) => {
    const [type, value] = childrenOf(expectTag(atv, TAG.sequence, "an attribute"));
    const text = STRING_TAGS.has(value.tag)
      ? new TextDecoder("utf-8", { fatal: true }).decode(contentOf(value)).trim()
        .replace(/\s+/g, " ").toLowerCase()
      : `#${Array.from(encodingOf(value), (b) => b.toString(16).padStart(2, "0")).join("")}`;
    return `${oidOf(type)}=${JSON.stringify(text)}`;
  }).sort().join("+");
}

function ipText(ip: Uint8Array): string {
  if (ip.length === 4) return ip.join(".");
  const words: string[] = [];
  for (let i = 0; i < ip.length; i += 2) words.push(((ip[i] << 8) | ip[i + 1]).toString(16));
  return words.join(":");
}
