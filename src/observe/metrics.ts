/**
 * What the gate counts, in Prometheus' terms (the maintained `prom-client` registry, which
 * runs on Deno and Node alike): connections open and in total by identity, refusals by kind,
 * bytes each way, relay errors, handshake durations, certificate and CRL dates, reloads, and
 * the build.
 *
 * Why labels are bounded: a label value is an identity (one per certificate your CA issued)
 * or one of a few fixed kinds, never a peer address or a free-text reason.
 *
 * @module
 */

import client from "prom-client";

/** Why a connection was refused, in a few kinds. */
export type RefusalMetricKind =
  /** A connection or handshake cap. */
  | "limit"
  /** The TLS handshake failed (no or unverifiable certificate, garbage, timeout). */
  | "tls"
  /** The certificate failed the gate's own checks (EKU, dates, CA). */
  | "certificate"
  /** Revoked by the CRL. */
  | "revoked"
  /** Not on an allow-list, or no role in the API policy. */
  | "not_allowed"
  /** The target did not answer. */
  | "target";

/** What the gate reports as it works. Every method must not throw. */
export interface GateMetrics {
  /** A TLS handshake completed after `seconds`. */
  handshake(seconds: number): void;
  /** A connection was refused. */
  refused(kind: RefusalMetricKind): void;
  /** An identity's connection is being relayed. */
  opened(identity: string): void;
  /** It ended, after `bytesIn` from the client and `bytesOut` to it. */
  closed(identity: string, bytesIn: number, bytesOut: number, error: boolean): void;
  /** A request of `identity` was over its role's `rate` or `maxInFlight` (answered 429). */
  limited?(identity: string, limit: "rate" | "in_flight"): void;
}

/** What the enrolment port reports: each enrolment and renewal, signed or refused. */
export interface EnrollMetrics {
  /** One enrolment (`enroll`) or renewal (`renew`) ended `ok` or `refused`. */
  enrolment(kind: "enroll" | "renew", result: "ok" | "refused"): void;
}

/** Handshake duration buckets, in seconds (a local mTLS handshake takes 1–20 ms). */
const HANDSHAKE_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/**
 * The gate's metrics in a registry of their own.
 *
 * @example
 * ```ts
 * import { PrometheusMetrics } from "./metrics.ts";
 * const m = new PrometheusMetrics({ version: "0.1.0", runtime: "deno" });
 * m.opened("ci");
 * m.closed("ci", 10, 20, false);
 * const text = await m.text();
 * if (!text.includes('dockgate_connections_total{identity="ci"} 1')) throw new Error(text);
 * ```
 */
