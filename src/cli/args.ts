/**
 * Command-line parsing: argv in, a typed {@linkcode Command} out. The flags of every verb are
 * the tables of `flags.ts` (read through `flag_values.ts`); this file turns each verb's values
 * into its command and checks how they combine. Pure (the environment is passed in), so it is
 * unit-tested without a subprocess; `cli.ts` only dispatches on it.
 *
 * @module
 */

import { join } from "node:path";
import { clientsDir } from "../ca/layout.ts";
import process from "node:process";
import { hostname } from "node:os";
import { readFileSync } from "node:fs";
import type { SettingSource } from "../config/layered.ts";
import { type Address, isLoopbackHost, type TcpAddress } from "../net/address.ts";
import { DEFAULTS } from "../config/defaults.ts";
import { type KeyType, parseKeyType } from "../ca/issue.ts";
import { parseJoinToken } from "../pki/join_token.ts";
import {
  defaultText,
  flagsFor,
  type FlagType,
  SHELLS,
  verbOf,
  VERBS,
  type VerbSpec,
} from "./flags.ts";
import {
  asUsage,
  closest,
  flagAddress,
  FlagValues,
  parseLayeredArgs,
  parseSize,
  parseVerbArgs,
  type RawValues,
  UsageError,
} from "./flag_values.ts";

export { closest, parseSize, UsageError };

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
    days: number;
    caDays: number;
    sans: string[];
    force: boolean;
    /** With `force`: replace the CA too. */
    newCa?: boolean;
  }
  | {
    kind: "keygen";
    action: "server";
    dir: string;
    keyType: KeyType;
    days: number;
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
    days: number;
    name: string;
    force: boolean;
  }
  | {
    kind: "keygen";
    action: "renew";
    dir: string;
    /** `server` or a client name. */
    name: string;
    days: number;
    newKey: boolean;
    revokeOld: boolean;
    /** With `server`: the fleet host `DIR/servers/HOST/`. */
    host?: string;
  }
  | {
    kind: "keygen";
    action: "client";
    dir: string;
    keyType: KeyType;
    days: number;
    name: string;
    ous: string[];
    force: boolean;
    revokeOld: boolean;
    /** Issue from this intermediate. */
    issuer?: string;
  }
  | {
    kind: "keygen";
    action: "token";
    dir: string;
    name: string;
    role?: string;
    ttlMs: number;
    certTtlMs: number;
    longLived: boolean;
  }
  | { kind: "keygen"; action: "revoke"; dir: string; subject: string }
  | { kind: "keygen"; action: "crl"; dir: string }
  | { kind: "keygen"; action: "rotate-ca"; dir: string; keyType: KeyType; caDays: number }
  | { kind: "keygen"; action: "retire-ca"; dir: string; force: boolean };

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
  /** `--enroll`: the enrolment port, with the intermediate that signs (`--enroll-issuer`). */
  enroll?: { listen: TcpAddress; issuer: string };
  /** `--record-sessions`: where recorded sessions are written (none: not recorded). */
  recordSessions?: string;
  /** `--record-max-session`, bytes. */
  recordMaxSessionBytes: number;
  /** `--record-max-total`, bytes. */
  recordMaxTotalBytes: number;
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

/** `dockgate policy learn AUDIT_LOG [--identity CN]... [--against FILE]` */
export interface PolicyLearnCommand {
  /** Discriminant. */
  kind: "policy-learn";
  /** The audit log. */
  log: string;
  /** The identities to learn (all when empty). */
  identities: string[];
  /** The policy file to compare with. */
  against?: string;
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
  /** Renew the enrolled bundle in-process (`--certs DIR` with `DIR/enroll.json`). */
  renew: boolean;
  /** Accept group/other-readable keys. */
  insecureKeyPerms: boolean;
  /** Milliseconds. */
  drainTimeoutMs: number;
  /** Log verbosity. */
  logLevel: "debug" | "info" | "warn" | "error";
  /** Log line format. */
  logFormat: "text" | "json";
  /** The `--config` file, if any (trust-checked like serve's). */
  configFile?: string;
  /** Print the settings and their sources, and exit. */
  printConfig: boolean;
  /** Every setting, its value and where it came from. */
  settings: Setting[];
}

/** `dockgate help [TOPIC]`, or `-h` on any command. */
export interface HelpCommand {
  /** Discriminant. */
  kind: "help";
  /** Command to describe. */
  topic?: string;
}

