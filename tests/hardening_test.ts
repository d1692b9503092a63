/**
 * The gate as an attacker (or an accident) would push it: revocations that must never be
 * undone (CRL deleted, emptied, dangling, rolled back, stale; re-issued names; a re-keyed
 * CA), peers that try to knock it over (closed stderr, handshake floods, a second signal),
 * names that must mean exactly what keygen wrote, trust files others could have written,
 * expired trust anchors and key usages.
 *
 * End to end: the real CLI on Deno (and on Node where the runtimes differ), real TLS, a
 * recording unix-socket target, and odd certificates made with `openssl ca`.
 */

import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { chmod, chown, readFile, rm, symlink, writeFile } from "node:fs/promises";
import net from "node:net";
import { join } from "node:path";
import { freeTempDir, waitFor } from "./helpers/wait.ts";
import { cliCommand, runCli, type Runtime, startServe } from "./helpers/gate.ts";
import {
  assertAccepted,
  assertRefused,
  type Env,
  LiveClient,
  withEnv,
} from "./helpers/gate_env.ts";
import { CLIENT_EXT, daysFromNow, OpensslCa, serverBundle } from "./helpers/openssl_ca.ts";
import {
  type Creds,
  linesAfter,
  RecordingTarget,
  tlsAttempt,
  waitForLine,
} from "./helpers/tls_peers.ts";
import { clientBundlePaths, pkiLayout } from "../src/ca/layout.ts";

const IS_ROOT = Deno.uid() === 0;

function serialOf(pem: string): string {
  return new X509Certificate(pem).serialNumber.toLowerCase().replace(/^0+/, "");
}

/** `serve` on port 0 in front of `env`'s target with its PKI's server bundle. */
function serveArgs(env: Env): string[] {
  const server = pkiLayout(env.pki).server.dir;
  return [
    "serve",
    "--listen",
    "127.0.0.1:0",
    "--certs",
    server,
    "--target",
    `unix://${env.target.path}`,
  ];
}

/** Revoke `name` with keygen and wait until the running gate has reloaded `count` revocations. */
async function revokeAndWait(env: Env, gate: { log(): string }, name: string, count: number) {
  const m = gate.log().length;
  const r = await runCli(["keygen", "revoke", name, "--dir", env.pki]);
  assert.equal(r.code, 0, r.stderr);
  // deno-lint-ignore no-explicit-any
  await waitForLine(gate as any, m, new RegExp(`INFO reloaded .*revoked=${count}`), 5_000);
}

// ------------------------------------------------------------------ revocation only grows

Deno.test("a CRL in force that is deleted, emptied or dangling-linked keeps its revocations", async (t) => {
  await withEnv(async (env) => {
    const alice = await env.client("alice");
    const bob = await env.client("bob");
    const gate = await env.serve();
    await revokeAndWait(env, gate, "bob", 1);
    await assertRefused(env, gate, bob, /is revoked/);
    const crlPath = join(pkiLayout(env.pki).server.dir, "crl.pem");
    const good = await readFile(crlPath, "utf8");

    const mutations: [string, () => Promise<void>][] = [
      ["deleted", () => rm(crlPath)],
      ["emptied", () => writeFile(crlPath, "")],
      ["replaced by a dangling symlink", async () => {
        await rm(crlPath);
        await symlink(join(env.dir, "nowhere.pem"), crlPath);
      }],
    ];
    for (const [what, mutate] of mutations) {
      await t.step(what, async () => {
        const m = gate.log().length;
        await mutate();
        const failed = await waitForLine(gate, m, /ERROR reload failed/, 5_000);
        assert.ok(failed.includes(crlPath), failed);
        assert.equal(linesAfter(gate, m, /INFO reloaded/).length, 0, "nothing was reloaded");
        await assertRefused(env, gate, bob, /is revoked/);
        await assertAccepted(gate, alice, "alice");
        // Put the CRL back: the same CRL is not a rollback, and is taken again.
        const m2 = gate.log().length;
        await rm(crlPath, { force: true });
        await writeFile(crlPath, good);
        await waitForLine(gate, m2, /INFO reloaded .*revoked=1/, 5_000);
      });
    }
  });
});

