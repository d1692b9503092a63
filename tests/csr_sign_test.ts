/**
 * The CSR check of enrolment (src/ca/csr_sign.ts `csrPublicKey`) on CSRs made by `openssl req`:
 * the key types keygen makes pass, others and a CSR whose signature does not verify are refused.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { csrPublicKey, CsrRefused } from "../src/ca/csr_sign.ts";

/** A CSR by `openssl req` with a new key made by `-newkey SPEC` (and `-sigopt`s), PEM. */
async function opensslCsr(dir: string, spec: string[], sigopts: string[] = []): Promise<string> {
  const out = join(dir, `csr-${crypto.randomUUID()}.pem`);
  const args = ["req", "-new", "-nodes", "-subj", "/CN=x", "-keyout", `${out}.key`, "-out", out];
  const r = await new Deno.Command("openssl", {
    args: [...args, ...spec, ...sigopts],
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
  return await Deno.readTextFile(out);
}

function refusal(pem: string): string {
  try {
    csrPublicKey(pem);
  } catch (e) {
    assert.ok(e instanceof CsrRefused, String(e));
    return e.message;
  }
  return "accepted";
}

Deno.test("csrPublicKey: keygen's key types pass; other keys, algorithms and bad signatures do not", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dg-csr-" });
  try {
    const ec = (curve: string) => ["-newkey", "ec", "-pkeyopt", `ec_paramgen_curve:${curve}`];
    const rsa = (bits: number) => ["-newkey", `rsa:${bits}`];
    for (const [spec, name] of [[ec("P-256"), "ECDSA"], [ec("P-384"), "ECDSA"]] as const) {
      assert.equal(csrPublicKey(await opensslCsr(dir, [...spec])).algorithm.name, name);
    }
    const rsa2048 = csrPublicKey(await opensslCsr(dir, rsa(2048)));
    assert.equal(rsa2048.algorithm.name, "RSASSA-PKCS1-v1_5");
    assert.equal(
      csrPublicKey(await opensslCsr(dir, ec("P-256"), ["-sha384"])).algorithm.name,
      "ECDSA",
    );

    assert.match(refusal(await opensslCsr(dir, ec("P-521"))), /key type is not supported/);
    assert.match(refusal(await opensslCsr(dir, rsa(1024))), /key type is not supported/);
    assert.match(refusal(await opensslCsr(dir, ["-newkey", "ed25519"])), /key type|signature/);
    // RSA-PSS and SHA-1 signatures are not on the list: refused, whatever the key.
    const pss = await opensslCsr(dir, rsa(2048), ["-sigopt", "rsa_padding_mode:pss"]);
    assert.match(refusal(pss), /signature does not verify/);
    assert.match(refusal(await opensslCsr(dir, ec("P-256"), ["-sha1"])), /signature/);

    // A changed subject: the signature does not verify.
    const good = await opensslCsr(dir, ec("P-256"));
    const b64 = good.replace(/-----[A-Z ]+-----|\s/g, "");
    const der = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const cn = der.findIndex((b, i) => b === 0x0c && der[i + 1] === 1 && der[i + 2] === 0x78);
    assert.ok(cn > 0, "the CN 'x' in the signed subject");
    der[cn + 2] = 0x79; // CN=y: the signed part changed, the signature is the old one
    const text = btoa(String.fromCharCode(...der)).replace(/.{64}/g, "$&\n");
    const tampered =
      `-----BEGIN CERTIFICATE REQUEST-----\n${text}\n-----END CERTIFICATE REQUEST-----\n`;
    assert.match(refusal(tampered), /signature does not verify/);
    assert.match(refusal("not a CSR"), /not a PKCS#10 request/);
    assert.match(refusal("x".repeat(9000)), /at most 8192 bytes/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
