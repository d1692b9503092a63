/**
 * The DNS names a restricted request makes dockerd contact (a registry, a `build?remote=` or
 * `images/create?fromSrc=` URL, collected by `route_params.ts`), resolved before the request
 * is forwarded: a name that resolves to a loopback, link-local, private or otherwise
 * non-public address (`localhost.example`, a name in /etc/hosts, a record pointing at
 * 127.0.0.1) is refused like the literal address, unless the role allows private addresses.
 *
 * Resolved with the system resolver (`getaddrinfo`: /etc/hosts, then DNS, as dockerd's Go
 * resolver reads the same files), every address of the name checked, within a bounded time;
 * a name that does not resolve is refused (fail closed). What this cannot see: the daemon
 * resolves the name again when it fetches, so a DNS answer that changes in between (DNS
 * rebinding) is not caught, and URLs inside a build context (a Dockerfile `ADD <url>`) are
 * never read by the gate.
 *
 * @module
 */

import net from "node:net";
import { lookup as dnsLookup } from "node:dns/promises";

/** How long the names of one request may take to resolve, in all. */
export const HOST_CHECK_MS = 3_000;

/** A resolver: every address of `name` (`getaddrinfo` by default). */
export type Resolver = (name: string) => Promise<string[]>;

/** Ranges dockerd must not be sent to: not public unicast (RFC 6890 and friends). */
const NON_PUBLIC = (() => {
  const list = new net.BlockList();
  for (
    const [net4, bits] of [
      ["0.0.0.0", 8],
      ["10.0.0.0", 8],
      ["100.64.0.0", 10],
      ["127.0.0.0", 8],
      ["169.254.0.0", 16],
      ["172.16.0.0", 12],
      ["192.0.0.0", 24],
      ["192.168.0.0", 16],
      ["198.18.0.0", 15],
      ["224.0.0.0", 3],
    ] as const
  ) list.addSubnet(net4, bits, "ipv4");
  for (
    const [net6, bits] of [
      ["::", 127],
      ["64:ff9b::", 96],
      ["100::", 64],
      ["fc00::", 7],
      ["fe80::", 10],
      ["ff00::", 8],
    ] as const
  ) list.addSubnet(net6, bits, "ipv6");
  return list;
})();

/**
 * Whether `address` (an IP literal) is loopback, link-local, private or otherwise not public.
 * IPv4-mapped IPv6 addresses are judged as their IPv4 address.
 *
 * @example
 * ```ts
 * import { isNonPublicAddress } from "./host_check.ts";
 * if (!isNonPublicAddress("127.0.0.1") || !isNonPublicAddress("::ffff:10.0.0.1")) throw new Error();
 * if (!isNonPublicAddress("fe80::1") || isNonPublicAddress("8.8.8.8")) throw new Error();
 * ```
 */
export function isNonPublicAddress(address: string): boolean {
  const family = net.isIP(address);
  if (family === 0) throw new TypeError(`not an IP address: ${address}`);
  return NON_PUBLIC.check(address, family === 4 ? "ipv4" : "ipv6");
}

const systemResolver: Resolver = async (name) =>
  (await dnsLookup(name, { all: true, verbatim: true })).map((a) => a.address);

/**
 * Why one of `hosts` may not be contacted by dockerd: it resolves to a non-public address, or
 * it does not resolve (in `timeoutMs`); `undefined` when every address of every name is
 * public.
 *
 * @example
 * ```ts
 * import { hostProblem } from "./host_check.ts";
 * const fake = (n: string) => Promise.resolve(n === "in.example" ? ["10.1.2.3"] : ["93.184.215.14"]);
 * if (!(await hostProblem(["in.example"], fake))?.includes("10.1.2.3")) throw new Error();
 * if ((await hostProblem(["out.example"], fake)) !== undefined) throw new Error();
 * ```
 */
export async function hostProblem(
  hosts: readonly string[],
  resolve: Resolver = systemResolver,
  timeoutMs = HOST_CHECK_MS,
): Promise<string | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"late">((r) => timer = setTimeout(() => r("late"), timeoutMs));
  try {
    for (const host of hosts) {
      let addresses: string[] | "late";
      try {
        addresses = await Promise.race([resolve(host), late]);
      } catch (err) {
        const code = (err as { code?: string }).code ?? (err as Error).message;
        return `names host "${host}", which does not resolve (${code}): refused, as it cannot ` +
          "be checked";
      }
      if (addresses === "late") {
        return `names host "${host}", which did not resolve in ${timeoutMs} ms: refused`;
      }
      if (addresses.length === 0) return `names host "${host}", which resolves to nothing`;
      const bad = addresses.find((a) => net.isIP(a) === 0 || isNonPublicAddress(a));
      if (bad !== undefined) {
        return `names host "${host}", which resolves to ${bad}, not a public address ` +
          "(allowPrivateAddresses)";
      }
    }
    return undefined;
  } finally {
    clearTimeout(timer);
  }
}
