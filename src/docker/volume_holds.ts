/**
 * Gate-wide holds on volume names, so that an isolated request's owner check and the daemon's
 * act concern the same volume (issue 20 item 8). A volume's name is its ID: once a request
 * checked that `loot` is its owner's, a remove and a re-create of `loot` by someone else
 * before the daemon acts would swap the object under the checked name. So a request that uses
 * a checked volume holds its name (shared) from the check until the daemon answered it, and a
 * remove of that name (or a prune of volumes) through the gate waits for the holds to end and
 * holds the name itself (exclusive) until it is answered.
 *
 * What this cannot see: a client talking to the daemon directly (see docs/policy.md).
 *
 * @module
 */

/** How long a request waits for the holds it needs before it is refused (502). */
const HOLD_WAIT_MS = 30_000;

/** Ends a hold (idempotent). */
export type Release = () => void;

/** `"all"`: every volume name (a prune). */
export type VolumeNames = readonly string[] | "all";

/**
 * Shared and exclusive holds on volume names, one table for the whole gate.
 *
 * @example
 * ```ts
 * import { VolumeHolds } from "./volume_holds.ts";
 * const holds = new VolumeHolds();
 * const use = await holds.use(["loot"]);
 * let removed = false;
 * const remove = holds.remove(["loot"]).then((release) => { removed = true; release(); });
 * await Promise.resolve();
 * if (removed) throw new Error("a remove waits for the use");
 * use();
 * await remove;
 * if (!removed) throw new Error();
 * ```
 */
export class VolumeHolds {
  /** Requests that use each name, by name. */
  readonly #shared = new Map<string, number>();
  /** Names being removed. */
  readonly #exclusive = new Set<string>();
  /** Prunes in flight. */
  #all = 0;
  /** Who waits for a hold, re-tried at every release. */
  #waiting: (() => boolean)[] = [];

  /**
   * Hold `names` for a request that uses them; waits while any is being removed, at most `ms`
   * (then rejects with an `Error`).
   */
  use(names: readonly string[], ms = HOLD_WAIT_MS): Promise<Release> {
    return this.#acquire(ms, () => {
      if (this.#all > 0 || names.some((n) => this.#exclusive.has(n))) return undefined;
      for (const n of names) this.#shared.set(n, (this.#shared.get(n) ?? 0) + 1);
      return () => {
        for (const n of names) {
          const left = (this.#shared.get(n) ?? 1) - 1;
          if (left > 0) this.#shared.set(n, left);
          else this.#shared.delete(n);
        }
      };
    });
  }

  /**
   * Hold `names` for a request that removes them; waits while any is used or removed, at most
   * `ms` (then rejects with an `Error`).
   */
  remove(names: VolumeNames, ms = HOLD_WAIT_MS): Promise<Release> {
    return this.#acquire(ms, () => {
      if (this.#all > 0) return undefined;
      if (names === "all") {
        if (this.#shared.size > 0 || this.#exclusive.size > 0) return undefined;
        this.#all++;
        return () => void this.#all--;
      }
      if (names.some((n) => this.#shared.has(n) || this.#exclusive.has(n))) return undefined;
      for (const n of names) this.#exclusive.add(n);
      return () => names.forEach((n) => this.#exclusive.delete(n));
    });
  }

  /** Whether no hold is taken (for tests). */
  get idle(): boolean {
    return this.#shared.size === 0 && this.#exclusive.size === 0 && this.#all === 0;
  }

  /** Take the hold `tryTake` takes as soon as it can (within `ms`); its release wakes others. */
  #acquire(ms: number, tryTake: () => (() => void) | undefined): Promise<Release> {
    return new Promise((resolve, reject) => {
      const wait: { timer?: ReturnType<typeof setTimeout> } = {};
      const attempt = () => {
        const undo = tryTake();
        if (!undo) return false;
        clearTimeout(wait.timer);
        let released = false;
        resolve(() => {
          if (released) return;
          released = true;
          undo();
          this.#wake();
        });
        return true;
      };
      if (attempt()) return;
      this.#waiting.push(attempt);
      wait.timer = setTimeout(() => {
        this.#waiting = this.#waiting.filter((a) => a !== attempt);
        reject(new Error(`a volume it names is held by a request in flight for over ${ms} ms`));
      }, ms);
    });
  }

  #wake(): void {
    const waiting = this.#waiting;
    this.#waiting = [];
    for (const attempt of waiting) if (!attempt()) this.#waiting.push(attempt);
  }
}

/** The gate's one table (all connections of this process share it). */
export const GATE_VOLUME_HOLDS: VolumeHolds = new VolumeHolds();