Deno.test("at startup: no CRL while the PKI's record lists revocations is refused", async () => {
  await withEnv(async (env) => {
    const bob = await env.client("bob");
    const r = await runCli(["keygen", "revoke", "bob", "--dir", env.pki]);
    assert.equal(r.code, 0, r.stderr);
    const server = pkiLayout(env.pki).server.dir;
    const args = serveArgs(env);

    await rm(join(server, "crl.pem"));
    let out = await runCli(args, { timeoutMs: 20_000 });
    assert.equal(out.code, 1, out.stderr);
    assert.match(
      out.stderr,
      /^dockgate: error: No CRL at ".*crl\.pem", but the revocation record ".*revoked\.json" lists 1 revoked/m,
    );

    await symlink(join(env.dir, "nowhere.pem"), join(server, "crl.pem"));
    out = await runCli(args, { timeoutMs: 20_000 });
    assert.equal(out.code, 1, out.stderr);
    assert.match(out.stderr, /Cannot read CRL/);
    await rm(join(server, "crl.pem"));

    // keygen crl publishes it again from the record, and bob stays out.
    const again = await runCli(["keygen", "crl", "--dir", env.pki]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /listing 1 revoked/);
    const gate = await env.serve();
    await gate.waitForLog(/crl="1 revoked"/);
    await assertRefused(env, gate, bob, /is revoked/);
  });
});

Deno.test("at startup: a fleet bundle (servers/HOST) without its CRL is refused too", async () => {
  await withEnv(async (env) => {
    await env.client("alice");
    for (
      const args of [["server", "--name", "host1"], ["revoke", "alice"]]
    ) {
      const r = await runCli(["keygen", ...args, "--dir", env.pki]);
      assert.equal(r.code, 0, r.stderr);
    }
    const host1 = join(env.pki, "servers", "host1");
    await rm(join(host1, "crl.pem"));
    const args = ["serve", "--listen", "127.0.0.1:0", "--certs", host1];
    const out = await runCli([...args, "--target", `unix://${env.target.path}`], {
      timeoutMs: 20_000,
    });
    assert.equal(out.code, 1, out.stderr);
    assert.match(
      out.stderr,
      /No CRL at ".*host1\/crl\.pem", but the revocation record ".*ca\/revoked\.json" lists 1 revoked/,
    );
  });
});

Deno.test("at startup: revocations recorded by an intermediate count as well", async () => {
  await withEnv(async (env) => {
    for (
      const args of [["intermediate", "team"], ["client", "x", "--issuer", "team"], ["revoke", "x"]]
    ) {
      const r = await runCli(["keygen", ...args, "--dir", env.pki]);
      assert.equal(r.code, 0, r.stderr);
    }
    await rm(join(pkiLayout(env.pki).server.dir, "crl.pem"));
    const out = await runCli(serveArgs(env), { timeoutMs: 20_000 });
    assert.equal(out.code, 1, out.stderr);
    assert.match(
      out.stderr,
      /No CRL at ".*server\/crl\.pem", but the revocation record ".*intermediates\/team\/revoked\.json" lists 1 revoked/,
    );
  });
});

