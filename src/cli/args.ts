/**
 * Command-line parsing: argv in, a typed {@linkcode Command} out. Pure (the environment is
 * passed in), so it is unit-tested without a subprocess; `cli.ts` only dispatches on it.
 *
 * @module
 */

import { join } from "node:path";
import process from "node:process";
import { hostname } from "node:os";
import { readFileSync } from "node:fs";
import { envName, layeredParse, parseConfigText, type SettingSource } from "../config/layered.ts";
import { parseArgs as nodeParseArgs, type ParseArgsConfig } from "node:util";
import { type Address, isLoopbackHost, parseAddress, type TcpAddress } from "../net/address.ts";
import { parseDuration } from "../config/duration.ts";
import { DEFAULTS } from "../config/defaults.ts";
import { type KeyType, parseKeyType } from "../pki/pki.ts";

/** A usage mistake: the CLI prints the message and exits with code 2. */
export class UsageError extends Error {
  /** Create a usage error with a one-line message. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Where TLS files come from: a bundle directory, with per-file overrides. */
export interface CertSource {
  /** Bundle directory holding `ca.pem`, `cert.pem`, `key.pem`. */
  certs?: string;
  /** Certificate file (overrides the bundle's). */
  cert?: string;
  /** Private key file (overrides the bundle's). */
  key?: string;
  /** CA bundle file (overrides the bundle's). */
  ca?: string;
}

/** `dockgate keygen …` */
export type KeygenCommand =
  | {
    kind: "keygen";
    action: "init";
    dir: string;
    keyType: KeyType;
    days?: number;
    caDays?: number;
    sans: string[];
    force: boolean;
  }
  | {
    kind: "keygen";
    action: "server";
    dir: string;
    keyType: KeyType;
    days?: number;
    sans: string[];
    force: boolean;
    /** A fleet host: `DIR/servers/NAME/`. */
    name?: string;
    /** Issue from this intermediate. */
    issuer?: string;
  }
  | {
    kind: "keygen";
    action: "intermediate";
    dir: string;
    keyType: KeyType;
    days?: number;
    name: string;
    force: boolean;
  }
  | {
    kind: "keygen";
    action: "renew";
    dir: string;
    /** `server` or a client name. */
    name: string;
    days?: number;
    newKey: boolean;
    revokeOld: boolean;
  }
  | {
    kind: "keygen";
    action: "client";
    dir: string;
    keyType: KeyType;
    days?: number;
    name: string;
    ous: string[];
    force: boolean;
    revokeOld: boolean;
    /** Issue from this intermediate. */
    issuer?: string;
  }
  | { kind: "keygen"; action: "revoke"; dir: string; subject: string }
  | { kind: "keygen"; action: "crl"; dir: string };

/** `dockgate serve …` */
export interface ServeCommand {
  /** Discriminant. */
  kind: "serve";
  /** Listen address (TCP). */
  listen: TcpAddress;
  /** Target address. */
  target: Address;
  /** TLS files. */
  source: CertSource;
  /** True when no TLS file flag was given (serve may create the default PKI). */
  defaultCerts: boolean;
  /** Explicit CRL files or directories (repeatable). */
  crl: string[];
  /** CRLs fetched over HTTP(S) (repeatable). */
  crlUrls: string[];
  /** Milliseconds between fetches of each `crlUrls` entry (sooner at its nextUpdate). */
  crlRefreshMs: number;
  /** Where the last good copy of each fetched CRL is kept. */
  crlCache?: string;
  /** Allow-lists. */
  allowCn: string[];
  /** Allow-lists. */
  allowSan: string[];
  /** Allow-lists. */
  allowOu: string[];
  /** Milliseconds. */
  handshakeTimeoutMs: number;
  /** Concurrent authenticated connection cap. */
  maxConnections: number;
  /** Concurrent TLS handshake cap. */
  maxHandshakes: number;
  /** Concurrent TLS handshakes per source address. */
  maxHandshakesPerAddress: number;
  /** What a CRL past its nextUpdate means. */
  crlStale: "warn" | "refuse";
  /** Keep open connections of identities a reload revokes. */
  keepRevokedConnections: boolean;
  /** Milliseconds. */
  drainTimeoutMs: number;
  /** Milliseconds, when set. */
  maxConnLifetimeMs?: number;
  /** Accept group/other-readable keys. */
  insecureKeyPerms: boolean;
  /** Log verbosity. */
  logLevel: "debug" | "info" | "warn" | "error";
  /** Log line format: `text` (`LEVEL message key=value`) or `json` (one object per line). */
  logFormat: "text" | "json";
  /** Where to serve `/metrics` and `/healthz`, if anywhere. */
  metrics?: TcpAddress;
  /** Fail at start when the target does not answer (default: warn and keep going). */
  requireTarget: boolean;
  /** The `--config` file, if any (watched: some settings reload from it). */
  configFile?: string;
  /** Print the settings and their sources, and exit. */
  printConfig: boolean;
  /** Every setting, its value and where it came from. */
  settings: Setting[];
  /** Parse the same command line again (the config file or environment may have changed). */
  reparse?: () => ServeCommand;
  /** The API policy file. */
  policy?: string;
  /** Enforce the API policy, or only record what it would deny. */
  policyMode: "enforce" | "audit";
  /** The audit log file (default: stderr, when there is a policy). */
  auditLog?: string;
  /** The largest request body read for inspection. */
  maxBodyBytes: number;
  /** s8-owner: `--state-dir`, where the owner record of isolated roles lives. */
  stateDir: string;
}

/** `dockgate policy check FILE --identity CN METHOD PATH [--body FILE]` */
export interface PolicyCheckCommand {
  /** Discriminant. */
  kind: "policy-check";
  /** The policy file. */
  file: string;
  /** The identity's common name. */
  identity: string;
  /** Its organizational units. */
  ous: string[];
  /** Its DNS, URI or IP subject alternative names. */
  sans: string[];
  /** The request method. */
  method: string;
  /** The request target (`/v1.41/containers/create?name=x`). */
  path: string;
  /** A file with the request body. */
  body?: string;
}

/** `dockgate connect …` */
export interface ConnectCommand {
  /** Discriminant. */
  kind: "connect";
  /** Server address. */
  server: TcpAddress;
  /** Local listen address. */
  listen: Address;
  /** TLS files. */
  source: CertSource;
  /** Name to verify in the server certificate. */
  serverName?: string;
  /** Allow non-loopback TCP listen. */
  unsafeListen: boolean;
  /** Accept group/other-readable keys. */
  insecureKeyPerms: boolean;
  /** Milliseconds. */
  drainTimeoutMs: number;
  /** Log verbosity. */
  logLevel: "debug" | "info" | "warn" | "error";
  /** Log line format. */
  logFormat: "text" | "json";
}

/** `dockgate help [TOPIC]`, or `-h` on any command. */
export interface HelpCommand {
  /** Discriminant. */
  kind: "help";
  /** Command to describe. */
  topic?: string;
}

/** One setting of `serve`/`connect`, as `--print-config` shows it. */
export interface Setting {
  /** The flag's name (without `--`). */
  name: string;
  /** Its value. */
  value: string | boolean | string[] | undefined;
  /** Where the value came from. */
  source: SettingSource;
}

/** Everything the CLI can be asked to do. */
export type Command =
  | HelpCommand
  | { kind: "version" }
  | KeygenCommand
  | ServeCommand
  | ConnectCommand
  | PolicyCheckCommand
  | EnvCommand
  | InspectCommand
  | { kind: "completion"; shell: "bash" }
  | DoctorCommand;

/** `dockgate doctor [--pki DIR] [--certs DIR] [--target ADDR] [--listen ADDR] [--server H:P]`. */
export interface DoctorCommand {
  /** Discriminant. */
  kind: "doctor";
  /** A PKI in keygen's layout to check. */
  pki?: string;
  /** One bundle to check. */
  certs?: string;
  /** A target that must answer `/_ping`. */
  target?: Address;
  /** An address that must be free to listen on. */
  listen?: TcpAddress;
  /** A running serve for a round trip. */
  server?: { host: string; port: number };
  /** The client bundle for the round trip. */
  clientBundle?: string;
}

/** `dockgate inspect [PATH…] [--json] [--fail-within DAYS]`. */
export interface InspectCommand {
  /** Discriminant. */
  kind: "inspect";
  /** PKI or bundle directories, or PEM files (default: the PKI directory). */
  paths: string[];
  /** JSON instead of a table. */
  json: boolean;
  /** Exit 1 when a certificate expires within this many days. */
  failWithinDays?: number;
}

/** `dockgate env NAME [--dir DIR] [--host HOST:PORT] [--context [--apply]] [--bundle F]`. */
export interface EnvCommand {
  /** Discriminant. */
  kind: "env";
  /** The client's name (its bundle is DIR/clients/NAME). */
  name: string;
  /** The PKI directory. */
  dir: string;
  /** The gate's address as clients reach it, `HOST:PORT` (the first of `hosts`). */
  host: string;
  /** Every gate of the fleet (`--host`, repeatable, and `--hosts-file`), `HOST:PORT` each. */
  hosts: string[];
  /** Print (or apply) a `docker context create` instead of shell lines. */
  context: boolean;
  /** Run the context command. */
  apply: boolean;
  /** Pack the bundle into this `.tar.gz` instead. */
  bundle?: string;
}

/** The defaults table (`src/config/defaults.ts`), re-exported for the CLI's help text. */
export { DEFAULTS };

const COMMON_TLS = {
  certs: { type: "string" },
  cert: { type: "string" },
  key: { type: "string" },
  ca: { type: "string" },
  "insecure-key-perms": { type: "boolean", default: false },
  "log-level": { type: "string", default: "info" },
  "log-format": { type: "string", default: "text" },
  help: { type: "boolean", short: "h", default: false },
} as const;

/**
 * Parse argv (without the runtime and script) into a {@linkcode Command}. Throws
 * {@linkcode UsageError} on any mistake.
 *
 * @example
 * ```ts
 * import { parseCommand } from "./args.ts";
 * const c = parseCommand(["serve", "--listen", "127.0.0.1:0"], {});
 * if (c.kind !== "serve" || c.listen.port !== 0 || c.target.transport !== "unix") throw new Error();
 * ```
 */
export function parseCommand(
  argv: string[],
  env: Record<string, string | undefined>,
  readText: (path: string) => string = (path) => readFileSync(path, "utf8"),
): Command {
  const [first, ...rest] = argv;
  switch (first) {
    case undefined:
    case "help":
    case "--help":
    case "-h":
      return { kind: "help", topic: rest[0] };
    case "version":
    case "--version":
    case "-V":
      return { kind: "version" };
    case "keygen":
      return parseKeygen(rest);
    case "serve":
      return parseServe(rest, env, readText);
    case "connect":
      return parseConnect(rest, env, readText);
    case "policy":
      return parsePolicy(rest);
    case "env":
      return parseEnv(rest);
    case "inspect":
      return parseInspect(rest);
    case "doctor":
      return parseDoctor(rest);
    case "completion":
      if (rest[0] === "--help" || rest[0] === "-h") return { kind: "help", topic: "completion" };
      if (rest.length !== 1 || rest[0] !== "bash") {
        throw new UsageError(
          `"completion" takes one shell: bash (e.g. source <(dockgate completion bash))`,
        );
      }
      return { kind: "completion", shell: "bash" };
    default:
      throw new UsageError(
        `Unknown command "${first}" (expected keygen, serve, connect or policy)`,
      );
  }
}

function parse(
  args: string[],
  options: NonNullable<ParseArgsConfig["options"]>,
  allowPositionals: boolean,
) {
  try {
    return nodeParseArgs({ args, options, allowPositionals, strict: true });
  } catch (err) {
    // node:util messages carry a hint tail; keep the first sentence of the first line only.
    const msg = (err as Error).message.split("\n")[0].split(". ")[0].replace(/\.$/, "");
    const unknown = /^Unknown option '(--[^']+)'/.exec(msg);
    const near = unknown && closest(unknown[1].slice(2).split("=")[0], Object.keys(options));
    throw new UsageError(near ? `${msg} (did you mean --${near}?)` : msg);
  }
}

