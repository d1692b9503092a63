/**
 * Certificates from the PKI tools teams already run, none written here: easy-rsa (`build-ca`,
 * `build-server-full`, `build-client-full`, `revoke`, `gen-crl`), cfssl (root ->
 * intermediate -> leaves, `gencrl` as DER) and an `openssl ca` root -> intermediate setup.
 * For each: the real Docker CLI through `dockgate serve` to a real dockerd with their
 * certificates, a client they revoked refused, and a leaf under a foreign intermediate (same
 * name, another root) refused.
 */

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type Dockerd, dockerdUnavailable, startDockerd } from "./helpers/dockerd.ts";
import { startServe, tlsFlags } from "./helpers/gate.ts";
import { CA_EXT, CLIENT_EXT, OpensslCa, SERVER_EXT } from "./helpers/openssl_ca.ts";

const EASYRSA = "/usr/share/easy-rsa/easyrsa";

/** What a PKI tool made, laid out as serve and the Docker CLI want it. */
interface Made {
  /** `--certs` for serve: cert.pem (with its chain), key.pem, ca.pem. */
  server: string;
  /** `--crl` for serve. */
  crl: string;
  /** Docker CLI bundles. */
  good: string;
  revoked: string;
  foreign: string;
}

function run(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: Record<string, string> } = {},
) {
  try {
    return execFileSync(cmd, args, {
      cwd: opts.cwd,
      env: { ...Deno.env.toObject(), ...opts.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
  } catch (err) {
    const e = err as { stderr?: Uint8Array; message: string };
    throw new Error(
      `${cmd} ${args.join(" ")}: ${e.stderr ? new TextDecoder().decode(e.stderr) : e.message}`,
    );
  }
}

/** A bundle directory: ca.pem, cert.pem (leaf + chain), key.pem 0600. */
async function bundle(dir: string, ca: string, cert: string, key: string): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(join(dir, "ca.pem"), ca);
  await writeFile(join(dir, "cert.pem"), cert);
  await writeFile(join(dir, "key.pem"), key, { mode: 0o600 });
  await chmod(join(dir, "key.pem"), 0o600);
  return dir;
}

/** A foreign intermediate (same name as `intermediateName`, under another root) and its client. */
async function foreignBundle(dir: string, trust: string, intermediateName: string) {
  const root = OpensslCa.create(join(dir, "foreign-root"), { name: "foreign root" });
  const int = root.intermediate(join(dir, "foreign-int"), { name: intermediateName });
  const c = int.issue("alice", { subject: "/CN=alice", extensions: CLIENT_EXT });
  return await bundle(join(dir, "foreign-bundle"), trust, c.cert + int.cert + root.cert, c.key);
}

/** An easy-rsa PKI in `dir/pki`: its CA named "easy-rsa CA", a server, alice and bob (revoked). */
function easyRsaPki(dir: string, full: boolean): string {
  Deno.mkdirSync(dir, { recursive: true });
  const env = {
    EASYRSA_BATCH: "1",
    EASYRSA_PKI: join(dir, "pki"),
    EASYRSA_ALGO: "ec",
    EASYRSA_CURVE: "prime256v1",
  };
  const e = (args: string[], extra: Record<string, string> = {}) =>
    run(EASYRSA, args, { cwd: dir, env: { ...env, ...extra } });
  e(["init-pki"]);
  e(["build-ca", "nopass"], { EASYRSA_REQ_CN: "easy-rsa CA" });
  e(["build-client-full", "alice", "nopass"]);
  if (full) {
    e([
      "--subject-alt-name=DNS:localhost,IP:127.0.0.1",
      "build-server-full",
      "localhost",
      "nopass",
    ]);
    e(["build-client-full", "bob", "nopass"]);
    e(["revoke", "bob"]);
    e(["gen-crl"]);
  }
  return join(dir, "pki");
}

async function easyRsa(dir: string): Promise<Made> {
  const pki = easyRsaPki(dir, true);
  // easy-rsa has no intermediate: the foreign leaf comes from another easy-rsa PKI whose CA
  // has the same name, and sends that CA along.
  const other = easyRsaPki(join(dir, "foreign"), false);
  const read = (p: string) => readFile(join(pki, p), "utf8");
  const ca = await read("ca.crt");
  const bobSerial = serialFile(join(pki, "index.txt"), "bob");
  return {
    server: await bundle(
      join(dir, "server"),
      ca,
      await read("issued/localhost.crt"),
      await read("private/localhost.key"),
    ),
    crl: join(pki, "crl.pem"),
    good: await bundle(
      join(dir, "alice"),
      ca,
      await read("issued/alice.crt"),
      await read("private/alice.key"),
    ),
    revoked: await bundle(
      join(dir, "bob"),
      ca,
      await read(`revoked/certs_by_serial/${bobSerial}.crt`),
      await read(`revoked/private_by_serial/${bobSerial}.key`),
    ),
    foreign: await bundle(
      join(dir, "mallory"),
      ca,
      (await readFile(join(other, "issued/alice.crt"), "utf8")) +
        await readFile(join(other, "ca.crt"), "utf8"),
      await readFile(join(other, "private/alice.key"), "utf8"),
    ),
  };
}

/** The serial easy-rsa's database gives `cn` (its revoked files are named by it). */
function serialFile(index: string, cn: string): string {
  const line = Deno.readTextFileSync(index).split("\n").find((l) => l.endsWith(`/CN=${cn}`));
  if (!line) throw new Error(`no ${cn} in ${index}`);
  return line.split("\t")[3];
}

/** A cfssl PKI in `dir`: root, "cfssl intermediate" (pathlen 0), server, alice, bob. */
async function cfsslPki(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(
    join(dir, "config.json"),
    JSON.stringify({
      signing: {
        default: { expiry: "720h" },
        profiles: {
          intermediate: {
            expiry: "720h",
            usages: ["cert sign", "crl sign"],
            ca_constraint: { is_ca: true, max_path_len: 0, max_path_len_zero: true },
          },
          server: { expiry: "720h", usages: ["signing", "key encipherment", "server auth"] },
          client: { expiry: "720h", usages: ["signing", "client auth"] },
        },
      },
    }),
  );
  const csr = async (name: string, cn: string, hosts?: string[]) =>
    await writeFile(
      join(dir, `${name}.json`),
      JSON.stringify({ CN: cn, key: { algo: "ecdsa", size: 256 }, ...(hosts ? { hosts } : {}) }),
    );
  const bare = (json: Uint8Array, name: string) =>
    execFileSync("cfssljson", ["-bare", name], { cwd: dir, input: json });
  await csr("root", "cfssl root");
  await csr("int", "cfssl intermediate");
  await csr("server", "localhost", ["localhost", "127.0.0.1"]);
  await csr("alice", "alice");
  await csr("bob", "bob");
  bare(run("cfssl", ["gencert", "-initca", "root.json"], { cwd: dir }), "root");
  bare(run("cfssl", ["genkey", "int.json"], { cwd: dir }), "int");
  const sign = ["-ca", "root.pem", "-ca-key", "root-key.pem", "-config", "config.json"];
  bare(run("cfssl", ["sign", ...sign, "-profile", "intermediate", "int.csr"], { cwd: dir }), "int");
  const issue = ["-ca", "int.pem", "-ca-key", "int-key.pem", "-config", "config.json"];
  for (const [n, p] of [["server", "server"], ["alice", "client"], ["bob", "client"]]) {
    bare(run("cfssl", ["gencert", ...issue, "-profile", p, `${n}.json`], { cwd: dir }), n);
  }
}

async function cfssl(dir: string): Promise<Made> {
  await cfsslPki(dir);
  const foreignDir = join(dir, "foreign");
  await cfsslPki(foreignDir);
  const read = (p: string) => readFile(join(dir, p), "utf8");
  // cfssl gencrl takes decimal serials and prints the DER CRL as base64: written as DER.
  const bobSerial = BigInt(`0x${new X509Certificate(await read("bob.pem")).serialNumber}`);
  await writeFile(join(dir, "serials.txt"), `${bobSerial}\n`);
  const b64 = new TextDecoder().decode(
    run("cfssl", ["gencrl", "serials.txt", "int.pem", "int-key.pem"], { cwd: dir }),
  );
  await writeFile(join(dir, "int.crl"), Uint8Array.from(atob(b64.trim()), (c) => c.charCodeAt(0)));
  const [root, int] = [await read("root.pem"), await read("int.pem")];
  return {
    // The intermediate in ca.pem too: serve verifies its CRL with it.
    server: await bundle(
      join(dir, "srv"),
      root + int,
      (await read("server.pem")) + int,
      await read("server-key.pem"),
    ),
    crl: join(dir, "int.crl"),
    good: await bundle(
      join(dir, "a"),
      root,
      (await read("alice.pem")) + int,
      await read("alice-key.pem"),
    ),
    revoked: await bundle(
      join(dir, "b"),
      root,
      (await read("bob.pem")) + int,
      await read("bob-key.pem"),
    ),
    // Another cfssl PKI: the same names, another root.
    foreign: await bundle(
      join(dir, "m"),
      root,
      (await readFile(join(foreignDir, "alice.pem"), "utf8")) +
        await readFile(join(foreignDir, "int.pem"), "utf8"),
      await readFile(join(foreignDir, "alice-key.pem"), "utf8"),
    ),
  };
}

async function opensslCa(dir: string): Promise<Made> {
  const root = OpensslCa.create(join(dir, "root"), { name: "openssl root" });
  const int = root.intermediate(join(dir, "int"), {
    name: "openssl intermediate",
    extensions: CA_EXT,
  });
  const server = int.issue("server", { subject: "/CN=localhost", extensions: SERVER_EXT });
  const alice = int.issue("alice", { subject: "/CN=alice", extensions: CLIENT_EXT });
  const bob = int.issue("bob", { subject: "/CN=bob", extensions: CLIENT_EXT });
  int.revoke(bob.certPath);
  const crl = join(dir, "int-crl.pem");
  int.crl(crl);
  return {
    // Here the intermediate is only in ca.pem: the clients send their leaf alone.
    server: await bundle(
      join(dir, "srv"),
      root.cert + int.cert,
      server.cert + int.cert,
      server.key,
    ),
    crl,
    good: await bundle(join(dir, "a"), root.cert, alice.cert, alice.key),
    revoked: await bundle(join(dir, "b"), root.cert, bob.cert, bob.key),
    foreign: await foreignBundle(dir, root.cert, "openssl intermediate"),
  };
}

Deno.test({
  name:
    "PKI tools: easy-rsa, cfssl and openssl ca certificates drive the Docker CLI through serve; revoked and foreign refused",
  ignore: dockerdUnavailable(),
  fn: async (t) => {
    const d = (await startDockerd()) as Dockerd;
    try {
      for (
        const [tool, make] of [["easy-rsa", easyRsa], ["cfssl", cfssl], [
          "openssl ca",
          opensslCa,
        ]] as const
      ) {
        await t.step(tool, async () => {
          const dir = join(d.tmp, tool.replace(" ", "-"));
          await mkdir(dir, { recursive: true });
          const made = await make(dir);
          const gate = await startServe([
            "--certs",
            made.server,
            "--crl",
            made.crl,
            "--target",
            d.host,
          ]);
          try {
            const docker = (bundleDir: string, args: string[]) =>
              d.docker([...tlsFlags(bundleDir), ...args], { host: gate.host, timeoutMs: 60_000 });
            const ps = await docker(made.good, ["ps", "--format", "{{.ID}}"]);
            assert.equal(ps.code, 0, `${tool}: docker ps: ${ps.stderr}\n${gate.log()}`);
            const ver = await docker(made.good, ["version", "--format", "{{.Server.APIVersion}}"]);
            assert.equal(ver.code, 0, ver.stderr);
            assert.match(ver.stdout.trim(), /^1\.\d+$/);
            await gate.waitForLog(/INFO accepted .*identity=alice /);

            const revoked = await docker(made.revoked, ["ps"]);
            assert.notEqual(revoked.code, 0, `${tool}: a revoked client got through`);
            await gate.waitForLog(/WARN refused .*identity=bob .*is revoked/);

            const foreign = await docker(made.foreign, ["ps"]);
            assert.notEqual(
              foreign.code,
              0,
              `${tool}: a foreign intermediate's client got through`,
            );
            await gate.waitForLog(
              /WARN refused .*(does not chain|not signed by a trusted CA|not verified)/,
            );
          } finally {
            await gate.stop();
          }
        });
      }
    } finally {
      await d.stop();
    }
  },
});