/** An openssl CA, a server bundle from it, a recording target; serve started by `start`. */
async function withOpensslGate(
  fn: (ctx: {
    dir: string;
    ca: OpensslCa;
    server: string;
    target: RecordingTarget;
    creds(
      name: string,
      opts?: Partial<Parameters<OpensslCa["issue"]>[1]>,
    ): Creds & { certPath: string };
    env: Env;
  }) => Promise<void>,
) {
  const dir = await freeTempDir("dg-hard-");
  const target = new RecordingTarget(join(dir, "target.sock"));
  await target.start();
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
      creds(name, opts = {}) {
        const c = ca.issue(name, {
          subject: `/CN=${name}`,
          extensions: CLIENT_EXT,
          ...opts,
        });
        return { ca: ca.cert, cert: c.cert, key: c.key, certPath: c.certPath };
      },
    });
  } finally {
    await target.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

Deno.test("rollback: an older CRL from the same CA (openssl, lower CRL number) is refused", async () => {
  await withOpensslGate(async ({ dir, ca, server, target, creds, env }) => {
    const alice = creds("alice");
    const bob = creds("bob");
    const crlPath = join(server, "crl.pem");
    const first = ca.crl(join(dir, "crl-1.pem")); // number 1, nothing revoked
    await writeFile(crlPath, first);
    const gate = await startServe(["--certs", server, "--target", `unix://${target.path}`]);
    try {
      await assertAccepted(gate, bob, "bob");
      ca.revoke(bob.certPath);
      let m = gate.log().length;
      await writeFile(crlPath, ca.crl(join(dir, "crl-2.pem"))); // number 2, bob revoked
      await waitForLine(gate, m, /INFO reloaded .*revoked=1/, 5_000);
      await assertRefused(env, gate, bob, /is revoked/);

      m = gate.log().length;
      await writeFile(crlPath, first);
      const line = await waitForLine(gate, m, /ERROR reload failed/, 5_000);
      assert.match(line, /CRL number 1, lower than 2 in force: refusing a rollback/);
      await assertRefused(env, gate, bob, /is revoked/);
      await assertAccepted(gate, alice, "alice");
    } finally {
      await gate.stop();
    }
  });
});

Deno.test("stale CRLs: warned at start and still enforced; --crl-stale refuse will not start", async () => {
  await withOpensslGate(async ({ dir, ca, server, target, creds, env }) => {
    const alice = creds("alice");
    const bob = creds("bob");
    ca.revoke(bob.certPath);
    const crlPath = join(server, "crl.pem");
    const base = ["--certs", server, "--target", `unix://${target.path}`];

    await writeFile(
      crlPath,
      ca.crl(join(dir, "old.pem"), { thisUpdate: daysFromNow(-10), nextUpdate: daysFromNow(-1) }),
    );
    const gate = await startServe([...base, "--metrics", "tcp://127.0.0.1:0"]);
    try {
      const warn = await gate.waitForLog(/WARN CRL is stale: still enforcing it .*/);
      assert.match(warn[0], /reason="CRL expired \(nextUpdate /);
      // ... and the gauge says so, for an alert.
      const [, metricsUrl] = await gate.waitForLog(/metrics on (http:\/\/\S+\/metrics)/);
      assert.match(await (await fetch(metricsUrl)).text(), /^dockgate_crl_stale 1$/m);
      await assertRefused(env, gate, bob, /is revoked/);
      await assertAccepted(gate, alice, "alice");
    } finally {
      await gate.stop();
    }
    const strict = await runCli([
      "serve",
      "--listen",
      "127.0.0.1:0",
      ...base,
      "--crl-stale",
      "refuse",
    ], { timeoutMs: 20_000 });
    assert.equal(strict.code, 1, strict.stderr);
    assert.match(
      strict.stderr,
      /^dockgate: error: Cannot use CRL .*CRL expired .*--crl-stale is refuse/m,
    );

    await writeFile(
      crlPath,
      ca.crl(join(dir, "future.pem"), { thisUpdate: daysFromNow(2), nextUpdate: daysFromNow(30) }),
    );
    const early = await startServe(base);
    try {
      await early.waitForLog(/WARN CRL is stale: still enforcing it .*reason="CRL not valid yet/);
    } finally {
      await early.stop();
    }
  });
});

Deno.test("re-issue then revoke: every certificate ever issued to the name is revoked", async () => {
  await withEnv(async (env) => {
    const bobOld = await env.client("bob");
    const reissue = await runCli(["keygen", "client", "bob", "--force", "--dir", env.pki]);
    assert.equal(reissue.code, 0, reissue.stderr);
    assert.match(
      reissue.stderr,
      new RegExp(
        `earlier certificate\\(s\\) of "bob" \\(serial ${serialOf(bobOld.cert!)}\\) STAY VALID`,
      ),
    );
    const bobNew = await env.client("bob");
    assert.notEqual(bobNew.cert, bobOld.cert);
    const gate = await env.serve();
    await assertAccepted(gate, bobOld, "bob");
    await assertAccepted(gate, bobNew, "bob");

    const m = gate.log().length;
    const r = await runCli(["keygen", "revoke", "bob", "--dir", env.pki]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /revoked 2 certificate\(s\) of client bob/);
    await waitForLine(gate, m, /INFO reloaded .*revoked=2/, 5_000);
    await assertRefused(env, gate, bobOld, /is revoked/);
    await assertRefused(env, gate, bobNew, /is revoked/);

    // --revoke-old: the earlier certificate is revoked in the same step.
    const carolOld = await env.client("carol");
    const m2 = gate.log().length;
    const again = await runCli([
      "keygen",
      "client",
      "carol",
      "--force",
      "--revoke-old",
      "--dir",
      env.pki,
    ]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /Revoked the 1 earlier certificate\(s\) of "carol"/);
    const carolNew = await env.client("carol");
    await waitForLine(gate, m2, /INFO reloaded .*revoked=3/, 5_000);
    await assertRefused(env, gate, carolOld, /is revoked/);
    await assertAccepted(gate, carolNew, "carol");
  });
});

Deno.test("keygen --force under a running gate re-keys in one step: reload takes it, restart works", async () => {
  await withEnv(async (env) => {
    const alice = await env.client("alice");
    const gate = await env.serve();
    const m = gate.log().length;
    const r = await runCli(["keygen", "--force", "--new-ca", "--dir", env.pki]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /switches to the new CA, server certificate and CRL at its next reload/);
    assert.match(r.stderr, /\(alice\) were issued by the old CA/);
    await waitForLine(gate, m, /INFO reloaded .*revoked=0/, 8_000);
    const bundle = clientBundlePaths(env.pki, "default");
    const fresh: Creds = {
      ca: await readFile(bundle.ca, "utf8"),
      cert: await readFile(bundle.cert, "utf8"),
      key: await readFile(bundle.key, "utf8"),
    };
    await assertAccepted(gate, fresh, "default");
    await assertRefused(env, gate, alice, /./);
    await gate.stop();
    const restarted = await env.serve();
    await assertAccepted(restarted, fresh, "default");
  });
});

// ------------------------------------------------------------------ no peer stops the gate

for (const runtime of ["deno", "node"] as Runtime[]) {
  Deno.test(`a closed stderr does not stop serve (${runtime})`, async () => {
    await withEnv(async (env) => {
      const alice = await env.client("alice");
      const port = await freePort();
      const pidFile = join(env.dir, "pid");
      const statusFile = join(env.dir, "status");
      const [cmd, args] = await cliCommand(runtime, [
        "serve",
        "--listen",
        `127.0.0.1:${port}`,
        "--certs",
        join(env.pki, "server"),
        "--target",
        `unix://${env.target.path}`,
      ]);
      // The log reader reads one line and goes away: every later log line meets EPIPE.
      const sh = new Deno.Command("sh", {
        args: [
          "-c",
          '{ ( exec "$@" ) & echo $! > "$PIDF"; wait $!; echo $? > "$STATF"; } 2>&1 >/dev/null | head -n 1 >/dev/null',
          "sh",
          cmd,
          ...args,
        ],
        env: { PIDF: pidFile, STATF: statusFile },
        stdin: "null",
      }).spawn();
      await waitFor(async () => await canConnect(port), {
        timeoutMs: 20_000,
        what: "serve listening",
      });
      for (let i = 0; i < 20; i++) await expectServed(port, alice);
      // A refusal logs too.
      const anon = await tlsAttempt(port, { ca: env.caPem }, "hi\n");
      assert.equal(anon.data, "");
      await expectServed(port, alice);
      const pid = Number((await readFile(pidFile, "utf8")).trim());
      Deno.kill(pid, "SIGTERM");
      await sh.status;
      assert.equal((await readFile(statusFile, "utf8")).trim(), "0", "serve exited cleanly");
    });
  });
}

async function expectServed(port: number, creds: Creds) {
  const payload = `ping-${crypto.randomUUID()}\n`;
  const out = await tlsAttempt(port, creds, payload);
  assert.equal(out.data, payload, JSON.stringify(out));
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: "127.0.0.1", port });
    s.on("connect", () => (s.destroy(), resolve(true)));
    s.on("error", () => resolve(false));
  });
}

