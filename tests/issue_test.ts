import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  createCa,
  defaultServerSans,
  issueClient,
  issueServer,
  parseKeyType,
  validateClientName,
} from "../src/ca/issue.ts";
import {
  importPrivateKeyPem,
  keyMatchesCertificate,
  parseCertificatePem,
  parseCertificatesPem,
} from "../src/pki/pem.ts";
import { x509, type X509Certificate } from "../src/pki/x509.ts";

const DAY = 86_400_000;

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "dockgate-pki-test-"));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function openssl(...args: string[]): string {
  return execFileSync("openssl", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

function ekus(cert: X509Certificate): string[] {
  return Array.from(cert.getExtension(x509.ExtendedKeyUsageExtension)?.usages ?? [], String);
}

function sans(cert: X509Certificate): string[] {
  const ext = cert.getExtension(x509.SubjectAlternativeNameExtension);
  return ext ? ext.names.items.map((n) => `${n.type}:${n.value}`) : [];
}

function assertAbout(actual: number, expected: number, tolerance: number, label: string) {
  assert.ok(
    Math.abs(actual - expected) <= tolerance,
    `${label}: ${actual} not within ${tolerance} of ${expected}`,
  );
}

Deno.test("createCa: CA extensions, defaults and serial", async () => {
  const before = Date.now();
  const ca = await createCa();
  const cert = parseCertificatePem(ca.certPem);
  assert.equal(cert.subject, "CN=dockgate CA");
  assert.equal(cert.issuer, "CN=dockgate CA");
  assert.ok(ca.keyPem.startsWith("-----BEGIN PRIVATE KEY-----\n"));
  assert.ok(ca.certPem.endsWith("-----END CERTIFICATE-----\n"));

  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  assert.ok(bc);
  assert.equal(bc.ca, true);
  assert.equal(bc.critical, true);
  assert.equal(bc.pathLength, 1);
  const ku = cert.getExtension(x509.KeyUsagesExtension);
  assert.ok(ku);
  assert.equal(ku.critical, true);
  assert.equal(ku.usages, x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
  assert.ok(cert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId);
  assert.equal(cert.getExtension(x509.ExtendedKeyUsageExtension), null);

  assertAbout(cert.notBefore.getTime(), before - 5 * 60_000, 5_000, "notBefore");
  assertAbout(cert.notAfter.getTime(), before + 3650 * DAY, 5_000, "notAfter");
  assert.equal(await cert.isSelfSigned(), true);

  assert.match(cert.serialNumber, /^[0-7][0-9a-f]{31}$/);
  assert.notEqual(cert.serialNumber.slice(0, 2), "00");
});

Deno.test("serials are random and distinct", async () => {
  const ca = await createCa();
  const serials = new Set([parseCertificatePem(ca.certPem).serialNumber]);
  for (let i = 0; i < 5; i++) {
    serials.add(parseCertificatePem((await issueClient(ca, `c${i}`)).certPem).serialNumber);
  }
  assert.equal(serials.size, 6);
  for (const s of serials) assert.match(s, /^[0-7][0-9a-f]{31}$/);
});

Deno.test("issueServer: serverAuth only, SANs, CA:FALSE, SKI/AKI, 365 days", async () => {
  const ca = await createCa({ commonName: "Test CA" });
  const caCert = parseCertificatePem(ca.certPem);
  const before = Date.now();
  const server = await issueServer(ca, {
    commonName: "gate",
    sans: [
      ...defaultServerSans(),
      "docker.example.com",
      "10.1.2.3",
      "[fe80::1]",
      "ip:192.168.1.1",
      "LOCALHOST",
    ],
  });
  const cert = parseCertificatePem(server.certPem);
  assert.equal(cert.subject, "CN=gate");
  assert.equal(cert.issuer, "CN=Test CA");
  assert.deepEqual(ekus(cert), [x509.ExtendedKeyUsage.serverAuth]);
  const names = sans(cert);
  for (
    const want of [
      "dns:localhost",
      "ip:127.0.0.1",
      "ip:::1",
      "dns:docker.example.com",
      "ip:10.1.2.3",
      "ip:fe80::1",
      "ip:192.168.1.1",
    ]
  ) {
    assert.ok(names.includes(want), `${want} missing from ${names}`);
  }
  assert.equal(names.filter((n) => n === "dns:localhost").length, 1, "SANs are deduplicated");
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  assert.equal(bc?.ca, false);
  assert.equal(bc?.critical, true);
  const ku = cert.getExtension(x509.KeyUsagesExtension);
  assert.equal(ku?.usages, x509.KeyUsageFlags.digitalSignature);
  assert.equal(ku?.critical, true);
  const caSki = caCert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
  assert.ok(caSki);
  assert.equal(cert.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId, caSki);
  assert.ok(cert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId);
  assert.notEqual(cert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId, caSki);
  assertAbout(cert.notAfter.getTime(), before + 365 * DAY, 5_000, "notAfter");
  assert.equal(await cert.verify({ publicKey: caCert, signatureOnly: true }), true);
});

Deno.test("issueServer: default SANs and validation", async () => {
  const ca = await createCa();
  const cert = parseCertificatePem((await issueServer(ca)).certPem);
  assert.deepEqual(sans(cert).slice(0, 3), ["dns:localhost", "ip:127.0.0.1", "ip:::1"]);
  await assert.rejects(issueServer(ca, { sans: [] }), TypeError);
  await assert.rejects(issueServer(ca, { sans: ["bad name"] }), /Invalid SAN "bad name"/);
  await assert.rejects(issueServer(ca, { sans: ["ip:example.com"] }), TypeError);
  await assert.rejects(issueServer(ca, { sans: ["-x.example"] }), TypeError);
});

Deno.test("issueClient: CN, clientAuth only, OUs, no SAN by default", async () => {
  const ca = await createCa();
  const alice = await issueClient(ca, "alice@laptop", { organizationalUnits: ["ops", "dev"] });
  const cert = parseCertificatePem(alice.certPem);
  assert.equal(cert.subject, "OU=ops, OU=dev, CN=alice@laptop");
  assert.deepEqual(ekus(cert), [x509.ExtendedKeyUsage.clientAuth]);
  assert.deepEqual(sans(cert), []);
  assert.equal(cert.getExtension(x509.BasicConstraintsExtension)?.ca, false);
  assert.ok(cert.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId);

  const both = parseCertificatePem(
    (await issueClient(ca, "svc", {
      extKeyUsages: ["clientAuth", "serverAuth"],
      sans: ["svc.local"],
    }))
      .certPem,
  );
  assert.deepEqual(ekus(both), [
    x509.ExtendedKeyUsage.clientAuth,
    x509.ExtendedKeyUsage.serverAuth,
  ]);
  assert.deepEqual(sans(both), ["dns:svc.local"]);
});

Deno.test("client names are validated", async () => {
  const ca = await createCa();
  for (const bad of ["", ".hidden", "../x", "a/b", "a b", "x".repeat(65), "é"]) {
    assert.throws(() => validateClientName(bad), TypeError, bad);
    await assert.rejects(issueClient(ca, bad), TypeError);
  }
  for (const good of ["a", "alice.smith", "ci_bot-2", "bob@host", "x".repeat(64)]) {
    validateClientName(good);
  }
});

Deno.test("validity: custom days, range checks, clamp to CA", async () => {
  const ca = await createCa({ days: 10 });
  const caCert = parseCertificatePem(ca.certPem);
  const now = Date.now();
  const short = parseCertificatePem((await issueClient(ca, "a", { days: 3 })).certPem);
  assertAbout(short.notAfter.getTime(), now + 3 * DAY, 5_000, "3 days");
  const clamped = parseCertificatePem(
    (await issueServer(ca, { days: 365, sans: ["localhost"] })).certPem,
  );
  assert.equal(clamped.notAfter.getTime(), caCert.notAfter.getTime());

  for (const days of [0, -1, 1.5, 36501, NaN]) {
    await assert.rejects(createCa({ days }), RangeError);
    await assert.rejects(issueClient(ca, "a", { days }), RangeError);
  }
  await assert.rejects(
    createCa({ notBefore: new Date(now), notAfter: new Date(now - 1000) }),
    RangeError,
  );

  const explicit = await createCa({
    notBefore: new Date("2020-01-01T00:00:00Z"),
    notAfter: new Date("2060-01-01T00:00:00Z"),
  });
  const ex = parseCertificatePem(explicit.certPem);
  assert.equal(ex.notBefore.toISOString(), "2020-01-01T00:00:00.000Z");
  assert.equal(ex.notAfter.toISOString(), "2060-01-01T00:00:00.000Z");

  const expired = await createCa({
    notBefore: new Date("2020-01-01T00:00:00Z"),
    notAfter: new Date("2021-01-01T00:00:00Z"),
  });
  await assert.rejects(issueClient(expired, "a"), /expired/);
});

Deno.test("parseKeyType accepts aliases and lists valid values", () => {
  assert.equal(parseKeyType("p256"), "p256");
  assert.equal(parseKeyType("P-256"), "p256");
  assert.equal(parseKeyType("ecdsa-p256"), "p256");
  assert.equal(parseKeyType("secp384r1"), "p384");
  assert.equal(parseKeyType("RSA-3072"), "rsa3072");
  assert.equal(parseKeyType("rsa4096"), "rsa4096");
  assert.throws(() => parseKeyType("ed25519"), (e: Error) => {
    assert.ok(e instanceof TypeError);
    assert.match(e.message, /p256, p384, rsa2048, rsa3072, rsa4096/);
    return true;
  });
  assert.throws(() => parseKeyType("constructor"), TypeError);
});

for (const keyType of ["p256", "p384", "rsa2048"] as const) {
  Deno.test(`${keyType}: openssl verifies the chain and reads the extensions`, async () => {
    await withTempDir(async (dir) => {
      const ca = await createCa({ keyType });
      const server = await issueServer(ca, {
        keyType,
        sans: ["localhost", "127.0.0.1", "gate.example"],
      });
      const client = await issueClient(ca, "alice", { keyType });
      await writeFile(join(dir, "ca.pem"), ca.certPem);
      await writeFile(join(dir, "server.pem"), server.certPem);
      await writeFile(join(dir, "server-key.pem"), server.keyPem);
      await writeFile(join(dir, "client.pem"), client.certPem);
      const caFile = join(dir, "ca.pem");
      assert.match(
        openssl("verify", "-CAfile", caFile, "-purpose", "sslserver", join(dir, "server.pem")),
        /: OK/,
      );
      assert.match(
        openssl("verify", "-CAfile", caFile, "-purpose", "sslclient", join(dir, "client.pem")),
        /: OK/,
      );

      const caText = openssl("x509", "-in", caFile, "-noout", "-text");
      assert.match(caText, /Basic Constraints: critical\s+CA:TRUE, pathlen:1/);
      assert.match(caText, /Key Usage: critical\s+Certificate Sign, CRL Sign/);
      const serverText = openssl("x509", "-in", join(dir, "server.pem"), "-noout", "-text");
      assert.match(serverText, /CA:FALSE/);
      assert.match(serverText, /Extended Key Usage:\s+TLS Web Server Authentication\n/);
      assert.match(serverText, /DNS:localhost, IP Address:127.0.0.1, DNS:gate.example/);
      assert.match(serverText, /Authority Key Identifier/);
      if (keyType === "rsa2048") {
        assert.match(serverText, /Public-Key: \(2048 bit\)/);
        assert.match(serverText, /Digital Signature, Key Encipherment/);
        assert.match(serverText, /sha256WithRSAEncryption/);
      } else {
        assert.match(serverText, keyType === "p256" ? /prime256v1/ : /secp384r1/);
        assert.match(serverText, /Key Usage: critical\s+Digital Signature\n/);
        assert.match(serverText, keyType === "p256" ? /ecdsa-with-SHA256/ : /ecdsa-with-SHA384/);
      }
      const clientText = openssl("x509", "-in", join(dir, "client.pem"), "-noout", "-text");
      assert.match(clientText, /Subject: CN ?= ?alice/);
      assert.match(clientText, /Extended Key Usage:\s+TLS Web Client Authentication\n/);
      // openssl reads the PKCS#8 key and agrees it belongs to the certificate.
      const fromKey = openssl("pkey", "-in", join(dir, "server-key.pem"), "-pubout");
      const fromCert = openssl("x509", "-in", join(dir, "server.pem"), "-noout", "-pubkey");
      assert.equal(fromKey, fromCert);
    });
  });
}

Deno.test("keyMatchesCertificate and importPrivateKeyPem", async () => {
  const a = await createCa();
  const b = await createCa();
  const rsa = await createCa({ keyType: "rsa2048" });
  assert.equal(await keyMatchesCertificate(a.keyPem, a.certPem), true);
  assert.equal(await keyMatchesCertificate(b.keyPem, a.certPem), false);
  assert.equal(await keyMatchesCertificate(rsa.keyPem, a.certPem), false);
  assert.equal(await keyMatchesCertificate(a.keyPem, rsa.certPem), false);
  assert.equal(await keyMatchesCertificate(rsa.keyPem, rsa.certPem), true);
  await assert.rejects(keyMatchesCertificate("garbage", a.certPem), /no PEM "PRIVATE KEY" block/);
  await assert.rejects(
    keyMatchesCertificate(
      "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
      a.certPem,
    ),
    TypeError,
  );
  await assert.rejects(
    keyMatchesCertificate(
      "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
      a.certPem,
    ),
    /encrypted/,
  );
  const key = await importPrivateKeyPem(a.keyPem, parseCertificatePem(a.certPem));
  assert.equal(key.type, "private");
  assert.equal(key.extractable, false);
  await assert.rejects(importPrivateKeyPem(rsa.keyPem, parseCertificatePem(a.certPem)), TypeError);
});

Deno.test("an encrypted private key gets one clear line, not a crypto error", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dg-pki-enc-" });
  try {
    const a = await createCa();
    const plain = join(dir, "key.pem");
    await Deno.writeTextFile(plain, a.keyPem);
    for (const args of [["pkcs8", "-topk8", "-v2", "aes-128-cbc"], ["ec", "-aes128"]]) {
      const enc = openssl(...args, "-in", plain, "-passout", "pass:secret");
      await assert.rejects(
        keyMatchesCertificate(enc, a.certPem),
        /encrypted private keys are not supported; decrypt it with openssl first/,
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("legacy EC and RSA private key PEM forms are accepted", async () => {
  await withTempDir(async (dir) => {
    for (
      const [keyType, args, header] of [
        ["p256", ["ec"], "EC PRIVATE KEY"],
        ["rsa2048", ["rsa", "-traditional"], "RSA PRIVATE KEY"],
      ] as const
    ) {
      const pair = await createCa({ keyType });
      const pkcs8 = join(dir, `${keyType}.pem`);
      await writeFile(pkcs8, pair.keyPem);
      const legacy = openssl(...args, "-in", pkcs8);
      assert.ok(legacy.includes(`-----BEGIN ${header}-----`), legacy);
      assert.equal(await keyMatchesCertificate(legacy, pair.certPem), true);
      const other = await createCa({ keyType });
      assert.equal(await keyMatchesCertificate(legacy, other.certPem), false);
      // A leaf can be issued from a CA whose key is in the legacy form.
      const leaf = await issueClient({ certPem: pair.certPem, keyPem: legacy }, "bob");
      assert.equal(parseCertificatePem(leaf.certPem).subject, "CN=bob");
    }
  });
});

Deno.test("parseCertificatesPem handles bundles and rejects garbage", async () => {
  const a = await createCa({ commonName: "A" });
  const b = await createCa({ commonName: "B" });
  const certs = parseCertificatesPem(`junk\n${a.certPem}\n${a.keyPem}${b.certPem}`);
  assert.deepEqual(certs.map((c) => c.subject), ["CN=A", "CN=B"]);
  assert.throws(() => parseCertificatesPem("hello"), /no PEM "CERTIFICATE" block found/);
  assert.throws(
    () => parseCertificatePem("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----"),
    TypeError,
  );
  assert.throws(
    () => parseCertificatePem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"),
    /malformed certificate/,
  );
});

Deno.test("issuing refuses a CA pair that does not match or is not a CA", async () => {
  const a = await createCa();
  const b = await createCa();
  await assert.rejects(
    issueClient({ certPem: a.certPem, keyPem: b.keyPem }, "x"),
    /does not match/,
  );
  const leaf = await issueClient(a, "leaf");
  await assert.rejects(issueClient(leaf, "x"), /not a CA certificate/);
});

Deno.test("leaf extensions built once per kind and CA: another CA, key type or EKU gets its own", async () => {
  const ski = (pem: string) =>
    parseCertificatePem(pem).getExtension(x509.SubjectKeyIdentifierExtension)!.keyId;
  const aki = (pem: string) =>
    parseCertificatePem(pem).getExtension(x509.AuthorityKeyIdentifierExtension)!.keyId;
  const usage = (pem: string) =>
    parseCertificatePem(pem).getExtension(x509.KeyUsagesExtension)!.usages;
  const ekus = (pem: string) =>
    Array.from(
      parseCertificatePem(pem).getExtension(x509.ExtendedKeyUsageExtension)!.usages,
      String,
    );
  const one = await createCa();
  const two = await createCa();
  const a = (await issueClient(one, "a")).certPem;
  const b = (await issueClient(two, "b")).certPem;
  const c = (await issueClient(one, "c")).certPem;
  assert.equal(aki(a), ski(one.certPem));
  assert.equal(aki(b), ski(two.certPem), "another CA: its own authority key identifier");
  assert.equal(aki(c), ski(one.certPem));
  assert.notEqual(ski(a), ski(c), "each leaf its own key identifier");
  const rsa = (await issueClient(one, "r", { keyType: "rsa2048" })).certPem;
  const ds = x509.KeyUsageFlags.digitalSignature;
  assert.equal(usage(rsa), ds | x509.KeyUsageFlags.keyEncipherment);
  assert.equal(usage(c), ds);
  const server = (await issueServer(one, { sans: ["localhost"] })).certPem;
  assert.deepEqual(ekus(server), [x509.ExtendedKeyUsage.serverAuth]);
  assert.deepEqual(ekus((await issueClient(one, "d")).certPem), [x509.ExtendedKeyUsage.clientAuth]);
});
