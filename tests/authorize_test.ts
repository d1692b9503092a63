import assert from "node:assert/strict";
import { checkIdentity, type GateRules } from "../src/authorize.ts";
import { parsePeerCertificate } from "../src/identity.ts";
import {
  createCa,
  issueClient,
  issueServer,
  parseCertificatePem,
  type PemPair,
} from "../src/pki.ts";

const ca = await createCa();
const rules: GateRules = {
  caCertificates: [parseCertificatePem(ca.certPem)],
  policy: { allowAny: true },
};
const id = (pair: PemPair) =>
  parsePeerCertificate(new Uint8Array(parseCertificatePem(pair.certPem).rawData));
const DAY = 86_400_000;

Deno.test("a fresh client certificate from our CA passes", async () => {
  const d = await checkIdentity(id(await issueClient(ca, "alice")), rules);
  assert.equal(d.allow, true, d.reason);
});

Deno.test("each certificate defect is refused with its own reason", async () => {
  const foreign = await createCa();
  const now = Date.now();
  const cases: [string, PemPair, RegExp][] = [
    ["CA as client", ca, /CA certificate/],
    [
      "serverAuth only",
      await issueClient(ca, "srv", { extKeyUsages: ["serverAuth"] }),
      /clientAuth/,
    ],
    ["server cert", await issueServer(ca), /clientAuth/],
    [
      "expired",
      await issueClient(ca, "old", {
        notBefore: new Date(now - 10 * DAY),
        notAfter: new Date(now - DAY),
      }),
      /expired/,
    ],
    [
      "not yet valid",
      await issueClient(ca, "new", {
        notBefore: new Date(now + DAY),
        notAfter: new Date(now + 10 * DAY),
      }),
      /not valid before/,
    ],
    ["foreign CA", await issueClient(foreign, "alice"), /not signed by a trusted CA/],
  ];
  for (const [what, pair, re] of cases) {
    const d = await checkIdentity(id(pair), rules);
    assert.equal(d.allow, false, what);
    assert.match(d.reason, re, what);
  }
});

Deno.test("a foreign CA with the same subject name does not pass", async () => {
  const impostor = await createCa({ commonName: "dockgate CA" });
  const d = await checkIdentity(id(await issueClient(impostor, "alice")), rules);
  assert.equal(d.allow, false);
  assert.match(d.reason, /not signed/);
});

Deno.test("revoked serials and allow-lists are applied after the certificate checks", async () => {
  const bob = id(await issueClient(ca, "bob"));
  const revoked = await checkIdentity(bob, {
    ...rules,
    revocations: { serials: new Set([bob.identity.serial]) },
  });
  assert.equal(revoked.allow, false);
  assert.match(revoked.reason, /revoked/);
  const listed = await checkIdentity(bob, { ...rules, policy: { allowCn: ["alice"] } });
  assert.equal(listed.allow, false);
  assert.equal((await checkIdentity(bob, { ...rules, policy: { allowCn: ["bob"] } })).allow, true);
});
