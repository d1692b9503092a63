import assert from "node:assert/strict";
import { authorizePeer, checkIdentity, type GateRules } from "../src/access/authorize.ts";
import { Buffer } from "node:buffer";
import { parsePeerCertificate } from "../src/access/identity.ts";
import { createCa, issueClient, issueServer, type PemPair } from "../src/ca/issue.ts";
import { parseCertificatePem } from "../src/pki/pem.ts";

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

Deno.test("signature checks hold for every key type, also on the second handshake (cached CA key)", async () => {
  for (const keyType of ["p384", "rsa2048"] as const) {
    const typedCa = await createCa({ keyType });
    const typedRules: GateRules = {
      caCertificates: [parseCertificatePem(typedCa.certPem)],
      policy: { allowAny: true },
    };
    const client = id(await issueClient(typedCa, "alice", { keyType }));
    for (let i = 0; i < 2; i++) {
      const d = await checkIdentity(client, typedRules);
      assert.equal(d.allow, true, `${keyType} #${i + 1}: ${d.reason}`);
    }
    // Same subject, other key: refused, also after the right CA's key was cached.
    const impostorCa = await createCa({ keyType });
    const forged = id(await issueClient(impostorCa, "alice", { keyType }));
    assert.equal(forged.certificate.issuer, client.certificate.issuer);
    const d = await checkIdentity(forged, typedRules);
    assert.equal(d.allow, false, keyType);
    assert.match(d.reason, /not signed by a trusted CA/);
  }
});

Deno.test("authorizePeer: a certificate seen before is still checked against the rules of the moment", async () => {
  const pair = await issueClient(ca, "carol");
  const der = Buffer.from(parseCertificatePem(pair.certPem).rawData);
  // What authorizePeer reads from a TLS socket the runtime verified.
  const socket = {
    authorized: true,
    authorizationError: null,
    getPeerCertificate: () => ({ raw: der }),
  };
  // deno-lint-ignore no-explicit-any
  const decide = (r: GateRules, now?: Date) => authorizePeer(socket as any, r, now);
  const first = await decide(rules);
  assert.equal(first.allow, true, first.reason);
  const serial = first.identity!.serial;
  // The identity is shared between connections of the same certificate: read-only.
  assert.throws(() => {
    (first.identity as { commonName?: string }).commonName = "root";
  }, TypeError);
  // Revoked since: refused.
  const revoked = await decide({ ...rules, revocations: { serials: new Set([serial]) } });
  assert.equal(revoked.allow, false);
  assert.match(revoked.reason, /revoked/);
  // Expired by now: refused.
  const later = await decide(rules, new Date(Date.now() + 400 * 86_400_000));
  assert.equal(later.allow, false);
  assert.match(later.reason, /expired/);
  // The CA was replaced (reload): the old signature check does not carry over.
  const otherCa = await createCa();
  const reloaded = await decide({
    ...rules,
    caCertificates: [parseCertificatePem(otherCa.certPem)],
  });
  assert.equal(reloaded.allow, false);
  assert.match(reloaded.reason, /not signed by a trusted CA/);
  // Policy changed: refused; and the original rules still pass.
  assert.equal((await decide({ ...rules, policy: { allowCn: ["dave"] } })).allow, false);
  assert.equal((await decide(rules)).allow, true);
});

Deno.test("authorizePeer: the parse cache answers only for the same bytes (one byte changed is checked anew)", async () => {
  const der = Buffer.from(parseCertificatePem((await issueClient(ca, "erin")).certPem).rawData);
  const socketOf = (raw: Buffer) => ({
    authorized: true,
    authorizationError: null,
    getPeerCertificate: () => ({ raw }),
  });
  // deno-lint-ignore no-explicit-any
  const decide = (raw: Buffer) => authorizePeer(socketOf(raw) as any, rules);
  const first = await decide(der);
  assert.equal(first.allow, true, first.reason);
  assert.equal((await decide(Buffer.from(der))).identity, first.identity, "same bytes: cached");
  // The last byte is in the signature: the same subject, serial and key, a signature our CA
  // never made. It must not be served from the entry of the genuine certificate.
  const forged = Buffer.from(der);
  forged[forged.length - 1] ^= 1;
  const d = await decide(forged);
  assert.equal(d.allow, false);
  assert.match(d.reason, /not signed by a trusted CA/);
  assert.notEqual(d.identity, first.identity);
  // The genuine one still passes afterwards.
  assert.equal((await decide(der)).allow, true);
});