/** Open `count` silent TCP connections to `port` from `localAddress`; resolves once open. */
async function silentSockets(port: number, localAddress: string, count: number) {
  const sockets: net.Socket[] = [];
  await Promise.all(Array.from({ length: count }, () =>
    new Promise<void>((resolve) => {
      const s = net.connect({ host: "127.0.0.1", port, localAddress });
      sockets.push(s);
      s.on("error", () => {});
      s.on("connect", () => resolve());
      s.on("close", () => resolve());
    })));
  return sockets;
}

Deno.test("a handshake flood from one address, and from many, does not lock a good client out", async () => {
  await withEnv(async (env) => {
    const alice = await env.client("alice");
    const gate = await env.serve();
    const m = gate.log().length;
    const reached = env.target.connections;
    // 1,100 silent sockets from one address: more than --max-connections (1024) used to allow.
    const flood = await silentSockets(gate.port, "127.0.0.2", 1100);
    // And 16 each from 20 more addresses: 320 pending handshakes, over --max-handshakes 128.
    for (let i = 3; i < 23; i++) flood.push(...await silentSockets(gate.port, `127.0.0.${i}`, 16));
    try {
      for (let i = 0; i < 5; i++) await assertAccepted(gate, alice, "alice");
      const fromOne = linesAfter(gate, m, /WARN refused peer=127\.0\.0\.2:/);
      assert.ok(fromOne.length >= 1 && fromOne.length <= 3, `throttled: ${fromOne.length} lines`);
      assert.match(fromOne[0], /too many handshakes from this address \(16\)/);
      await waitForLine(
        gate,
        m,
        /handshake slots full \(128\): dropped the oldest pending handshake/,
      );
      assert.ok(linesAfter(gate, m, /WARN refused/).length < 100, "no line per refused socket");
      assert.equal(
        env.target.connections - reached,
        5,
        `only alice reached the target:\n${gate.log().slice(m, m + 5000)}`,
      );
    } finally {
      for (const s of flood) s.destroy();
    }
  });
});

