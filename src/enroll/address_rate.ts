/**
 * Requests per source address in a fixed window, for the enrolment port: a token guesser or a
 * flood from one address is cut off after `limit` requests per `windowMs`. The table is
 * bounded at {@linkcode MAX_ADDRESSES}: a new address takes the place of windows that have
 * expired, and is refused while none has (fail closed: clearing the table would reset every
 * window, so an attacker with that many addresses would reset its own limit; such a flood is a
 * job for the firewall).
 *
 * @module
 */

/** The most addresses tracked at once. */
export const MAX_ADDRESSES = 10_000;

/**
 * A fixed-window counter per address.
 *
 * @example
 * ```ts
 * import { AddressRate } from "./address_rate.ts";
 * const rate = new AddressRate(2, 60_000);
 * if (!rate.take("a") || !rate.take("a") || rate.take("a")) throw new Error();
 * if (!rate.take("b")) throw new Error("per address");
 * ```
 */
export class AddressRate {
  #windows = new Map<string, { start: number; count: number }>();

  /** At most `limit` requests per `windowMs` per address. */
  constructor(readonly limit: number, readonly windowMs: number) {
    if (!(limit >= 1) || !(windowMs > 0)) throw new RangeError("limit >= 1 and windowMs > 0");
  }

  /** Count one request from `address`; `false` when it is over the limit. */
  take(address: string, now: number = Date.now()): boolean {
    let w = this.#windows.get(address);
    if (!w || now - w.start >= this.windowMs) {
      if (!w && this.#windows.size >= MAX_ADDRESSES && !this.#evictExpired(now)) return false;
      w = { start: now, count: 0 };
      // Deleted and set again: the map's order stays the windows' start order.
      this.#windows.delete(address);
      this.#windows.set(address, w);
    }
    w.count++;
    return w.count <= this.limit;
  }

  /** Drop the expired windows (the oldest first, in the map's order); whether any was. */
  #evictExpired(now: number): boolean {
    let evicted = false;
    for (const [address, w] of this.#windows) {
      if (now - w.start < this.windowMs) break;
      this.#windows.delete(address);
      evicted = true;
    }
    return evicted;
  }
}
