/**
 * Per-identity request limits (role options `rate` and `maxInFlight`), gate-wide: every
 * connection of one identity draws on one token bucket and one count of requests in flight.
 * A request over a limit is answered `429` in Docker's error shape by the request reader
 * (nothing of it forwarded), counted in the metrics and logged (at most once a second per
 * identity and limit: a client hammering the gate must not flood the log too).
 *
 * A request is in flight from its head until its answer ended (a stream such as `docker
 * events` or an attach holds its slot as long as it runs). The role in force decides the
 * numbers (a reload applies to the next request); the bucket stays with the identity.
 *
 * @module
 */

import type { Role } from "./api_policy.ts";
import type { Exchange } from "./relay_exchange.ts";
import type { GateMetrics } from "../observe/metrics.ts";
import { type Logger, silentLogger } from "../observe/logger.ts";
import { burstOf, type RateSpec } from "./limit_spec.ts";

/** Which limit refused a request (the metric's `limit` label). */
export type LimitKind = "rate" | "in_flight";

/** What {@linkcode RequestLimits} tells and reads. */
export interface RequestLimitsOptions {
  /** Counts each refusal (`limited`). */
  metrics?: GateMetrics;
  /** Where the (throttled) refusal lines go. */
  logger?: Logger;
  /** The clock, in ms. Default: `performance.now`. */
  now?: () => number;
}

interface Bucket {
  tokens: number;
  at: number;
  inFlight: number;
  logged: Map<LimitKind, number>;
}

/** The most identities remembered; past it, those without requests in flight are forgotten. */
const MAX_IDENTITIES = 10_000;

/**
 * The gate's limits, one per gate (its buckets are per identity key).
 *
 * @example
 * ```ts
 * import { compileApiPolicy } from "./api_policy.ts";
 * import { newExchange } from "./relay_exchange.ts";
 * import { RequestLimits } from "./request_limits.ts";
 * const p = compileApiPolicy({ roles: { m: { preset: "read-only", rate: { perSecond: 1, burst: 1 } } }, identities: [] }, "x");
 * const limits = new RequestLimits({ now: () => 0 });
 * const who = { owner: "a", identity: "a" };
 * if (limits.admit(who, p.roles.get("m")!, newExchange("GET", "/info", "m", false))) throw new Error();
 * if (!limits.admit(who, p.roles.get("m")!, newExchange("GET", "/info", "m", false))?.startsWith("rate:")) throw new Error();
 * ```
 */
export class RequestLimits {
  readonly #buckets = new Map<string, Bucket>();
  readonly #metrics: GateMetrics | undefined;
  readonly #logger: Logger;
  readonly #now: () => number;

  /** Limits reporting to `options`. */
  constructor(options: RequestLimitsOptions = {}) {
    this.#metrics = options.metrics;
    this.#logger = options.logger ?? silentLogger;
    this.#now = options.now ?? (() => performance.now());
  }

  /**
   * Let `exchange` of `who` (under `role`) in, or say which limit it is over (the refusal's
   * rule). An admitted exchange of a role with `maxInFlight` holds a slot until its
   * `endSlot` is called (the relay does, when it is answered or the connection ends).
   */
  admit(
    who: { owner: string; identity: string },
    role: Role,
    exchange: Exchange,
  ): string | undefined {
    const { rate, maxInFlight } = role.spec;
    if (!rate && maxInFlight === undefined) return undefined;
    const now = this.#now();
    const b = this.#bucket(who.owner, now, rate);
    if (rate) {
      const burst = burstOf(rate);
      b.tokens = Math.min(burst, b.tokens + ((now - b.at) / 1000) * rate.perSecond);
      b.at = now;
      if (b.tokens < 1) {
        return this.#refused(
          b,
          who,
          "rate",
          `rate: over ${rate.perSecond} requests a second (burst ${burst})`,
          now,
        );
      }
    }
    if (maxInFlight !== undefined && b.inFlight >= maxInFlight) {
      const n = `${maxInFlight} request${maxInFlight === 1 ? "" : "s"}`;
      return this.#refused(b, who, "in_flight", `maxInFlight: ${n} in flight already`, now);
    }
    if (rate) b.tokens -= 1;
    if (maxInFlight !== undefined) {
      b.inFlight++;
      let ended = false;
      exchange.endSlot = () => {
        if (ended) return;
        ended = true;
        b.inFlight--;
      };
    }
    return undefined;
  }

  #bucket(key: string, now: number, rate: RateSpec | undefined): Bucket {
    let b = this.#buckets.get(key);
    if (b) return b;
    if (this.#buckets.size >= MAX_IDENTITIES) {
      for (const [k, old] of this.#buckets) if (old.inFlight === 0) this.#buckets.delete(k);
    }
    b = { tokens: rate ? burstOf(rate) : 0, at: now, inFlight: 0, logged: new Map() };
    this.#buckets.set(key, b);
    return b;
  }

  #refused(
    b: Bucket,
    who: { identity: string },
    limit: LimitKind,
    rule: string,
    now: number,
  ): string {
    this.#metrics?.limited?.(who.identity, limit);
    const last = b.logged.get(limit);
    if (last === undefined || now - last >= 1000) {
      b.logged.set(limit, now);
      this.#logger.log("warn", "request limited", { identity: who.identity, limit, rule });
    }
    return rule;
  }
}
