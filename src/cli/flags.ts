/**
 * The command line as data: one table of verbs and, per verb, one table of flags (name, type,
 * default, environment variable, help line, whether a running serve applies it at a config
 * reload). The parser's options (`args.ts`), `--help` (`help.ts`), completion for bash, zsh
 * and fish (`completion.ts`), `--print-config`, serve's live-reload list and the README's flags
 * table (`readme_table.ts`) are all derived from here, so they cannot drift apart. Every
 * default comes from `config/defaults.ts`.
 *
 * To add a flag: add its row to the verb's table (and its default to `DEFAULTS`), read it in
 * the verb's parser in `args.ts`, then run `deno task readme:flags`.
 *
 * @example
 * ```ts
 * import { flagOf, verbOf } from "./flags.ts";
 * if (verbOf("serve")?.layered !== true || flagOf("serve", "listen")?.default !== "tcp://0.0.0.0:2376") {
 *   throw new Error();
 * }
 * ```
 *
 * @module
 */

import type { ParseArgsConfig } from "node:util";
import { DEFAULTS } from "../config/defaults.ts";
import { envName } from "../config/layered.ts";

/**
 * What a flag's value is. `bool` takes no value; `duration` is `500ms`, `10s`, `5m`, `2h` (a
 * bare number is seconds); `size` is `1048576`, `512KiB`, `1MiB`; `count` and `days` are
 * whole numbers of at least 1; `choice` is one of `choices`; `address` is `tcp://`/`unix://`
 * or `HOST:PORT`; `path` a file or directory; `string` anything else.
 */
export type FlagType =
  | "bool"
  | "string"
  | "path"
  | "address"
  | "duration"
  | "size"
  | "count"
  | "days"
  | "choice";

/** One flag of one verb. */
export interface FlagSpec {
  /** The name, without `--`. */
  readonly name: string;
  /** What its value is. */
  readonly type: FlagType;
  /** The placeholder in help and usage lines (`ADDR`, `DIR`, `N`). */
  readonly value?: string;
  /** The values a `choice` takes (also completed by the shells). */
  readonly choices?: readonly string[];
  /** Repeatable (a list; comma-separated in an environment variable). */
  readonly multiple?: boolean;
  /** The default, as the command line spells it (from `DEFAULTS`). */
  readonly default?: string | number | boolean;
  /** What leaving the flag out means, when that is not one literal value. */
  readonly defaultText?: string;
  /** The help line (without the default, which help adds). */
  readonly help: string;
  /** serve: a changed `--config` file applies it without a restart. */
  readonly live?: boolean;
  /** Only on the command line (never from an environment variable or the config file). */
  readonly cliOnly?: boolean;
  /** Also from its environment variable, but never from the config file (`--config`). */
  readonly notInFile?: boolean;
  /** The actions of the verb it applies to (default: all). */
  readonly actions?: readonly string[];
  /** A one-letter alias. */
  readonly short?: string;
}

/** One action of a verb (`keygen client`, `policy check`). */
export interface ActionSpec {
  /** The action word (`init` is the verb without one). */
  readonly name: string;
  /** Its positional arguments, as usage shows them. */
  readonly args: string;
  /** What it does (help). */
  readonly about: string;
}

/** One verb: `dockgate NAME …`. */
export interface VerbSpec {
  /** The verb. */
  readonly name: string;
  /** Its positional arguments and key flags, for the overview (`dockgate help`). */
  readonly synopsis: string;
  /** One line: what it is for. */
  readonly summary: string;
  /** Flags also come from `DOCKGATE_*` variables and the `--config` file. */
  readonly layered?: boolean;
  /** The verb's actions, if it has any. */
  readonly actions?: readonly ActionSpec[];
  /** What completion offers for a positional argument. */
  readonly positional?: "actions" | "verbs" | "shells" | "files" | "none";
  /** Prose after the flags in its help. */
  readonly notes?: string;
  /** Example command lines. */
  readonly examples: readonly string[];
  /** Its flags. */
  readonly flags: readonly FlagSpec[];
}

const HELP_FLAG: FlagSpec = {
  name: "help",
  short: "h",
  type: "bool",
  help: "print this help",
  cliOnly: true,
};

const TLS_FILES: readonly FlagSpec[] = [
  {
    name: "cert",
    type: "path",
    value: "F",
    defaultText: "from --certs",
    help: "certificate file (overrides the bundle's)",
  },
  {
    name: "key",
    type: "path",
    value: "F",
    defaultText: "from --certs",
    help: "private key file (overrides the bundle's)",
  },
  {
    name: "ca",
    type: "path",
    value: "F",
    defaultText: "from --certs",
    help: "CA bundle file (overrides the bundle's)",
  },
];