/** A shell `dockgate completion` writes for. */
export type Shell = (typeof SHELLS)[number];

/** One setting of `serve`/`connect`, as `--print-config` shows it. */
export interface Setting {
  /** The flag's name (without `--`). */
  name: string;
  /** Its value. */
  value: string | boolean | string[] | undefined;
  /** Where the value came from. */
  source: SettingSource;
  /** What leaving it out means, when that is not a value (`off`, `from --certs`). */
  defaultText?: string;
  /** Its type in the flag table (a duration's bare number is said to be seconds). */
  type: FlagType;
}

/** Everything the CLI can be asked to do. */
export type Command =
  | HelpCommand
  | { kind: "version" }
  | KeygenCommand
  | ServeCommand
  | ConnectCommand
  | PolicyCheckCommand
  | PolicyLearnCommand
  | EnvCommand
  | UseCommand
  | InspectCommand
  | { kind: "completion"; shell: Shell }
  | DoctorCommand
  | JoinCommand
  | RenewCommand;

/** `dockgate join HOST:PORT TOKEN [--dir DIR] [--server-name N] [--force]`. */
export interface JoinCommand {
  /** Discriminant. */
  kind: "join";
  /** The gate's enrolment port. */
  host: string;
  /** Its port. */
  port: number;
  /** The token. */
  token: string;
  /** The bundle directory. */
  dir: string;
  /** The name the gate's certificate must carry. */
  serverName?: string;
  /** Replace an existing bundle. */
  force: boolean;
}

/** `dockgate renew [--dir DIR] [--server HOST:PORT] [--daemon] [--exec CMD]`. */
export interface RenewCommand {
  /** Discriminant. */
  kind: "renew";
  /** The bundle directory. */
  dir: string;
  /** The enrolment port, when not from `DIR/enroll.json`. */
  server?: { host: string; port: number };
  /** Keep renewing. */
  daemon: boolean;
  /** Run after each renewal. */
  exec?: string;
}

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
  /** With `bundle`: the `--host` given, recorded in the archive (never a guessed default). */
  bundleHost?: string;
}

/** How `use` sets up the Docker CLI after installing the bundle. */
export type UseMode = "context" | "env" | "connect";

/** `dockgate use FILE.tar.gz [--context|--env|--connect] [--dir DIR] [--host H] [--force]`. */
export interface UseCommand {
  /** Discriminant. */
  kind: "use";
  /** The bundle archive. */
  archive: string;
  /** Create a Docker context, print DOCKER_* lines, or print the connect command. */
  mode: UseMode;
  /** Where the files go (default: `dockerConfig/dockgate/NAME`). */
  dir?: string;
  /** The Docker CLI's config directory (`$DOCKER_CONFIG`, else `~/.docker`). */
  dockerConfig: string;
  /** The gate's `HOST:PORT`, overriding the one recorded in the archive. */
  host?: string;
  /** Replace an installed bundle and an existing context of the same name. */
  force: boolean;
}

/** The defaults table (`src/config/defaults.ts`), re-exported for the CLI's help text. */
export { DEFAULTS };

/** The verbs a user may type, for errors and "did you mean". */
const VERB_NAMES = VERBS.map((v) => v.name);

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
      return parseHelp(rest);
    case "version":
    case "--version":
    case "-V":
      return rest[0] === "--help" || rest[0] === "-h"
        ? { kind: "help", topic: "version" }
        : { kind: "version" };
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
    case "use":
      return parseUse(rest, env);
    case "inspect":
      return parseInspect(rest);
    case "doctor":
      return parseDoctor(rest);
    case "completion":
      return parseCompletion(rest);
    case "join":
      return parseJoin(rest, env);
    case "renew":
      return parseRenew(rest, env);
    default:
      throw unknownVerb(first);
  }
}

/** `Unknown command "x"`, with the nearest verb and every verb. */
function unknownVerb(word: string): UsageError {
  const near = closest(word.replace(/^-+/, ""), VERB_NAMES);
  return new UsageError(
    `Unknown command "${word}"${near ? ` (did you mean ${near}?)` : ""}; the commands are ${
      VERB_NAMES.join(", ")
    }`,
  );
}