/**
 * The option name nearest `name` (edit distance at most a third of its length, at least 1),
 * for "did you mean".
 *
 * @example
 * ```ts
 * import { closest } from "./args.ts";
 * if (closest("listn", ["listen", "target"]) !== "listen" || closest("zzz", ["listen"])) throw new Error();
 * ```
 */
export function closest(name: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(1, Math.floor(name.length / 3)) + 1;
  for (const c of candidates) {
    const d = editDistance(name, c);
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length];
}

function usage<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof TypeError || err instanceof RangeError) throw new UsageError(err.message);
    throw err;
  }
}

function positiveInt(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || Number(text) < 1) {
    throw new UsageError(`Invalid ${flag} "${text}": expected a positive whole number`);
  }
  return Number(text);
}

function logLevel(text: string) {
  if (text === "debug" || text === "info" || text === "warn" || text === "error") return text;
  throw new UsageError(`Invalid --log-level "${text}": expected debug, info, warn or error`);
}

/** A `--crl-url`: http or https, nothing else (a file belongs in `--crl`). */
function crlUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`Invalid --crl-url "${text}": expected an http:// or https:// URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new UsageError(`Invalid --crl-url "${text}": expected an http:// or https:// URL`);
  }
  return url.href;
}

/** Where fetched CRLs are kept: `--crl-cache`, else `crl-cache/` in the `--certs` directory. */
function crlCache(values: Record<string, unknown>, source: CertSource): string | undefined {
  const given = values["crl-cache"] as string | undefined;
  if (given !== undefined) return given;
  if ((values["crl-url"] as string[]).length === 0) return undefined;
  if (source.certs) return join(source.certs, "crl-cache");
  throw new UsageError(
    "--crl-url needs a place for the last good copy: give --crl-cache DIR (or --certs DIR)",
  );
}

