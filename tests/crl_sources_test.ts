/**
 * CRLs as other CAs publish them (src/pki/crl.ts, src/config/serve_config.ts): DER, several
 * PEM blocks in one file, a directory of them, one per issuing CA, 100,000 entries (more
 * than @peculiar/x509's parser takes), and the kinds the gate refuses to read as a plain
 * list (delta CRLs). All made by `openssl`, not by our keygen.
 */

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { loadCrls } from "../src/pki/crl.ts";
import { loadServeConfig } from "../src/config/serve_config.ts";
import { resolveBundlePaths } from "../src/pki/credentials.ts";
import { parseCertificatesPem } from "../src/pki/pem.ts";
import { CLIENT_EXT, OpensslCa, serverBundle } from "./helpers/openssl_ca.ts";
import { freeTempDir } from "./helpers/wait.ts";

async function withCas(fn: (c: { dir: string; root: OpensslCa; int: OpensslCa }) => Promise<void>) {
  const dir = await freeTempDir("dg-crls-");
  try {
    const root = OpensslCa.create(join(dir, "root"), { name: "crl root" });
    await fn({ dir, root, int: root.intermediate(join(dir, "int"), { name: "crl intermediate" }) });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const toDer = (pem: string, out: string) =>
  execFileSync("openssl", ["crl", "-in", pem, "-outform", "DER", "-out", out]);

Deno.test("CRL sources: DER, several in one PEM file, a directory; each matched to the CA that signed it", async () => {
  await withCas(async ({ dir, root, int }) => {
    const cas = parseCertificatesPem(root.cert + int.cert);
    const leaf = int.issue("bob", { subject: "/CN=bob", extensions: CLIENT_EXT });
    int.revoke(leaf.certPath);
    const rootPem = root.crl(join(dir, "root.pem"));
    const intPem = int.crl(join(dir, "int.pem"));
    toDer(join(dir, "root.pem"), join(dir, "root.der"));

    const der = await loadCrls(join(dir, "root.der"), cas);
    assert.equal(der.length, 1);
    assert.equal(der[0].signer.subject, "CN=crl root");
    await writeFile(join(dir, "both.pem"), rootPem + intPem);
    const both = await loadCrls(join(dir, "both.pem"), cas);
    assert.deepEqual(both.map((c) => c.signer.subject), ["CN=crl root", "CN=crl intermediate"]);
    assert.equal(both[1].serials.size, 1);

    const crlDir = join(dir, "crls");
    await mkdir(crlDir);
    await writeFile(join(crlDir, "a.crl"), await readFile(join(dir, "root.der")));
    await writeFile(join(crlDir, "b.pem"), intPem);
    await writeFile(join(crlDir, ".hidden"), "not a CRL");
    assert.equal((await loadCrls(crlDir, cas)).length, 2, "dot-files are skipped");
    await writeFile(join(crlDir, "c.txt"), "not a CRL");
    await assert.rejects(
      loadCrls(crlDir, cas),
      /Cannot load CRL ".*c\.txt": no X509 CRL PEM block/,
    );
    await assert.rejects(loadCrls(join(dir, "empty-dir-missing"), cas), /Cannot read CRL/);
  });
});

Deno.test("CRL sources: serve's config keeps one list per CA; a CA's CRL may not vanish or roll back", async () => {
  await withCas(async ({ dir, root, int }) => {
    const server = serverBundle(root, join(dir, "server"), root.cert + int.cert);
    const crlDir = join(dir, "crls");
    await mkdir(crlDir);
    await writeFile(join(crlDir, "root.pem"), root.crl(join(dir, "r1.pem")));
    const int1 = int.crl(join(dir, "i1.pem"));
    await writeFile(join(crlDir, "int.pem"), int1);
    const source = {
      paths: resolveBundlePaths({ certs: server }),
      crls: [{ path: crlDir }],
      policy: { allowAny: true },
    };
    const first = await loadServeConfig(source);
    assert.equal(first.crlIssuers, 2);
    // An old and a new copy of one CA's CRL side by side: the newest's dates, every entry.
    const bob = int.issue("bob", { subject: "/CN=bob", extensions: CLIENT_EXT });
    int.revoke(bob.certPath);
    await writeFile(join(crlDir, "int-2.pem"), int.crl(join(dir, "i2.pem")));
    const second = await loadServeConfig(source, first);
    assert.equal(second.crlIssuers, 2);
    assert.equal(second.revokedCount, 1);
    // The intermediate's CRL gone while the intermediate is still trusted: refused.
    await rm(join(crlDir, "int.pem"));
    await rm(join(crlDir, "int-2.pem"));
    await assert.rejects(
      loadServeConfig(source, second),
      /The CRL of "CN=crl intermediate" .* was in force and is gone now/,
    );
    // Put back only the older one: a rollback.
    await writeFile(join(crlDir, "int.pem"), int1);
    await assert.rejects(
      loadServeConfig(source, second),
      /lower than 2 in force: refusing a rollback/,
    );
  });
});

Deno.test("CRL sources: 100,000 revoked serials load into a set, a delta CRL is refused", async () => {
  await withCas(async ({ dir, root }) => {
    const cas = parseCertificatesPem(root.cert);
    // openssl ca's database with 100,000 revoked entries, then its CRL.
    const lines: string[] = [];
    for (let i = 0; i < 100_000; i++) {
      lines.push(
        `R\t301231235959Z\t261101000000Z\t${
          (0x200000 + i).toString(16).toUpperCase()
        }\tunknown\t/CN=c${i}`,
      );
    }
    await writeFile(join(root.dir, "index.txt"), lines.join("\n") + "\n");
    const big = join(dir, "big.pem");
    root.crl(big);
    const [crl] = await loadCrls(big, cas);
    assert.equal(crl.serials.size, 100_000);
    assert.ok(crl.serials.has((0x200000 + 99_999).toString(16)));
    assert.ok(!crl.serials.has((0x200000 + 100_000).toString(16)));

    // A delta CRL (deltaCRLIndicator) lists changes only: out of scope, refused.
    await writeFile(join(root.dir, "index.txt"), "");
    const cnf = join(dir, "delta.cnf");
    await writeFile(
      cnf,
      (await readFile(join(root.dir, "openssl.cnf"), "utf8")) +
        "[delta]\n2.5.29.27 = critical, ASN1:INTEGER:1\n",
    );
    execFileSync("openssl", [
      "ca",
      "-config",
      cnf,
      "-gencrl",
      "-crlexts",
      "delta",
      "-out",
      join(dir, "delta.pem"),
    ], { stdio: "pipe" });
    await assert.rejects(loadCrls(join(dir, "delta.pem"), cas), /a delta CRL is not supported/);
  });
});