function parseHelp(rest: string[]): HelpCommand {
  const topic = rest[0] === "--help" || rest[0] === "-h" ? "help" : rest[0];
  if (topic !== undefined && !verbOf(topic)) {
    const near = closest(topic, VERB_NAMES);
    throw new UsageError(
      `No help for "${topic}"${near ? ` (did you mean ${near}?)` : ""}; topics: ${
        VERB_NAMES.join(", ")
      }`,
    );
  }
  return { kind: "help", topic };
}

function parseCompletion(rest: string[]): Command {
  if (rest[0] === "--help" || rest[0] === "-h") return { kind: "help", topic: "completion" };
  const shell = SHELLS.find((s) => s === rest[0]);
  if (rest.length !== 1 || !shell) {
    throw new UsageError(
      `"completion" takes one shell: ${SHELLS.join(", ")} ` +
        `(e.g. source <(dockgate completion bash))`,
    );
  }
  return { kind: "completion", shell };
}

/** `verb`'s table; every verb parsed here has one. */
function spec(verb: string): VerbSpec {
  return verbOf(verb)!;
}

/** A `--crl-url`: http or https, nothing else (a file belongs in `--crl`). */
function crlUrl(text: string): string {
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {
    // Said below.
  }
  if (!url || (url.protocol !== "http:" && url.protocol !== "https:")) {
    throw new UsageError(
      `Invalid --crl-url "${text}": expected an http:// or https:// URL (a file goes in --crl)`,
    );
  }
  return url.href;
}

/** Where fetched CRLs are kept: `--crl-cache`, else `crl-cache/` in the `--certs` directory. */
function crlCache(v: FlagValues, source: CertSource): string | undefined {
  const given = v.str("crl-cache");
  if (given !== undefined) return given;
  if (v.list("crl-url").length === 0) return undefined;
  if (source.certs) return join(source.certs, "crl-cache");
  throw new UsageError(
    "--crl-url needs a place for the last good copy: give --crl-cache DIR (or --certs DIR)",
  );
}

/** The keygen action and its NAME from the positionals; unknown actions suggest the nearest. */
function keygenAction(positionals: string[]): { action: string; name?: string } {
  const [action = "init", name] = positionals;
  const actions = spec("keygen").actions!.map((a) => a.name);
  if (!actions.includes(action)) {
    const near = closest(action, actions);
    throw new UsageError(
      `Unknown keygen action "${action}"${near ? ` (did you mean ${near}?)` : ""} (expected ${
        actions.filter((a) => a !== "init").join(", ").replace(/, (\w+)$/, " or $1")
      })`,
    );
  }
  const arity = spec("keygen").actions!.find((a) => a.name === action)!.args === "" ? 1 : 2;
  if (positionals.length > arity) {
    throw new UsageError(`Unexpected argument "${positionals[arity]}" for "keygen ${action}"`);
  }
  return { action, name };
}

/** Refuse a flag given to a keygen action its table row does not list. */
function keygenFlagsFit(verb: VerbSpec, action: string, given: Set<string>): void {
  const fits = new Set(flagsFor(verb, action).map((f) => f.name));
  for (const f of verb.flags) {
    if (given.has(f.name) && !fits.has(f.name)) {
      const where = f.actions!.map((a) => a === "init" ? "keygen" : `keygen ${a}`).join(", ");
      throw new UsageError(
        `--${f.name} does not apply to "keygen ${action}" (it goes with ${where})`,
      );
    }
  }
}