const LOGGING: readonly FlagSpec[] = [
  {
    name: "log-level",
    type: "choice",
    value: "L",
    choices: ["debug", "info", "warn", "error"],
    default: DEFAULTS.logLevel,
    help: "log verbosity",
    live: true,
  },
  {
    name: "log-format",
    type: "choice",
    value: "F",
    choices: ["text", "json"],
    default: DEFAULTS.logFormat,
    help:
      "text (the level coloured on a terminal, never with NO_COLOR) or json (one object per line)",
  },
];

const INSECURE_KEY_PERMS: FlagSpec = {
  name: "insecure-key-perms",
  type: "bool",
  help: "accept a key file readable by group or others, and trust files or directories " +
    "others could write (the --config file too, but only when given as a flag or variable)",
};

const CONFIG: readonly FlagSpec[] = [
  {
    name: "config",
    type: "path",
    value: "FILE",
    defaultText: "none",
    help: "settings from a JSON or YAML file (the flags' names, flat or under serve:/connect:); " +
      "trusted only if nobody else could have written it",
    notInFile: true,
  },
  {
    name: "print-config",
    type: "bool",
    help: "print every setting, its value and where it came from, then exit",
    cliOnly: true,
  },
];

const DURATION = "D";

const SERVE_FLAGS: readonly FlagSpec[] = [
  {
    name: "listen",
    type: "address",
    value: "ADDR",
    default: DEFAULTS.serveListen,
    help: "TCP address to listen on; port 0 = any free port (logged)",
  },
  {
    name: "target",
    type: "address",
    value: "ADDR",
    default: DEFAULTS.serveTarget,
    help: "the Docker daemon: unix:///path or tcp://host:port",
  },
  {
    name: "certs",
    type: "path",
    value: "DIR",
    defaultText: DEFAULTS.serveCerts,
    help: "bundle with ca.pem, cert.pem, key.pem [, crl.pem]; the default is created with the " +
      "whole PKI on first run when no TLS flag is given",
  },
  ...TLS_FILES,
  {
    name: "crl",
    type: "path",
    value: "F|DIR",
    multiple: true,
    defaultText: "crl.pem in --certs when present",
    help: "CRLs: PEM (several in one file) or DER, or a directory of them, one per issuing CA",
  },
  {
    name: "crl-url",
    type: "string",
    value: "URL",
    multiple: true,
    defaultText: "none",
    help: "fetch a CRL over HTTP(S) at start and every --crl-refresh (ETag/If-Modified-Since; " +
      "a failed fetch keeps the last good copy)",
  },
  {
    name: "crl-refresh",
    type: "duration",
    value: DURATION,
    default: DEFAULTS.crlRefresh,
    help: "how often each --crl-url is fetched again (sooner at the CRL's nextUpdate)",
  },
  {
    name: "crl-cache",
    type: "path",
    value: "DIR",
    defaultText: "crl-cache in --certs",
    help: "where the last good copy of each fetched CRL is kept",
  },
  {
    name: "crl-stale",
    type: "choice",
    value: "MODE",
    choices: ["warn", "refuse"],
    default: DEFAULTS.crlStale,
    help: "a CRL past its nextUpdate: keep enforcing it and warn, or refuse every client until " +
      "a current one is loaded",
  },
  {
    name: "allow-cn",
    type: "string",
    value: "NAME",
    multiple: true,
    defaultText: "any certificate from the CA",
    help: "allow this client CN (* matches one DNS label); the --allow-* lists are OR-ed",
    live: true,
  },
  {
    name: "allow-san",
    type: "string",
    value: "NAME|URI|IP",
    multiple: true,
    defaultText: "any certificate from the CA",
    help: "allow this client SAN",
    live: true,
  },
  {
    name: "allow-ou",
    type: "string",
    value: "OU",
    multiple: true,
    defaultText: "any certificate from the CA",
    help: "allow this client OU",
    live: true,
  },
  {
    name: "handshake-timeout",
    type: "duration",
    value: DURATION,
    default: DEFAULTS.handshakeTimeout,
    help: "drop peers that do not finish the TLS handshake in this time",
  },
  {
    name: "max-connections",
    type: "count",
    value: "N",
    default: DEFAULTS.maxConnections,
    help: "concurrent authenticated connection cap",
  },
  {
    name: "max-handshakes",
    type: "count",
    value: "N",
    default: DEFAULTS.maxHandshakes,
    help: "concurrent TLS handshakes; when full the oldest pending one is dropped",
  },
  {
    name: "max-handshakes-per-address",
    type: "count",
    value: "N",
    default: DEFAULTS.maxHandshakesPerAddress,
    help: "concurrent TLS handshakes from one source address",
  },
  {
    name: "keep-revoked-connections",
    type: "bool",
    help: "at a reload, keep open connections of identities now revoked or no longer allowed " +
      "(default: they are ended)",
  },
  {
    name: "drain-timeout",
    type: "duration",
    value: DURATION,
    default: DEFAULTS.drainTimeout,
    help: "on SIGTERM/SIGINT, let open connections finish this long",
  },
  {
    name: "max-conn-lifetime",
    type: "duration",
    value: DURATION,
    defaultText: "never",
    help: "end connections older than this",
  },
  {
    name: "policy",
    type: "path",
    value: "FILE",
    defaultText: "none",
    help: 'per-identity Docker API rules (JSON or YAML; see docs/policy.md "Per-identity Docker ' +
      'API rules"); an identity without a role is refused',
    live: true,
  },
  {
    name: "policy-mode",
    type: "choice",
    value: "MODE",
    choices: ["enforce", "audit"],
    default: DEFAULTS.policyMode,
    help: "enforce, or audit: decide and log as enforce would (would_deny), but forward",
  },
  {
    name: "audit-log",
    type: "path",
    value: "FILE",
    defaultText: "stderr with --policy",
    help: "JSON lines: every request of a restricted role (or one with audit: requests), every " +
      "connection (reopened on SIGHUP)",
  },
  {
    name: "max-body",
    type: "size",
    value: "SIZE",
    default: DEFAULTS.maxBody,
    help: "largest request body read for inspection (413 above)",
  },
  {
    name: "record-sessions",
    type: "path",
    value: "DIR",
    defaultText: "off",
    help: 'write the exec and attach sessions of roles with "record" as asciicast v2 files ' +
      "(0600) in DIR (docs/audit.md)",
  },
  {
    name: "record-max-session",
    type: "size",
    value: "SIZE",
    default: DEFAULTS.recordMaxSession,
    help: "largest recording of one session (what goes beyond is left out, the header says so)",
  },
  {
    name: "record-max-total",
    type: "size",
    value: "SIZE",
    default: DEFAULTS.recordMaxTotal,
    help: "what all recordings of this gate process may take; then new sessions are not " +
      'recorded (refused for "record": "required")',
  },
  // s8-owner: the owner record of isolated roles (docs/policy.md "Shared Docker hosts").
  {
    name: "state-dir",
    type: "path",
    value: "DIR",
    defaultText: `$STATE_DIRECTORY, else ${DEFAULTS.stateDir}`,
    help: "where the owner record of isolated roles lives; serve refuses to start with " +
      "isolated roles when it cannot be written",
  },
  {
    name: "metrics",
    type: "address",
    value: "ADDR",
    defaultText: "off",
    help:
      `serve Prometheus /metrics and /healthz on ADDR (loopback, e.g. tcp://127.0.0.1:${DEFAULTS.metricsPort}, unless --unsafe-metrics)`,
  },
  {
    name: "unsafe-metrics",
    type: "bool",
    help: "allow a --metrics address off loopback (metrics name every identity)",
  },
  {
    name: "enroll",
    type: "address",
    value: "ADDR",
    defaultText: "off",
    help: "also accept enrolment (dockgate join TOKEN) and renewal (dockgate renew) on this " +
      "TCP address of its own; it never reaches the Docker API (needs --enroll-issuer)",
  },
  {
    name: "enroll-issuer",
    type: "string",
    value: "INT",
    defaultText: "required with --enroll",
    help: "the intermediate (keygen intermediate INT) that signs enrolled clients; the PKI " +
      "is the one of --certs",
  },
  {
    name: "require-target",
    type: "bool",
    help: "fail at start when the target does not answer (default: warn, start, relay once it " +
      "answers; /healthz says 503 meanwhile)",
  },
  INSECURE_KEY_PERMS,
  ...LOGGING,
  ...CONFIG,
  HELP_FLAG,
];

