/**
 * Per-identity limits (src/docker/request_limits.ts): the token bucket refills with time and
 * never past its burst, identities do not share, an in-flight slot ends once (twice is once),
 * each refusal is counted and logged at most once a second, and the role options are checked.
 */
import assert from "node:assert/strict";
import { compileApiPolicy } from "../src/docker/api_policy.ts";
import { newExchange } from "../src/docker/relay_exchange.ts";
import { RequestLimits } from "../src/docker/request_limits.ts";

const role = (spec: Record<string, unknown>) =>
  compileApiPolicy({ roles: { r: { preset: "read-only", ...spec } }, identities: [] }, "p")
    .roles.get("r")!;
const ex = () => newExchange("GET", "/info", "r", false);

Deno.test("request limits: the bucket, per identity, refilled with time", () => {
  let now = 0;
  const counted: string[] = [];
  const logged: string[] = [];
  const limits = new RequestLimits({
    now: () => now,
    metrics: {
      handshake() {},
      refused() {},
      opened() {},
      closed() {},
      limited: (identity, limit) => void counted.push(`${identity} ${limit}`),
    },
    logger: { log: (_l, message, f) => void logged.push(`${message} ${f?.identity}`) },
  });
  const r = role({ rate: { perSecond: 2, burst: 3 } });
  const a = { owner: "a", identity: "a" };
  const results = () => Array.from({ length: 4 }, () => limits.admit(a, r, ex()) === undefined);
  assert.deepEqual(results(), [true, true, true, false], "the burst, then refused");
  assert.equal(limits.admit({ owner: "b", identity: "b" }, r, ex()), undefined, "b has its own");
  now += 500; // one token back
  assert.deepEqual(results(), [true, false, false, false]);
  now += 60_000; // never more than the burst
  assert.deepEqual(results(), [true, true, true, false]);
  assert.equal(counted.length, 5);
  assert.deepEqual(counted[0], "a rate");
  assert.deepEqual(logged, ["request limited a", "request limited a"], "once a second at most");
});

Deno.test("request limits: maxInFlight slots end once", () => {
  const limits = new RequestLimits({ now: () => 0 });
  const r = role({ maxInFlight: 2 });
  const a = { owner: "a", identity: "a" };
  const [e1, e2, e3] = [ex(), ex(), ex()];
  assert.equal(limits.admit(a, r, e1), undefined);
  assert.equal(limits.admit(a, r, e2), undefined);
  assert.equal(limits.admit(a, r, e3), "maxInFlight: 2 requests in flight already");
  assert.equal(e3.endSlot, undefined, "a refused request holds no slot");
  e1.endSlot!();
  e1.endSlot!();
  assert.equal(limits.admit(a, r, e3), undefined, "one slot free, not two");
  assert.notEqual(limits.admit(a, r, ex()), undefined);
  assert.equal(limits.admit(a, role({}), ex()), undefined, "no limits: nothing counted");
});

Deno.test("request limits: the role options are checked", () => {
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ rate: 5 }, /roles\.r\.rate: must be an object/],
    [{ rate: { perSecond: 0 } }, /rate\.perSecond: must be a number above 0/],
    [{ rate: { perSecond: 1, burst: 1.5 } }, /rate\.burst: must be a whole number/],
    [{ rate: { perSecond: 1, per: 1 } }, /rate\.per: unknown key/],
    [{ maxInFlight: 0 }, /maxInFlight: must be a whole number from 1/],
    [{ preset: "full", maxInFlight: 3 }, /maxInFlight: .*relayed raw.*add "audit": "requests"/],
    [{ preset: "full", audit: "connections", rate: { perSecond: 1 } }, /rate: .*"requests"/],
  ];
  for (const [spec, re] of bad) assert.throws(() => role(spec), re, JSON.stringify(spec));
  // A full role whose requests are read (audit: requests, the HTTP-aware relay) can be limited.
  const full = role({ preset: "full", audit: "requests", rate: { perSecond: 2 }, maxInFlight: 4 });
  assert.equal(full.spec.maxInFlight, 4);
  assert.equal(role({ rate: { perSecond: 0.5 } }).spec.rate?.perSecond, 0.5);
});