function crlStale(text: string): "warn" | "refuse" {
  if (text === "warn" || text === "refuse") return text;
  throw new UsageError(`Invalid --crl-stale "${text}": expected warn or refuse`);
}

function parseKeygen(args: string[]): KeygenCommand | HelpCommand {
  const { values, positionals } = parse(args, {
    dir: { type: "string", default: DEFAULTS.pkiDir },
    "key-type": { type: "string", default: DEFAULTS.keyType },
    days: { type: "string" },
    "ca-days": { type: "string" },
    san: { type: "string", multiple: true, default: [] },
    ou: { type: "string", multiple: true, default: [] },
    force: { type: "boolean", default: false },
    "revoke-old": { type: "boolean", default: false },
    "new-key": { type: "boolean", default: false },
    name: { type: "string" },
    issuer: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  }, true);
  const [action = "init", name, ...extra] = positionals;
  if (values.help) return { kind: "help", topic: "keygen" };
  const keyType = usage(() => parseKeyType(values["key-type"] as string));
  const days = positiveInt(values.days as string | undefined, "--days");
  const dir = values.dir as string;
  const sans = values.san as string[];
  const ous = values.ou as string[];
  const force = values.force as boolean;
  const tooMany = (n: number) => {
    if (positionals.length > n) throw new UsageError(`Unexpected argument "${positionals[n]}"`);
  };
  const notFor = (flag: string, present: boolean) => {
    if (present) throw new UsageError(`${flag} does not apply to "keygen ${action}"`);
  };
  const revokeOld = values["revoke-old"] as boolean;
  if (action !== "client" && action !== "renew") notFor("--revoke-old", revokeOld);
  if (action !== "renew") notFor("--new-key", values["new-key"] as boolean);
  const issuer = values.issuer as string | undefined;
  const hostName = values.name as string | undefined;
  if (action !== "client" && action !== "server") notFor("--issuer", issuer !== undefined);
  if (action !== "server") notFor("--name", hostName !== undefined);
  const from = issuer === undefined ? {} : { issuer };
  switch (action) {
    case "renew":
      if (!name) throw new UsageError(`"keygen renew" needs a client NAME or "server"`);
      tooMany(2);
      notFor("--san", sans.length > 0);
      notFor("--ou", ous.length > 0);
      notFor("--force", force);
      notFor("--ca-days", values["ca-days"] !== undefined);
      return {
        kind: "keygen",
        action,
        dir,
        name,
        days,
        newKey: values["new-key"] as boolean,
        revokeOld,
      };
    case "init":
      tooMany(1);
      notFor("--ou", ous.length > 0);
      return {
        kind: "keygen",
        action,
        dir,
        keyType,
        days,
        caDays: positiveInt(values["ca-days"] as string | undefined, "--ca-days"),
        sans,
        force,
      };
    case "server":
      tooMany(1);
      notFor("--ou", ous.length > 0);
      notFor("--ca-days", values["ca-days"] !== undefined);
      return {
        kind: "keygen",
        action,
        dir,
        keyType,
        days,
        sans,
        force,
        ...(hostName === undefined ? {} : { name: hostName }),
        ...from,
      };
    case "intermediate":
      if (!name) throw new UsageError(`"keygen intermediate" needs a NAME`);
      tooMany(2);
      notFor("--san", sans.length > 0);
      notFor("--ou", ous.length > 0);
      notFor("--ca-days", values["ca-days"] !== undefined);
      return { kind: "keygen", action, dir, keyType, days, name, force };
    case "client":
      if (!name) throw new UsageError(`"keygen client" needs a NAME`);
      tooMany(2);
      notFor("--san", sans.length > 0);
      notFor("--ca-days", values["ca-days"] !== undefined);
      if (revokeOld && !force) throw new UsageError(`--revoke-old goes with --force`);
      return { kind: "keygen", action, dir, keyType, days, name, ous, force, revokeOld, ...from };
    case "revoke":
      if (!name) {
        throw new UsageError(`"keygen revoke" needs a client NAME or a certificate SERIAL`);
      }
      tooMany(2);
      return { kind: "keygen", action, dir, subject: name };
    case "crl":
      tooMany(1);
      return { kind: "keygen", action, dir };
    default:
      void extra;
      throw new UsageError(
        `Unknown keygen action "${action}" (expected server, client, intermediate, renew, revoke or crl)`,
      );
  }
}