const CONNECT_FLAGS: readonly FlagSpec[] = [
  {
    name: "server",
    type: "address",
    value: "HOST:PORT",
    defaultText: "required",
    help: `the gate (or a dockerd with --tlsverify); port ${DEFAULTS.dockerTlsPort} if none`,
  },
  {
    name: "listen",
    type: "address",
    value: "ADDR",
    defaultText: "$XDG_RUNTIME_DIR/dockgate.sock, else /tmp/dockgate-UID.sock",
    help: "unix:///path (created 0600) or tcp://127.0.0.1:PORT",
  },
  {
    name: "certs",
    type: "path",
    value: "DIR",
    defaultText: "$DOCKER_CERT_PATH, then ~/.docker",
    help: "client bundle (ca.pem, cert.pem, key.pem), as the Docker CLI finds it",
  },
  ...TLS_FILES,
  {
    name: "server-name",
    type: "string",
    value: "NAME",
    defaultText: "the --server host",
    help: "name the server certificate must carry",
  },
  {
    name: "unsafe-listen",
    type: "bool",
    help: "allow a TCP listen address off loopback",
  },
  {
    name: "renew",
    type: "bool",
    help: "renew an enrolled bundle (dockgate join) in-process at 2/3 of each lifetime; new " +
      "connections use the new certificate, open ones go on",
  },
  {
    name: "drain-timeout",
    type: "duration",
    value: DURATION,
    default: DEFAULTS.connectDrainTimeout,
    help: "on SIGTERM/SIGINT, let open connections finish this long",
  },
  INSECURE_KEY_PERMS,
  ...LOGGING.map((f) => ({ ...f, live: undefined })),
  ...CONFIG,
  HELP_FLAG,
];

