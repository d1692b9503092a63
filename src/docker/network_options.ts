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
 * A network made `ConfigFrom` a config-only network takes that network's stored options and
 * addresses, so it is refused: the request must carry what it sets.
 *
 * The addresses (`IPAM.Config`: subnets, ranges, gateways, auxiliary addresses) are dockerd's
 * to choose from its own pools, or inside the role's `allowSubnets`: a bridge network's subnet
 * is a route in the host's namespace and its gateway an address of the host (`subnets.ts`).
 *
 * @module
 */

import { isJsonObject, type JsonValue } from "./strict_json.ts";
import { insideSubnets } from "./subnets.ts";

/** The role option this module reads. */
export interface NetworkAllowances {
  /** Network drivers besides `bridge` and `overlay`; `bridge` here lifts the option list. */
  allowNetworkDrivers?: readonly string[];
  /** Subnets (`10.97.0.0/16`) inside which a network create may set its `IPAM.Config`. */
  allowSubnets?: readonly string[];
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
/** moby's `network.IPAMConfig`, spelled exactly (the CLI and docker-py spell it so). */
const IPAM_CONFIG_KEYS = ["Subnet", "IPRange", "Gateway", "AuxiliaryAddresses"];

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
 * const ipam = { IPAM: { Config: [{ Subnet: "10.97.1.0/24", Gateway: "10.97.1.1" }] } };
 * if (!networkOptionsProblem(ipam, {})) throw new Error();
 * if (networkOptionsProblem(ipam, { allowSubnets: ["10.97.0.0/16"] })) throw new Error();
 * if (!networkOptionsProblem({ ConfigFrom: { Network: "lanconf" } }, {})) throw new Error();
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
  const from = configFromProblem(body["ConfigFrom"]);
  if (from) return from;
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
  const config = ipamConfigProblem(ipam["Config"], allow);
  if (config) return config;
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

/**
 * `ConfigFrom`: none. dockerd makes the network from the named config-only network's stored
 * options and addresses (an admin's `--config-only --subnet <the LAN's>` for a macvlan),
 * which this request does not carry and the gate has not read.
 */
function configFromProblem(from: JsonValue | undefined) {
  if (from === undefined || from === null) return undefined;
  if (isJsonObject(from) && (from["Network"] ?? "") === "") return undefined;
  return "ConfigFrom: a network made from a config-only network's stored options and " +
    "addresses, which the gate has not read (set the options and addresses in the request)";
}

/**
 * `IPAM.Config`: none, or entries whose every address lies inside the role's `allowSubnets`
 * (a `Subnet` each; `IPRange`, `Gateway` and `AuxiliaryAddresses` when set).
 */
function ipamConfigProblem(config: JsonValue | undefined, allow: NetworkAllowances) {
  const rule = "(addresses are dockerd's to choose, or inside the role's allowSubnets: " +
    `${allow.allowSubnets?.length ? allow.allowSubnets.join(", ") : "none"})`;
  if (config === undefined || config === null) return undefined;
  if (!Array.isArray(config)) return "IPAM.Config is not a list";
  for (const [i, entry] of config.entries()) {
    const at = `IPAM.Config[${i}]`;
    if (!isJsonObject(entry)) return `${at} is not an object`;
    const key = Object.keys(entry).find((k) => !IPAM_CONFIG_KEYS.includes(k));
    if (key !== undefined) return `${at}.${key}: unknown field (denied until the policy knows it)`;
    const aux = entry["AuxiliaryAddresses"] ?? {};
    if (!isJsonObject(aux)) return `${at}.AuxiliaryAddresses is not an object`;
    const asked: [string, JsonValue | undefined][] = [
      ["Subnet", entry["Subnet"]],
      ["IPRange", entry["IPRange"] ?? ""],
      ["Gateway", entry["Gateway"] ?? ""],
      ...Object.entries(aux).map(([k, v]): [string, JsonValue] => [`AuxiliaryAddresses.${k}`, v]),
    ];
    for (const [field, value] of asked) {
      if (typeof value !== "string") return `${at}.${field} is not a string`;
      if (field !== "Subnet" && value === "") continue;
      if (!insideSubnets(value, allow.allowSubnets ?? [])) {
        return `${at}.${field}=${JSON.stringify(value)}: address not allowed ${rule}`;
      }
    }
  }
  return undefined;
}
