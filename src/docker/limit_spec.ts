/**
 * The role options `rate`, `maxInFlight` and `scope` as the policy file writes them, and their
 * checks (`api_policy.ts` calls {@linkcode limitProblem}, {@linkcode rawLimitProblem} and
 * {@linkcode scopeProblem});
 * `request_limits.ts` enforces the limits, the isolation step the scope.
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
  return undefined;
}

/**
 * The problem with limits on a role the gate relays raw (`api_policy.ts` `relaysRaw`: a full
 * role that audits connections only), whose requests are never read one by one, so nothing
 * would count them; `relaysRaw` is the role's, given here (this module is below the policy's).
 *
 * @example
 * ```ts
 * import { rawLimitProblem } from "./limit_spec.ts";
 * if (!rawLimitProblem({ maxInFlight: 2 }, true)) throw new Error();
 * if (rawLimitProblem({ maxInFlight: 2 }, false)) throw new Error();
 * ```
 */
export function rawLimitProblem(
  r: Record<string, unknown>,
  relaysRaw: boolean,
): [string, string] | undefined {
  if ((r.rate === undefined && r.maxInFlight === undefined) || !relaysRaw) return undefined;
  return [
    r.rate !== undefined ? ".rate" : ".maxInFlight",
    'a full role is relayed raw (its requests are not read): add "audit": "requests" to limit it',
  ];
}

/**
 * The problem with a role's `scope` as written, if any: `[where, what]`. A scope is
 * `{"label": "key=value"}` on a read-only role that is not isolated; its key is not one of
 * the gate's own (`dockgate.`).
 *
 * @example
 * ```ts
 * import { scopeProblem } from "./limit_spec.ts";
 * if (scopeProblem({ preset: "read-only", scope: { label: "com.example.team=web" } })) throw new Error();
 * if (!scopeProblem({ preset: "no-escape", scope: { label: "a=b" } })) throw new Error();
 * ```
 */
export function scopeProblem(r: Record<string, unknown>): [string, string] | undefined {
  if (r.scope === undefined) return undefined;
  const scope = r.scope as Record<string, unknown>;
  if (typeof scope !== "object" || scope === null || Array.isArray(scope)) {
    return [".scope", 'must be an object like {"label": "com.example.team=web"}'];
  }
  for (const k of Object.keys(scope)) {
    if (k !== "label") return [`.scope.${k}`, "unknown key (expected label)"];
  }
  const label = scope.label;
  const eq = typeof label === "string" ? label.indexOf("=") : -1;
  if (typeof label !== "string" || eq < 1) {
    return [".scope.label", 'must be "key=value" (the label the containers carry)'];
  }
  if (label.startsWith("dockgate.")) return [".scope.label", "dockgate. labels are the gate's own"];
  if (r.preset !== "read-only") return [".scope", "only with preset read-only"];
  if (r.isolate === true) return [".scope", "a role is isolated or scoped, not both"];
  return undefined;
}

/**
 * A role's scope as the isolation step reads it, or undefined.
 *
 * @example
 * ```ts
 * import { scopeOf } from "./limit_spec.ts";
 * const s = scopeOf({ spec: { scope: { label: "team=web=1" } } });
 * if (s?.key !== "team" || s.value !== "web=1") throw new Error();
 * ```
 */
export function scopeOf(
  role: { spec: { scope?: { label: string } } },
): { key: string; value: string } | undefined {
  const label = role.spec.scope?.label;
  if (label === undefined) return undefined;
  const eq = label.indexOf("=");
  return { key: label.slice(0, eq), value: label.slice(eq + 1) };
}