const KEYGEN_ISSUING = ["init", "server", "client", "intermediate"];

const KEYGEN_FLAGS: readonly FlagSpec[] = [
  {
    name: "dir",
    type: "path",
    value: "DIR",
    default: DEFAULTS.pkiDir,
    help: "the PKI directory: ca/, server/, servers/HOST/, intermediates/NAME/, clients/NAME/",
  },
  {
    name: "key-type",
    type: "choice",
    value: "T",
    choices: ["p256", "p384", "rsa2048", "rsa3072", "rsa4096"],
    default: DEFAULTS.keyType,
    help: "the new key's type",
    actions: [...KEYGEN_ISSUING, "rotate-ca"],
  },
  {
    name: "days",
    type: "days",
    value: "N",
    default: DEFAULTS.leafDays,
    defaultText: `${DEFAULTS.leafDays}; an intermediate ${DEFAULTS.intermediateDays}`,
    help: "validity of the new certificate in days",
    actions: [...KEYGEN_ISSUING, "renew"],
  },
  {
    name: "ca-days",
    type: "days",
    value: "N",
    default: DEFAULTS.caDays,
    help: "validity of a new root CA in days",
    actions: ["init", "rotate-ca"],
  },
  {
    name: "san",
    type: "string",
    value: "NAME|IP",
    multiple: true,
    defaultText: "localhost, 127.0.0.1, ::1, host name",
    help: "an extra server name or IP; a --force re-issue without --san keeps the names it had",
    actions: ["init", "server"],
  },
  {
    name: "ou",
    type: "string",
    value: "OU",
    multiple: true,
    defaultText: "none",
    help: "an organizational unit of the client (for --allow-ou)",
    actions: ["client"],
  },
  {
    name: "force",
    type: "bool",
    help: "replace what exists (never done silently); a client's earlier certificates stay " +
      "valid unless --revoke-old; retire-ca: even with certificates of the old root in force",
    actions: [...KEYGEN_ISSUING, "retire-ca"],
  },
  {
    name: "new-ca",
    type: "bool",
    help: "with --force: replace the CA too (kept in ca/retired/); every client certificate " +
      "of the old one stops working at serve's next reload",
    actions: ["init"],
  },
  {
    name: "revoke-old",
    type: "bool",
    help: "revoke the earlier certificates in the same step (keygen client: with --force)",
    actions: ["client", "renew"],
  },
  {
    name: "new-key",
    type: "bool",
    help: "a new key too (default: the same key)",
    actions: ["renew"],
  },
  {
    name: "name",
    type: "string",
    value: "HOST",
    defaultText: "the single DIR/server",
    help: "one Docker host of a fleet: DIR/servers/HOST/ (CN and first SAN HOST), same CA; " +
      "renew server --name HOST renews that host's bundle",
    actions: ["server", "renew"],
  },
  {
    name: "issuer",
    type: "string",
    value: "INT",
    defaultText: "the root CA",
    help: "issue from intermediate INT (the root key may be offline); cert.pem = leaf + INT",
    actions: ["client", "server"],
  },
  {
    name: "role",
    type: "string",
    value: "R",
    defaultText: "none",
    help: "the enrolled certificate's OU, for the API policy (identities: [{ou: R, role: R}])",
    actions: ["token"],
  },
  {
    name: "ttl",
    type: "duration",
    value: DURATION,
    default: DEFAULTS.tokenTtl,
    help: "how long the token works (at most 168h); it works once",
    actions: ["token"],
  },
  {
    name: "cert-ttl",
    type: "duration",
    value: DURATION,
    default: DEFAULTS.enrolledCertTtl,
    help: "lifetime of the certificate the token buys (30s to 168h; renewed with " +
      "dockgate renew)",
    actions: ["token"],
  },
  {
    name: "long-lived",
    type: "bool",
    help: "allow a --cert-ttl over 168h (up to 8760h)",
    actions: ["token"],
  },
  HELP_FLAG,
];