function parseKeygen(args: string[]): KeygenCommand | HelpCommand {
  const verb = spec("keygen");
  const { values, positionals, given } = parseVerbArgs(verb, args, true);
  if (values.help) return { kind: "help", topic: "keygen" };
  const { action, name } = keygenAction(positionals);
  keygenFlagsFit(verb, action, given);
  const v = new FlagValues(verb, values);
  const keyType: KeyType = asUsage(() => parseKeyType(v.str("key-type")!));
  const days = v.int("days") ??
    (action === "intermediate" ? DEFAULTS.intermediateDays : DEFAULTS.leafDays);
  const [dir, sans, force] = [v.str("dir")!, v.list("san"), v.bool("force")];
  const issuer = v.str("issuer");
  const from = issuer === undefined ? {} : { issuer };
  const needs = (what: string) => {
    if (!name) throw new UsageError(`"keygen ${action}" needs ${what}`);
    return name;
  };
  switch (action) {
    case "renew":
      return renewCommand(v, dir, needs(`a client NAME or "server"`), days);
    case "init":
      return {
        kind: "keygen",
        action,
        dir,
        keyType,
        days,
        caDays: v.int("ca-days")!,
        sans,
        force,
        ...(v.bool("new-ca") ? { newCa: true } : {}),
      };
    case "server": {
      const host = v.str("name");
      return {
        kind: "keygen",
        action,
        dir,
        keyType,
        days,
        sans,
        force,
        ...(host === undefined ? {} : { name: host }),
        ...from,
      };
    }
    case "intermediate":
      return { kind: "keygen", action, dir, keyType, days, name: needs("a NAME"), force };
    case "client":
      return clientCommand(v, { dir, keyType, days, name: needs("a NAME"), ...from });
    case "revoke":
      return {
        kind: "keygen",
        action,
        dir,
        subject: needs("a client NAME or a certificate SERIAL"),
      };
    case "rotate-ca":
      return { kind: "keygen", action, dir, keyType, caDays: v.int("ca-days")! };
    case "retire-ca":
      return { kind: "keygen", action, dir, force };
    case "token":
      return tokenCommand(v, dir, needs("the client NAME it enrols"));
    default:
      return { kind: "keygen", action: "crl", dir };
  }
}

/** `keygen renew NAME|server [--name HOST]`. */
function renewCommand(v: FlagValues, dir: string, subject: string, days: number): KeygenCommand {
  const host = v.str("name");
  if (host !== undefined && subject !== "server") {
    throw new UsageError(`--name HOST goes with "keygen renew server" (a fleet host's bundle)`);
  }
  return {
    kind: "keygen",
    action: "renew",
    dir,
    name: subject,
    days,
    newKey: v.bool("new-key"),
    revokeOld: v.bool("revoke-old"),
    ...(host === undefined ? {} : { host }),
  };
}

/** `keygen client NAME`: `--revoke-old` only with `--force` (there is no old one otherwise). */
function clientCommand(
  v: FlagValues,
  base: { dir: string; keyType: KeyType; days: number; name: string; issuer?: string },
): KeygenCommand {
  const [force, revokeOld] = [v.bool("force"), v.bool("revoke-old")];
  if (revokeOld && !force) throw new UsageError(`--revoke-old goes with --force`);
  return { kind: "keygen", action: "client", ...base, ous: v.list("ou"), force, revokeOld };
}

/** `keygen token NAME`: the lifetimes, checked here so that a mistake is a usage line. */
function tokenCommand(v: FlagValues, dir: string, name: string): KeygenCommand {
  const certTtlMs = v.ms("cert-ttl")!;
  const longLived = v.bool("long-lived");
  const hour = 3_600_000;
  if (certTtlMs > (longLived ? 8760 : 168) * hour || certTtlMs < 30_000) {
    throw new UsageError(
      `Invalid --cert-ttl "${v.str("cert-ttl")}": from 30s to 168h` +
        (longLived ? " (8760h with --long-lived)" : " (more with --long-lived)"),
    );
  }
  const ttlMs = v.ms("ttl")!;
  if (ttlMs > 168 * hour || ttlMs < 1000) {
    throw new UsageError(`Invalid --ttl "${v.str("ttl")}": from 1s to 168h`);
  }
  const role = v.str("role");
  return {
    kind: "keygen",
    action: "token",
    dir,
    name,
    ...(role === undefined ? {} : { role }),
    ttlMs,
    certTtlMs,
    longLived,
  };
}

function certSource(v: FlagValues): CertSource {
  return { certs: v.str("certs"), cert: v.str("cert"), key: v.str("key"), ca: v.str("ca") };
}

/** An address that must be TCP (`--listen` of serve, `--server` of connect). */
function tcpAddress(v: FlagValues, name: string, why: string): TcpAddress {
  const a = v.address(name, DEFAULTS.dockerTlsPort)!;
  if (a.transport !== "tcp") throw new UsageError(`Invalid --${name} "${v.str(name)}": ${why}`);
  return a;
}

