/**
 * IP subnets as a restricted role's `allowSubnets` names them, and whether an address or a
 * subnet that a network create asks for lies inside one of them.
 *
 * A bridge network's subnet becomes a route in the host's own namespace and its gateway an
 * address of a new bridge there (moby `libnetwork/drivers/bridge`): a subnet inside one of the
 * host's networks is a more specific route, so the host's traffic to those addresses (its DNS
 * resolver, its router, a metadata service) goes to the network's containers. dockerd refuses
 * only overlaps with its own networks. So which addresses a role may pick is an allow-list.
 *
 * Only the plain spellings are read (dotted decimal without leading zeros, IPv6 without an
 * embedded IPv4 part or zone, a decimal prefix length): anything else is refused, so the gate
 * never reads an address differently from Go's `net.ParseIP`/`ParseCIDR`.
 *
 * @module
 */

import { isIPv6 } from "node:net";

/** A parsed subnet: its family, its network address as a number, its prefix length. */
export interface Subnet {
  /** 4 or 6. */
  family: 4 | 6;
  /** The network address (host bits cleared). */
  network: bigint;
  /** The prefix length (32 or 128 for one address). */
  prefix: number;
}

const IPV4 = /^(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})$/;

/** The address `text` as a number and its family, or undefined when not a plain spelling. */
function parseAddress(text: string): { family: 4 | 6; value: bigint } | undefined {
  const v4 = IPV4.exec(text);
  if (v4) {
    const parts = v4.slice(1).map(Number);
    if (parts.some((p) => p > 255)) return undefined;
    return { family: 4, value: parts.reduce((n, p) => (n << 8n) | BigInt(p), 0n) };
  }
  if (!isIPv6(text) || text.includes(".") || text.includes("%")) return undefined;
  const [head, tail] = text.includes("::") ? text.split("::") : [text, undefined];
  const left = head === "" ? [] : head.split(":");
  const right = tail === undefined || tail === "" ? [] : tail.split(":");
  const groups = tail === undefined
    ? left
    : [...left, ...Array(8 - left.length - right.length).fill("0"), ...right];
  if (groups.length !== 8) return undefined;
  return { family: 6, value: groups.reduce((n, g) => (n << 16n) | BigInt(`0x${g}`), 0n) };
}

/**
 * `text` as a subnet (`10.1.0.0/16`, `fd00::/64`; host bits are cleared, as Go's `ParseCIDR`
 * gives the network) or, without a `/`, as one address (`/32`, `/128`); undefined when it is not
 * a plain spelling.
 *
 * @example
 * ```ts
 * import { parseSubnet } from "./subnets.ts";
 * if (parseSubnet("10.1.2.3/16")?.network !== 0x0a010000n) throw new Error();
 * if (parseSubnet("fd00::1")?.prefix !== 128) throw new Error();
 * if (parseSubnet("010.1.2.3") || parseSubnet("::ffff:10.0.0.1") || parseSubnet("10.0.0.0/33")) {
 *   throw new Error();
 * }
 * ```
 */
export function parseSubnet(text: string): Subnet | undefined {
  const slash = text.indexOf("/");
  const address = parseAddress(slash < 0 ? text : text.slice(0, slash));
  if (!address) return undefined;
  const bits = address.family === 4 ? 32 : 128;
  let prefix = bits;
  if (slash >= 0) {
    const len = text.slice(slash + 1);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(len) || Number(len) > bits) return undefined;
    prefix = Number(len);
  }
  const host = (1n << BigInt(bits - prefix)) - 1n;
  return { family: address.family, network: address.value & ~host, prefix };
}

/**
 * Whether `text` (a subnet or one address, as {@linkcode parseSubnet} reads it) lies wholly
 * inside one of `allowed` (subnets in the same spelling); false when `text` cannot be read.
 *
 * @example
 * ```ts
 * import { insideSubnets } from "./subnets.ts";
 * if (!insideSubnets("10.97.3.0/24", ["10.97.0.0/16"])) throw new Error();
 * if (insideSubnets("10.96.0.0/15", ["10.97.0.0/16"]) || insideSubnets("10.98.0.1", ["10.97.0.0/16"])) {
 *   throw new Error();
 * }
 * ```
 */
export function insideSubnets(text: string, allowed: readonly string[]): boolean {
  const asked = parseSubnet(text);
  if (!asked) return false;
  const bits = asked.family === 4 ? 32 : 128;
  return allowed.some((a) => {
    const s = parseSubnet(a);
    if (!s || s.family !== asked.family || s.prefix > asked.prefix) return false;
    const host = (1n << BigInt(bits - s.prefix)) - 1n;
    return (asked.network & ~host) === s.network;
  });
}