function certSource(values: Record<string, unknown>): CertSource {
  return {
    certs: values.certs as string | undefined,
    cert: values.cert as string | undefined,
    key: values.key as string | undefined,
    ca: values.ca as string | undefined,
  };
}

function parseServe(
  args: string[],
  env: Record<string, string | undefined>,
  readText: (path: string) => string,
): ServeCommand | HelpCommand {
  const { values, positionals, sources, configFile } = layered(args, env, readText, "serve", {
    ...COMMON_TLS,
    listen: { type: "string", default: DEFAULTS.serveListen },
    target: { type: "string", default: DEFAULTS.serveTarget },
    crl: { type: "string", multiple: true, default: [] },
    "crl-url": { type: "string", multiple: true, default: [] },
    "crl-refresh": { type: "string", default: DEFAULTS.crlRefresh },
    "crl-cache": { type: "string" },
    "allow-cn": { type: "string", multiple: true, default: [] },
    "allow-san": { type: "string", multiple: true, default: [] },
    "allow-ou": { type: "string", multiple: true, default: [] },
    "handshake-timeout": { type: "string", default: DEFAULTS.handshakeTimeout },
    "max-connections": { type: "string" },
    "max-handshakes": { type: "string" },
    "max-handshakes-per-address": { type: "string" },
    "crl-stale": { type: "string", default: DEFAULTS.crlStale },
    "keep-revoked-connections": { type: "boolean", default: false },
    "drain-timeout": { type: "string", default: DEFAULTS.drainTimeout },
    "max-conn-lifetime": { type: "string" },
    policy: { type: "string" },
    "policy-mode": { type: "string", default: DEFAULTS.policyMode },
    "audit-log": { type: "string" },
    "max-body": { type: "string", default: DEFAULTS.maxBody },
    // s8-owner: the one flag of the owner record (README "Owner isolation").
    "state-dir": { type: "string" },
    metrics: { type: "string" },
    "unsafe-metrics": { type: "boolean", default: false },
    "require-target": { type: "boolean", default: false },
    config: { type: "string" },
    "print-config": { type: "boolean", default: false },
  });
  void positionals;
  if (values.help) return { kind: "help", topic: "serve" };
  const listen = usage(() => parseAddress(values.listen as string, { defaultPort: 2376 }));
  if (listen.transport !== "tcp") {
    throw new UsageError(`Invalid --listen "${values.listen}": serve listens on a TCP address`);
  }
  const source = certSource(values);
  const defaultCerts = !source.certs && !source.cert && !source.key && !source.ca;
  if (defaultCerts) source.certs = DEFAULTS.serveCerts;
  return {
    kind: "serve",
    listen,
    target: usage(() => parseAddress(values.target as string)),
    source,
    defaultCerts,
    crl: values.crl as string[],
    crlUrls: (values["crl-url"] as string[]).map(crlUrl),
    crlRefreshMs: usage(() => parseDuration(values["crl-refresh"] as string)),
    crlCache: crlCache(values, source),
    allowCn: values["allow-cn"] as string[],
    allowSan: values["allow-san"] as string[],
    allowOu: values["allow-ou"] as string[],
    handshakeTimeoutMs: usage(() => parseDuration(values["handshake-timeout"] as string)),
    maxConnections:
      positiveInt(values["max-connections"] as string | undefined, "--max-connections") ??
        DEFAULTS.maxConnections,
    maxHandshakes:
      positiveInt(values["max-handshakes"] as string | undefined, "--max-handshakes") ??
        DEFAULTS.maxHandshakes,
    maxHandshakesPerAddress: positiveInt(
      values["max-handshakes-per-address"] as string | undefined,
      "--max-handshakes-per-address",
    ) ?? DEFAULTS.maxHandshakesPerAddress,
    crlStale: crlStale(values["crl-stale"] as string),
    keepRevokedConnections: values["keep-revoked-connections"] as boolean,
    drainTimeoutMs: usage(() => parseDuration(values["drain-timeout"] as string)),
    maxConnLifetimeMs: values["max-conn-lifetime"] === undefined
      ? undefined
      : usage(() => parseDuration(values["max-conn-lifetime"] as string)),
    insecureKeyPerms: values["insecure-key-perms"] as boolean,
    logLevel: logLevel(values["log-level"] as string),
    policy: values.policy as string | undefined,
    policyMode: oneOf(values["policy-mode"] as string, "--policy-mode", ["enforce", "audit"]),
    auditLog: values["audit-log"] as string | undefined,
    maxBodyBytes: usage(() => parseSize(values["max-body"] as string, "--max-body")),
    // s8-owner: the flag, else systemd's StateDirectory= (the first of a list), else the default.
    stateDir: (values["state-dir"] as string | undefined) ??
      (env.STATE_DIRECTORY?.split(":")[0] || DEFAULTS.stateDir),
    logFormat: logFormat(values["log-format"] as string),
    metrics: values.metrics === undefined ? undefined : metricsAddress(
      values.metrics as string,
      values["unsafe-metrics"] as boolean,
    ),
    requireTarget: values["require-target"] as boolean,
    configFile,
    printConfig: values["print-config"] as boolean,
    settings: settingsOf(values, sources),
    reparse: () => {
      const again = parseServe(args, env, readText);
      if (again.kind !== "serve") throw new UsageError("--help in a reparse");
      return again;
    },
  };
}