Deno.test("a second SIGTERM during a drain stops at once", async () => {
  await withEnv(async (env) => {
    const alice = await env.client("alice");
    const gate = await env.serve(["--drain-timeout", "60s"]);
    const live = await LiveClient.open(gate.port, alice);
    gate.kill("SIGTERM");
    await gate.waitForLog(/INFO draining connections=1/);
    const t0 = Date.now();
    gate.kill("SIGTERM");
    const code = await gate.exited;
    assert.ok(Date.now() - t0 < 5_000, `stopped after ${Date.now() - t0} ms`);
    assert.equal(code, 0);
    await live.closed;
  });
});

// ------------------------------------------------------------------ names mean what keygen wrote

Deno.test("allow-lists: a Kelvin-sign or case-variant CN and a DNS SAN spelling an IP do not pass", async () => {
  await withOpensslGate(async ({ server, target, creds, env }) => {
    const kevin = creds("kevin");
    const kelvin = creds("kelvin-sign", { subject: "/CN=\u212Aevin" });
    const def = creds("default");
    const upper = creds("DEFAULT");
    const dnsIp = creds("dns-ip", {
      subject: "/CN=dns-ip",
      extensions: [...CLIENT_EXT, "subjectAltName = DNS:127.0.0.1"],
    });
    const ip6 = creds("ip6", {
      subject: "/CN=ip6",
      extensions: [...CLIENT_EXT, "subjectAltName = IP:::1"],
    });
    const gate = await startServe([
      "--certs",
      server,
      "--target",
      `unix://${target.path}`,
      "--allow-cn",
      "kevin",
      "--allow-cn",
      "default",
      "--allow-san",
      "127.0.0.1",
      "--allow-san",
      "0:0:0:0:0:0:0:1",
    ]);
    try {
      await assertAccepted(gate, kevin, "kevin");
      await assertAccepted(gate, def, "default");
      const k = await assertRefused(env, gate, kelvin, /not on any allow-list/);
      assert.match(k, /identity="\u212Aevin"/);
      await assertRefused(env, gate, upper, /not on any allow-list/);
      await assertRefused(env, gate, dnsIp, /not on any allow-list/);
      await assertAccepted(gate, ip6, "ip6", /allow-san 0:0:0:0:0:0:0:1/);
    } finally {
      await gate.stop();
    }
  });
});

// ------------------------------------------------------------------ trust files

