/**
 * `dockgate doctor` through the real CLI. Healthy: a keygen PKI, a real dockerd behind a
 * running serve, and a full mTLS round trip: every check passes, exit 0. Broken, each on its
 * own (bundles made by `openssl ca`, not by keygen): a wrong key, a 0644 key, an expired
 * certificate, a wrong EKU, a missing SAN, a dead target: exit 1 and the FAIL line names
 * the fix.
 */
import assert from "node:assert/strict";
import { chmod, copyFile, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { x509 } from "../src/pki/x509.ts";
import { join } from "node:path";
import { runCli, type ServeProcess, startServe } from "./helpers/gate.ts";
import { dockerdUnavailable, startDockerd } from "./helpers/dockerd.ts";
import { CLIENT_EXT, daysFromNow, type Issued, OpensslCa } from "./helpers/openssl_ca.ts";
import { freeTempDir } from "./helpers/wait.ts";

async function bundleDir(
  dir: string,
  ca: OpensslCa,
  cert: Issued,
  key = cert.key,
): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(join(dir, "ca.pem"), ca.cert);
  await writeFile(join(dir, "cert.pem"), cert.cert);
  await writeFile(join(dir, "key.pem"), key, { mode: 0o600 });
  return dir;
}

function failLine(stdout: string, what: RegExp, fix: RegExp): void {
  const line = stdout.split("\n").find((l) => l.startsWith("FAIL ") && what.test(l));
  assert.ok(line, `no FAIL line for ${what}:\n${stdout}`);
  assert.match(line, / -> fix: /);
  assert.match(line, fix);
}

