import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { access, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AlreadyExistsError } from "../src/ca/files.ts";
import { clientBundlePaths, pkiLayout } from "../src/ca/layout.ts";
import { initPki, issueClientBundle, issueServerBundle } from "../src/ca/keygen.ts";
import { loadCa, pkiExists } from "../src/ca/issuers.ts";
import { createCa } from "../src/ca/issue.ts";
import { parseCertificatePem } from "../src/pki/pem.ts";
import { x509 } from "../src/pki/x509.ts";

async function withPkiDir(fn: (dir: string, root: string) => Promise<void>): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), "dockgate-keygen-test-"));
  try {
    await fn(join(root, "pki"), root);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

function opensslVerify(ca: string, cert: string): string {
  return execFileSync("openssl", ["verify", "-CAfile", ca, cert], { encoding: "utf8" });
}

async function mode(path: string): Promise<number> {
  return (await stat(path)).mode & 0o777;
}

async function snapshot(paths: string[]): Promise<string[]> {
  return await Promise.all(paths.map((p) => readFile(p, "utf8")));
}

/** The CRLs a new CA publishes at once, in the CA and the server bundle. */
function crlFiles(dir: string): string[] {
  const l = pkiLayout(dir);
  return [join(l.caDir, "crl.pem"), join(l.server.dir, "crl.pem")];
}

function allFiles(dir: string, client = "default"): string[] {
  const l = pkiLayout(dir);
  const c = clientBundlePaths(dir, client);
  return [l.caCert, l.caKey, l.server.ca, l.server.cert, l.server.key, c.ca, c.cert, c.key];
}

Deno.test("initPki creates the layout with strict modes and a valid chain", async () => {
  await withPkiDir(async (dir) => {
    assert.equal(await pkiExists(dir), false);
    const report = await initPki({ dir, sans: ["gate.example", "10.9.8.7"] });
    const l = pkiLayout(dir);
    const client = clientBundlePaths(dir, "default");
    assert.deepEqual([...report.created].sort(), [...allFiles(dir), ...crlFiles(dir)].sort());
    assert.deepEqual(report.kept, []);
    assert.equal(report.notes, undefined);
    assert.equal(await pkiExists(dir), true);

    for (const key of [l.caKey, l.server.key, client.key]) {
      assert.equal(await mode(key), 0o600, key);
    }
    for (const cert of [l.caCert, l.server.cert, l.server.ca, client.cert, client.ca]) {
      assert.equal(await mode(cert), 0o644, cert);
    }
    for (const d of [dir, l.caDir, l.server.dir, l.clientsDir, client.dir]) {
      assert.equal(await mode(d), 0o700, d);
    }
    // No temporary files left behind.
    for (const d of [l.caDir, l.server.dir, client.dir]) {
      assert.deepEqual((await readdir(d)).filter((n) => n.startsWith(".")), []);
    }

    assert.equal(await readFile(l.server.ca, "utf8"), await readFile(l.caCert, "utf8"));
    assert.equal(await readFile(client.ca, "utf8"), await readFile(l.caCert, "utf8"));
    assert.match(opensslVerify(l.caCert, l.server.cert), /OK/);
    assert.match(opensslVerify(client.ca, client.cert), /OK/);

    const server = parseCertificatePem(await readFile(l.server.cert, "utf8"));
    const names = server.getExtension(x509.SubjectAlternativeNameExtension)!.names.items
      .map((n) => `${n.type}:${n.value}`);
    for (
      const want of ["dns:localhost", "ip:127.0.0.1", "ip:::1", "dns:gate.example", "ip:10.9.8.7"]
    ) {
      assert.ok(names.includes(want), `${want} not in ${names}`);
    }
    assert.equal(parseCertificatePem(await readFile(client.cert, "utf8")).subject, "CN=default");
    const ca = parseCertificatePem(await readFile(l.caCert, "utf8"));
    const days = (ca.notAfter.getTime() - Date.now()) / 86_400_000;
    assert.ok(days > 3649 && days <= 3650, String(days));
  });
});

Deno.test("initPki re-run keeps everything; force replaces it", async () => {
  await withPkiDir(async (dir) => {
    await initPki({ dir });
    const before = await snapshot(allFiles(dir));
    const again = await initPki({ dir, sans: ["new.example"] });
    assert.deepEqual(again.created, []);
    assert.deepEqual([...again.kept].sort(), allFiles(dir).sort());
    assert.deepEqual(await snapshot(allFiles(dir)), before);
    assert.equal(again.notes?.length, 1);
    assert.match(again.notes![0], /SANs were not applied/);

    await issueClientBundle("alice", { dir });
    const forced = await initPki({ dir, force: true, keyType: "p384", caDays: 100, days: 30 });
    assert.deepEqual([...forced.created].sort(), [...allFiles(dir), ...crlFiles(dir)].sort());
    const after = await snapshot(allFiles(dir));
    before.forEach((content, i) => assert.notEqual(after[i], content, allFiles(dir)[i]));
    assert.ok(forced.notes?.some((n) => n.includes("alice")));
    const l = pkiLayout(dir);
    assert.match(opensslVerify(l.caCert, l.server.cert), /OK/);
    assert.equal(await mode(l.caKey), 0o600);
    const server = parseCertificatePem(after[3]);
    assert.equal((server.publicKey.algorithm as EcKeyAlgorithm).namedCurve, "P-384");
    const days = (server.notAfter.getTime() - Date.now()) / 86_400_000;
    assert.ok(days > 29 && days <= 30, String(days));
  });
});

Deno.test("initPki force keeps the old CA in ca/retired/TIME/ and says what happens to clients", async () => {
  await withPkiDir(async (dir) => {
    await initPki({ dir });
    await issueClientBundle("alice", { dir });
    const l = pkiLayout(dir);
    const old = await snapshot([l.caCert, l.caKey]);
    const retiredDir = join(l.caDir, "retired");
    const first = await initPki({ dir, force: true });
    const second = await initPki({ dir, force: true });
    const kept = (await readdir(retiredDir)).sort();
    assert.equal(kept.length, 2, kept.join(", "));
    // The first retirement holds the very first CA, untouched by the second --force.
    const oldest = join(retiredDir, kept[0]);
    assert.deepEqual(await snapshot([join(oldest, "ca.pem"), join(oldest, "ca-key.pem")]), old);
    assert.equal(await mode(join(oldest, "ca-key.pem")), 0o600);
    assert.equal(await mode(oldest), 0o700);
    assert.notDeepEqual(await snapshot([l.caCert, l.caKey]), old);
    for (const [report, i] of [[first, 0], [second, 1]] as const) {
      const note = report.notes?.find((n) => n.includes(join(retiredDir, kept[i])));
      assert.ok(note, JSON.stringify(report.notes));
      assert.match(note, /old CA/);
      assert.ok(report.notes?.some((n) => /alice/.test(n) && /no\s+longer get in/.test(n)));
    }
  });
});

Deno.test("initPki issues missing bundles from the existing CA", async () => {
  await withPkiDir(async (dir) => {
    await initPki({ dir });
    const l = pkiLayout(dir);
    const caBefore = await snapshot([l.caCert, l.caKey]);
    await rm(l.server.dir, { recursive: true });
    await rm(clientBundlePaths(dir, "default").ca);
    const report = await initPki({ dir, clientName: "ci" });
    assert.deepEqual(await snapshot([l.caCert, l.caKey]), caBefore);
    const ci = clientBundlePaths(dir, "ci");
    assert.deepEqual(
      [...report.created].sort(),
      [l.server.ca, l.server.cert, l.server.key, ci.ca, ci.cert, ci.key, crlFiles(dir)[1]].sort(),
    );
    assert.ok(report.kept.includes(l.caKey));
    assert.match(opensslVerify(l.caCert, l.server.cert), /OK/);
    assert.match(opensslVerify(l.caCert, ci.cert), /OK/);
    // Restores a deleted CA copy in a kept bundle.
    const restored = await initPki({ dir });
    assert.deepEqual(restored.created, [clientBundlePaths(dir, "default").ca]);
  });
});

Deno.test("initPki refuses incomplete parts and bundles without a CA", async () => {
  await withPkiDir(async (dir) => {
    await initPki({ dir });
    const l = pkiLayout(dir);
    await rm(l.server.key);
    await assert.rejects(initPki({ dir }), (e: Error) => {
      assert.ok(e instanceof AlreadyExistsError);
      assert.match(e.message, /Incomplete server bundle.*--force/);
      return true;
    });
    await initPki({ dir, force: true });
    await rm(l.caDir, { recursive: true });
    await assert.rejects(initPki({ dir }), (e: Error) => {
      assert.ok(e instanceof AlreadyExistsError);
      assert.match(e.message, /there is no CA/);
      return true;
    });
  });
});

Deno.test("issueServerBundle force keeps the certificate's names unless new ones are given", async () => {
  await withPkiDir(async (dir) => {
    await initPki({ dir });
    const sansOf = async (cert: string) => {
      const c = new x509.X509Certificate(await readFile(cert, "utf8"));
      const ext = c.getExtension(x509.SubjectAlternativeNameExtension);
      return (ext?.names.items ?? []).map((n) => `${n.type}:${n.value}`).sort();
    };
    const l = pkiLayout(dir);
    await issueServerBundle({ dir, sans: ["x.example", "10.0.0.7"], force: true });
    const given = await sansOf(l.server.cert);
    assert.ok(given.includes("dns:x.example") && given.includes("ip:10.0.0.7"), given.join());
    const report = await issueServerBundle({ dir, force: true });
    assert.deepEqual(await sansOf(l.server.cert), given);
    assert.ok(report.notes?.some((n) => /names of the certificate it replaces/.test(n)));
    await issueServerBundle({ dir, sans: ["y.example"], force: true });
    const fresh = await sansOf(l.server.cert);
    assert.ok(fresh.includes("dns:y.example") && !fresh.includes("dns:x.example"), fresh.join());
    // A fleet bundle too.
    await issueServerBundle({ dir, name: "host1", sans: ["10.0.0.8"] });
    const host1 = join(dir, "servers", "host1", "cert.pem");
    const before = await sansOf(host1);
    await issueServerBundle({ dir, name: "host1", force: true });
    assert.deepEqual(await sansOf(host1), before);
  });
});

Deno.test("initPki force keeps the server's earlier SANs unless new ones are given", async () => {
  await withPkiDir(async (dir) => {
    const sansOf = async (cert: string) => {
      const c = new x509.X509Certificate(await readFile(cert, "utf8"));
      const ext = c.getExtension(x509.SubjectAlternativeNameExtension);
      return (ext?.names.items ?? []).map((n) => `${n.type}:${n.value}`).sort();
    };
    const l = pkiLayout(dir);
    await initPki({ dir, sans: ["docker.example", "10.0.0.9"] });
    const given = await sansOf(l.server.cert);
    assert.ok(given.includes("dns:docker.example") && given.includes("ip:10.0.0.9"), given.join());
    // A new CA (keygen --force): the server's names are what clients connect by; they stay.
    const report = await initPki({ dir, force: true });
    assert.deepEqual(await sansOf(l.server.cert), given);
    assert.ok(report.notes?.some((n) => /names of the certificate it replaces/.test(n)));
    // New names given: those (with the defaults), not the old ones.
    await initPki({ dir, force: true, sans: ["other.example"] });
    const fresh = await sansOf(l.server.cert);
    assert.ok(
      fresh.includes("dns:other.example") && !fresh.includes("dns:docker.example"),
      fresh.join(),
    );
  });
});

Deno.test("issueServerBundle / issueClientBundle", async () => {
  await withPkiDir(async (dir) => {
    await assert.rejects(
      issueClientBundle("alice", { dir }),
      { message: `No CA in "${join(dir, "ca")}": run "dockgate keygen" first` },
    );
    await assert.rejects(issueServerBundle({ dir }), /No CA in/);
    await initPki({ dir });

    const alice = clientBundlePaths(dir, "alice");
    const report = await issueClientBundle("alice", {
      dir,
      organizationalUnits: ["dev"],
      keyType: "rsa2048",
    });
    assert.deepEqual([...report.created].sort(), [alice.ca, alice.cert, alice.key].sort());
    assert.equal(
      parseCertificatePem(await readFile(alice.cert, "utf8")).subject,
      "OU=dev, CN=alice",
    );
    assert.equal(await mode(alice.key), 0o600);
    assert.equal(await mode(alice.dir), 0o700);
    assert.match(opensslVerify(alice.ca, alice.cert), /OK/);

    const keyBefore = await readFile(alice.key, "utf8");
    await assert.rejects(issueClientBundle("alice", { dir }), (e: Error) => {
      assert.ok(e instanceof AlreadyExistsError);
      assert.match(e.message, /already exists.*--force/);
      return true;
    });
    assert.equal(await readFile(alice.key, "utf8"), keyBefore);
    await issueClientBundle("alice", { dir, force: true });
    assert.notEqual(await readFile(alice.key, "utf8"), keyBefore);
    assert.equal(await mode(alice.key), 0o600);

    await assert.rejects(issueClientBundle("../evil", { dir }), TypeError);
    await assert.rejects(access(join(dir, "evil")));

    const l = pkiLayout(dir);
    await assert.rejects(issueServerBundle({ dir, sans: ["x.example"] }), AlreadyExistsError);
    await issueServerBundle({ dir, sans: ["x.example"], force: true });
    const server = parseCertificatePem(await readFile(l.server.cert, "utf8"));
    const names = server.getExtension(x509.SubjectAlternativeNameExtension)!.names.items.map((n) =>
      n.value
    );
    assert.ok(names.includes("x.example") && names.includes("localhost"));
  });
});

Deno.test("bad options are rejected before anything is written", async () => {
  await withPkiDir(async (dir) => {
    await assert.rejects(initPki({ dir, days: 0 }), RangeError);
    await assert.rejects(initPki({ dir, caDays: 36501 }), RangeError);
    await assert.rejects(initPki({ dir, clientName: ".x" }), TypeError);
    await assert.rejects(initPki({ dir, sans: ["not valid"] }), TypeError);
    await assert.rejects(initPki({ dir, keyType: "dsa" as never }), TypeError);
    await assert.rejects(access(dir));
  });
});

Deno.test("loadCa validates the pair; existing files are never followed or clobbered", async () => {
  await withPkiDir(async (dir, root) => {
    await initPki({ dir });
    const l = pkiLayout(dir);
    const ca = await loadCa(dir);
    assert.equal(ca.certPem, await readFile(l.caCert, "utf8"));
    const other = await createCa();
    await writeFile(l.caKey, other.keyPem);
    await assert.rejects(loadCa(dir), /CA private key ".*" does not match CA certificate/);
    await rm(l.caKey);
    await assert.rejects(loadCa(dir), /Cannot read CA private key ".*ca-key.pem": ENOENT/);

    // A pre-existing file where a key would go is reported, not replaced.
    const fresh = join(root, "fresh");
    await mkdir(join(fresh, "ca"), { recursive: true });
    await writeFile(join(fresh, "ca", "ca-key.pem"), "precious");
    await assert.rejects(initPki({ dir: fresh }), AlreadyExistsError);
    assert.equal(await readFile(join(fresh, "ca", "ca-key.pem"), "utf8"), "precious");
  });
});