Deno.test({
  name:
    "trust files others could write are refused (serve and keygen), --insecure-key-perms overrides",
  ignore: !IS_ROOT,
  fn: async () => {
    await withEnv(async (env) => {
      const server = pkiLayout(env.pki).server.dir;
      const args = serveArgs(env);
      await chown(server, 65534, 65534);
      let out = await runCli(args, { timeoutMs: 20_000 });
      assert.equal(out.code, 1, out.stderr);
      assert.match(
        out.stderr,
        new RegExp(
          `^dockgate: error: Directory "${server}" above CA certificate .* is owned by uid 65534, not by you \\(uid 0\\) or root: run chown 0 "${server}"`,
          "m",
        ),
      );
      const insecure = await startServe([...args.slice(3), "--insecure-key-perms"]);
      await insecure.stop();
      await chown(server, 0, 0);

      await chmod(join(server, "ca.pem"), 0o664);
      out = await runCli(args, { timeoutMs: 20_000 });
      assert.equal(out.code, 1, out.stderr);
      assert.match(
        out.stderr,
        /CA certificate ".*ca\.pem" is writable by group\/others \(mode 0664\): run chmod go-w/,
      );
      await chmod(join(server, "ca.pem"), 0o644);

      // A CRL someone else could replace is not trusted either.
      await chmod(join(server, "crl.pem"), 0o666);
      out = await runCli(args, { timeoutMs: 20_000 });
      assert.equal(out.code, 1, out.stderr);
      assert.match(out.stderr, /CRL ".*crl\.pem" is writable by group\/others/);
      await chmod(join(server, "crl.pem"), 0o644);

      // keygen does not reuse a client directory someone else owns, nor follow a symlink.
      await env.client("bob");
      const bobDir = clientBundlePaths(env.pki, "bob").dir;
      await chown(bobDir, 65534, 65534);
      out = await runCli(["keygen", "client", "bob", "--force", "--dir", env.pki]);
      assert.equal(out.code, 1, out.stderr);
      assert.match(out.stderr, /Cannot use ".*bob": it is owned by uid 65534.*run chown 0/);
      await symlink(join(env.dir), join(pkiLayout(env.pki).clientsDir, "eve"));
      out = await runCli(["keygen", "client", "eve", "--dir", env.pki]);
      assert.equal(out.code, 1, out.stderr);
      assert.match(out.stderr, /is a symlink, and keygen does not follow symlinked directories/);
    });
  },
});

Deno.test({
  name: "a --config file others could write is refused, at startup and when it changes",
  ignore: !IS_ROOT,
  fn: async () => {
    await withEnv(async (env) => {
      const file = join(env.dir, "dockgate.yaml");
      const config = (extra = "") =>
        writeFile(
          file,
          `listen: 127.0.0.1:0\ntarget: unix://${env.target.path}\n` +
            `certs: ${pkiLayout(env.pki).server.dir}\n${extra}`,
        );
      await config();
      await chmod(file, 0o666);
      let out = await runCli(["serve", "--config", file], { timeoutMs: 20_000 });
      assert.equal(out.code, 1, out.stderr);
      assert.match(out.stderr, /config file ".*dockgate\.yaml" is writable by group\/others/);
      // The file cannot waive its own check.
      await config("insecure-key-perms: true\n");
      out = await runCli(["serve", "--config", file], { timeoutMs: 20_000 });
      assert.equal(out.code, 1, out.stderr);
      assert.match(out.stderr, /config file ".*dockgate\.yaml" is writable by group\/others/);
      await chown(env.dir, 65534, 65534);
      await chmod(file, 0o644);
      await config();
      out = await runCli(["serve", "--config", file], { timeoutMs: 20_000 });
      assert.equal(out.code, 1, out.stderr);
      assert.match(out.stderr, /above config file .* is owned by uid 65534/);
      await chown(env.dir, 0, 0);

      // Running: a change someone else could have made is not applied.
      const alice = await env.client("alice");
      await env.client("bob");
      await config("allow-cn: [bob]\n");
      const gate = await startServe(["--config", file]);
      try {
        await assertRefused(env, gate, alice, /not on any allow-list/);
        const m = gate.log().length;
        await chmod(file, 0o666);
        await config("allow-cn: [bob, alice]\n");
        await waitForLine(gate, m, /config reload failed.*writable by group\/others/, 10_000);
        await assertRefused(env, gate, alice, /not on any allow-list/);
      } finally {
        await gate.stop();
      }
    });
  },
});

Deno.test({
  name: "a connect --config file others could write is refused, as serve's is",
  ignore: !IS_ROOT,
  fn: async () => {
    await withEnv(async (env) => {
      const file = join(env.dir, "connect.yaml");
      await env.client("alice");
      const sock = join(env.dir, "c.sock");
      const config = (extra = "") =>
        writeFile(
          file,
          `connect:\n  server: 127.0.0.1:1\n  listen: unix://${sock}\n` +
            `  certs: ${pkiLayout(env.pki).clientsDir}/alice\n${extra}`,
        );
      await config();
      await chmod(file, 0o666);
      let out = await runCli(["connect", "--config", file], { timeoutMs: 15_000 });
      assert.equal(out.code, 1, out.stderr);
      assert.match(out.stderr, /config file ".*connect\.yaml" is writable by group\/others/);
      // The file cannot waive its own check.
      await config("  insecure-key-perms: true\n");
      out = await runCli(["connect", "--config", file], { timeoutMs: 15_000 });
      assert.equal(out.code, 1, out.stderr);
      assert.match(out.stderr, /config file ".*connect\.yaml" is writable by group\/others/);
    });
  },
});

