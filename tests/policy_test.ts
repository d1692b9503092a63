import assert from "node:assert/strict";
import { describePolicy, evaluatePolicy, matchName } from "../src/access/policy.ts";

const peer = (
  o: Partial<
    {
      commonName: string;
      organizationalUnits: string[];
      dnsNames: string[];
      uris: string[];
      ips: string[];
    }
  >,
) => ({
  commonName: undefined,
  organizationalUnits: [],
  dnsNames: [],
  uris: [],
  ips: [],
  ...o,
});

Deno.test("empty policy denies everyone", () => {
  const d = evaluatePolicy({}, peer({ commonName: "alice" }));
  assert.equal(d.allow, false);
  assert.match(d.reason, /allows nobody/);
  assert.match(describePolicy({}), /nobody/);
});

Deno.test("allowAny accepts any (already verified) peer", () => {
  assert.ok(evaluatePolicy({ allowAny: true }, peer({})).allow);
  assert.match(describePolicy({ allowAny: true }), /any certificate/);
});

Deno.test("allow-cn is exact, OR-ed, with single-label globs", () => {
  const p = { allowCn: ["alice", "*.ci.example"] };
  assert.ok(evaluatePolicy(p, peer({ commonName: "alice" })).allow);
  assert.ok(evaluatePolicy(p, peer({ commonName: "r1.ci.example" })).allow);
  for (const cn of ["alice2", "Alic", "a.b.ci.example", "ci.example", ""]) {
    assert.equal(evaluatePolicy(p, peer({ commonName: cn })).allow, false, cn);
  }
  assert.equal(evaluatePolicy(p, peer({})).allow, false, "no CN");
  assert.match(evaluatePolicy(p, peer({ commonName: "mallory" })).reason, /not on any allow-list/);
});

Deno.test("allow-san matches DNS (glob), URI and IP; allow-ou exact", () => {
  const p = { allowSan: ["*.svc.example", "spiffe://corp/ci", "10.0.0.7"], allowOu: ["ops"] };
  assert.ok(evaluatePolicy(p, peer({ dnsNames: ["api.svc.example"] })).allow);
  assert.ok(evaluatePolicy(p, peer({ uris: ["spiffe://corp/ci"] })).allow);
  assert.ok(evaluatePolicy(p, peer({ ips: ["10.0.0.7"] })).allow);
  assert.ok(evaluatePolicy(p, peer({ organizationalUnits: ["dev", "ops"] })).allow);
  assert.equal(evaluatePolicy(p, peer({ uris: ["spiffe://corp/ci/x"] })).allow, false);
  assert.equal(evaluatePolicy(p, peer({ organizationalUnits: ["Ops"] })).allow, false);
  assert.equal(evaluatePolicy(p, peer({ commonName: "ops" })).allow, false, "CN is not an OU");
  // A SAN value in the CN must not count as a SAN.
  assert.equal(evaluatePolicy(p, peer({ commonName: "10.0.0.7" })).allow, false);
});

Deno.test("matchName edge cases", () => {
  // Common names compare exactly (keygen tells "alice" and "Alice" apart); DNS names fold
  // ASCII case only.
  assert.ok(!matchName("A.Example", "a.example"));
  assert.ok(matchName("A.Example", "a.example", { dns: true }));
  assert.ok(!matchName("kevin", "\u212Aevin", { dns: true }), "Kelvin sign is not K");
  assert.ok(!matchName("*", "a.b"));
  assert.ok(matchName("*", "a"));
  assert.ok(!matchName("*.example", ".example"));
});
