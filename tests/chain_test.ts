/**
 * The gate's own chain check (src/pki/chain.ts, name_constraints.ts) on chains made by
 * `openssl ca`, not by our keygen: every link's rule, one odd certificate at a time. The
 * gate-level proof (through serve, on both runtimes) is in chain_e2e_test.ts.
 */

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { trustStoreOf, verifyChain } from "../src/pki/chain.ts";
import { parseCertificatePem } from "../src/pki/pem.ts";
import { CA_EXT, CLIENT_EXT, daysFromNow, OpensslCa } from "./helpers/openssl_ca.ts";
import { freeTempDir } from "./helpers/wait.ts";

const cert = (pem: string) => parseCertificatePem(pem);

/** A root and `fn`'s chains under it; the store holds the root only unless told. */
async function withRoot(fn: (root: OpensslCa, dir: string) => Promise<void>) {
  const dir = await freeTempDir("dg-chain-");
  try {
    await fn(OpensslCa.create(join(dir, "root"), { name: "chain root" }), dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The outcome for a client leaf `name` under `issuer`, the chain `sent` beside it. */
async function outcome(
  issuer: OpensslCa,
  sent: OpensslCa[],
  bundle: OpensslCa[],
  leaf: { subject?: string; extensions?: string[] } = {},
) {
  const issued = issuer.issue("leaf", {
    subject: leaf.subject ?? "/CN=alice",
    extensions: leaf.extensions ?? CLIENT_EXT,
  });
  return await verifyChain(
    cert(issued.cert),
    sent.map((c) => cert(c.cert)),
    trustStoreOf(bundle.map((c) => cert(c.cert))),
    "client",
  );
}

const refused = (r: { ok: boolean; reason?: string }, re: RegExp) => {
  assert.equal(r.ok, false, "must be refused");
  assert.match((r as { reason: string }).reason, re);
};

Deno.test("chains: root -> intermediate -> leaf, the intermediate sent by the peer or in the bundle", async () => {
  await withRoot(async (root, dir) => {
    const int = root.intermediate(join(dir, "int"), { name: "team intermediate" });
    const sent = await outcome(int, [int], [root]);
    assert.ok(sent.ok, JSON.stringify(sent));
    assert.equal(sent.path.length, 3);
    assert.ok((await outcome(int, [], [root, int])).ok, "from the bundle");
    refused(await outcome(int, [], [root]), /not signed by a trusted CA/);
    // An intermediate alone is no anchor (rustls would take it as one; we do not).
    refused(await outcome(int, [], [int]), /does not chain|not signed by a trusted CA/);
    // Two levels.
    const sub = int.intermediate(join(dir, "sub"), { name: "sub intermediate" });
    const two = await outcome(sub, [sub, int], [root]);
    assert.ok(two.ok && two.path.length === 4, JSON.stringify(two));
  });
});

Deno.test("chains: each issuer's CA flag, keyCertSign, dates and extended key usage", async () => {
  await withRoot(async (root, dir) => {
    const make = (name: string, extensions: string[], dates = {}) =>
      root.intermediate(join(dir, name), { name, extensions, ...dates });
    const notCa = make("not-ca", [
      "basicConstraints = critical, CA:FALSE",
      "keyUsage = keyCertSign",
    ]);
    refused(await outcome(notCa, [notCa], [root]), /is not a CA/);
    const noSign = make("no-sign", [
      "basicConstraints = critical, CA:TRUE",
      "keyUsage = critical, cRLSign, digitalSignature",
    ]);
    refused(await outcome(noSign, [noSign], [root]), /lacks keyCertSign/);
    const noKu = make("no-ku", ["basicConstraints = critical, CA:TRUE"]);
    refused(await outcome(noKu, [noKu], [root]), /has no key usage extension/);
    const expired = make("expired", CA_EXT, {
      notBefore: daysFromNow(-30),
      notAfter: daysFromNow(-1),
    });
    refused(await outcome(expired, [expired], [root]), /intermediate CA \(CN=expired\) expired/);
    const early = make("early", CA_EXT, { notBefore: daysFromNow(2), notAfter: daysFromNow(30) });
    refused(await outcome(early, [early], [root]), /CN=early\) not valid before/);
    const serverOnly = make("server-only", [...CA_EXT, "extendedKeyUsage = serverAuth"]);
    refused(await outcome(serverOnly, [serverOnly], [root]), /does not allow clientAuth/);
    const critical = make("critical", [...CA_EXT, "1.2.3.4 = critical, ASN1:NULL"]);
    refused(await outcome(critical, [critical], [root]), /critical extension 1\.2\.3\.4/);
    // The anchor's own dates count too (Deno's node:tls does not check them).
    const oldRoot = OpensslCa.create(join(dir, "old-root"), {
      name: "old root",
      notBefore: daysFromNow(-30),
      notAfter: daysFromNow(-1),
    });
    refused(await outcome(oldRoot, [], [oldRoot]), /issuing CA \(CN=old root\) expired/);
  });
});

Deno.test("chains: path length constraints of intermediates and of the root", async () => {
  await withRoot(async (root, dir) => {
    const zero = root.intermediate(join(dir, "zero"), {
      name: "pathlen zero",
      extensions: ["basicConstraints = critical, CA:TRUE, pathlen:0", ...CA_EXT.slice(1)],
    });
    assert.ok((await outcome(zero, [zero], [root])).ok, "pathlen 0 may issue leaves");
    const below = zero.intermediate(join(dir, "below"), { name: "below zero" });
    refused(
      await outcome(below, [below, zero], [root]),
      /CN=pathlen zero\) allows 0 intermediate\(s\) below it .*the chain has 1/,
    );
    const strictRoot = OpensslCa.create(join(dir, "strict"), {
      name: "strict root",
      extensions: [
        "basicConstraints = critical, CA:TRUE, pathlen:0",
        "keyUsage = critical, keyCertSign, cRLSign",
      ],
    });
    const under = strictRoot.intermediate(join(dir, "under"), { name: "under strict" });
    refused(await outcome(under, [under], [strictRoot]), /CN=strict root\) allows 0/);
  });
});