function parseServe(
  args: string[],
  env: Record<string, string | undefined>,
  readText: (path: string) => string,
): ServeCommand | HelpCommand {
  const verb = spec("serve");
  const { values, sources, configFile } = parseLayeredArgs(verb, args, env, readText);
  if (values.help) return { kind: "help", topic: "serve" };
  const v = new FlagValues(verb, values);
  const listen = tcpAddress(v, "listen", "serve listens on a TCP address, as in 0.0.0.0:2376");
  const source = certSource(v);
  const defaultCerts = !source.certs && !source.cert && !source.key && !source.ca;
  if (defaultCerts) source.certs = DEFAULTS.serveCerts;
  return {
    kind: "serve",
    listen,
    target: v.address("target")!,
    source,
    defaultCerts,
    crl: v.list("crl"),
    crlUrls: v.list("crl-url").map(crlUrl),
    crlRefreshMs: v.ms("crl-refresh")!,
    crlCache: crlCache(v, source),
    allowCn: v.list("allow-cn"),
    allowSan: v.list("allow-san"),
    allowOu: v.list("allow-ou"),
    handshakeTimeoutMs: v.ms("handshake-timeout")!,
    maxConnections: v.int("max-connections")!,
    maxHandshakes: v.int("max-handshakes")!,
    maxHandshakesPerAddress: v.int("max-handshakes-per-address")!,
    crlStale: v.choice("crl-stale"),
    keepRevokedConnections: v.bool("keep-revoked-connections"),
    drainTimeoutMs: v.ms("drain-timeout")!,
    maxConnLifetimeMs: v.ms("max-conn-lifetime"),
    insecureKeyPerms: v.bool("insecure-key-perms"),
    logLevel: v.choice("log-level"),
    policy: v.str("policy"),
    policyMode: v.choice("policy-mode"),
    auditLog: v.str("audit-log"),
    maxBodyBytes: v.size("max-body")!,
    recordSessions: v.str("record-sessions"),
    recordMaxSessionBytes: v.size("record-max-session")!,
    recordMaxTotalBytes: v.size("record-max-total")!,
    // s8-owner: the flag, else systemd's StateDirectory= (the first of a list), else the default.
    stateDir: v.str("state-dir") ?? (env.STATE_DIRECTORY?.split(":")[0] || DEFAULTS.stateDir),
    logFormat: v.choice("log-format"),
    metrics: metricsAddress(v),
    requireTarget: v.bool("require-target"),
    ...enrollOf(v, source),
    configFile,
    printConfig: v.bool("print-config"),
    settings: settingsOf(verb, values, sources),
    reparse: () => {
      const again = parseServe(args, env, readText);
      if (again.kind !== "serve") throw new UsageError("--help in a reparse");
      return again;
    },
  };
}

/** `--enroll ADDR --enroll-issuer INT`: both or neither, and a PKI bundle to find INT in. */
function enrollOf(v: FlagValues, source: CertSource): Pick<ServeCommand, "enroll"> {
  const issuer = v.str("enroll-issuer");
  if (v.str("enroll") === undefined) {
    if (issuer !== undefined) throw new UsageError("--enroll-issuer goes with --enroll ADDR");
    return {};
  }
  const listen = tcpAddress(v, "enroll", "expected a TCP address, as in 0.0.0.0:2377");
  if (issuer === undefined) {
    throw new UsageError(
      "--enroll needs --enroll-issuer INT (make one with dockgate keygen intermediate INT)",
    );
  }
  if (!source.certs) {
    throw new UsageError("--enroll needs --certs DIR (a bundle of keygen's PKI, which holds INT)");
  }
  return { enroll: { listen, issuer } };
}

/** Every setting with its value and where it came from (for `--print-config`). */
function settingsOf(
  verb: VerbSpec,
  values: RawValues,
  sources: Record<string, SettingSource>,
): Setting[] {
  return verb.flags.filter((f) => sources[f.name] !== undefined).map((f) => ({
    name: f.name,
    value: values[f.name],
    source: sources[f.name],
    defaultText: defaultText(f),
    type: f.type,
  })).sort((a, b) => a.name < b.name ? -1 : 1);
}

/** `--metrics ADDR`: a TCP address, on loopback unless `--unsafe-metrics`. */
function metricsAddress(v: FlagValues): TcpAddress | undefined {
  const a = v.address("metrics", DEFAULTS.metricsPort);
  if (a === undefined) return undefined;
  const text = v.str("metrics");
  if (a.transport !== "tcp") {
    throw new UsageError(
      `Invalid --metrics "${text}": expected a TCP address like tcp://127.0.0.1:${DEFAULTS.metricsPort}`,
    );
  }
  if (!v.bool("unsafe-metrics") && !isLoopbackHost(a.host)) {
    throw new UsageError(
      `Invalid --metrics "${text}": not a loopback address (metrics name every identity; add --unsafe-metrics to serve them off loopback)`,
    );
  }
  return a;
}

