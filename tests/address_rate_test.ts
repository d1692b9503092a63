/**
 * The enrolment port's per-address window (src/enroll/address_rate.ts): the limit per address,
 * and a full table: only expired windows make room, and a new address is refused while none
 * has expired (before, the whole table was cleared, which reset every address's window,
 * the attacker's own too).
 */
import assert from "node:assert/strict";
import { AddressRate, MAX_ADDRESSES } from "../src/enroll/address_rate.ts";

Deno.test("address rate: limit per address, a new window after windowMs", () => {
  const rate = new AddressRate(2, 1000);
  assert.ok(rate.take("a", 0) && rate.take("a", 10));
  assert.ok(!rate.take("a", 20), "over the limit");
  assert.ok(rate.take("b", 20), "per address");
  assert.ok(rate.take("a", 1000), "the next window");
  assert.throws(() => new AddressRate(0, 1), RangeError);
});

Deno.test("address rate: a full table evicts only expired windows, else refuses", () => {
  const rate = new AddressRate(1, 1000);
  assert.ok(rate.take("attacker", 0));
  assert.ok(!rate.take("attacker", 1), "limited");
  for (let i = 1; i < MAX_ADDRESSES; i++) assert.ok(rate.take(`x${i}`, 500));
  // The table is full and no window has expired: a new address is refused, and the limited
  // address stays limited.
  assert.ok(!rate.take("newcomer", 600), "fail closed: no room");
  assert.ok(!rate.take("attacker", 600), "its window was not reset");
  // At 1000 the attacker's window (from 0) has expired: it makes room for one new address.
  assert.ok(rate.take("newcomer", 1000));
  assert.ok(!rate.take("other", 1001), "the x windows (from 500) have not expired");
  assert.ok(!rate.take("x1", 1001), "x1 still limited");
  assert.ok(rate.take("other", 1500), "now they have");
});