Deno.test("chains: a foreign or impostor intermediate, and a root the peer sends, are not trusted", async () => {
  await withRoot(async (root, dir) => {
    const int = root.intermediate(join(dir, "int"), { name: "team intermediate" });
    // Same name, signed by a root we do not trust.
    const elsewhere = OpensslCa.create(join(dir, "elsewhere"), { name: "chain root" });
    const foreign = elsewhere.intermediate(join(dir, "foreign"), { name: "team intermediate" });
    refused(await outcome(foreign, [foreign], [root]), /does not chain to a trusted CA/);
    refused(await outcome(foreign, [foreign, int], [root]), /does not chain|not signed/);
    // The peer sends its own root (a namesake of ours): ignored, never an anchor.
    refused(await outcome(foreign, [foreign, elsewhere], [root]), /does not chain to a trusted CA/);
    // A self-made intermediate with the real one's name: its signature is not root's.
    const impostor = OpensslCa.create(join(dir, "impostor"), { name: "team intermediate" });
    refused(
      await outcome(impostor, [impostor], [root]),
      /not signed by a trusted CA|does not chain/,
    );
  });
});

Deno.test("chains: name constraints are enforced (DNS, CN as a host name, IP, URI, subject), or the chain refused", async () => {
  await withRoot(async (root, dir) => {
    const team = root.intermediate(join(dir, "team"), {
      name: "team",
      extensions: [
        ...CA_EXT,
        "nameConstraints = critical, permitted;DNS:team.example, permitted;IP:10.1.0.0/255.255.0.0, " +
        "permitted;URI:.team.example, excluded;DNS:secret.team.example",
      ],
    });
    const withSan = (san: string, subject = "/CN=alice") => ({
      subject,
      extensions: [...CLIENT_EXT, `subjectAltName = ${san}`],
    });
    assert.ok((await outcome(team, [team], [root], withSan("DNS:ci.team.example"))).ok);
    assert.ok((await outcome(team, [team], [root], withSan("IP:10.1.2.3"))).ok);
    assert.ok((await outcome(team, [team], [root], withSan("URI:spiffe://a.team.example/ci"))).ok);
    assert.ok((await outcome(team, [team], [root])).ok, "a CN that is no host name is no DNS name");
    refused(
      await outcome(team, [team], [root], withSan("DNS:evil.example")),
      /DNS name "evil.example" is outside the permitted subtrees .*CN=team/,
    );
    refused(
      await outcome(team, [team], [root], withSan("DNS:x.secret.team.example")),
      /is in an excluded subtree/,
    );
    refused(
      await outcome(team, [team], [root], withSan("IP:10.2.0.1")),
      /IP 10\.2\.0\.1 is outside/,
    );
    refused(
      await outcome(team, [team], [root], withSan("URI:spiffe://evil.example/ci")),
      /URI "spiffe:\/\/evil.example\/ci" is outside/,
    );
    refused(
      await outcome(team, [team], [root], { subject: "/CN=evil.example" }),
      /DNS name "evil.example" is outside/,
    );

    const dn = root.intermediate(join(dir, "dn"), {
      name: "dn",
      extensions: [
        ...CA_EXT,
        "nameConstraints = critical, permitted;dirName:dn_sect",
        "[dn_sect]",
        "O = team",
      ],
    });
    const inDn = await outcome(dn, [dn], [root], { subject: "/O=team/CN=alice" });
    assert.ok(inDn.ok, JSON.stringify(inDn));
    refused(
      await outcome(dn, [dn], [root], { subject: "/O=other/CN=alice" }),
      /the subject is outside the permitted subtrees/,
    );

    const email = root.intermediate(join(dir, "email"), {
      name: "email",
      extensions: [...CA_EXT, "nameConstraints = critical, permitted;email:team.example"],
    });
    refused(
      await outcome(email, [email], [root]),
      /rfc822Name \(email\) name constraint is not enforced here: refusing the chain/,
    );
  });
});

