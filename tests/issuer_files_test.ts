/**
 * The enrolment port's issuer (src/ca/issuer_files.ts) and the CA key cache
 * (src/ca/ca_key_cache.ts): the same files give the issuer already loaded, a replaced
 * intermediate (a new key) is used by the next signing, and a key that no longer matches its
 * certificate is refused, not served from the cache.
 */

import assert from "node:assert/strict";
import { copyFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { freeTempDir } from "./helpers/wait.ts";
import { initPki } from "../src/ca/keygen.ts";
import { createIntermediate } from "../src/ca/intermediates.ts";
import { IssuerFiles } from "../src/ca/issuer_files.ts";
import { createCa, issueClient } from "../src/ca/issue.ts";
import { loadedCa } from "../src/ca/ca_key_cache.ts";
import { parseCertificatePem } from "../src/pki/pem.ts";
import { signerOf } from "../src/pki/verify.ts";

Deno.test("issuer files: unchanged files are not loaded again; a replaced intermediate is picked up", async () => {
  const dir = await freeTempDir("dg-isf-");
  try {
    await initPki({ dir });
    await createIntermediate("e", { dir });
    const files = new IssuerFiles(dir, "e");
    const first = await files.current();
    assert.equal(await files.current(), first, "same files: the issuer already loaded");
    const before = parseCertificatePem((await issueClient(first.issuer.ca, "a")).certPem);
    assert.ok(await signerOf(before, [first.cert]));

    // keygen intermediate e --force: a new key and certificate in the same files.
    await createIntermediate("e", { dir, force: true });
    const next = await files.current();
    assert.notEqual(next, first);
    assert.notEqual(next.issuer.ca.keyPem, first.issuer.ca.keyPem);
    const after = parseCertificatePem((await issueClient(next.issuer.ca, "b")).certPem);
    assert.ok(await signerOf(after, [next.cert]), "signed with the new key");
    assert.equal(await signerOf(after, [first.cert]), undefined, "not with the old one");
    assert.equal(next.issuer.chainPem, next.issuer.ca.certPem);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("issuer files: a key that does not match its certificate is refused, then the fixed pair loads", async () => {
  const dir = await freeTempDir("dg-isf-");
  try {
    await initPki({ dir });
    await createIntermediate("e", { dir });
    const files = new IssuerFiles(dir, "e");
    await files.current();
    const key = join(dir, "intermediates", "e", "ca-key.pem");
    await copyFile(key, join(dir, "saved-key.pem"));
    await writeFile(key, (await createCa()).keyPem); // half a rotation: the key alone replaced
    await assert.rejects(() => files.current(), /does not match its certificate/);
    await assert.rejects(() => files.current(), /does not match/, "a failure is not cached");
    await copyFile(join(dir, "saved-key.pem"), key);
    const back = await files.current();
    assert.ok(
      await signerOf(parseCertificatePem((await issueClient(back.issuer.ca, "c")).certPem), [
        back.cert,
      ]),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("CA key cache: a pair is imported once; other bytes are another entry, a mismatch is never cached", async () => {
  const a = await createCa();
  const b = await createCa();
  const loaded = await loadedCa(a);
  assert.equal(await loadedCa({ certPem: a.certPem, keyPem: a.keyPem }), loaded);
  assert.notEqual(await loadedCa(b), loaded);
  await assert.rejects(() => loadedCa({ certPem: a.certPem, keyPem: b.keyPem }), /does not match/);
  await assert.rejects(
    () => issueClient({ certPem: a.certPem, keyPem: b.keyPem }, "x"),
    /does not match/,
  );
});