/** Every setting with its value and where it came from (for `--print-config`). */
function settingsOf(
  values: Record<string, unknown>,
  sources: Record<string, SettingSource>,
): Setting[] {
  return Object.keys(sources).sort().map((name) => ({
    name,
    value: values[name] as Setting["value"],
    source: sources[name],
  }));
}

/**
 * Parse `args` with `options` layered over the environment and the `--config` file (see
 * `config/layered.ts`); one {@linkcode UsageError} for any mistake in any layer.
 */
function layered(
  args: string[],
  env: Record<string, string | undefined>,
  readText: (path: string) => string,
  verb: "serve" | "connect",
  options: NonNullable<ParseArgsConfig["options"]>,
) {
  // The config file is found first: its settings are the lowest layer of the others.
  const i = args.findIndex((a) => a === "--config" || a.startsWith("--config="));
  const configFile = i === -1
    ? env[envName("config")]
    : args[i].startsWith("--config=")
    ? args[i].slice("--config=".length)
    : args[i + 1];
  let file: Record<string, unknown> | undefined;
  if (configFile !== undefined) {
    let text: string;
    try {
      text = readText(configFile);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      throw new UsageError(`Cannot read config "${configFile}": ${code}`);
    }
    file = usage(() => parseConfigText(text, configFile, verb));
  }
  try {
    return {
      ...layeredParse(args, options, false, { env, file, fileName: configFile, closest }),
      configFile,
    };
  } catch (err) {
    if (err instanceof TypeError && /^(Config|Invalid DOCKGATE_)/.test(err.message)) {
      throw new UsageError(err.message);
    }
    const msg = (err as Error).message.split("\n")[0].split(". ")[0].replace(/\.$/, "");
    const unknown = /^Unknown option '(--[^']+)'/.exec(msg);
    const near = unknown && closest(unknown[1].slice(2).split("=")[0], Object.keys(options));
    throw new UsageError(near ? `${msg} (did you mean --${near}?)` : msg);
  }
}

