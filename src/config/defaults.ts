/**
 * Every default of dockgate in one table, read by the flag tables (`cli/flags.ts`, and through
 * them the parser, the help text, completion, `--print-config` and the README's flags table),
 * `serve()` and `connect()`. Durations are
 * written as the CLI takes them; {@linkcode DEFAULT_MS} has them in milliseconds for the
 * library.
 *
 * @example
 * ```ts
 * import { DEFAULT_MS, DEFAULTS } from "./defaults.ts";
 * if (DEFAULTS.handshakeTimeout !== "10s" || DEFAULT_MS.handshakeTimeout !== 10_000) throw new Error();
 * ```
 *
 * @module
 */

import { parseDuration } from "./duration.ts";

/** The defaults, as the command line spells them. */
export const DEFAULTS = {
  /** `keygen --dir`. */
  pkiDir: "pki",
  /** `keygen --key-type`. */
  keyType: "p256",
  /** `keygen --days`: validity of a server or client certificate. */
  leafDays: 365,
  /** `keygen --ca-days`: validity of a new root CA. */
  caDays: 3650,
  /** `keygen token --ttl`: how long a join token works. */
  tokenTtl: "1h",
  /** `keygen token --cert-ttl`: the lifetime of an enrolled client's certificate. */
  enrolledCertTtl: "24h",
  /** `keygen intermediate --days`: validity of an intermediate CA (never past the root's end). */
  intermediateDays: 1825,
  /** The port of an address given without one (`--listen`, `--server`, `--host`): Docker's TLS port. */
  dockerTlsPort: 2376,
  /** The port of a `--metrics` address given without one. */
  metricsPort: 9323,
  /** `--log-level` of serve and connect. */
  logLevel: "info",
  /** `--log-format` of serve and connect. */
  logFormat: "text",
  /** `serve --listen`. */
  serveListen: "tcp://0.0.0.0:2376",
  /** `serve --target`. */
  serveTarget: "unix:///var/run/docker.sock",
  /** `serve --certs`. */
  serveCerts: "pki/server",
  /** `serve --handshake-timeout`, also connect's handshake with the server. */
  handshakeTimeout: "10s",
  /** `serve --max-connections`. */
  maxConnections: 1024,
  /** `serve --max-handshakes`. */
  maxHandshakes: 128,
  /** `serve --max-handshakes-per-address`. */
  maxHandshakesPerAddress: 16,
  /** `serve --crl-stale`. */
  crlStale: "warn",
  /** `serve --crl-refresh`: how often each `--crl-url` is fetched again. */
  crlRefresh: "1h",
  /** `serve --drain-timeout`. */
  drainTimeout: "30s",
  /** `serve --policy-mode`. */
  policyMode: "enforce",
  /** `serve --max-body`: the largest request body read for inspection. */
  maxBody: "1MiB",
  /** `serve --record-max-session`: the largest recording of one exec or attach session. */
  recordMaxSession: "64MiB",
  /** `serve --record-max-total`: what all recordings of one gate process may take. */
  recordMaxTotal: "1024MiB",
  /** `serve --state-dir` without `$STATE_DIRECTORY`: where the owner record lives. */
  stateDir: "/var/lib/dockgate",
  /** `connect --drain-timeout`. */
  connectDrainTimeout: "5s",
  /** How long serve waits for the target to accept a connection. */
  targetConnectTimeout: "10s",
  /** How long serve's startup check of the target waits. */
  targetStartupCheck: "5s",
} as const;

/** The duration defaults of {@linkcode DEFAULTS}, in milliseconds. */
export const DEFAULT_MS = {
  /** {@linkcode DEFAULTS.handshakeTimeout}. */
  handshakeTimeout: parseDuration(DEFAULTS.handshakeTimeout),
  /** {@linkcode DEFAULTS.drainTimeout}. */
  drainTimeout: parseDuration(DEFAULTS.drainTimeout),
  /** {@linkcode DEFAULTS.connectDrainTimeout}. */
  connectDrainTimeout: parseDuration(DEFAULTS.connectDrainTimeout),
  /** {@linkcode DEFAULTS.targetConnectTimeout}. */
  targetConnectTimeout: parseDuration(DEFAULTS.targetConnectTimeout),
  /** {@linkcode DEFAULTS.targetStartupCheck}. */
  targetStartupCheck: parseDuration(DEFAULTS.targetStartupCheck),
} as const;