function parseDoctor(args: string[]): DoctorCommand | HelpCommand {
  const verb = spec("doctor");
  const { values } = parseVerbArgs(verb, args, false);
  if (values.help) return { kind: "help", topic: "doctor" };
  const v = new FlagValues(verb, values);
  const none = ["pki", "certs", "target", "listen", "server"].every((k) => values[k] === undefined);
  const pki = v.str("pki") ?? (none ? DEFAULTS.pkiDir : undefined);
  const targetText = v.str("target") ?? (none ? DEFAULTS.serveTarget : undefined);
  let server: { host: string; port: number } | undefined;
  const serverText = v.str("server");
  if (serverText !== undefined) {
    const m = /^(\[[0-9a-fA-F:.]+\]|[^:\s]+):([0-9]{1,5})$/.exec(serverText);
    if (!m || Number(m[2]) > 65535) {
      throw new UsageError(
        `Invalid --server "${serverText}": expected HOST:PORT (e.g. gate.example.com:2376)`,
      );
    }
    server = { host: m[1].replace(/^\[|\]$/g, ""), port: Number(m[2]) };
  }
  let listen: TcpAddress | undefined;
  if (v.str("listen") !== undefined) {
    listen = tcpAddress(v, "listen", "expected a TCP address, as in 127.0.0.1:2376");
  }
  return {
    kind: "doctor",
    pki,
    certs: v.str("certs"),
    target: targetText === undefined ? undefined : flagAddress("target", targetText),
    listen,
    server,
    clientBundle: server
      ? v.str("client-certs") ?? clientsDir(pki ?? DEFAULTS.pkiDir, "default")
      : undefined,
  };
}

/** The Docker CLI's certificate directory: `$DOCKER_CERT_PATH`, then `~/.docker`. */
function dockerCertDir(env: Record<string, string | undefined>): string {
  return env.DOCKER_CERT_PATH || (env.HOME ? `${env.HOME}/.docker` : ".docker");
}

/** `HOST:PORT` (IPv6 in brackets), the port required. */
function enrollPort(text: string, what: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$/.exec(text);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) {
    throw new UsageError(
      `Invalid ${what} "${text}": expected HOST:PORT of the gate's --enroll (e.g. gate.example.com:2377)`,
    );
  }
  return { host: m[1].replace(/^\[|\]$/g, ""), port: Number(m[2]) };
}

function parseJoin(
  args: string[],
  env: Record<string, string | undefined>,
): JoinCommand | HelpCommand {
  const verb = spec("join");
  const { values, positionals } = parseVerbArgs(verb, args, true);
  if (values.help) return { kind: "help", topic: "join" };
  const v = new FlagValues(verb, values);
  if (positionals.length !== 2) {
    throw new UsageError(
      `"join" needs HOST:PORT TOKEN (got ${positionals.length} of 2), as in ` +
        `dockgate join gate.example.com:2377 DGTKN-1-…`,
    );
  }
  const place = enrollPort(positionals[0], "address");
  // Read here so that a mistyped token is a usage line, before any key is made.
  asUsage(() => parseJoinToken(positionals[1]));
  return {
    kind: "join",
    ...place,
    token: positionals[1],
    dir: v.str("dir") ?? dockerCertDir(env),
    serverName: v.str("server-name"),
    force: v.bool("force"),
  };
}

function parseRenew(
  args: string[],
  env: Record<string, string | undefined>,
): RenewCommand | HelpCommand {
  const verb = spec("renew");
  const { values } = parseVerbArgs(verb, args, false);
  if (values.help) return { kind: "help", topic: "renew" };
  const v = new FlagValues(verb, values);
  const server = v.str("server");
  const exec = v.str("exec");
  if (exec !== undefined && !v.bool("daemon")) throw new UsageError("--exec goes with --daemon");
  return {
    kind: "renew",
    dir: v.str("dir") ?? dockerCertDir(env),
    ...(server === undefined ? {} : { server: enrollPort(server, "--server") }),
    daemon: v.bool("daemon"),
    ...(exec === undefined ? {} : { exec }),
  };
}

