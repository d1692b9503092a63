/**
 * An isolated role may name owners by the certificate's URI SAN (a SPIFFE ID) instead of its
 * CN: two CI runners with the same CN and different SPIFFE IDs are two owners; a CN spelled
 * like a URI owner key is not that owner; a certificate without a URI SAN is refused. Real
 * Docker CLI through `dockgate serve --policy` to dockerd 20.10 and 26.1; certificates made
 * with `openssl` here. Judged by what dockerd stored (the owner label on its own socket).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { mkdir, writeFile } from "node:fs/promises";
import { availableEngines, dockerdUnavailable, startDockerd } from "./helpers/dockerd.ts";
import { CLIENT_EXT, OpensslCa, serverBundle } from "./helpers/openssl_ca.ts";
import { type ServeProcess, startServe, tlsFlags } from "./helpers/gate.ts";
import { freeTempDir } from "./helpers/wait.ts";

const A = "spiffe://example.org/ci/a";
const B = "spiffe://example.org/ci/b";

const POLICY = {
  roles: {
    spiffe: { preset: "no-escape", isolate: true, owner: "uri" },
    tenant: { preset: "no-escape", isolate: true },
  },
  identities: [
    { san: A, role: "spiffe" },
    { san: B, role: "spiffe" },
    { cn: "runner-without-uri", role: "spiffe" },
    { cn: `uri:${A}`, role: "tenant" },
  ],
};

/** A client bundle directory for the Docker CLI, issued by `ca` with `extensions`. */
async function client(ca: OpensslCa, dir: string, subject: string, extra: string[]) {
  const name = dir.split("/").pop()!;
  const issued = ca.issue(name, { subject, extensions: [...CLIENT_EXT, ...extra] });
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(join(dir, "ca.pem"), ca.cert);
  await writeFile(join(dir, "cert.pem"), issued.cert);
  await writeFile(join(dir, "key.pem"), issued.key, { mode: 0o600 });
  return dir;
}

for (const engine of availableEngines()) {
  Deno.test({
    name: `owner by URI SAN (${engine}): same CN, two SPIFFE IDs, two owners`,
    ignore: dockerdUnavailable(),
    sanitizeOps: false,
    sanitizeResources: false,
  }, async () => {
    const d = await startDockerd({ engine });
    if (!d) return;
    const work = await freeTempDir("dgu-");
    let gate: ServeProcess | undefined;
    try {
      const ca = OpensslCa.create(join(work, "ca"));
      const server = serverBundle(ca, join(work, "server"));
      const a = await client(ca, join(work, "a"), "/CN=runner", [`subjectAltName = URI:${A}`]);
      const b = await client(ca, join(work, "b"), "/CN=runner", [`subjectAltName = URI:${B}`]);
      const bare = await client(ca, join(work, "bare"), "/CN=runner-without-uri", []);
      // openssl's -subj reads "/" as the next RDN: escaped.
      const forgedCn = `/CN=uri:${A.replaceAll("/", "\\/")}`;
      const forger = await client(ca, join(work, "forger"), forgedCn, []);
      const policy = join(work, "policy.json");
      await writeFile(policy, JSON.stringify(POLICY), { mode: 0o600 });
      gate = await startServe(["--certs", server, "--target", d.host, "--policy", policy]);
      const as = (bundle: string, args: string[]) =>
        d.docker([...tlsFlags(bundle), ...args], { host: gate!.host, timeoutMs: 60_000 });

      const made = await as(a, ["create", "--name", "a1", "--network", "none", d.image]);
      assert.equal(made.code, 0, `a's create: ${made.stderr}\n${gate.log()}`);
      const label = await d.docker([
        "inspect",
        "--format",
        '{{index .Config.Labels "dockgate.owner"}}',
        "a1",
      ]);
      assert.equal(label.stdout.trim(), `uri:${A}`);

      const mine = await as(a, ["ps", "-a", "--format", "{{.Names}}"]);
      assert.equal(mine.stdout.trim(), "a1", mine.stderr);
      for (const [who, bundle] of [["b (same CN)", b], ["a CN spelled uri:…", forger]]) {
        const list = await as(bundle, ["ps", "-a", "--format", "{{.Names}}"]);
        assert.equal(list.code, 0, `${who}: ${list.stderr}`);
        assert.equal(list.stdout.trim(), "", `${who} lists a's container`);
        const inspect = await as(bundle, ["inspect", "a1"]);
        assert.notEqual(inspect.code, 0, `${who} inspects a's container`);
        const rm = await as(bundle, ["rm", "-f", "a1"]);
        assert.doesNotMatch(rm.stdout, /a1/, `${who} removed a's container`);
      }
      const still = await d.docker(["inspect", "--format", "{{.Name}}", "a1"]);
      assert.equal(still.stdout.trim(), "/a1", "a's container is gone");

      const refused = await as(bare, ["ps"]);
      assert.notEqual(refused.code, 0, "a certificate without a URI SAN got in");
      await gate.waitForLog(/refused .*identity=runner-without-uri .*URI SAN/);
    } finally {
      await gate?.stop();
      await d.stop();
    }
  });
}