/** Every verb, in the order help lists them. */
export const VERBS: readonly VerbSpec[] = [
  {
    name: "keygen",
    synopsis: "[server|client NAME|intermediate NAME|renew NAME|token NAME|revoke NAME|SERIAL|" +
      "crl|rotate-ca|retire-ca]",
    summary: "the PKI: CA, server and client bundles, revocation",
    positional: "actions",
    actions: [
      {
        name: "init",
        args: "",
        about: 'Create DIR: CA, server bundle, client bundle "default"; keeps what exists.',
      },
      {
        name: "server",
        args: "",
        about: "The DIR/server bundle, or with --name one host of a fleet.",
      },
      {
        name: "client",
        args: "NAME",
        about: "A client bundle DIR/clients/NAME; --issuer INT: cert.pem holds the leaf and INT.",
      },
      {
        name: "intermediate",
        args: "NAME",
        about: "An intermediate CA DIR/intermediates/NAME/ (pathlen 0) signed by the root, with " +
          "its own records and CRL, added to every server bundle's ca.pem; then the root key " +
          "can go offline.",
      },
      {
        name: "renew",
        args: "NAME|server",
        about: "A new certificate, same names, same key (or --new-key); the old one stays valid " +
          "until it expires unless --revoke-old. A running serve picks a renewed server " +
          "certificate up itself.",
      },
      {
        name: "token",
        args: "NAME",
        about: "Print a single-use join token for client NAME (dockgate join on the client): " +
          "it pins the root CA and carries a secret the PKI records hashed (DIR/tokens/).",
      },
      {
        name: "revoke",
        args: "NAME|SERIAL",
        about: "Revoke (by NAME: every unexpired certificate ever issued to NAME) with the CA " +
          "that issued it, and write the CRLs (DIR/server/crl.pem, each DIR/servers/HOST); " +
          "publish that file for --crl-url.",
      },
      {
        name: "crl",
        args: "",
        about: "Publish the CRL again from the PKI's revocation record (e.g. after crl.pem was " +
          "lost).",
      },
      {
        name: "rotate-ca",
        args: "",
        about: "A new root CA without an outage: the old one moves to DIR/ca-previous/ and stays " +
          "trusted (and revoking); the new one issues and renews; servers are re-issued with " +
          "a cross-certificate so clients of the old root still verify them.",
      },
      {
        name: "retire-ca",
        args: "",
        about: "End a rotation: stop trusting the old root (kept in DIR/ca/retired/); refuses " +
          "while certificates it issued are valid and not renewed, unless --force.",
      },
    ],
    examples: [
      "dockgate keygen --dir /etc/dockgate/pki --san gate.example.com && " +
      "dockgate keygen client ci-runner --dir /etc/dockgate/pki",
    ],
    flags: KEYGEN_FLAGS,
  },
  {
    name: "serve",
    synopsis: "[options]",
    summary: "TLS listener that demands a client certificate, relays to Docker",
    layered: true,
    positional: "none",
    examples: [
      `dockgate serve --certs /etc/dockgate/pki/server --policy policy.yaml --metrics tcp://127.0.0.1:${DEFAULTS.metricsPort}`,
    ],
    flags: SERVE_FLAGS,
  },
  {
    name: "connect",
    synopsis: "--server HOST:PORT [options]",
    summary: "local socket that wraps connections in mTLS",
    layered: true,
    positional: "none",
    examples: [
      "dockgate connect --server gate.example.com:2376 --certs ~/.docker/gate & " +
      "DOCKER_HOST=unix://$XDG_RUNTIME_DIR/dockgate.sock docker ps",
    ],
    flags: CONNECT_FLAGS,
  },
  {
    name: "policy",
    synopsis: "check FILE --identity CN METHOD PATH [--body F] | learn AUDIT_LOG [--against F]",
    summary: "what an API policy decides; a policy learned from the audit log",
    positional: "actions",
    actions: [{
      name: "check",
      args: "FILE METHOD PATH",
      about: "Print what the API policy FILE decides for this request and the rule that " +
        "decided it. Exit 0 when allowed, 1 when denied (2 for usage errors). PATH may carry " +
        "/vN.NN and a query.",
    }, {
      name: "learn",
      args: "AUDIT_LOG",
      about: "Print the smallest policy (JSON: a role per identity, with the operations it " +
        "used) that allows every request of the identities in AUDIT_LOG; with --against, " +
        "how that differs from the policy FILE. Request bodies are not in the log: no body " +
        "allowance is learned.",
    }],
    examples: [
      "dockgate policy check policy.json --identity ci-runner POST /v1.41/containers/create " +
      "--body create.json",
      "dockgate policy learn /var/log/dockgate/audit.log --identity grafana > learned.json",
    ],
    flags: [
      {
        name: "identity",
        type: "string",
        value: "CN",
        multiple: true,
        defaultText: "check: required; learn: all",
        help: "the client's common name (learn: repeatable, the identities to learn)",
      },
      {
        name: "against",
        type: "path",
        value: "F",
        defaultText: "none",
        actions: ["learn"],
        help: "learn: print the difference from the policy file F instead of a policy",
      },
      {
        name: "ou",
        actions: ["check"],
        type: "string",
        value: "OU",
        multiple: true,
        defaultText: "none",
        help: "an organizational unit of the client",
      },
      {
        name: "san",
        actions: ["check"],
        type: "string",
        value: "NAME",
        multiple: true,
        defaultText: "none",
        help: "a DNS, URI or IP subject alternative name of the client",
      },
      {
        name: "body",
        actions: ["check"],
        type: "path",
        value: "F",
        defaultText: "none",
        help: "a file with the request body",
      },
      HELP_FLAG,
    ],
  },
  {
    name: "env",
    synopsis: "NAME [--host HOST:PORT] [--context [--apply]] [--bundle F [--host HOST:PORT]]",
    summary: "how a client connects: shell lines, a docker context, a bundle archive",
    positional: "none",
    notes: `Client NAME's bundle is DIR/clients/NAME. Without --context or --bundle: shell lines,
as in eval "$(dockgate env alice --host gate.example.com:2376)". Several --host (or a
--hosts-file): a fleet, one "docker context create" per host, named after the host. With
--bundle, one --host is recorded in the archive, so "dockgate use F" on the client needs none.`,
    examples: [
      "dockgate env alice --host gate.example.com:2376 --context --apply && " +
      "docker --context alice ps",
      "dockgate env ci --host h1 --host h2 --apply && docker --context h2 ps",
    ],
    flags: [
      {
        name: "dir",
        type: "path",
        value: "DIR",
        default: DEFAULTS.pkiDir,
        help: "the PKI directory",
      },
      {
        name: "host",
        type: "string",
        value: "HOST[:PORT]",
        multiple: true,
        defaultText: `this host's name, port ${DEFAULTS.dockerTlsPort}`,
        help: "the gate as clients reach it",
      },
      {
        name: "hosts-file",
        type: "path",
        value: "F",
        defaultText: "none",
        help: "one HOST[:PORT] per line (# comments): the gates of a fleet",
      },
      {
        name: "context",
        type: "bool",
        help: 'print the "docker context create" command instead of shell lines',
      },
      {
        name: "apply",
        type: "bool",
        help: "run the context command(s) (with --context or several hosts)",
      },
      {
        name: "bundle",
        type: "path",
        value: "FILE.tar.gz",
        defaultText: "none",
        help: "pack ca.pem, cert.pem, key.pem (and --host) into FILE (created 0600, never " +
          'over a file) for "dockgate use FILE" on the client',
      },
      HELP_FLAG,
    ],
  },
  {
    name: "use",
    synopsis: "NAME.tar.gz [--context|--env|--connect] [--dir DIR] [--host HOST:PORT] [--force]",
    summary: "on the client: install a bundle archive and set up the Docker CLI",
    positional: "files",
    notes: `Reads the archive made by "dockgate env NAME --bundle NAME.tar.gz --host HOST:PORT" on
the CA host, strictly (only NAME/ca.pem, cert.pem, key.pem and host; no links, no other
paths), checks that key.pem matches cert.pem and that cert.pem chains to ca.pem, and only
then installs the files (key 0600) and, by default, creates the Docker context NAME. An
existing bundle or context is never replaced without --force.`,
    examples: [
      "dockgate use alice.tar.gz && docker --context alice ps",
      'eval "$(dockgate use alice.tar.gz --env)" && docker ps',
    ],
    flags: [
      {
        name: "context",
        type: "bool",
        help: 'create the Docker context NAME ("docker context create"; the default)',
      },
      {
        name: "env",
        type: "bool",
        help: "print DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH lines instead",
      },
      {
        name: "connect",
        type: "bool",
        help: 'print the "dockgate connect" command for this bundle instead',
      },
      {
        name: "dir",
        type: "path",
        value: "DIR",
        defaultText: "$DOCKER_CONFIG/dockgate/NAME, else ~/.docker/dockgate/NAME",
        help: "where the bundle's files go (created 0700)",
      },
      {
        name: "host",
        type: "string",
        value: "HOST[:PORT]",
        defaultText: "the address recorded in the archive",
        help: "the gate as this machine reaches it",
      },
      {
        name: "force",
        type: "bool",
        help: "replace a bundle already in DIR and a Docker context of the same name",
      },
      HELP_FLAG,
    ],
  },
  {
    name: "inspect",
    synopsis: "[DIR|FILE]... [--json] [--fail-within DAYS]",
    summary: "certificates and their dates",
    positional: "files",
    notes: `Every certificate in a PKI, a bundle or PEM files (default ./${DEFAULTS.pkiDir}): role,
subject, SANs, EKU, serial, end date and days left, revoked (by a CRL found beside it), key
type.`,
    examples: [
      'dockgate inspect /etc/dockgate/pki --fail-within 30 || mail -s "renew" ops@example.com',
    ],
    flags: [
      { name: "json", type: "bool", help: "the same as JSON" },
      {
        name: "fail-within",
        type: "days",
        value: "N",
        defaultText: "never",
        help: "exit 1 when a certificate (not revoked) expires within N days",
      },
      HELP_FLAG,
    ],
  },
  {
    name: "doctor",
    synopsis: "[--pki DIR] [--certs DIR] [--target ADDR] [--server HOST:PORT]",
    summary: "checks, each with its fix",
    positional: "none",
    notes: `One PASS/FAIL line per check, with the fix; exit 0 only when all pass. Without options:
--pki ./${DEFAULTS.pkiDir} --target ${DEFAULTS.serveTarget}.`,
    examples: ["dockgate doctor --pki /etc/dockgate/pki --server gate.example.com:2376"],
    flags: [
      {
        name: "pki",
        type: "path",
        value: "DIR",
        defaultText: `${DEFAULTS.pkiDir} when no other check is asked for`,
        help: "the CA, the server bundle and every client bundle: files readable, keys private " +
          "(0600, ours), key matches certificate, signed by the CA, EKU, server names cover " +
          "the host, 30+ days left, CRL signed and fresh",
      },
      {
        name: "certs",
        type: "path",
        value: "DIR",
        defaultText: "none",
        help: "one bundle, the same checks",
      },
      {
        name: "target",
        type: "address",
        value: "ADDR",
        defaultText: `${DEFAULTS.serveTarget} when no other check is asked for`,
        help: "the Docker daemon answers /_ping (and its API version)",
      },
      {
        name: "listen",
        type: "address",
        value: "ADDR",
        defaultText: "none",
        help: "the port is free",
      },
      {
        name: "server",
        type: "string",
        value: "HOST:PORT",
        defaultText: "none",
        help: "a full mTLS round trip to a running serve with --client-certs: who it was " +
          "admitted as, /_ping",
      },
      {
        name: "client-certs",
        type: "path",
        value: "DIR",
        defaultText: "PKI/clients/default",
        help: "the client bundle for --server",
      },
      HELP_FLAG,
    ],
  },
  {
    name: "join",
    synopsis: "HOST:PORT TOKEN [--dir DIR]",
    summary: "enrol this machine with a gate's --enroll port: a key made here, a certificate",
    positional: "none",
    notes: `The key is made here (key.pem, 0600) and never sent. Before anything is sent, the
gate's certificate must chain to the CA whose hash the token carries; a gate with another CA is
refused. Writes ca.pem, cert.pem, key.pem (the Docker CLI's layout) and enroll.json (where to
renew). The certificate is short-lived: keep it fresh with dockgate renew --daemon.`,
    examples: [
      "dockgate join gate.example.com:2377 DGTKN-1-… && dockgate renew --daemon &",
    ],
    flags: [
      {
        name: "dir",
        type: "path",
        value: "DIR",
        defaultText: "$DOCKER_CERT_PATH, then ~/.docker",
        help: "where the bundle goes (created 0700)",
      },
      {
        name: "server-name",
        type: "string",
        value: "NAME",
        defaultText: "the HOST",
        help: "name the gate's certificate must carry",
      },
      {
        name: "force",
        type: "bool",
        help: "replace a bundle already in DIR",
      },
      HELP_FLAG,
    ],
  },
  {
    name: "renew",
    synopsis: "[--dir DIR] [--daemon [--exec CMD]]",
    summary: "renew an enrolled bundle over mTLS with its current certificate",
    positional: "none",
    notes: `Renews cert.pem (same key, one atomic rename: the Docker CLI never reads half a file)
at the gate's --enroll port named in DIR/enroll.json. Once, or with --daemon at 2/3 of each
certificate's lifetime, retrying until it ends. A revoked or no longer allowed certificate is
not renewed.`,
    examples: ["dockgate renew --dir ~/.docker --daemon --exec 'systemctl reload myapp'"],
    flags: [
      {
        name: "dir",
        type: "path",
        value: "DIR",
        defaultText: "$DOCKER_CERT_PATH, then ~/.docker",
        help: "the bundle written by dockgate join",
      },
      {
        name: "server",
        type: "string",
        value: "HOST:PORT",
        defaultText: "from DIR/enroll.json",
        help: "the gate's --enroll address",
      },
      {
        name: "daemon",
        type: "bool",
        help: "keep running: renew at 2/3 of each lifetime (until SIGTERM)",
      },
      {
        name: "exec",
        type: "string",
        value: "CMD",
        defaultText: "none",
        help: "run CMD (sh -c) after each renewal",
      },
      HELP_FLAG,
    ],
  },
  {
    name: "completion",
    synopsis: "bash|zsh|fish",
    summary: "shell completion: source <(dockgate completion bash)",
    positional: "shells",
    notes: `Print a completion script (verbs, each verb's flags and their values).
  bash:  echo 'source <(dockgate completion bash)' >> ~/.bashrc
  zsh:   echo 'source <(dockgate completion zsh)' >> ~/.zshrc
  fish:  dockgate completion fish > ~/.config/fish/completions/dockgate.fish`,
    examples: ["echo 'source <(dockgate completion bash)' >> ~/.bashrc"],
    flags: [HELP_FLAG],
  },
  {
    name: "help",
    synopsis: "[COMMAND]",
    summary: "the options of one command (also: dockgate COMMAND --help)",
    positional: "verbs",
    examples: ["dockgate help serve"],
    flags: [],
  },
  {
    name: "version",
    synopsis: "",
    summary: "the version (also --version)",
    positional: "none",
    examples: ["dockgate version"],
    flags: [],
  },
];

