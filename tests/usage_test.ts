/**
 * The one usage rule (`src/pki/usage.ts`) gives the same answer in each place that decides
 * whether a certificate may act as a TLS client or server: the handshake's decision
 * (`checkIdentity`), the credential loader (`loadCredentials`: serve's own certificate,
 * connect's client bundle), the chain check (`verifyChain`) and doctor (`checkBundle`). The
 * certificates are made by `openssl ca`, so keygen's assumptions are not shared.
 */
import assert from "node:assert/strict";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { checkIdentity } from "../src/access/authorize.ts";
import { parsePeerCertificate } from "../src/access/identity.ts";
import { trustStoreOf, verifyChain } from "../src/pki/chain.ts";
import { loadCredentials } from "../src/pki/credentials.ts";
import { parseCertificatePem } from "../src/pki/pem.ts";
import { checkBundle } from "../src/report/doctor.ts";
import { CLIENT_EXT, daysFromNow, OpensslCa, SERVER_EXT } from "./helpers/openssl_ca.ts";
import { freeTempDir } from "./helpers/wait.ts";

type Purpose = "client" | "server";

/** Each certificate, its extensions, and the purposes it may serve (none for the odd ones). */
const CASES: { name: string; extensions: string[]; allowed: Purpose[] }[] = [
  { name: "client", extensions: CLIENT_EXT, allowed: ["client"] },
  { name: "server", extensions: SERVER_EXT, allowed: ["server"] },
  {
    name: "both EKUs",
    extensions: [
      "basicConstraints = critical, CA:FALSE",
      "keyUsage = critical, digitalSignature",
      "extendedKeyUsage = clientAuth, serverAuth",
      "subjectAltName = DNS:localhost",
    ],
    allowed: ["client", "server"],
  },
  {
    name: "no EKU",
    extensions: [
      "basicConstraints = critical, CA:FALSE",
      "keyUsage = critical, digitalSignature",
      "subjectAltName = DNS:localhost",
    ],
    allowed: [],
  },
  {
    name: "anyExtendedKeyUsage",
    extensions: [
      "basicConstraints = critical, CA:FALSE",
      "keyUsage = critical, digitalSignature",
      "extendedKeyUsage = anyExtendedKeyUsage",
      "subjectAltName = DNS:localhost",
    ],
    allowed: [],
  },
  {
    name: "CA:TRUE leaf",
    extensions: [
      "basicConstraints = critical, CA:TRUE",
      "keyUsage = critical, digitalSignature, keyCertSign",
      "extendedKeyUsage = clientAuth, serverAuth",
      "subjectAltName = DNS:localhost",
    ],
    allowed: [],
  },
  {
    name: "keyUsage without digitalSignature",
    extensions: [
      "basicConstraints = critical, CA:FALSE",
      "keyUsage = critical, keyAgreement",
      "extendedKeyUsage = clientAuth, serverAuth",
      "subjectAltName = DNS:localhost",
    ],
    allowed: [],
  },
];

/** Each place's answer: true when it accepts `purpose` for the bundle in `dir`. */
async function answers(dir: string, certPem: string, caPem: string, purpose: Purpose) {
  const leaf = parseCertificatePem(certPem);
  const ca = parseCertificatePem(caPem);
  const paths = { cert: join(dir, "cert.pem"), key: join(dir, "key.pem"), ca: join(dir, "ca.pem") };
  const out: Record<string, boolean | string> = {};
  out.credentials = await loadCredentials(paths, { role: purpose }).then(
    () => true,
    (e: Error) => e.message,
  );
  const chain = await verifyChain(leaf, [], trustStoreOf([ca]), purpose);
  out.chain = chain.ok || chain.reason;
  const doctor = await checkBundle(dir, { role: purpose, label: purpose, reissue: "-" });
  const failed = doctor.filter((r) => !r.ok);
  out.doctor = failed.length === 0 || failed.map((r) => `${r.what}: ${r.detail}`).join("; ");
  if (purpose === "client") {
    // The gate's decision at each handshake (Gate.admit -> authorizePeer -> checkIdentity).
    const peer = parsePeerCertificate(new Uint8Array(leaf.rawData));
    const d = await checkIdentity(peer, { caCertificates: [ca], policy: { allowAny: true } });
    out.handshake = d.allow || d.reason;
  }
  return out;
}

Deno.test("one usage rule: handshake, credential loader, chain check and doctor agree", async () => {
  const dir = await freeTempDir("dg-usage-");
  try {
    const ca = OpensslCa.create(join(dir, "ca"), { notAfter: daysFromNow(400) });
    const disagreements: string[] = [];
    for (const c of CASES) {
      const issued = ca.issue(c.name.replace(/\W+/g, "-"), {
        subject: "/CN=localhost",
        extensions: c.extensions,
        notAfter: daysFromNow(200),
      });
      const bundle = join(dir, c.name.replace(/\W+/g, "-"));
      await mkdir(bundle, { mode: 0o700 });
      await writeFile(join(bundle, "cert.pem"), issued.cert);
      await writeFile(join(bundle, "key.pem"), issued.key, { mode: 0o600 });
      await writeFile(join(bundle, "ca.pem"), ca.cert);
      for (const purpose of ["client", "server"] as const) {
        const expected = c.allowed.includes(purpose);
        for (
          const [place, answer] of Object.entries(
            await answers(bundle, issued.cert, ca.cert, purpose),
          )
        ) {
          if ((answer === true) !== expected) {
            disagreements.push(
              `${c.name} as ${purpose}: ${place} ${
                answer === true ? "accepts" : `refuses (${answer})`
              }, ` +
                `the rule ${expected ? "accepts" : "refuses"}`,
            );
          }
        }
      }
    }
    assert.deepEqual(disagreements, []);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
