/**
 * The role options `rate` and `maxInFlight` as the policy file writes them, and their checks
 * (`api_policy.ts` calls {@linkcode limitProblem}); `request_limits.ts` enforces them.
 *
 * @module
 */

/** A role's `rate`: tokens added a second, and how many the bucket holds. */
export interface RateSpec {
  /** Requests a second, on average. */
  perSecond: number;
  /** Requests at once after a quiet time (the bucket's size). Default: `perSecond` rounded up. */
  burst?: number;
}

/** The bucket's size of `rate`. */
export function burstOf(rate: RateSpec): number {
  return rate.burst ?? Math.max(1, Math.ceil(rate.perSecond));
}

/**
 * The problem with a role's `rate` or `maxInFlight` as written, if any: `[where, what]`.
 *
 * @example
 * ```ts
 * import { limitProblem } from "./limit_spec.ts";
 * if (limitProblem({ preset: "read-only", rate: { perSecond: 5, burst: 10 } })) throw new Error();
 * if (!limitProblem({ preset: "read-only", rate: { perSecond: 0 } })) throw new Error();
 * ```
 */
export function limitProblem(r: Record<string, unknown>): [string, string] | undefined {
  const positive = (v: unknown) => typeof v === "number" && Number.isFinite(v) && v > 0 && v <= 1e6;
  const count = (v: unknown) => Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 1e6;
  if (r.rate !== undefined) {
    const rate = r.rate as Record<string, unknown>;
    if (typeof rate !== "object" || rate === null || Array.isArray(rate)) {
      return [".rate", 'must be an object like {"perSecond": 5, "burst": 10}'];
    }
    for (const k of Object.keys(rate)) {
      if (k !== "perSecond" && k !== "burst") {
        return [`.rate.${k}`, "unknown key (expected perSecond, burst)"];
      }
    }
    if (!positive(rate.perSecond)) {
      return [".rate.perSecond", "must be a number above 0 (at most 1000000)"];
    }
    if (rate.burst !== undefined && !count(rate.burst)) {
      return [".rate.burst", "must be a whole number from 1"];
    }
  }
  if (r.maxInFlight !== undefined && !count(r.maxInFlight)) {
    return [".maxInFlight", "must be a whole number from 1"];
  }
  if ((r.rate !== undefined || r.maxInFlight !== undefined) && r.preset === "full") {
    return [
      r.rate !== undefined ? ".rate" : ".maxInFlight",
      "a full role is relayed raw (its requests are not read)",
    ];
  }
  return undefined;
}