Deno.test("doctor: each broken bundle fails with its fix", async () => {
  const dir = await freeTempDir("dg-doc-");
  try {
    const ca = OpensslCa.create(join(dir, "ca"), { notAfter: daysFromNow(365) });
    const long = { notBefore: daysFromNow(-1), notAfter: daysFromNow(200) };
    const good = ca.issue("good", { subject: "/CN=good", extensions: CLIENT_EXT, ...long });
    const other = ca.issue("other", { subject: "/CN=other", extensions: CLIENT_EXT, ...long });
    const doctor = async (...args: string[]) => {
      const r = await runCli(["doctor", ...args]);
      assert.equal(r.code, 1, `doctor ${args.join(" ")} must fail:\n${r.stdout}`);
      return r.stdout;
    };
    // A healthy bundle passes on its own (the baseline for each broken one below).
    const ok = await runCli(["doctor", "--certs", await bundleDir(join(dir, "ok"), ca, good)]);
    assert.equal(ok.code, 0, ok.stdout);

    failLine(
      await doctor("--certs", await bundleDir(join(dir, "wrongkey"), ca, good, other.key)),
      /key matches certificate/,
      /put the bundle's own key back/,
    );
    const loose = await bundleDir(join(dir, "loose"), ca, good);
    await chmod(join(loose, "key.pem"), 0o644);
    failLine(
      await doctor("--certs", loose),
      /is private \(mode 0644\)/,
      /chmod 600 .*loose\/key\.pem/,
    );
    const expired = ca.issue("old", {
      subject: "/CN=old",
      extensions: CLIENT_EXT,
      notBefore: daysFromNow(-60),
      notAfter: daysFromNow(-1),
    });
    failLine(
      await doctor("--certs", await bundleDir(join(dir, "expired"), ca, expired)),
      /certificate valid for 30\+ days \(expired /,
      /dockgate keygen/,
    );
    const mail = ca.issue("mail", {
      subject: "/CN=mail",
      extensions: ["basicConstraints = critical, CA:FALSE", "extendedKeyUsage = emailProtection"],
      ...long,
    });
    failLine(
      await doctor("--certs", await bundleDir(join(dir, "eku"), ca, mail)),
      /usable as a TLS client \(extended key usage clientAuth.*the certificate's EKU is 1\.3\.6\.1\.5\.5\.7\.3\.4/,
      /dockgate keygen client NAME --force/,
    );
    const elsewhere = ca.issue("srv", {
      subject: "/CN=elsewhere",
      extensions: [
        "basicConstraints = critical, CA:FALSE",
        "extendedKeyUsage = serverAuth",
        "subjectAltName = DNS:elsewhere.example",
      ],
      ...long,
    });
    failLine(
      await doctor("--certs", await bundleDir(join(dir, "nosan"), ca, elsewhere)),
      /certificate names cover localhost \(SANs: elsewhere\.example\)/,
      /dockgate keygen server --san localhost --force/,
    );
    failLine(
      await doctor("--target", `unix://${join(dir, "no-dockerd.sock")}`),
      /target unix:\/\/.*no-dockerd\.sock answers \/_ping/,
      /start dockerd/,
    );
    // A keygen PKI whose client bundle lost its own key.
    const pki = join(dir, "pki");
    assert.equal((await runCli(["keygen", "--dir", pki])).code, 0);
    assert.equal((await runCli(["keygen", "client", "bob", "--dir", pki])).code, 0);
    await copyFile(
      join(pki, "clients", "bob", "key.pem"),
      join(pki, "clients", "default", "key.pem"),
    );
    failLine(
      await doctor("--pki", pki),
      /client default: key matches certificate/,
      /keygen client default --dir .* --force/,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

Deno.test({
  name: "doctor: a healthy PKI, dockerd and a running serve pass, with a full mTLS round trip",
  ignore: dockerdUnavailable(),
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const d = await startDockerd();
  if (!d) return;
  const dir = await freeTempDir("dg-doc-ok-");
  let gate: ServeProcess | undefined;
  try {
    const pki = join(dir, "pki");
    assert.equal((await runCli(["keygen", "--dir", pki])).code, 0);
    gate = await startServe(["--certs", join(pki, "server"), "--target", d.host]);
    const r = await runCli([
      "doctor",
      "--pki",
      pki,
      "--target",
      d.host,
      "--listen",
      "127.0.0.1:0",
      "--server",
      `localhost:${gate.port}`,
    ]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.doesNotMatch(r.stdout, /^FAIL/m);
    assert.match(r.stdout, /^PASS target unix:\/\/.* answers \/_ping \(API 1\.41\)$/m);
    assert.match(
      r.stdout,
      /^PASS mTLS round trip to localhost:\d+ with .*clients\/default \(admitted as default \(serial [0-9a-f]+\), \/_ping OK, API 1\.41\)$/m,
    );
    assert.match(r.stdout, /^PASS server: certificate names cover localhost$/m);
    assert.match(r.stderr, /all \d+ checks passed/);
    // The port serve holds is not free.
    const busy = await runCli(["doctor", "--listen", `127.0.0.1:${gate.port}`]);
    assert.equal(busy.code, 1);
    assert.match(
      busy.stdout,
      /FAIL port tcp:\/\/127\.0\.0\.1:\d+ is free to listen on \(in use\) -> fix: stop what listens there/,
    );
  } finally {
    await gate?.stop();
    await d.stop();
    await rm(dir, { recursive: true, force: true });
  }
});

Deno.test("doctor --pki: the revocations, CRLs and fleet bundles serve and inspect see", async () => {
  const dir = await freeTempDir("dg-doc-");
  try {
    const pki = join(dir, "pki");
    for (
      const args of [
        [],
        ["intermediate", "team"],
        ["client", "x", "--issuer", "team"],
        ["server", "--name", "host1"],
        ["revoke", "x"],
      ]
    ) {
      const r = await runCli(["keygen", ...args, "--dir", pki]);
      assert.equal(r.code, 0, r.stderr);
    }
    // inspect says REVOKED for x (revoked by the intermediate): doctor must agree.
    const inspect = await runCli(["inspect", join(pki, "clients", "x"), join(pki, "server")]);
    assert.match(inspect.stdout, /CN=x.*REVOKED/);
    let r = await runCli(["doctor", "--pki", pki]);
    assert.equal(r.code, 1, r.stdout);
    failLine(r.stdout, /client x: certificate not revoked/, /keygen client x --dir .* --force/);
    // The fleet bundle is checked too.
    assert.match(r.stdout, /^PASS server host1: key matches certificate/m);
    // Without server/crl.pem serve refuses to start: so does doctor.
    await rm(join(pki, "server", "crl.pem"));
    await rm(join(pki, "servers", "host1", "crl.pem"));
    r = await runCli(["doctor", "--pki", pki]);
    failLine(r.stdout, /server: CRL present/, /dockgate keygen crl/);
    failLine(r.stdout, /server host1: CRL present/, /dockgate keygen crl/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

Deno.test("doctor --pki: a serial is revoked only by its own issuer's records and CRL", async () => {
  const dir = await freeTempDir("dg-doc-");
  try {
    const pki = join(dir, "pki");
    for (const args of [[], ["intermediate", "a"], ["client", "alice", "--issuer", "a"]]) {
      const r = await runCli(["keygen", ...args, "--dir", pki]);
      assert.equal(r.code, 0, r.stderr);
    }
    // bob: a client certificate the ROOT signed (by openssl, not keygen) with alice's serial.
    const alice = new x509.X509Certificate(await readFile(join(pki, "clients/alice/cert.pem")));
    const root = OpensslCa.adopt(
      join(dir, "root-openssl"),
      join(pki, "ca", "ca.pem"),
      join(pki, "ca", "ca-key.pem"),
    );
    const bobCert = root.issue("bob", {
      subject: "/CN=bob",
      extensions: CLIENT_EXT,
      notAfter: daysFromNow(200),
      serial: alice.serialNumber,
    });
    const bob = await bundleDir(join(pki, "clients", "bob"), root, bobCert);
    // The root revokes bob: its records and CRL now list the serial alice has from "a".
    const revoke = await runCli(["keygen", "revoke", "bob", "--dir", pki]);
    assert.equal(revoke.code, 0, revoke.stderr);
    assert.match(
      revoke.stdout + revoke.stderr,
      new RegExp(alice.serialNumber.replace(/^0+/, ""), "i"),
    );

    const inspect = await runCli([
      "inspect",
      join(pki, "clients", "alice"),
      bob,
      join(pki, "server"),
    ]);
    assert.match(inspect.stdout, /CN=bob.*REVOKED/);
    assert.doesNotMatch(inspect.stdout, /CN=alice.*REVOKED/);
    const r = await runCli(["doctor", "--pki", pki]);
    failLine(r.stdout, /client bob: certificate not revoked/, /keygen client bob --dir .* --force/);
    assert.match(r.stdout, /^PASS client alice: certificate not revoked/m, r.stdout);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