Deno.test("chains: namesakes sharing one key cannot make the search explode (bounded, refused)", async () => {
  await withRoot(async (root, dir) => {
    const sh = (args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
    sh(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "k.pem"]);
    await writeFile(
      join(dir, "ca.ext"),
      "basicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign\n",
    );
    // Signing tools: "A" and "B" self-signed with the one key.
    for (const n of ["A", "B"]) {
      sh([
        "req",
        "-x509",
        "-new",
        "-key",
        "k.pem",
        "-subj",
        `/CN=${n}`,
        "-days",
        "2",
        "-out",
        `${n}.pem`,
      ]);
    }
    sh(["req", "-new", "-key", "k.pem", "-subj", "/CN=x", "-out", "k.csr"]);
    // Six certificates "A, issued by B" and six "B, issued by A", all with the one key.
    const sent: string[] = [];
    for (let i = 0; i < 6; i++) {
      for (const [subject, issuer] of [["A", "B"], ["B", "A"]]) {
        const out = `${subject}${i}.pem`;
        sh(["req", "-new", "-key", "k.pem", "-subj", `/CN=${subject}`, "-out", `${subject}.csr`]);
        sh([
          "x509",
          "-req",
          "-in",
          `${subject}.csr`,
          "-CA",
          `${issuer}.pem`,
          "-CAkey",
          "k.pem",
          "-set_serial",
          String(100 + i),
          "-days",
          "2",
          "-extfile",
          "ca.ext",
          "-out",
          out,
        ]);
        sent.push(await readFile(join(dir, out), "utf8"));
      }
    }
    await writeFile(join(dir, "leaf.ext"), CLIENT_EXT.join("\n") + "\n");
    sh([
      "x509",
      "-req",
      "-in",
      "k.csr",
      "-CA",
      "A.pem",
      "-CAkey",
      "k.pem",
      "-set_serial",
      "7",
      "-days",
      "2",
      "-extfile",
      "leaf.ext",
      "-out",
      "leaf.pem",
    ]);
    const started = performance.now();
    const r = await verifyChain(
      cert(await readFile(join(dir, "leaf.pem"), "utf8")),
      sent.map(cert),
      trustStoreOf([cert(root.cert)]),
      "client",
    );
    refused(r, /more than 64 candidate links/);
    assert.ok(performance.now() - started < 10_000, "bounded");
  });
});
