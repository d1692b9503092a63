/**
 * Bounds on sockets that have not finished their TLS handshake, so that no unauthenticated
 * peer can lock others out: a cap on handshakes in flight (when it is full the oldest pending
 * handshake is dropped, since a real client finishes in milliseconds and a slow-loris peer
 * never does), a cap per source address, and refusal logging throttled per address and
 * reason.
 *
 * Why apart from `--max-connections`: that cap counts authenticated connections; sharing it
 * with handshakes let one peer holding 1,024 silent sockets for the handshake timeout lock
 * everyone out.
 *
 * @module
 */

import type { Logger } from "../observe/logger.ts";

/** The outcome of {@linkcode HandshakeSlots.admit}. */
export type Admission<S> =
  | { ok: true; evicted?: S }
  | { ok: false; reason: string };

/**
 * Pending handshakes by socket, oldest first.
 *
 * @example
 * ```ts
 * import { HandshakeSlots } from "./handshakes.ts";
 * const slots = new HandshakeSlots<string>(2, 1);
 * if (!slots.admit("a", "10.0.0.1").ok) throw new Error();
 * if (slots.admit("b", "10.0.0.1").ok) throw new Error("per-address cap");
 * slots.admit("c", "10.0.0.2");
 * const third = slots.admit("d", "10.0.0.3");
 * if (!third.ok || third.evicted !== "a") throw new Error("the oldest makes room");
 * ```
 */
export class HandshakeSlots<S> {
  #pending = new Map<S, string>();
  #perAddress = new Map<string, number>();

  /** `max` handshakes at once, `maxPerAddress` of them from one address. */
  constructor(readonly max: number, readonly maxPerAddress: number) {
    if (!(max >= 1)) throw new RangeError("maxHandshakes must be >= 1");
    if (!(maxPerAddress >= 1)) throw new RangeError("maxHandshakesPerAddress must be >= 1");
  }

  /** Handshakes pending now. */
  get size(): number {
    return this.#pending.size;
  }

  /**
   * Take a slot for `socket` from `address`: refused over the per-address cap; over the
   * total cap the oldest pending socket is evicted (returned: the caller destroys it).
   */
  admit(socket: S, address: string): Admission<S> {
    const mine = this.#perAddress.get(address) ?? 0;
    if (mine >= this.maxPerAddress) {
      return { ok: false, reason: `too many handshakes from this address (${this.maxPerAddress})` };
    }
    let evicted: S | undefined;
    if (this.#pending.size >= this.max) {
      evicted = this.#pending.keys().next().value!;
      this.release(evicted);
    }
    this.#pending.set(socket, address);
    this.#perAddress.set(address, mine + 1);
    return { ok: true, evicted };
  }

  /** The handshake of `socket` ended (done, failed or closed). Idempotent. */
  release(socket: S): void {
    const address = this.#pending.get(socket);
    if (address === undefined) return;
    this.#pending.delete(socket);
    const left = (this.#perAddress.get(address) ?? 1) - 1;
    if (left > 0) this.#perAddress.set(address, left);
    else this.#perAddress.delete(address);
  }
}

/**
 * A refusal log that says each (address, reason) once per interval, with how many it
 * swallowed since: a flood must not become a flood of log lines.
 *
 * @example
 * ```ts
 * import { ThrottledRefusals } from "./handshakes.ts";
 * const lines: string[] = [];
 * const log = new ThrottledRefusals({ log: (_l, _m, f) => void lines.push(String(f?.reason)) }, 10_000);
 * for (let i = 0; i < 5; i++) log.refuse("10.0.0.1", "10.0.0.1:5000", "cap");
 * if (lines.length !== 1) throw new Error();
 * ```
 */
export class ThrottledRefusals {
  #last = new Map<string, { at: number; suppressed: number }>();

  /** Log through `logger`, each (address, reason) at most once per `intervalMs`. */
  constructor(readonly logger: Logger, readonly intervalMs = 10_000) {}

  /** Log (or count) one refusal of `peer` (from `address`) for `reason`. */
  refuse(address: string, peer: string, reason: string, now = Date.now()): void {
    const key = `${address}\u0000${reason}`;
    const seen = this.#last.get(key);
    if (seen && now - seen.at < this.intervalMs) {
      seen.suppressed++;
      return;
    }
    this.#last.delete(key);
    if (this.#last.size >= 4096) this.#prune(now);
    this.#last.set(key, { at: now, suppressed: 0 });
    this.logger.log("warn", "refused", {
      peer,
      reason,
      suppressed: seen?.suppressed || undefined,
    });
  }

  #prune(now: number): void {
    for (const [k, v] of this.#last) if (now - v.at >= this.intervalMs) this.#last.delete(k);
    // Still full (a flood from 4,096 addresses in one interval): forget, rather than grow.
    if (this.#last.size >= 4096) this.#last.clear();
  }
}