/** `--metrics ADDR`: a TCP address, on loopback unless `--unsafe-metrics`. */
function metricsAddress(text: string, unsafe: boolean): TcpAddress {
  const a = usage(() => parseAddress(text, { defaultPort: 9323 }));
  if (a.transport !== "tcp") {
    throw new UsageError(
      `Invalid --metrics "${text}": expected a TCP address like tcp://127.0.0.1:9323`,
    );
  }
  if (!unsafe && !isLoopbackHost(a.host)) {
    throw new UsageError(
      `Invalid --metrics "${text}": not a loopback address (metrics name every identity; add --unsafe-metrics to serve them off loopback)`,
    );
  }
  return a;
}

function logFormat(text: string): "text" | "json" {
  if (text === "text" || text === "json") return text;
  throw new UsageError(`Invalid --log-format "${text}": expected text or json`);
}

/**
 * A byte size: `1048576`, `512KiB`, `1MiB` (also `K`/`KB`/`M`/`MB`, all binary).
 *
 * @example
 * ```ts
 * import { parseSize } from "./args.ts";
 * if (parseSize("1MiB", "--max-body") !== 1048576 || parseSize("512k", "--max-body") !== 524288) throw new Error();
 * ```
 */
export function parseSize(text: string, flag: string): number {
  const m = /^([0-9]+)\s*(|b|k|kb|kib|m|mb|mib)$/i.exec(text.trim());
  const n = m ? Number(m[1]) * ({ k: 1024, m: 1024 * 1024 }[m[2][0]?.toLowerCase()] ?? 1) : NaN;
  if (!(n >= 1) || !Number.isSafeInteger(n)) {
    throw new RangeError(`Invalid ${flag} "${text}": expected a size like 1048576, 512KiB or 1MiB`);
  }
  return n;
}

function oneOf<T extends string>(value: string, flag: string, allowed: readonly T[]): T {
  if (!allowed.includes(value as T)) {
    throw new UsageError(`Invalid ${flag} "${value}" (expected ${allowed.join(" or ")})`);
  }
  return value as T;
}

