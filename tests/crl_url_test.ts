/**
 * `serve --crl-url`: CRLs fetched from a local HTTP server (node:http, in this process) that
 * answers conditional requests as a static server does. A revocation published there
 * reaches the gate within the refresh interval; a failed fetch, a rolled-back CRL and a
 * forged one keep the last good copy; a restart with the CA's server down starts from that
 * copy, and with no copy at all does not start.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { freePort, freeTempDir, waitFor } from "./helpers/wait.ts";
import { runCli, type Runtime, startServe } from "./helpers/gate.ts";
import { keygenOk } from "./helpers/keygen_inproc.ts";
import { assertAccepted, assertRefused, type Env } from "./helpers/gate_env.ts";
import { bundleCreds, RecordingTarget, waitForLine } from "./helpers/tls_peers.ts";
import { CLIENT_EXT, OpensslCa, serverBundle } from "./helpers/openssl_ca.ts";

/** A static file server for one CRL: ETag and Last-Modified, 304 when they match. */
class CrlServer {
  body: Uint8Array = new Uint8Array();
  lastModified = new Date().toUTCString();
  status = 200;
  requests: { ifNoneMatch?: string; ifModifiedSince?: string; answered: number }[] = [];
  #server = http.createServer((req, res) => {
    const etag = `"${createHash("sha256").update(this.body).digest("hex").slice(0, 16)}"`;
    const ifNoneMatch = req.headers["if-none-match"];
    const entry = {
      ifNoneMatch,
      ifModifiedSince: req.headers["if-modified-since"],
      answered: this.status,
    };
    this.requests.push(entry);
    if (this.status !== 200) {
      res.writeHead(this.status).end("broken");
      return;
    }
    if (ifNoneMatch === etag) {
      entry.answered = 304;
      res.writeHead(304, { etag }).end();
      return;
    }
    res.writeHead(200, {
      etag,
      "last-modified": this.lastModified,
      "content-type": "application/pkix-crl",
    }).end(this.body);
  });

  async start(): Promise<string> {
    await new Promise<void>((r) => this.#server.listen(0, "127.0.0.1", () => r()));
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}/ca/crl.pem`;
  }

  publish(pem: string): void {
    this.body = new TextEncoder().encode(pem);
    this.lastModified = new Date().toUTCString();
  }

  stop(): Promise<void> {
    this.#server.closeAllConnections();
    return new Promise((r) => this.#server.close(() => r()));
  }
}

async function withSetup(
  fn: (s: {
    dir: string;
    ca: OpensslCa;
    server: string;
    target: RecordingTarget;
    env: Env;
    crls: CrlServer;
    url: string;
    client(name: string): { ca: string; cert: string; key: string; certPath: string };
  }) => Promise<void>,
) {
  const dir = await freeTempDir("dg-crlurl-");
  const target = new RecordingTarget(join(dir, "target.sock"));
  await target.start();
  const crls = new CrlServer();
  const url = await crls.start();
  try {
    const ca = OpensslCa.create(join(dir, "ca"));
    const server = serverBundle(ca, join(dir, "server"));
    const env = { dir, target, pki: "", caPem: ca.cert } as unknown as Env;
    await fn({
      dir,
      ca,
      server,
      target,
      env,
      crls,
      url,
      client(name) {
        const c = ca.issue(name, { subject: `/CN=${name}`, extensions: CLIENT_EXT });
        return { ca: ca.cert, cert: c.cert, key: c.key, certPath: c.certPath };
      },
    });
  } finally {
    await crls.stop().catch(() => {});
    await target.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

Deno.test("--crl-url: a revocation at the CA reaches the gate within the refresh; failures keep the last good copy", async () => {
  await withSetup(async ({ dir, ca, server, target, env, crls, url, client }) => {
    const alice = client("alice");
    const bob = client("bob");
    const first = ca.crl(join(dir, "crl-1.pem"));
    crls.publish(first);
    const cache = join(dir, "cache");
    const args = [
      "--certs",
      server,
      "--crl-url",
      url,
      "--crl-refresh",
      "300ms",
      "--crl-cache",
      cache,
      "--target",
      `unix://${target.path}`,
    ];
    const gate = await startServe(args);
    try {
      await gate.waitForLog(/INFO CRL fetched .*revoked=0/);
      await assertAccepted(gate, bob, "bob");
      assert.equal((await readdir(cache)).filter((f) => f.endsWith(".crl")).length, 1);
      // The refreshes ask conditionally, and the unchanged CRL is answered 304.
      await waitFor(() => crls.requests.some((r) => r.answered === 304), { what: "a 304" });
      assert.ok(crls.requests.slice(1).every((r) => r.ifNoneMatch && r.ifModifiedSince));

      ca.revoke(bob.certPath);
      let m = gate.log().length;
      crls.publish(ca.crl(join(dir, "crl-2.pem")));
      await waitForLine(gate, m, /INFO reloaded why="CRL fetched from .*revoked=1/, 10_000);
      await assertRefused(env, gate, bob, /is revoked/);
      await assertAccepted(gate, alice, "alice");

      // The CA's server fails: the last good copy stays, said in the log.
      m = gate.log().length;
      crls.status = 503;
      await waitForLine(
        gate,
        m,
        /WARN CRL fetch failed: keeping the last good copy .*HTTP 503/,
        10_000,
      );
      await assertRefused(env, gate, bob, /is revoked/);
      // An old CRL put back (a replay over plain HTTP) would un-revoke bob: refused.
      m = gate.log().length;
      crls.status = 200;
      crls.publish(first);
      await waitForLine(
        gate,
        m,
        /WARN CRL fetch failed.*lower than 2 in force: refusing a rollback/,
        10_000,
      );
      await assertRefused(env, gate, bob, /is revoked/);
      // A CRL from another CA (anyone can serve bytes): refused too.
      const forger = OpensslCa.create(join(dir, "forger"), { name: "openssl test CA" });
      m = gate.log().length;
      crls.publish(forger.crl(join(dir, "forged.pem")));
      await waitForLine(
        gate,
        m,
        /WARN CRL fetch failed.*not signed by a CA in the CA bundle/,
        10_000,
      );
      await assertRefused(env, gate, bob, /is revoked/);
    } finally {
      await gate.stop();
    }

    // The CA's server is down at start: the last good copy is enforced.
    await crls.stop();
    for (const runtime of ["deno", "node"] as Runtime[]) {
      const again = await startServe(args, { runtime });
      try {
        await again.waitForLog(/WARN CRL fetch failed: keeping the last good copy/);
        await assertRefused(env, again, bob, /is revoked/);
      } finally {
        await again.stop();
      }
    }
    // No copy and no server: no start (fail closed).
    const none = await runCli([
      "serve",
      "--listen",
      "127.0.0.1:0",
      ...args.map((a) => (a === cache ? join(dir, "empty-cache") : a)),
    ]);
    assert.equal(none.code, 1, none.stderr);
    assert.match(
      none.stderr,
      /^dockgate: error: Cannot fetch CRL "http:\/\/127\.0\.0\.1:\d+\/ca\/crl\.pem": .*no last good copy/m,
    );
    assert.ok(
      (await readFile(join(cache, (await readdir(cache)).find((f) => f.endsWith(".crl"))!)))
        .length > 0,
    );
  });
});