function parseInspect(args: string[]): InspectCommand | HelpCommand {
  const verb = spec("inspect");
  const { values, positionals } = parseVerbArgs(verb, args, true);
  if (values.help) return { kind: "help", topic: "inspect" };
  const within = values["fail-within"] as string | undefined;
  // 0 is a fair question here ("anything already expired?"), unlike the other day counts.
  if (within !== undefined && !/^[0-9]+$/.test(within)) {
    throw new UsageError(
      `Invalid --fail-within "${within}": expected a number of days (e.g. --fail-within 30)`,
    );
  }
  return {
    kind: "inspect",
    paths: positionals.length ? positionals : [DEFAULTS.pkiDir],
    json: values.json as boolean,
    failWithinDays: within === undefined ? undefined : Number(within),
  };
}

function parseEnv(args: string[]): EnvCommand | HelpCommand {
  const verb = spec("env");
  const { values, positionals } = parseVerbArgs(verb, args, true);
  if (values.help) return { kind: "help", topic: "env" };
  const v = new FlagValues(verb, values);
  if (positionals.length !== 1) {
    throw new UsageError(
      `"env" needs one client NAME (got ${positionals.length}), as in dockgate env alice`,
    );
  }
  const fleet = v.list("host").length > 1 || v.str("hosts-file") !== undefined;
  if (v.bool("apply") && !v.bool("context") && !fleet) {
    throw new UsageError(`--apply goes with --context (or several --host)`);
  }
  const bundle = v.str("bundle");
  if (bundle !== undefined && (v.bool("context") || !/\.(tar\.gz|tgz)$/.test(bundle))) {
    throw new UsageError(`--bundle takes a FILE.tar.gz (and not --context)`);
  }
  const given = [...v.list("host"), ...hostsFile(v.str("hosts-file"))];
  const hosts = (given.length ? given : [`${hostname()}:${DEFAULTS.dockerTlsPort}`]).map(hostPort);
  if (hosts.length > 1 && bundle !== undefined) {
    throw new UsageError(`--bundle packs one bundle: give it without --host`);
  }
  return {
    kind: "env",
    name: positionals[0],
    dir: v.str("dir")!,
    host: hosts[0],
    hosts,
    context: v.bool("context"),
    apply: v.bool("apply"),
    bundle,
    bundleHost: bundle !== undefined && given.length === 1 ? hosts[0] : undefined,
  };
}

function parseUse(
  args: string[],
  env: Record<string, string | undefined>,
): UseCommand | HelpCommand {
  const verb = spec("use");
  const { values, positionals } = parseVerbArgs(verb, args, true);
  if (values.help) return { kind: "help", topic: "use" };
  const v = new FlagValues(verb, values);
  if (positionals.length !== 1) {
    throw new UsageError(
      `"use" needs one bundle archive (got ${positionals.length}), as in dockgate use alice.tar.gz`,
    );
  }
  const modes = (["context", "env", "connect"] as const).filter((m) => v.bool(m));
  if (modes.length > 1) {
    throw new UsageError(`Give one of --context, --env, --connect (got ${modes.length})`);
  }
  const host = v.str("host");
  return {
    kind: "use",
    archive: positionals[0],
    mode: modes[0] ?? "context",
    dir: v.str("dir"),
    // The Docker CLI's own config directory: $DOCKER_CONFIG, else ~/.docker.
    dockerConfig: env.DOCKER_CONFIG || (env.HOME ? `${env.HOME}/.docker` : ".docker"),
    host: host === undefined ? undefined : hostPort(host),
    force: v.bool("force"),
  };
}

/**
 * `HOST[:PORT]` as `HOST:PORT` (Docker's TLS port 2376 by default); a {@linkcode UsageError}
 * naming `--host` otherwise.
 *
 * @example
 * ```ts
 * import { hostPort } from "./args.ts";
 * if (hostPort("gate.lan") !== "gate.lan:2376" || hostPort("[::1]:1") !== "[::1]:1") throw new Error();
 * ```
 */
export function hostPort(text: string): string {
  const withPort = /^\[[^\]]*\]:[0-9]+$/.test(text) || /^[^:[\]]+:[0-9]+$/.test(text)
    ? text
    : `${text}:${DEFAULTS.dockerTlsPort}`;
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
  if (hosts.length === 0) {
    throw new UsageError(`Hosts file "${path}" lists no host: write one HOST[:PORT] per line`);
  }
  return hosts;
}

