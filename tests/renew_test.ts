/**
 * `dockgate keygen renew` with a running serve: a renewed client certificate (same key, new
 * serial) gets in while the old one still does; `--revoke-old` shuts the old one out at the
 * next reload; a renewed server certificate (`--new-key`) is picked up by serve by itself,
 * as a client sees on its next handshake. Keys are compared with `openssl`.
 */
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { runCli, type ServeProcess, startServe } from "./helpers/gate.ts";
import { keygenOk } from "./helpers/keygen_inproc.ts";
import { type Creds, tlsConnect } from "./helpers/tls_peers.ts";
import { splitResponses, tlsExchange } from "./helpers/http_raw.ts";
import { freeTempDir, waitFor } from "./helpers/wait.ts";
import http from "node:http";

const PING = "GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n";

async function bundle(dir: string): Promise<Creds> {
  return {
    ca: await Deno.readTextFile(join(dir, "ca.pem")),
    cert: await Deno.readTextFile(join(dir, "cert.pem")),
    key: await Deno.readTextFile(join(dir, "key.pem")),
  };
}

async function pubkey(file: string, kind: "x509" | "pkey"): Promise<string> {
  const args = kind === "x509"
    ? ["x509", "-noout", "-pubkey", "-in", file]
    : ["pkey", "-pubout", "-in", file];
  const out = await new Deno.Command("openssl", { args, stdout: "piped" }).output();
  return new TextDecoder().decode(out.stdout);
}

async function served(port: number, creds: Creds): Promise<boolean> {
  const ex = await tlsExchange(port, creds, PING);
  return splitResponses(ex.data)[0]?.status === 200;
}

async function serverSerial(port: number, ca: string): Promise<string> {
  const creds = await bundle(join(DIR, "pki", "clients", "default"));
  const s = tlsConnect(port, { ...creds, ca });
  await new Promise<void>((r, j) => {
    s.once("secureConnect", () => r());
    s.once("error", j);
  });
  const serial = s.getPeerCertificate().serialNumber.toLowerCase();
  s.destroy();
  return serial;
}

let DIR = "";

Deno.test({
  name:
    "keygen renew: clients rotate without an outage; serve picks up a renewed server certificate",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  DIR = await freeTempDir("dg-renew-");
  let gate: ServeProcess | undefined;
  const target = http.createServer((_q, r) => r.end("OK"));
  try {
    const pki = join(DIR, "pki");
    await keygenOk(["--dir", pki]);
    await keygenOk(["client", "alice", "--dir", pki]);
    const sock = join(DIR, "t.sock");
    await new Promise<void>((r) => target.listen(sock, () => r()));
    gate = await startServe(["--certs", join(pki, "server"), "--target", `unix://${sock}`]);
    const alice = join(pki, "clients", "alice");
    const old = await bundle(alice);
    assert.ok(await served(gate.port, old));

    const r = await runCli(["keygen", "renew", "alice", "--dir", pki, "--days", "90"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /STAYS VALID until/);
    const renewed = await bundle(alice);
    assert.notEqual(renewed.cert, old.cert);
    assert.equal(renewed.key, old.key, "same key");
    assert.equal(
      await pubkey(join(alice, "cert.pem"), "x509"),
      await pubkey(join(alice, "key.pem"), "pkey"),
    );
    const subject = async (pem: string) => {
      const f = join(DIR, "s.pem");
      await Deno.writeTextFile(f, pem);
      const o = await new Deno.Command("openssl", {
        args: ["x509", "-noout", "-subject", "-enddate", "-in", f],
        stdout: "piped",
      }).output();
      return new TextDecoder().decode(o.stdout);
    };
    assert.match(await subject(renewed.cert!), /subject=CN\s*=\s*alice/);
    assert.ok(await served(gate.port, renewed), "the renewed certificate gets in");
    assert.ok(await served(gate.port, old), "the old one still does (no outage)");

    // --revoke-old: the old certificate is out once serve reloads (it watches the CRL).
    assert.equal(
      (await runCli(["keygen", "renew", "alice", "--dir", pki, "--revoke-old"])).code,
      0,
    );
    const third = await bundle(alice);
    await waitFor(async () => !(await served(gate!.port, renewed)), { timeoutMs: 15_000 });
    assert.ok(await served(gate.port, third));

    // The server certificate, with a new key: the next handshake shows the new serial.
    const ca = old.ca;
    const before = await serverSerial(gate.port, ca);
    const keyBefore = await Deno.readTextFile(join(pki, "server", "key.pem"));
    assert.equal((await runCli(["keygen", "renew", "server", "--dir", pki, "--new-key"])).code, 0);
    assert.notEqual(await Deno.readTextFile(join(pki, "server", "key.pem")), keyBefore);
    assert.equal((await Deno.stat(join(pki, "server", "key.pem"))).mode! & 0o777, 0o600);
    await waitFor(async () => (await serverSerial(gate!.port, ca)) !== before, {
      timeoutMs: 15_000,
    });
    assert.ok(await served(gate.port, third));

    const bad = await runCli(["keygen", "renew", "nobody", "--dir", pki]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^dockgate: error: Cannot renew Client bundle "nobody": cannot read/m);
  } finally {
    await gate?.stop();
    target.close();
    await rm(DIR, { recursive: true, force: true });
  }
});

Deno.test("keygen renew server --name HOST renews that fleet host's bundle, and only it", async () => {
  const pki = join(await freeTempDir("dg-renew-fleet-"), "pki");
  for (const args of [[], ["server", "--name", "host1"]]) {
    await keygenOk([...args, "--dir", pki]);
  }
  const serial = async (dir: string) => {
    const out = await new Deno.Command("openssl", {
      args: ["x509", "-noout", "-serial", "-in", join(dir, "cert.pem")],
      stdout: "piped",
    }).output();
    return new TextDecoder().decode(out.stdout).trim();
  };
  const host = join(pki, "servers", "host1");
  const [hostBefore, singleBefore] = [await serial(host), await serial(join(pki, "server"))];
  const r = await runCli(["keygen", "renew", "server", "--name", "host1", "--dir", pki]);
  assert.equal(r.code, 0, r.stderr);
  assert.notEqual(await serial(host), hostBefore, "the fleet host's certificate was not renewed");
  assert.equal(await serial(join(pki, "server")), singleBefore, "DIR/server was renewed instead");
  const sameKey = await pubkey(join(host, "key.pem"), "pkey");
  assert.equal(await pubkey(join(host, "cert.pem"), "x509"), sameKey);
  const wrong = await runCli(["keygen", "renew", "alice", "--name", "host1", "--dir", pki]);
  assert.equal(wrong.code, 2);
  assert.match(wrong.stderr, /--name HOST goes with "keygen renew server"/);
});