Deno.test("--crl-url: usage errors are one line", async () => {
  const bad = await runCli(["serve", "--crl-url", "ftp://x/crl"]);
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(
    bad.stderr,
    /Invalid --crl-url "ftp:\/\/x\/crl": expected an http:\/\/ or https:\/\/ URL/,
  );
  const noCache = await runCli([
    "serve",
    "--cert",
    "c",
    "--key",
    "k",
    "--ca",
    "a",
    "--crl-url",
    "http://x/crl",
  ]);
  assert.equal(noCache.code, 2, noCache.stderr);
  assert.match(noCache.stderr, /--crl-url needs a place for the last good copy/);
});

Deno.test("--crl-url: the CRL keygen revoke writes, published by python3 -m http.server (docs/fleet.md's one line)", async () => {
  const dir = await freeTempDir("dg-crlpub-");
  const target = new RecordingTarget(join(dir, "t.sock"));
  await target.start();
  let web: Deno.ChildProcess | undefined;
  try {
    const pki = join(dir, "pki");
    await keygenOk(["--dir", pki]);
    await keygenOk(["client", "bob", "--dir", pki]);
    const port = await freePort();
    // docs/fleet.md's line: serve the server bundle's directory (crl.pem: every CA's CRL).
    web = new Deno.Command("python3", {
      args: [
        "-m",
        "http.server",
        String(port),
        "--bind",
        "127.0.0.1",
        "--directory",
        join(pki, "server"),
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
    const url = `http://127.0.0.1:${port}/crl.pem`;
    await waitFor(
      async () => (await fetch(url).then((r) => r.body?.cancel().then(() => r.ok))) === true,
      {
        what: "python's http.server",
      },
    );
    const gate = await startServe([
      "--certs",
      join(pki, "server"),
      "--crl-url",
      url,
      "--crl-refresh",
      "500ms",
      "--target",
      `unix://${target.path}`,
    ]);
    const env = { dir, target, pki, caPem: "" } as unknown as Env;
    try {
      await assertAccepted(gate, await bundleCreds(pki, "bob"), "bob");
      const m = gate.log().length;
      await keygenOk(["revoke", "bob", "--dir", pki]);
      await waitForLine(gate, m, /INFO reloaded why="CRL fetched from .*revoked=1/, 15_000);
      await assertRefused(env, gate, await bundleCreds(pki, "bob"), /is revoked/);
    } finally {
      await gate.stop();
    }
  } finally {
    try {
      web?.kill("SIGTERM");
      await web?.status;
    } catch { /* gone */ }
    await target.stop();
    await rm(dir, { recursive: true, force: true });
  }
});