function parsePolicy(args: string[]): PolicyCheckCommand | PolicyLearnCommand | HelpCommand {
  const [action, ...rest] = args;
  if (action === undefined || action === "--help" || action === "-h") {
    return { kind: "help", topic: "policy" };
  }
  if (action !== "check" && action !== "learn") {
    throw new UsageError(`Unknown policy action "${action}" (expected check or learn)`);
  }
  const verb = spec("policy");
  const { values, positionals, given } = parseVerbArgs(verb, rest, true);
  if (values.help) return { kind: "help", topic: "policy" };
  const v = new FlagValues(verb, values);
  for (const f of verb.flags) {
    const fits = !f.actions || f.actions.includes(action);
    if (given.has(f.name) && !fits) {
      throw new UsageError(`--${f.name} does not apply to "policy ${action}"`);
    }
  }
  if (action === "learn") {
    if (positionals.length !== 1) {
      throw new UsageError(
        `"policy learn" needs AUDIT_LOG (got ${positionals.length} arguments), as in ` +
          `dockgate policy learn audit.log --identity ci`,
      );
    }
    return {
      kind: "policy-learn",
      log: positionals[0],
      identities: v.list("identity"),
      against: v.str("against"),
    };
  }
  if (positionals.length !== 3) {
    throw new UsageError(
      `"policy check" needs FILE METHOD PATH (got ${positionals.length} of 3), as in ` +
        `dockgate policy check policy.yaml --identity ci GET /_ping`,
    );
  }
  const ids = v.list("identity");
  if (ids.length !== 1) throw new UsageError(`"policy check" needs one --identity CN`);
  const identity = ids[0];
  const [file, method, path] = positionals;
  if (!/^[A-Z]+$/.test(method)) throw new UsageError(`Invalid METHOD "${method}" (e.g. GET, POST)`);
  if (!path.startsWith("/")) throw new UsageError(`Invalid PATH "${path}" (must start with /)`);
  return {
    kind: "policy-check",
    file,
    identity,
    ous: v.list("ou"),
    sans: v.list("san"),
    method,
    path,
    body: v.str("body"),
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

/** `connect --renew`: the bundle is one directory (per-file overrides would not be renewed). */
function renewFlag(v: FlagValues, source: CertSource): boolean {
  if (!v.bool("renew")) return false;
  if (source.cert || source.key || source.ca) {
    throw new UsageError("--renew renews a --certs DIR bundle: give it without --cert/--key/--ca");
  }
  return true;
}

function parseConnect(
  args: string[],
  env: Record<string, string | undefined>,
  readText: (path: string) => string,
): ConnectCommand | HelpCommand {
  const verb = spec("connect");
  const { values, sources, configFile } = parseLayeredArgs(verb, args, env, readText);
  if (values.help) return { kind: "help", topic: "connect" };
  const v = new FlagValues(verb, values);
  if (!v.str("server")) {
    throw new UsageError(
      `"connect" needs --server HOST:PORT (e.g. --server gate.example.com:2376)`,
    );
  }
  const server = tcpAddress(v, "server", "expected HOST:PORT (e.g. gate.example.com:2376)");
  const uid = typeof process !== "undefined" && process.getuid ? process.getuid() : 0;
  const listen: Address = v.address("listen") ??
    flagAddress("listen", defaultConnectListen(env, uid));
  const source = certSource(v);
  if (!source.certs) {
    // Like the Docker CLI: $DOCKER_CERT_PATH, then ~/.docker.
    source.certs = env.DOCKER_CERT_PATH || (env.HOME ? `${env.HOME}/.docker` : ".docker");
  }
  return {
    kind: "connect",
    server,
    listen,
    source,
    serverName: v.str("server-name"),
    unsafeListen: v.bool("unsafe-listen"),
    renew: renewFlag(v, source),
    insecureKeyPerms: v.bool("insecure-key-perms"),
    drainTimeoutMs: v.ms("drain-timeout")!,
    logLevel: v.choice("log-level"),
    logFormat: v.choice("log-format"),
    configFile,
    printConfig: v.bool("print-config"),
    settings: settingsOf(verb, values, sources),
  };
}