/** The shells `dockgate completion` writes a script for. */
export const SHELLS = ["bash", "zsh", "fish"] as const;

/** The verb named `name`, if there is one. */
export function verbOf(name: string): VerbSpec | undefined {
  return VERBS.find((v) => v.name === name);
}

/** The flag `name` of `verb`, if it has one. */
export function flagOf(verb: string, name: string): FlagSpec | undefined {
  return verbOf(verb)?.flags.find((f) => f.name === name);
}

/** The flags of `verb` that apply to `action` (all of them without one). */
export function flagsFor(verb: VerbSpec, action?: string): FlagSpec[] {
  return verb.flags.filter((f) => !action || !f.actions || f.actions.includes(action));
}

/** The environment variable of a flag of a layered verb (`DOCKGATE_LISTEN`), if it has one. */
export function envOf(verb: VerbSpec, flag: FlagSpec): string | undefined {
  return verb.layered && !flag.cliOnly ? envName(flag.name) : undefined;
}

/** The names serve takes only from the command line (or, for some, the environment). */
export function notFromFile(verb: VerbSpec): Set<string> {
  return new Set(verb.flags.filter((f) => f.cliOnly || f.notInFile).map((f) => f.name));
}

/**
 * serve's settings that a changed `--config` file applies without a restart.
 *
 * @example
 * ```ts
 * import { liveSettings } from "./flags.ts";
 * if (!liveSettings().has("allow-cn") || liveSettings().has("listen")) throw new Error();
 * ```
 */
export function liveSettings(): Set<string> {
  return new Set(verbOf("serve")!.flags.filter((f) => f.live).map((f) => f.name));
}

/** The default as help, the README and `--print-config` show it. */
export function defaultText(flag: FlagSpec): string | undefined {
  if (flag.defaultText !== undefined) return flag.defaultText;
  if (flag.default !== undefined) return String(flag.default);
  return undefined;
}

/** The `node:util` `parseArgs` options of a verb's table. */
export function parseOptions(verb: VerbSpec): NonNullable<ParseArgsConfig["options"]> {
  const options: NonNullable<ParseArgsConfig["options"]> = {};
  for (const f of verb.flags) {
    if (f.type === "bool") {
      options[f.name] = { type: "boolean", default: false, ...(f.short ? { short: f.short } : {}) };
    } else if (f.multiple) {
      options[f.name] = { type: "string", multiple: true, default: [] };
    } else {
      // A default that depends on other flags (defaultText) is applied by the verb's parser.
      options[f.name] = f.default === undefined || f.defaultText !== undefined
        ? { type: "string" }
        : { type: "string", default: String(f.default) };
    }
  }
  return options;
}
