import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createCrl } from "../src/ca/crl_issue.ts";
import { loadCrlFile, parseCrlPem } from "../src/pki/crl.ts";
import { normalizeSerial } from "../src/pki/serial.ts";
import { initPki, issueClientBundle } from "../src/ca/keygen.ts";
import { createCa } from "../src/ca/issue.ts";
import { parseCertificatePem, parseCertificatesPem } from "../src/pki/pem.ts";
import { revokeCertificate } from "../src/ca/revoke.ts";

async function tempPki() {
  const dir = await Deno.makeTempDir({ prefix: "dg-revoke-" });
  await initPki({ dir });
  await issueClientBundle("bob", { dir });
  return dir;
}

const serialOf = async (path: string) =>
  normalizeSerial(parseCertificatePem(await readFile(path, "utf8")).serialNumber);

Deno.test("revoke by name writes a CRL openssl accepts and that lists the serial", async () => {
  const dir = await tempPki();
  try {
    const bobCert = join(dir, "clients", "bob", "cert.pem");
    const r = await revokeCertificate(dir, "bob");
    assert.equal(r.serial, await serialOf(bobCert));
    assert.equal(r.name, "bob");
    assert.ok(r.newlyRevoked);
    for (const crlPath of [join(dir, "ca", "crl.pem"), join(dir, "server", "crl.pem")]) {
      assert.equal((await stat(crlPath)).mode & 0o777, 0o644);
      const crl = parseCrlPem(await readFile(crlPath, "utf8"));
      assert.deepEqual([...crl.serials], [normalizeSerial(r.serial)]);
    }
    // openssl: the CRL verifies against the CA, and bob's certificate is reported revoked.
    const ca = join(dir, "ca", "ca.pem");
    const crl = join(dir, "ca", "crl.pem");
    const text = execFileSync("openssl", ["crl", "-in", crl, "-CAfile", ca, "-noout", "-text"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
    assert.match(text, /Revoked Certificates/);
    const verify = (cert: string) => {
      try {
        return execFileSync("openssl", [
          "verify",
          "-crl_check",
          "-CAfile",
          ca,
          "-CRLfile",
          crl,
          cert,
        ], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
      } catch (e) {
        return String((e as { stdout?: string; stderr?: string }).stdout ?? "") +
          String((e as { stderr?: string }).stderr ?? "");
      }
    };
    assert.match(verify(bobCert), /revoked/i);
    assert.match(verify(join(dir, "clients", "default", "cert.pem")), /OK/);
    // Loading for serve: signature checked, serial present.
    const loaded = await loadCrlFile(crl, parseCertificatesPem(await readFile(ca, "utf8")));
    assert.ok(loaded.serials.has(r.serial));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("revoke by serial, repeat revocations, and accumulated entries", async () => {
  const dir = await tempPki();
  try {
    const serial = await serialOf(join(dir, "clients", "default", "cert.pem"));
    const colon = serial.padStart(32, "0").toUpperCase().match(/../g)!.join(":");
    const a = await revokeCertificate(dir, colon);
    assert.equal(a.serial, serial);
    assert.equal(a.name, undefined);
    const b = await revokeCertificate(dir, "bob");
    assert.equal(b.total, 2);
    const again = await revokeCertificate(dir, "bob");
    assert.equal(again.newlyRevoked, false);
    assert.equal(again.total, 2);
    const crl = parseCrlPem(await readFile(join(dir, "server", "crl.pem"), "utf8"));
    assert.equal(crl.serials.size, 2);
    await assert.rejects(revokeCertificate(dir, "nobody-here"), /no client of that name/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a CRL signed by another CA, or garbage, is refused by serve's loader", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dg-crl-" });
  try {
    const ours = await createCa();
    const theirs = await createCa({ commonName: "dockgate CA" });
    const forged = join(dir, "forged.pem");
    await writeFile(forged, await createCrl(theirs, []));
    await assert.rejects(
      loadCrlFile(forged, [parseCertificatePem(ours.certPem)]),
      /not signed by a CA in the CA bundle/,
    );
    const junk = join(dir, "junk.pem");
    await writeFile(junk, "not a crl");
    await assert.rejects(
      loadCrlFile(junk, [parseCertificatePem(ours.certPem)]),
      /Cannot load CRL ".*junk.pem"/,
    );
    await assert.rejects(loadCrlFile(join(dir, "missing.pem"), []), /Cannot read CRL/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("revocations at once lose none: the record, the CRLs and the CRL number", async () => {
  // Before the PKI's revocation lock, each revoke read revoked.json, added its serial and wrote
  // the list back: of four at once, the last write won and three revocations were dropped.
  const dir = await tempPki();
  try {
    const names = ["bob", "carol", "dave", "erin"];
    for (const n of names.slice(1)) await issueClientBundle(n, { dir });
    const serials = await Promise.all(
      names.map((n) => serialOf(join(dir, "clients", n, "cert.pem"))),
    );
    const reports = await Promise.all(names.map((n) => revokeCertificate(dir, n)));
    assert.ok(reports.every((r) => r.newlyRevoked));
    const record = JSON.parse(await readFile(join(dir, "ca", "revoked.json"), "utf8"));
    assert.deepEqual(record.map((e: { serial: string }) => e.serial).sort(), [...serials].sort());
    for (const crlPath of [join(dir, "ca", "crl.pem"), join(dir, "server", "crl.pem")]) {
      const crl = parseCrlPem(await readFile(crlPath, "utf8"));
      assert.deepEqual([...crl.serials].sort(), [...serials].sort(), crlPath);
    }
    // Each publication took the next number: four CRLs in a row after the first, none repeated.
    const numbers = reports.map((r) => r.crlNumber).sort((a, b) => Number(a - b));
    assert.deepEqual(numbers, [0n, 1n, 2n, 3n].map((i) => numbers[0] + i));
    await assert.rejects(stat(join(dir, "revocations.lock")), { code: "ENOENT" });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
