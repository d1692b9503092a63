/**
 * What a restricted role's `POST /networks/create` may ask of the network drivers: an
 * allow-list of drivers and of their options, like the volume drivers' (`no_escape.ts`).
 *
 * A network driver runs in dockerd as root on the host's network stack, and its options say
 * where: the bridge driver's `com.docker.network.bridge.name` names an existing host bridge
 * (libvirt's `virbr0`, a LAN bridge), which dockerd then sets up and gives the network's
 * gateway address, replacing the bridge's own on Docker 26 (moby
 * `libnetwork/drivers/bridge`: "even if a bridge exists try to setup IPv4"); `macvlan` and
 * `ipvlan` put containers on a host interface (`parent=eth0`); any other name is a plugin.
 * So: the `bridge` driver (or none, which is bridge) and swarm's `overlay`, with a few options
 * that change nothing outside the network; the default IPAM driver without options. A driver
 * on the role's `allowNetworkDrivers` is trusted with its own options (`bridge` there lifts
 * the bridge's option list).
 *
 * @module
 */

import { isJsonObject, type JsonValue } from "./strict_json.ts";

/** The role option this module reads. */
export interface NetworkAllowances {
  /** Network drivers besides `bridge` and `overlay`; `bridge` here lifts the option list. */
  allowNetworkDrivers?: readonly string[];
}

const BUILTIN_DRIVERS = ["bridge", "overlay"];

/** Options of the built-in drivers that act inside the network only, with their values. */
const SAFE_OPTIONS: Record<string, RegExp> = {
  "com.docker.network.driver.mtu": /^[0-9]{1,5}$/,
  "com.docker.network.bridge.enable_icc": /^(true|false)$/,
  "com.docker.network.bridge.enable_ip_masquerade": /^(true|false)$/,
  "com.docker.network.container_iface_prefix": /^[a-z]{1,8}$/,
  // overlay: IPsec between the nodes' VXLAN endpoints.
  "encrypted": /^(|true)$/,
};

const IPAM_KEYS = ["Driver", "Config", "Options"];

/**
 * The violation in a network create body's `Driver`, `Options` and `IPAM` (already checked
 * for its shape: keys spelled exactly), or `undefined`.
 *
 * @example
 * ```ts
 * import { networkOptionsProblem } from "./network_options.ts";
 * if (networkOptionsProblem({ Name: "n" }, {})) throw new Error();
 * if (networkOptionsProblem({ Driver: "bridge", Options: { "com.docker.network.driver.mtu": "1400" } }, {})) throw new Error();
 * if (!networkOptionsProblem({ Options: { "com.docker.network.bridge.name": "br0" } }, {})) throw new Error();
 * if (!networkOptionsProblem({ Driver: "macvlan", Options: { parent: "eth0" } }, {})) throw new Error();
 * if (networkOptionsProblem({ Driver: "macvlan" }, { allowNetworkDrivers: ["macvlan"] })) throw new Error();
 * ```
 */
export function networkOptionsProblem(
  body: Record<string, JsonValue>,
  allow: NetworkAllowances,
): string | undefined {
  const rule = "(network drivers and their options are the role's allowNetworkDrivers)";
  const raw = body["Driver"] ?? "";
  if (typeof raw !== "string") return "Driver is not a string";
  const driver = raw === "" ? "bridge" : raw;
  const listed = allow.allowNetworkDrivers?.includes(driver) === true;
  if (!listed && !BUILTIN_DRIVERS.includes(driver)) {
    return `Driver=${JSON.stringify(raw)}: network driver not allowed ${rule}`;
  }
  const ipam = ipamProblem(body["IPAM"], allow, rule);
  if (ipam) return ipam;
  const options = body["Options"];
  if (options === undefined || options === null || listed) return undefined;
  if (!isJsonObject(options)) return "Options is not an object";
  for (const [key, value] of Object.entries(options)) {
    const at = `Options.${key}`;
    if (typeof value !== "string") return `${at} is not a string`;
    const ok = Object.hasOwn(SAFE_OPTIONS, key) ? SAFE_OPTIONS[key] : undefined;
    if (!ok) return `${at}: driver option not allowed ${rule}`;
    if (!ok.test(value)) return `${at}=${JSON.stringify(value)}: value not allowed ${rule}`;
  }
  return undefined;
}

/**
 * The default IPAM driver without options, or one on `allowNetworkDrivers` (with its own
 * options): any other name is a plugin.
 */
function ipamProblem(ipam: JsonValue | undefined, allow: NetworkAllowances, rule: string) {
  if (ipam === undefined || ipam === null) return undefined;
  if (!isJsonObject(ipam)) return "IPAM is not an object";
  for (const key of Object.keys(ipam)) {
    if (!IPAM_KEYS.includes(key)) {
      return `IPAM.${key}: unknown field (denied until the policy knows it)`;
    }
  }
  const driver = ipam["Driver"] ?? "";
  if (typeof driver !== "string") return "IPAM.Driver is not a string";
  const listed = allow.allowNetworkDrivers?.includes(driver) === true;
  if (driver !== "" && driver !== "default" && !listed) {
    return `IPAM.Driver=${JSON.stringify(driver)}: IPAM driver not allowed ${rule}`;
  }
  const options = ipam["Options"];
  if (options === undefined || options === null || listed) return undefined;
  if (!isJsonObject(options) || Object.keys(options).length > 0) {
    return `IPAM.Options: IPAM driver options not allowed ${rule}`;
  }
  return undefined;
}
