/**
 * `dockgate inspect` through the real CLI on a keygen PKI (one client revoked) and on a
 * certificate made by `openssl` (RSA 2048, both EKUs, an URI SAN, five days left), so the
 * table does not share keygen's assumptions. `--fail-within` exits 1 naming what runs out;
 * `serve` warns at start about a server certificate that expires within 30 days.
 */
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { runCli, startServe } from "./helpers/gate.ts";
import { keygenOk } from "./helpers/keygen_inproc.ts";
import { freeTempDir } from "./helpers/wait.ts";

async function openssl(args: string[], cwd: string): Promise<void> {
  const out = await new Deno.Command("openssl", { args, cwd, stdout: "piped", stderr: "piped" })
    .output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
}

Deno.test("inspect: table and JSON of a PKI and an openssl certificate; --fail-within", async () => {
  const dir = await freeTempDir("dg-insp-");
  try {
    const pki = join(dir, "pki");
    await keygenOk(["--dir", pki]);
    await keygenOk(["client", "alice", "--dir", pki]);
    await keygenOk(["revoke", "alice", "--dir", pki]);
    await openssl([
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      "odd.key",
      "-out",
      "odd.pem",
      "-days",
      "5",
      "-subj",
      "/CN=odd/O=Elsewhere",
      "-addext",
      "basicConstraints=critical,CA:FALSE",
      "-addext",
      "extendedKeyUsage=serverAuth,clientAuth",
      "-addext",
      "subjectAltName=URI:spiffe://example.org/odd,DNS:odd.example",
    ], dir);

    const r = await runCli(["inspect", pki, join(dir, "odd.pem")]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split("\n");
    assert.match(
      lines[0],
      /^ROLE +SUBJECT +SANS +EKU +SERIAL +NOT AFTER +DAYS +REVOKED +KEY +FILE$/,
    );
    const row = (re: RegExp) => lines.find((l) => re.test(l));
    assert.match(row(/CN=alice/)!, /^client .* REVOKED +ECDSA P-256/);
    assert.match(row(/CN=default/)!, /^client .* no +ECDSA P-256/);
    assert.match(row(/^ca /)!, /CN=dockgate CA/);
    assert.match(row(/^server /)!, /DNS:localhost.*IP:127\.0\.0\.1.*serverAuth/);
    assert.match(
      row(/CN=odd/)!,
      /^server\+client .*DNS:odd\.example,URI:spiffe:\/\/example\.org\/odd .*serverAuth,clientAuth .* [45] +- +RSA 2048 /,
    );
    assert.equal(
      lines.filter((l) => /CN=dockgate CA/.test(l)).length,
      1,
      "the CA once, not per bundle",
    );

    const j = await runCli(["inspect", "--json", join(dir, "odd.pem")]);
    const [odd] = JSON.parse(j.stdout);
    assert.equal(odd.role, "server+client");
    assert.equal(odd.keyType, "RSA 2048");
    assert.ok(odd.daysLeft >= 4 && odd.daysLeft <= 5, String(odd.daysLeft));
    assert.equal(odd.revoked, undefined, "no CRL of its issuer: unknown, not 'no'");

    const soon = await runCli(["inspect", pki, join(dir, "odd.pem"), "--fail-within", "10"]);
    assert.equal(soon.code, 1);
    assert.match(
      soon.stderr,
      /expires in [45] days: server\+client CN=odd, O=Elsewhere|expires in [45] days: server\+client CN=odd/,
    );
    assert.doesNotMatch(soon.stderr, /alice/, "a revoked certificate is not a renewal to do");
    assert.equal((await runCli(["inspect", pki, "--fail-within", "10"])).code, 0);
    const missing = await runCli(["inspect", join(dir, "nope")]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^dockgate: error: Cannot read ".*nope": ENOENT/m);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

Deno.test({
  name: "serve warns at start when its certificate expires within 30 days",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const dir = await freeTempDir("dg-exp-");
  try {
    const pki = join(dir, "pki");
    await keygenOk(["--dir", pki]);
    await keygenOk(["server", "--dir", pki, "--days", "10", "--force"]);
    const gate = await startServe([
      "--certs",
      join(pki, "server"),
      "--target",
      `unix://${join(dir, "none.sock")}`,
    ]);
    try {
      await gate.waitForLog(
        /WARN server certificate expires soon not_after=\S+ days=9 fix="dockgate keygen server --force"/,
      );
    } finally {
      await gate.stop();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