// ------------------------------------------------------------------ anchors and key usage

for (const runtime of ["deno", "node"] as Runtime[]) {
  Deno.test(`an expired client CA in ca.pem admits nobody (${runtime})`, async () => {
    await withOpensslGate(async ({ dir, ca, server, target, creds, env }) => {
      const old = OpensslCa.create(join(dir, "old-ca"), {
        name: "expired CA",
        notBefore: daysFromNow(-100),
        notAfter: daysFromNow(-1),
      });
      const viaOld = old.issue("carol", { subject: "/CN=carol", extensions: CLIENT_EXT });
      await writeFile(join(server, "ca.pem"), ca.cert + old.cert);
      const gate = await startServe(["--certs", server, "--target", `unix://${target.path}`], {
        runtime,
      });
      try {
        await assertAccepted(gate, creds("alice"), "alice");
        const line = await assertRefused(env, gate, {
          ca: ca.cert,
          cert: viaOld.cert,
          key: viaOld.key,
        }, /./);
        if (runtime === "deno") assert.match(line, /issuing CA \(CN=expired CA\) expired/);
      } finally {
        await gate.stop();
      }
    });
  });
}

for (const runtime of ["deno", "node"] as Runtime[]) {
  Deno.test(`an expired client certificate is logged as expired, with its end date (${runtime})`, async () => {
    await withOpensslGate(async ({ dir, server, target, creds, env }) => {
      const notAfter = daysFromNow(-1);
      const old = creds("old", { notBefore: daysFromNow(-10), notAfter });
      // Same CA name, other key, also expired: not ours, so never called "expired" by us.
      const other = OpensslCa.create(join(dir, "other-ca"));
      const foreign = other.issue("mallory", {
        subject: "/CN=mallory",
        extensions: CLIENT_EXT,
        notBefore: daysFromNow(-10),
        notAfter,
      });
      const gate = await startServe(["--certs", server, "--target", `unix://${target.path}`], {
        runtime,
      });
      try {
        await assertAccepted(gate, creds("alice"), "alice");
        // X.509 keeps whole seconds.
        const end = new Date(Math.floor(notAfter.getTime() / 1000) * 1000).toISOString();
        const line = await assertRefused(env, gate, old, /expired|EXPIRED/);
        // Deno's TLS verdict does not say expired: the gate's own words, with the date. Node's
        // says CERT_HAS_EXPIRED, and its refused socket no longer has the certificate.
        if (runtime === "deno") {
          assert.ok(line.includes(`reason="certificate expired ${end}"`), line);
        } else assert.match(line, /reason="certificate not verified: CERT_HAS_EXPIRED"/);
        const f = await assertRefused(env, gate, {
          ca: old.ca,
          cert: foreign.cert,
          key: foreign.key,
        }, /reason="certificate not verified: /);
        if (runtime === "deno") assert.doesNotMatch(f, /expired/);
      } finally {
        await gate.stop();
      }
    });
  });
}

Deno.test("client leaves whose key usage rules out signing are refused", async () => {
  await withOpensslGate(async ({ server, target, creds, env }) => {
    const agreement = creds("ka", {
      extensions: [
        "basicConstraints = critical, CA:FALSE",
        "keyUsage = critical, keyAgreement",
        "extendedKeyUsage = clientAuth",
      ],
    });
    const certSign = creds("kcs", {
      extensions: [
        "basicConstraints = critical, CA:FALSE",
        "keyUsage = critical, keyCertSign",
        "extendedKeyUsage = clientAuth",
      ],
    });
    const signing = creds("ds");
    const noUsage = creds("none", {
      extensions: ["basicConstraints = critical, CA:FALSE", "extendedKeyUsage = clientAuth"],
    });
    const gate = await startServe(["--certs", server, "--target", `unix://${target.path}`]);
    try {
      await assertAccepted(gate, signing, "ds");
      await assertAccepted(gate, noUsage, "none");
      await assertRefused(env, gate, agreement, /key usage lacks digitalSignature/);
      await assertRefused(env, gate, certSign, /./);
    } finally {
      await gate.stop();
    }
  });
});
