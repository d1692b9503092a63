import assert from "node:assert/strict";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type CredentialPaths,
  CredentialsError,
  loadCaBundle,
  loadCredentials,
  resolveBundlePaths,
} from "../src/pki/credentials.ts";
import { clientBundlePaths, pkiLayout } from "../src/ca/layout.ts";
import { initPki } from "../src/ca/keygen.ts";
import { createCa, issueServer, type PemPair } from "../src/ca/issue.ts";
import { parseCertificatePem, parseCertificatesPem } from "../src/pki/pem.ts";

interface Fixture {
  root: string;
  server: CredentialPaths;
  client: CredentialPaths;
  /** Write a file with the given mode and return its path. */
  put(name: string, content: string, mode?: number): Promise<string>;
}

async function withFixture(fn: (f: Fixture) => Promise<void>): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), "dockgate-credentials-test-"));
  try {
    const dir = join(root, "pki");
    await initPki({ dir });
    const l = pkiLayout(dir);
    const c = clientBundlePaths(dir, "default");
    await fn({
      root,
      server: { cert: l.server.cert, key: l.server.key, ca: l.server.ca },
      client: { cert: c.cert, key: c.key, ca: c.ca },
      async put(name, content, mode = 0o600) {
        const path = join(root, name);
        await writeFile(path, content);
        await chmod(path, mode);
        return path;
      },
    });
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

async function rejectsWith(promise: Promise<unknown>, message: string | RegExp): Promise<void> {
  await assert.rejects(promise, (e: Error) => {
    assert.ok(e instanceof CredentialsError, `not a CredentialsError: ${e}`);
    if (typeof message === "string") assert.equal(e.message, message);
    else assert.match(e.message, message);
    return true;
  });
}

Deno.test("resolveBundlePaths", () => {
  assert.deepEqual(resolveBundlePaths({ certs: "/d" }), {
    cert: "/d/cert.pem",
    key: "/d/key.pem",
    ca: "/d/ca.pem",
  });
  assert.deepEqual(resolveBundlePaths({ certs: "/d", key: "/k.pem" }), {
    cert: "/d/cert.pem",
    key: "/k.pem",
    ca: "/d/ca.pem",
  });
  assert.deepEqual(resolveBundlePaths({ cert: "c", key: "k", ca: "a" }), {
    cert: "c",
    key: "k",
    ca: "a",
  });
  assert.throws(() => resolveBundlePaths({ cert: "c" }), {
    name: "TypeError",
    message: "Missing --key, --ca: give --certs DIR or all of --cert, --key and --ca",
  });
});

Deno.test("valid server and client credentials load", async () => {
  await withFixture(async (f) => {
    const server = await loadCredentials(f.server, { role: "server" });
    assert.equal(server.certPath, f.server.cert);
    assert.equal(parseCertificatesPem(server.caPem).length, 1);
    assert.equal(parseCertificatesPem(server.caPem)[0].subject, "CN=dockgate CA");
    assert.ok(server.keyPem.includes("PRIVATE KEY"));
    const client = await loadCredentials(f.client, { role: "client" });
    assert.equal(parseCertificatePem(client.certPem).subject, "CN=default");
    const bundle = await loadCaBundle(f.client.ca);
    assert.equal(bundle.caPem, client.caPem);
    assert.equal(bundle.caPath, f.client.ca);
  });
});

Deno.test("unreadable files name the file and cause", async () => {
  await withFixture(async (f) => {
    const missing = join(f.root, "nope.pem");
    await rejectsWith(
      loadCredentials({ ...f.server, cert: missing }, { role: "server" }),
      `Cannot read certificate "${missing}": ENOENT: no such file or directory`,
    );
    await rejectsWith(
      loadCredentials({ ...f.server, key: missing }, { role: "server" }),
      `Cannot read private key "${missing}": ENOENT: no such file or directory`,
    );
    await rejectsWith(
      loadCredentials({ ...f.server, ca: missing }, { role: "server" }),
      `Cannot read CA certificate "${missing}": ENOENT: no such file or directory`,
    );
    await rejectsWith(loadCaBundle(missing), /^Cannot read CA certificate ".*nope.pem": ENOENT/);
  });
});

Deno.test("garbage PEM is reported per file", async () => {
  await withFixture(async (f) => {
    const garbage = await f.put("garbage.pem", "hello world\n");
    await rejectsWith(
      loadCredentials({ ...f.server, cert: garbage }, { role: "server" }),
      `Invalid certificate "${garbage}": no PEM "CERTIFICATE" block found`,
    );
    await rejectsWith(
      loadCredentials({ ...f.server, key: garbage }, { role: "server" }),
      `Invalid private key "${garbage}": no PEM "PRIVATE KEY" block found`,
    );
    await rejectsWith(
      loadCredentials({ ...f.server, ca: garbage }, { role: "server" }),
      `Invalid CA certificate "${garbage}": no PEM "CERTIFICATE" block found`,
    );
    const badKey = await f.put(
      "bad-key.pem",
      "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    );
    await rejectsWith(
      loadCredentials({ ...f.server, key: badKey }, { role: "server" }),
      /^Invalid private key ".*bad-key.pem": /,
    );
  });
});

Deno.test("a key that does not match the certificate", async () => {
  await withFixture(async (f) => {
    await rejectsWith(
      loadCredentials({ ...f.server, key: f.client.key }, { role: "server" }),
      `Private key "${f.client.key}" does not match certificate "${f.server.cert}"`,
    );
    const rsa = await createCa({ keyType: "rsa2048" });
    const rsaKey = await f.put("rsa-key.pem", rsa.keyPem);
    await rejectsWith(
      loadCredentials({ ...f.server, key: rsaKey }, { role: "server" }),
      /does not match certificate/,
    );
  });
});

Deno.test("a CA file holding a non-CA certificate, and a CA used as leaf", async () => {
  await withFixture(async (f) => {
    await rejectsWith(
      loadCredentials({ ...f.server, ca: f.client.cert }, { role: "server" }),
      `"${f.client.cert}" contains "CN=default", which is not a CA certificate (basicConstraints CA:FALSE)`,
    );
    await rejectsWith(
      loadCaBundle(f.client.cert),
      /is not a CA certificate \(basicConstraints CA:FALSE\)/,
    );
    const l = pkiLayout(join(f.root, "pki"));
    await rejectsWith(
      loadCredentials({ cert: l.caCert, key: l.caKey, ca: l.caCert }, { role: "server" }),
      /is a CA certificate: use a server certificate issued by it/,
    );
  });
});

Deno.test("a certificate from a foreign CA", async () => {
  await withFixture(async (f) => {
    const foreign = await createCa();
    const sameName = await createCa(); // same subject "CN=dockgate CA", different key
    for (const ca of [foreign, sameName]) {
      const caPath = await f.put("foreign-ca.pem", ca.certPem, 0o644);
      await rejectsWith(
        loadCredentials({ ...f.server, ca: caPath }, { role: "server" }),
        /^Certificate ".*server\/cert.pem" \(CN=.*, issued by CN=dockgate CA\) is not signed by a CA in ".*foreign-ca.pem"$/,
      );
    }
    // A bundle with the right CA among others is fine.
    const bundle = await f.put(
      "bundle.pem",
      foreign.certPem + (await loadCaBundle(f.server.ca)).caPem,
      0o644,
    );
    const ok = await loadCredentials({ ...f.server, ca: bundle }, { role: "server" });
    assert.equal(parseCertificatesPem(ok.caPem).length, 2);
  });
});

async function writePair(
  f: Fixture,
  name: string,
  pair: PemPair,
): Promise<{ cert: string; key: string }> {
  return {
    cert: await f.put(`${name}.pem`, pair.certPem, 0o644),
    key: await f.put(`${name}-key.pem`, pair.keyPem),
  };
}

Deno.test("expired and not-yet-valid certificates", async () => {
  await withFixture(async (f) => {
    const ca = await createCa({ notBefore: new Date("2020-01-01T00:00:00Z"), days: 3650 });
    const caPath = await f.put("old-ca.pem", ca.certPem, 0o644);
    const expired = await writePair(
      f,
      "expired",
      await issueServer(ca, {
        sans: ["localhost"],
        notBefore: new Date("2020-01-01T00:00:00Z"),
        notAfter: new Date("2021-01-01T00:00:00Z"),
      }),
    );
    await rejectsWith(
      loadCredentials({ ...expired, ca: caPath }, { role: "server" }),
      `Certificate "${expired.cert}" expired on 2021-01-01T00:00:00.000Z`,
    );
    // With the default 365 days, a year and a half from now the server certificate is expired.
    const later = new Date(Date.now() + 548 * 86_400_000);
    await rejectsWith(loadCredentials(f.server, { role: "server", now: later }), /expired on/);
    await rejectsWith(
      loadCredentials(f.server, { role: "server", now: new Date("2000-01-01T00:00:00Z") }),
      /is not valid until .* \(check the clock\)/,
    );
    // An expired issuing CA is reported as such.
    const ten = new Date(Date.now() + 3700 * 86_400_000);
    await rejectsWith(
      loadCaBundle(caPath, { now: ten }),
      /CA certificate "CN=dockgate CA" in ".*" expired on/,
    );
  });
});

Deno.test("role extended key usage", async () => {
  await withFixture(async (f) => {
    await rejectsWith(
      loadCredentials(f.client, { role: "server" }),
      `Certificate "${f.client.cert}" cannot be used by a TLS server: its extended key usage lacks ` +
        `serverAuth (issue one with "dockgate keygen server")`,
    );
    await rejectsWith(loadCredentials(f.server, { role: "client" }), /lacks clientAuth/);
    await assert.rejects(loadCredentials(f.server, { role: "peer" as never }), TypeError);
  });
});

Deno.test("private key permissions", async () => {
  await withFixture(async (f) => {
    await chmod(f.server.key, 0o644);
    await rejectsWith(
      loadCredentials(f.server, { role: "server" }),
      `Private key "${f.server.key}" is readable by others (mode 0644): run chmod 600 "${f.server.key}"`,
    );
    await chmod(f.server.key, 0o640);
    await rejectsWith(
      loadCredentials(f.server, { role: "server" }),
      /readable by others \(mode 0640\)/,
    );
    await chmod(f.server.key, 0o620);
    await rejectsWith(
      loadCredentials(f.server, { role: "server" }),
      /writable by others \(mode 0620\)/,
    );
    const loaded = await loadCredentials(f.server, { role: "server", insecureKeyPerms: true });
    assert.equal(loaded.keyPath, f.server.key);
    await chmod(f.server.key, 0o400);
    await loadCredentials(f.server, { role: "server" });
  });
});

Deno.test("P-384 credentials load", async () => {
  await withFixture(async (f) => {
    const ca = await createCa({ keyType: "p384" });
    const pair = await writePair(
      f,
      "p384",
      await issueServer(ca, { keyType: "p384", sans: ["localhost"] }),
    );
    const caPath = await f.put("p384-ca.pem", ca.certPem, 0o644);
    const creds = await loadCredentials({ ...pair, ca: caPath }, { role: "server" });
    assert.equal(parseCertificatesPem(creds.caPem)[0].subject, "CN=dockgate CA");
  });
});
