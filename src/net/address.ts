/**
 * Listen and target addresses in the forms Docker's `-H` accepts: `unix:///path`,
 * `tcp://host:port`, `host:port` and `[v6]:port`.
 *
 * @module
 */

/** A unix-domain socket path. */
export interface UnixAddress {
  /** Always `"unix"`. */
  transport: "unix";
  /** Absolute or relative filesystem path of the socket. */
  path: string;
}

/** A TCP host and port. */
export interface TcpAddress {
  /** Always `"tcp"`. */
  transport: "tcp";
  /** Host name or IP literal, without IPv6 brackets. */
  host: string;
  /** Port, 0–65535 (0 = any free port when listening). */
  port: number;
}

/** Where to listen or where to relay to. */
export type Address = UnixAddress | TcpAddress;

/** Options for {@linkcode parseAddress}. */
export interface ParseAddressOptions {
  /** Port used when a TCP address names none. Default: none (a port is required). */
  defaultPort?: number;
}

/**
 * Parse an address as Docker's `-H` does. Throws `TypeError` for anything else, with a message
 * naming the input.
 *
 * @example
 * ```ts
 * import { parseAddress } from "./address.ts";
 * const a = parseAddress("tcp://127.0.0.1:2376");
 * if (a.transport !== "tcp" || a.port !== 2376) throw new Error("unexpected");
 * const u = parseAddress("unix:///var/run/docker.sock");
 * if (u.transport !== "unix" || u.path !== "/var/run/docker.sock") throw new Error("unexpected");
 * const v6 = parseAddress("[::1]:0");
 * if (v6.transport !== "tcp" || v6.host !== "::1" || v6.port !== 0) throw new Error("unexpected");
 * ```
 */
export function parseAddress(text: string, options: ParseAddressOptions = {}): Address {
  const bad = (why: string) => new TypeError(`Invalid address "${text}": ${why}`);
  if (typeof text !== "string" || text.trim() === "") throw bad("empty");
  if (text !== text.trim()) throw bad("surrounding whitespace");
  if (text.startsWith("unix://")) {
    const path = text.slice("unix://".length);
    if (path === "") throw bad("unix:// needs a socket path, as in unix:///var/run/docker.sock");
    if (path.includes("\0")) throw bad("NUL byte in path");
    return { transport: "unix", path };
  }
  let rest = text;
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(text);
  if (scheme) {
    if (scheme[1].toLowerCase() !== "tcp") {
      throw bad(`unsupported scheme "${scheme[1]}" (use unix:// or tcp://)`);
    }
    rest = text.slice(scheme[0].length);
  }
  if (rest.endsWith("/")) rest = rest.slice(0, -1);
  if (rest.includes("/")) throw bad("a TCP address takes no path");
  let host: string;
  let portText: string | undefined;
  if (rest.startsWith("[")) {
    const close = rest.indexOf("]");
    if (close < 0) throw bad("unclosed [ in IPv6 address");
    host = rest.slice(1, close);
    const after = rest.slice(close + 1);
    if (after !== "" && !after.startsWith(":")) throw bad("junk after IPv6 address");
    portText = after === "" ? undefined : after.slice(1);
    if (!host.includes(":")) throw bad("brackets are only for IPv6 addresses");
  } else {
    const colons = rest.split(":").length - 1;
    if (colons > 1) throw bad("write IPv6 addresses in brackets, as in [::1]:2376");
    const i = rest.lastIndexOf(":");
    host = i < 0 ? rest : rest.slice(0, i);
    portText = i < 0 ? undefined : rest.slice(i + 1);
  }
  if (host === "") throw bad("missing host");
  if (!/^[A-Za-z0-9.:_%-]+$/.test(host)) throw bad("invalid characters in host");
  let port: number;
  if (portText === undefined || portText === "") {
    if (options.defaultPort === undefined) throw bad("missing port");
    port = options.defaultPort;
  } else {
    if (!/^\d{1,5}$/.test(portText)) throw bad(`invalid port "${portText}"`);
    port = Number(portText);
    if (port > 65535) throw bad(`port ${port} out of range 0-65535`);
  }
  return { transport: "tcp", host, port };
}

/**
 * Format an address back into its canonical `unix://` or `tcp://` form.
 *
 * @example
 * ```ts
 * import { formatAddress } from "./address.ts";
 * if (formatAddress({ transport: "tcp", host: "::1", port: 2376 }) !== "tcp://[::1]:2376") throw new Error();
 * if (formatAddress({ transport: "unix", path: "/tmp/d.sock" }) !== "unix:///tmp/d.sock") throw new Error();
 * ```
 */
export function formatAddress(address: Address): string {
  if (address.transport === "unix") return `unix://${address.path}`;
  const host = address.host.includes(":") ? `[${address.host}]` : address.host;
  return `tcp://${host}:${address.port}`;
}

/**
 * Whether a TCP host is a loopback address (`localhost`, 127.0.0.0/8, `::1`). Used to refuse
 * exposing an unauthenticated client tunnel on the network.
 *
 * @example
 * ```ts
 * import { isLoopbackHost } from "./address.ts";
 * if (!isLoopbackHost("127.0.0.1") || isLoopbackHost("0.0.0.0")) throw new Error();
 * ```
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) ||
    h === "::ffff:127.0.0.1";
}
