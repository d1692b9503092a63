/**
 * Raw samples of a benchmark run and their summaries (median, min, max).
 *
 * @module
 */

/** One measured number. */
export interface Sample {
  /** `bulk`, `connrate`, `latency`, `memory`, `docker`. */
  workload: string;
  /** Certificate type of the run (`ecdsa-p256`, `rsa-2048`). */
  keyType: string;
  /** Contender id (or a baseline: `direct-tls`, `direct-unix`, `ssh`). */
  contender: string;
  /** What was measured, unit in the name (`up_MBps`, `p50_us`, …). */
  metric: string;
  /** The value of one run. */
  value: number;
}

/** Median, min and max of the runs of one figure. */
export interface Summary {
  /** Median (mean of the two middle values for an even count). */
  median: number;
  /** Smallest run. */
  min: number;
  /** Largest run. */
  max: number;
  /** Number of runs. */
  n: number;
}

/**
 * Summarize values.
 *
 * @example
 * ```ts
 * import { summarize } from "./results.ts";
 * const s = summarize([3, 1, 2]);
 * if (s.median !== 2 || s.min !== 1 || s.max !== 3) throw new Error();
 * ```
 */
export function summarize(values: number[]): Summary {
  const v = [...values].sort((a, b) => a - b);
  const mid = Math.floor(v.length / 2);
  const median = v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
  return { median, min: v[0], max: v[v.length - 1], n: v.length };
}

/** Collected samples with lookups. */
export class Results {
  /** Every sample, in measurement order. */
  readonly samples: Sample[] = [];

  /** Record one sample. */
  add(workload: string, keyType: string, contender: string, metric: string, value: number): void {
    if (Number.isFinite(value)) this.samples.push({ workload, keyType, contender, metric, value });
  }

  /** The summary of one figure, or undefined when it was not measured. */
  get(workload: string, keyType: string, contender: string, metric: string): Summary | undefined {
    const v = this.samples.filter((s) =>
      s.workload === workload && s.keyType === keyType && s.contender === contender &&
      s.metric === metric
    ).map((s) => s.value);
    return v.length ? summarize(v) : undefined;
  }

  /** Contender ids with samples for a workload and key type, in first-seen order. */
  contenders(workload: string, keyType: string): string[] {
    return [
      ...new Set(
        this.samples.filter((s) => s.workload === workload && s.keyType === keyType).map((s) =>
          s.contender
        ),
      ),
    ];
  }

  /** Key types with samples for a workload. */
  keyTypes(workload: string): string[] {
    return [...new Set(this.samples.filter((s) => s.workload === workload).map((s) => s.keyType))];
  }
}
