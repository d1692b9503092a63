import assert from "node:assert/strict";
import { parseDuration } from "../src/config/duration.ts";

Deno.test("parseDuration units", () => {
  assert.equal(parseDuration("500ms"), 500);
  assert.equal(parseDuration("10s"), 10_000);
  assert.equal(parseDuration("10"), 10_000);
  assert.equal(parseDuration("1.5s"), 1500);
  assert.equal(parseDuration("5m"), 300_000);
  assert.equal(parseDuration("2h"), 7_200_000);
  assert.equal(parseDuration("0s"), 0);
});

Deno.test("parseDuration rejects junk", () => {
  for (const t of ["", "s", "10x", "-1s", "1e3s", "ten"]) {
    assert.throws(() => parseDuration(t), TypeError, t);
  }
});