function parseDoctor(args: string[]): DoctorCommand | HelpCommand {
  const { values } = parse(args, {
    pki: { type: "string" },
    certs: { type: "string" },
    target: { type: "string" },
    listen: { type: "string" },
    server: { type: "string" },
    "client-certs": { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  }, false);
  if (values.help) return { kind: "help", topic: "doctor" };
  const none = ["pki", "certs", "target", "listen", "server"].every((k) => values[k] === undefined);
  const pki = (values.pki as string | undefined) ?? (none ? DEFAULTS.pkiDir : undefined);
  const targetText = (values.target as string | undefined) ??
    (none ? DEFAULTS.serveTarget : undefined);
  let server: { host: string; port: number } | undefined;
  if (values.server !== undefined) {
    const m = /^(\[[0-9a-fA-F:.]+\]|[^:\s]+):([0-9]{1,5})$/.exec(values.server as string);
    if (!m || Number(m[2]) > 65535) {
      throw new UsageError(`Invalid --server "${values.server}": expected HOST:PORT`);
    }
    server = { host: m[1].replace(/^\[|\]$/g, ""), port: Number(m[2]) };
  }
  let listen: TcpAddress | undefined;
  if (values.listen !== undefined) {
    const a = usage(() => parseAddress(values.listen as string, { defaultPort: 2376 }));
    if (a.transport !== "tcp") {
      throw new UsageError(`Invalid --listen "${values.listen}": expected a TCP address`);
    }
    listen = a;
  }
  return {
    kind: "doctor",
    pki,
    certs: values.certs as string | undefined,
    target: targetText === undefined ? undefined : usage(() => parseAddress(targetText)),
    listen,
    server,
    clientBundle: server
      ? (values["client-certs"] as string | undefined) ??
        `${pki ?? DEFAULTS.pkiDir}/clients/default`
      : undefined,
  };
}

function parseInspect(args: string[]): InspectCommand | HelpCommand {
  const { values, positionals } = parse(args, {
    json: { type: "boolean", default: false },
    "fail-within": { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  }, true);
  if (values.help) return { kind: "help", topic: "inspect" };
  const within = values["fail-within"] as string | undefined;
  if (within !== undefined && !/^[0-9]+$/.test(within)) {
    throw new UsageError(`Invalid --fail-within "${within}": expected a number of days`);
  }
  return {
    kind: "inspect",
    paths: positionals.length ? positionals : [DEFAULTS.pkiDir],
    json: values.json as boolean,
    failWithinDays: within === undefined ? undefined : Number(within),
  };
}

function parseEnv(args: string[]): EnvCommand | HelpCommand {
  const { values, positionals } = parse(args, {
    dir: { type: "string", default: DEFAULTS.pkiDir },
    host: { type: "string", multiple: true, default: [] },
    "hosts-file": { type: "string" },
    context: { type: "boolean", default: false },
    apply: { type: "boolean", default: false },
    bundle: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  }, true);
  if (values.help) return { kind: "help", topic: "env" };
  if (positionals.length !== 1) {
    throw new UsageError(`"env" needs one client NAME (got ${positionals.length})`);
  }
  const fleet = (values.host as string[]).length > 1 || values["hosts-file"] !== undefined;
  if (values.apply && !values.context && !fleet) {
    throw new UsageError(`--apply goes with --context (or several --host)`);
  }
  if (
    values.bundle !== undefined &&
    (values.context || !/\.(tar\.gz|tgz)$/.test(values.bundle as string))
  ) {
    throw new UsageError(`--bundle takes a FILE.tar.gz (and not --context)`);
  }
  const given = [
    ...values.host as string[],
    ...hostsFile(values["hosts-file"] as string | undefined),
  ];
  const hosts = (given.length ? given : [`${hostname()}:2376`]).map(hostPort);
  if (hosts.length > 1 && values.bundle !== undefined) {
    throw new UsageError(`--bundle packs one bundle: give it without --host`);
  }
  return {
    kind: "env",
    name: positionals[0],
    dir: values.dir as string,
    host: hosts[0],
    hosts,
    context: values.context as boolean,
    apply: values.apply as boolean,
    bundle: values.bundle as string | undefined,
  };
}

/** `HOST[:PORT]` as `HOST:PORT` (Docker's TLS port 2376 by default). */
function hostPort(text: string): string {
  const withPort = /^\[[^\]]*\]:[0-9]+$/.test(text) || /^[^:[\]]+:[0-9]+$/.test(text)
    ? text
    : `${text}:2376`;
  if (!/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$/.test(withPort)) {
    throw new UsageError(
      `Invalid --host "${text}": expected HOST[:PORT] (e.g. gate.example.com:2376)`,
    );
  }
  return withPort;
}

/** The hosts of a hosts file: one `HOST[:PORT]` per line; blank lines and `#` comments skipped. */
function hostsFile(path: string | undefined): string[] {
  if (path === undefined) return [];
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new UsageError(`Cannot read hosts file "${path}": ${(err as Error).message}`);
  }
  const hosts = text.split("\n").map((l) => l.replace(/#.*/, "").trim()).filter((l) => l !== "");
  if (hosts.length === 0) throw new UsageError(`Hosts file "${path}" lists no host`);
  return hosts;
}

function parsePolicy(args: string[]): PolicyCheckCommand | HelpCommand {
  const [action, ...rest] = args;
  if (action === undefined || action === "--help" || action === "-h") {
    return { kind: "help", topic: "policy" };
  }
  if (action !== "check") {
    throw new UsageError(`Unknown policy action "${action}" (expected check)`);
  }
  const { values, positionals } = parse(rest, {
    identity: { type: "string" },
    ou: { type: "string", multiple: true, default: [] },
    san: { type: "string", multiple: true, default: [] },
    body: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  }, true);
  if (values.help) return { kind: "help", topic: "policy" };
  if (positionals.length !== 3) {
    throw new UsageError(`"policy check" needs FILE METHOD PATH (got ${positionals.length} of 3)`);
  }
  if (!values.identity) throw new UsageError(`"policy check" needs --identity CN`);
  const [file, method, path] = positionals;
  if (!/^[A-Z]+$/.test(method)) throw new UsageError(`Invalid METHOD "${method}" (e.g. GET, POST)`);
  if (!path.startsWith("/")) throw new UsageError(`Invalid PATH "${path}" (must start with /)`);
  return {
    kind: "policy-check",
    file,
    identity: values.identity as string,
    ous: values.ou as string[],
    sans: values.san as string[],
    method,
    path,
    body: values.body as string | undefined,
  };
}

/**
 * The default local socket for `connect`: `$XDG_RUNTIME_DIR/dockgate.sock` when that
 * per-user directory exists, else `/tmp/dockgate-$UID.sock`.
 *
 * @example
 * ```ts
 * import { defaultConnectListen } from "./args.ts";
 * if (defaultConnectListen({ XDG_RUNTIME_DIR: "/run/user/7" }, 7) !== "unix:///run/user/7/dockgate.sock") throw new Error();
 * ```
 */
export function defaultConnectListen(env: Record<string, string | undefined>, uid: number): string {
  if (env.XDG_RUNTIME_DIR) return `unix://${env.XDG_RUNTIME_DIR.replace(/\/$/, "")}/dockgate.sock`;
  return `unix:///tmp/dockgate-${uid}.sock`;
}

function parseConnect(
  args: string[],
  env: Record<string, string | undefined>,
  readText: (path: string) => string,
): ConnectCommand | HelpCommand {
  const { values } = layered(args, env, readText, "connect", {
    ...COMMON_TLS,
    server: { type: "string" },
    listen: { type: "string" },
    "server-name": { type: "string" },
    "unsafe-listen": { type: "boolean", default: false },
    "drain-timeout": { type: "string", default: DEFAULTS.connectDrainTimeout },
    config: { type: "string" },
  });
  if (values.help) return { kind: "help", topic: "connect" };
  if (!values.server) throw new UsageError(`"connect" needs --server HOST:PORT`);
  const server = usage(() => parseAddress(values.server as string, { defaultPort: 2376 }));
  if (server.transport !== "tcp") {
    throw new UsageError(`Invalid --server "${values.server}": expected HOST:PORT`);
  }
  const uid = typeof process !== "undefined" && process.getuid ? process.getuid() : 0;
  const listenText = (values.listen as string | undefined) ?? defaultConnectListen(env, uid);
  const source = certSource(values);
  if (!source.certs) {
    // Like the Docker CLI: $DOCKER_CERT_PATH, then ~/.docker.
    source.certs = env.DOCKER_CERT_PATH || (env.HOME ? `${env.HOME}/.docker` : ".docker");
  }
  return {
    kind: "connect",
    server,
    listen: usage(() => parseAddress(listenText)),
    source,
    serverName: values["server-name"] as string | undefined,
    unsafeListen: values["unsafe-listen"] as boolean,
    insecureKeyPerms: values["insecure-key-perms"] as boolean,
    drainTimeoutMs: usage(() => parseDuration(values["drain-timeout"] as string)),
    logLevel: logLevel(values["log-level"] as string),
    logFormat: logFormat(values["log-format"] as string),
  };
}