export class PrometheusMetrics implements GateMetrics, EnrollMetrics {
  /** The registry (only the gate's metrics are in it). */
  readonly registry: client.Registry = new client.Registry();
  readonly #open = gauge(
    this.registry,
    "dockgate_connections_open",
    "Connections being relayed now, by identity",
    ["identity"],
  );
  readonly #total = counter(
    this.registry,
    "dockgate_connections_total",
    "Connections relayed, by identity",
    ["identity"],
  );
  readonly #refused = counter(
    this.registry,
    "dockgate_refused_total",
    "Connections refused, by kind of reason",
    ["reason"],
  );
  readonly #bytes = counter(
    this.registry,
    "dockgate_relayed_bytes_total",
    "Bytes relayed: in from clients, out to clients",
    ["direction"],
  );
  readonly #errors = counter(
    this.registry,
    "dockgate_relay_errors_total",
    "Relayed connections that ended with an error",
  );
  readonly #handshakes = new client.Histogram({
    name: "dockgate_handshake_duration_seconds",
    help: "Time from TCP accept to a completed TLS handshake",
    buckets: HANDSHAKE_BUCKETS,
    registers: [this.registry],
  });
  readonly #enrolments = counter(
    this.registry,
    "dockgate_enrolments_total",
    "Enrolments (token) and renewals (mTLS) on the --enroll port, by result",
    ["kind", "result"],
  );
  readonly #reloads = counter(
    this.registry,
    "dockgate_reloads_total",
    "Reloads of certificates, CRL and policy, by result",
    ["result"],
  );
  readonly #lastReload = gauge(
    this.registry,
    "dockgate_last_reload_success",
    "Whether the last reload succeeded (1) or failed and the old rules stay (0)",
  );
  readonly #expiry = gauge(
    this.registry,
    "dockgate_certificate_expiry_timestamp_seconds",
    "When the server certificate, the CA and the CRL (its nextUpdate) run out",
    ["certificate"],
  );
  readonly #crlFetches = counter(
    this.registry,
    "dockgate_crl_fetches_total",
    "Fetches of --crl-url CRLs: updated, not_modified, failed (the last good copy stays)",
    ["result"],
  );
  readonly #limited = counter(
    this.registry,
    "dockgate_requests_limited_total",
    "Requests answered 429, over the role's rate or maxInFlight, by identity and limit",
    ["identity", "limit"],
  );
  #staleCrls: () => number = () => 0;

  /** Make the metrics; `build` goes into `dockgate_build_info`. */
  constructor(build: { version: string; runtime: string }) {
    gauge(this.registry, "dockgate_build_info", "dockgate's version and runtime (always 1)", [
      "version",
      "runtime",
    ]).set({ version: build.version, runtime: build.runtime }, 1);
    const staleCrls = () => this.#staleCrls();
    new client.Gauge({
      name: "dockgate_crl_stale",
      help: "CRLs in force whose nextUpdate has passed (or whose thisUpdate is still to come)",
      registers: [this.registry],
      collect() {
        this.set(staleCrls());
      },
    });
    this.#lastReload.set(1);
    // Every known label value is there from the start, at 0, so that rate() sees the first one.
    for (const r of ["updated", "not_modified", "failed"]) this.#crlFetches.inc({ result: r }, 0);
    for (const r of ["limit", "tls", "certificate", "revoked", "not_allowed", "target"]) {
      this.#refused.inc({ reason: r }, 0);
    }
    for (const d of ["in", "out"]) this.#bytes.inc({ direction: d }, 0);
    for (const r of ["ok", "error"]) this.#reloads.inc({ result: r }, 0);
  }

  /** Count one enrolment or renewal. */
  enrolment(kind: "enroll" | "renew", result: "ok" | "refused"): void {
    this.#enrolments.inc({ kind, result });
  }

  /** Observe one handshake's duration. */
  handshake(seconds: number): void {
    this.#handshakes.observe(seconds);
  }

  /** Count one refusal. */
  refused(kind: RefusalMetricKind): void {
    this.#refused.inc({ reason: kind });
  }

  /** Count a connection relayed for `identity`. */
  opened(identity: string): void {
    this.#open.inc({ identity });
    this.#total.inc({ identity });
  }

  /** Count its end, its bytes and whether it failed. */
  closed(identity: string, bytesIn: number, bytesOut: number, error: boolean): void {
    this.#open.dec({ identity });
    this.#bytes.inc({ direction: "in" }, bytesIn);
    this.#bytes.inc({ direction: "out" }, bytesOut);
    if (error) this.#errors.inc();
  }

  /** Count a request over its role's limit. */
  limited(identity: string, limit: "rate" | "in_flight"): void {
    this.#limited.inc({ identity, limit });
  }

  /** A reload finished: `ok`, or failed (the old rules stay). */
  reload(ok: boolean): void {
    this.#reloads.inc({ result: ok ? "ok" : "error" });
    this.#lastReload.set(ok ? 1 : 0);
    this.#lastReloadOk = ok;
  }

  /** Whether the last reload succeeded. */
  get lastReloadOk(): boolean {
    return this.#lastReloadOk;
  }
  #lastReloadOk = true;

  /** Set when `which` (`server`, `ca`, `crl`) runs out; `undefined` removes it. */
  expiry(which: "server" | "ca" | "crl", when: Date | undefined): void {
    if (when === undefined) this.#expiry.remove({ certificate: which });
    else this.#expiry.set({ certificate: which }, Math.floor(when.getTime() / 1000));
  }

  /** How many CRLs in force are stale, asked at every scrape (a CRL goes stale while we run). */
  crlStale(count: () => number): void {
    this.#staleCrls = count;
  }

  /** Count one `--crl-url` fetch by its result. */
  crlFetch(result: "updated" | "not_modified" | "failed"): void {
    this.#crlFetches.inc({ result });
  }

  /** The exposition text. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  /** Its content type (`text/plain; version=0.0.4`). */
  get contentType(): string {
    return this.registry.contentType;
  }
}

/** A counter in `registry` (one line per metric in the class above). */
function counter<L extends string = never>(
  registry: client.Registry,
  name: string,
  help: string,
  labelNames: L[] = [],
): client.Counter<L> {
  return new client.Counter({ name, help, labelNames, registers: [registry] });
}

/** A gauge in `registry` (one line per metric in the class above). */
function gauge<L extends string = never>(
  registry: client.Registry,
  name: string,
  help: string,
  labelNames: L[] = [],
): client.Gauge<L> {
  return new client.Gauge({ name, help, labelNames, registers: [registry] });
}
