/**
 * Who gets through `dockgate serve`, and for how long: allow-lists, revocation (picked up by
 * file watching), SIGHUP certificate rotation, broken reloads kept out, handshake timeout,
 * connection cap, drain on SIGTERM, target restarts and fd leaks, and a testssl.sh scan.
 *
 * End to end: the real CLI, real TLS, and a real unix-socket echo target that records every
 * connection and byte it receives (plus a real dockerd for the `docker logs -f` rotation).
 */

import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import tls from "node:tls";
import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { dockerdUnavailable, startDockerd, which } from "./helpers/dockerd.ts";
import { freeTempDir, waitFor } from "./helpers/wait.ts";
import { runCli, type ServeProcess, startServe, tlsFlags } from "./helpers/gate.ts";
import { fdCount, linesAfter, rawAttempt, tlsAttempt, waitForLine } from "./helpers/tls_peers.ts";
import { clientBundlePaths, pkiLayout } from "../src/ca/layout.ts";
import { initPki } from "../src/ca/keygen.ts";
import { loadCa } from "../src/ca/issuers.ts";
import { issueClient } from "../src/ca/issue.ts";
import {
  assertAccepted,
  assertRefused,
  fingerprintOf,
  LiveClient,
  peerRe,
  startPump,
  withEnv,
} from "./helpers/gate_env.ts";

// ------------------------------------------------------------------------------ allow-lists

Deno.test("allow-lists: --allow-cn, --allow-ou, --allow-san, CN glob, and none", async (t) => {
  await withEnv(async (env) => {
    const ca = await loadCa(env.pki);
    const alice = await env.client("alice");
    const bob = await env.client("bob");

    await t.step("--allow-cn alice: alice in, bob refused", async () => {
      const gate = await env.serve(["--allow-cn", "alice"]);
      await gate.waitForLog(/INFO policy: allow-cn alice/);
      await assertAccepted(gate, alice, "alice", /why="allow-cn alice"/);
      const line = await assertRefused(env, gate, bob, /reason="not on any allow-list"/);
      assert.match(line, /identity=bob /);
      await assertAccepted(gate, alice, "alice");
      await gate.stop();
    });

    await t.step(
      "--allow-ou ops: carol (keygen client carol --ou ops) in, alice refused",
      async () => {
        const r = await runCli(["keygen", "client", "carol", "--dir", env.pki, "--ou", "ops"]);
        assert.equal(r.code, 0, r.stderr);
        const carol = await env.client("carol");
        const gate = await env.serve(["--allow-ou", "ops"]);
        await assertAccepted(gate, carol, "carol", /why="allow-ou ops"/);
        await assertRefused(env, gate, alice, /identity=alice .*reason="not on any allow-list"/);
        await gate.stop();
      },
    );

    await t.step(
      "--allow-san: a client certificate with a DNS SAN in, others refused",
      async () => {
        const dave = await issueClient(ca, "dave", { sans: ["dave.build.example"] });
        const other = await issueClient(ca, "erin", { sans: ["erin.build.example"] });
        const gate = await env.serve(["--allow-san", "dave.build.example"]);
        await assertAccepted(
          gate,
          { ca: env.caPem, cert: dave.certPem, key: dave.keyPem },
          "dave",
          /why="allow-san dave\.build\.example"/,
        );
        await assertRefused(
          env,
          gate,
          { ca: env.caPem, cert: other.certPem, key: other.keyPem },
          /identity=erin .*not on any allow-list/,
        );
        await assertRefused(env, gate, alice, /identity=alice .*not on any allow-list/);
        await gate.stop();
      },
    );

    await t.step("--allow-cn '*.ci.example': one label only", async () => {
      const gate = await env.serve(["--allow-cn", "*.ci.example"]);
      const make = async (name: string) => {
        const p = await issueClient(ca, name);
        return { ca: env.caPem, cert: p.certPem, key: p.keyPem };
      };
      await assertAccepted(
        gate,
        await make("runner1.ci.example"),
        "runner1.ci.example",
        /why="allow-cn \*\.ci\.example"/,
      );
      await assertRefused(env, gate, await make("a.b.ci.example"), /not on any allow-list/);
      await assertRefused(env, gate, await make("ci.example"), /not on any allow-list/);
      await assertRefused(
        env,
        gate,
        await make("runner1.ci.example.evil"),
        /not on any allow-list/,
      );
      await gate.stop();
    });

    await t.step(
      "no allow flag: any certificate of the CA, and the startup log says so",
      async () => {
        const gate = await env.serve();
        await gate.waitForLog(
          /INFO policy: any certificate signed by the CA is accepted \(no allow-list\)/,
        );
        await assertAccepted(gate, alice, "alice", /why="any certificate from our CA"/);
        await assertAccepted(gate, bob, "bob", /why="any certificate from our CA"/);
        await gate.stop();
      },
    );
  });
});

// ------------------------------------------------------------------------------ revocation

Deno.test("revocation: keygen revoke (name, then serial) takes effect on the next handshake", async () => {
  await withEnv(async (env) => {
    const alice = await env.client("alice");
    const bob = await env.client("bob");
    const carol = await env.client("carol");
    const gate = await env.serve();
    // keygen publishes an empty CRL with the CA, so one is in force from the start.
    await gate.waitForLog(/INFO policy: .* crl="0 revoked"/);

    // Bob's connection opened before the revocation is ended by the reload that revokes him;
    // alice's open connection keeps flowing through it.
    const bobLive = await LiveClient.open(gate.port, bob);
    const aliceLive = await LiveClient.open(gate.port, alice);
    const pump = startPump(aliceLive);

    let m = gate.log().length;
    const r = await runCli(["keygen", "revoke", "bob", "--dir", env.pki]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /revoked 1 certificate\(s\) of client bob: serial [0-9a-f]+/);
    const t0 = Date.now();
    await waitForLine(gate, m, /INFO reloaded why="files changed" revoked=1/, 5_000);
    assert.ok(Date.now() - t0 < 3_000, "picked up by polling within two seconds");

    const bobSerial = new X509Certificate(bob.cert!).serialNumber.toLowerCase().replace(/^0+/, "");
    const ended = await waitForLine(gate, m, /WARN ending connection at reload/);
    assert.match(ended, new RegExp(`identity=bob serial=${bobSerial} reason="certificate serial`));
    await bobLive.closed;
    const line = await assertRefused(
      env,
      gate,
      bob,
      new RegExp(`reason="certificate serial ${bobSerial} is revoked"`),
    );
    assert.match(line, /identity=bob /);
    await assertAccepted(gate, alice, "alice");
    await assertAccepted(gate, carol, "carol");

    // Revoke carol by serial, as printed by openssl (upper case hex).
    const carolSerial = new X509Certificate(carol.cert!).serialNumber;
    m = gate.log().length;
    const r2 = await runCli(["keygen", "revoke", carolSerial, "--dir", env.pki]);
    assert.equal(r2.code, 0, r2.stderr);
    await waitForLine(gate, m, /INFO reloaded why="files changed" revoked=2/, 5_000);
    const reloadedAt = Date.now();
    await assertRefused(env, gate, carol, /is revoked/);
    await assertRefused(env, gate, bob, /is revoked/);
    await assertAccepted(gate, alice, "alice");

    // The already-open alice connection kept flowing through both reloads.
    await waitFor(() => pump.times.length > 0 && pump.times[pump.times.length - 1] > reloadedAt, {
      what: "alice's open connection still flowing after the reloads",
    });
    await aliceLive.echo("still here\n");
    const { failure } = await pump.stop();
    assert.equal(failure, undefined);
    assert.equal(aliceLive.isClosed, false);
    await aliceLive.end();
  });
});

Deno.test("--keep-revoked-connections: an open connection of a revoked client lives on", async () => {
  await withEnv(async (env) => {
    const bob = await env.client("bob");
    const gate = await env.serve(["--keep-revoked-connections"]);
    const bobLive = await LiveClient.open(gate.port, bob);
    const m = gate.log().length;
    const r = await runCli(["keygen", "revoke", "bob", "--dir", env.pki]);
    assert.equal(r.code, 0, r.stderr);
    await waitForLine(gate, m, /INFO reloaded why="files changed" revoked=1/, 5_000);
    await bobLive.echo("still open\n");
    assert.equal(linesAfter(gate, m, /ending connection/).length, 0);
    await assertRefused(env, gate, bob, /is revoked/);
    await bobLive.end();
  });
});

Deno.test("--max-conn-lifetime 1s closes a connection after its lifetime", async () => {
  await withEnv(async (env) => {
    const alice = await env.client("alice");
    const gate = await env.serve(["--max-conn-lifetime", "1s"]);
    const t0 = Date.now();
    const live = await LiveClient.open(gate.port, alice);
    const pump = startPump(live);
    await live.closed;
    const ms = live.closedAt! - t0;
    const { count, failure } = await pump.stop();
    assert.ok(ms >= 900 && ms < 4_000, `closed after ${ms} ms`);
    assert.ok(count > 3, `data flowed until then (${count} round trips)`);
    assert.ok(failure === undefined || /closed before echo/.test(failure), failure);
    const line = await gate.waitForLog(new RegExp(`INFO closed ${peerRe(live.localPort)}.*`));
    assert.match(line[0], /error="maximum connection lifetime reached"/);
    // A new connection is fine.
    await assertAccepted(gate, alice, "alice");
  });
});

// ------------------------------------------------------------------------------ reload

Deno.test("SIGHUP reload rotates the server certificate; an open connection keeps flowing", async () => {
  await withEnv(async (env) => {
    const alice = await env.client("alice");
    const certPath = pkiLayout(env.pki).server.cert;
    const oldFp = fingerprintOf(await readFile(certPath, "utf8"));
    const gate = await env.serve();

    // SIGHUP with unchanged files reloads too (and logs it). The handler is installed in the
    // same tick as the "listening" line is written, so the signal cannot arrive before it.
    const m0 = gate.log().length;
    gate.kill("SIGHUP");
    await waitForLine(gate, m0, /INFO reloaded why=SIGHUP/, 5_000);

    const live = await LiveClient.open(gate.port, alice);
    assert.equal(live.serverFingerprint(), oldFp);
    const pump = startPump(live);

    const r = await runCli(["keygen", "server", "--force", "--dir", env.pki]);
    assert.equal(r.code, 0, r.stderr);
    const newFp = fingerprintOf(await readFile(certPath, "utf8"));
    assert.notEqual(newFp, oldFp);
    const m = gate.log().length;
    gate.kill("SIGHUP");
    await waitForLine(gate, m, /INFO reloaded why=SIGHUP/);
    const ticksAtReload = pump.times.length;

    const fresh = await assertAccepted(gate, alice, "alice");
    assert.equal(fresh.serverFingerprint, newFp, "new connections see the new certificate");
    await live.echo("after rotation\n");
    await waitFor(() => pump.times.length >= ticksAtReload + 5, {
      what: "data flowing after rotation",
    });
    const { failure } = await pump.stop();
    assert.equal(failure, undefined);
    assert.equal(live.isClosed, false, "the old connection was not dropped");
    assert.equal(
      live.serverFingerprint(),
      oldFp,
      "the old connection still runs on the old certificate",
    );
    // (The file poll may have logged a "reload failed" for the moment between keygen writing
    // the new key and the new certificate; the configuration in force is what matters.)
    await live.end();
  });
});

Deno.test({
  name: "SIGHUP rotation keeps a real `docker logs -f` stream through the gate",
  ignore: dockerdUnavailable(),
}, async () => {
  const d = await startDockerd();
  if (!d) return;
  const dir = await freeTempDir("dg-rot-");
  let gate: ServeProcess | undefined;
  let logs: Deno.ChildProcess | undefined;
  try {
    const pki = join(dir, "pki");
    await initPki({ dir: pki });
    gate = await startServe(["--certs", join(pki, "server"), "--target", d.host]);
    const bundle = clientBundlePaths(pki, "default").dir;
    const host = `tcp://localhost:${gate.port}`;
    const viaGate = ["-H", host, ...tlsFlags(bundle)];

    const run = await d.docker([
      ...tlsFlags(bundle),
      "run",
      "-d",
      "--network",
      "none",
      d.image,
      "sh",
      "-c",
      "i=0; while true; do echo line-$i; i=$((i+1)); sleep 0.1; done",
    ], { host });
    assert.equal(run.code, 0, run.stderr);
    const id = run.stdout.trim();

    logs = new Deno.Command(which("docker")!, {
      args: [...viaGate, "logs", "-f", id],
      env: { DOCKER_CONFIG: join(d.tmp, "cli") },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    let text = "";
    const reader = (async () => {
      const dec = new TextDecoder();
      for await (const c of logs!.stdout) text += dec.decode(c, { stream: true });
    })();
    const lastLine = () => {
      const all = [...text.matchAll(/line-(\d+)\n/g)];
      return all.length ? Number(all[all.length - 1][1]) : -1;
    };
    await waitFor(() => lastLine() >= 5, { timeoutMs: 30_000, what: "docker logs -f streaming" });

    const certPath = pkiLayout(pki).server.cert;
    const oldFp = fingerprintOf(await readFile(certPath, "utf8"));
    const r = await runCli(["keygen", "server", "--force", "--dir", pki]);
    assert.equal(r.code, 0, r.stderr);
    const newFp = fingerprintOf(await readFile(certPath, "utf8"));
    const m = gate.log().length;
    gate.kill("SIGHUP");
    await waitForLine(gate, m, /INFO reloaded why=SIGHUP/);
    const atReload = lastLine();

    // New connections: the new certificate, and the docker CLI still verifies it.
    const fp = await new Promise<string>((resolve, reject) => {
      const s = tls.connect({
        host: "127.0.0.1",
        port: gate!.port,
        servername: "localhost",
        rejectUnauthorized: false,
      }, () => {
        resolve(s.getPeerCertificate().fingerprint256);
        s.destroy();
      });
      s.on("error", reject);
    });
    assert.equal(fp, newFp);
    assert.notEqual(fp, oldFp);
    const v = await d.docker([...tlsFlags(bundle), "version", "--format", "{{.Server.Version}}"], {
      host,
    });
    assert.equal(v.code, 0, v.stderr);

    // The stream opened before the rotation keeps going.
    await waitFor(() => lastLine() >= atReload + 15, {
      timeoutMs: 30_000,
      what: "logs -f after rotation",
    });
    const seen = [...text.matchAll(/line-(\d+)\n/g)].map((x) => Number(x[1]));
    assert.deepEqual(seen, seen.map((_, i) => i), "no line lost or repeated");
    logs.kill("SIGTERM");
    await logs.status;
    await reader;
    logs = undefined;
    assert.equal((await d.docker(["rm", "-f", id])).code, 0);
  } finally {
    if (logs) {
      try {
        logs.kill("SIGKILL");
      } catch { /* gone */ }
      await logs.status;
    }
    await gate?.stop();
    await d.stop();
    await rm(dir, { recursive: true, force: true });
  }
});

Deno.test("a broken reload is kept out; fixing the file reloads", async () => {
  await withEnv(async (env) => {
    const alice = await env.client("alice");
    const certPath = pkiLayout(env.pki).server.cert;
    const good = await readFile(certPath, "utf8");
    const gate = await env.serve();

    let m = gate.log().length;
    await writeFile(certPath, "this is not a certificate\n");
    const failed = await waitForLine(
      gate,
      m,
      /ERROR reload failed, keeping the previous configuration/,
      5_000,
    );
    assert.ok(failed.includes(certPath), failed);
    const out = await assertAccepted(gate, alice, "alice");
    assert.equal(out.serverFingerprint, fingerprintOf(good), "still the previous certificate");
    assert.equal(linesAfter(gate, m, /INFO reloaded/).length, 0);

    m = gate.log().length;
    await writeFile(certPath, good);
    await waitForLine(gate, m, /INFO reloaded why="files changed"/, 5_000);
    await assertAccepted(gate, alice, "alice");
  });
});

// ------------------------------------------------------------------------------ limits

Deno.test("slow-loris: a client that says nothing is closed after --handshake-timeout", async () => {
  await withEnv(async (env) => {
    const alice = await env.client("alice");
    const gate = await env.serve(["--handshake-timeout", "500ms"]);
    const before = { conns: env.target.connections, bytes: env.target.bytes };
    const m = gate.log().length;
    const out = await rawAttempt(gate.port, undefined, 10_000);
    assert.equal(out.timedOut, false);
    assert.equal(out.received.byteLength, 0);
    assert.ok(out.ms >= 400 && out.ms <= 3_000, `closed after ${out.ms} ms`);
    const line = await waitForLine(gate, m, new RegExp(`WARN refused ${peerRe(out.localPort)}`));
    assert.match(line, /reason="[^"]*handshake timeout/i);
    assert.deepEqual({ conns: env.target.connections, bytes: env.target.bytes }, before);
    await assertAccepted(gate, alice, "alice");
  });
});

Deno.test("--max-connections 3: the 4th is refused; after one closes a new one gets in", async () => {
  await withEnv(async (env) => {
    const alice = await env.client("alice");
    const gate = await env.serve(["--max-connections", "3"]);
    const held = [
      await LiveClient.open(gate.port, alice),
      await LiveClient.open(gate.port, alice),
      await LiveClient.open(gate.port, alice),
    ];
    try {
      const m = gate.log().length;
      const conns = env.target.connections;
      const fourth = await tlsAttempt(gate.port, alice, "let me in\n");
      assert.equal(fourth.data, "");
      assert.equal(fourth.secure, false);
      assert.equal(fourth.timedOut, false);
      // Reset right after accept: the client may not even learn its port.
      const who = fourth.localPort ? peerRe(fourth.localPort) : "";
      const line = await waitForLine(gate, m, new RegExp(`WARN refused ${who}`));
      assert.match(line, /reason="connection limit reached \(3\)"/);
      assert.equal(env.target.connections, conns);
      for (const h of held) await h.echo("held still works\n");

      await held[0].end();
      await gate.waitForLog(new RegExp(`INFO closed ${peerRe(held[0].localPort)}`));
      // The slot is freed when the TCP socket is gone; retry with backoff until then.
      const payload = "now there is room\n";
      const ok = await waitFor(async () => {
        const out = await tlsAttempt(gate.port, alice, payload);
        return out.data === payload ? out : undefined;
      }, { timeoutMs: 5_000, what: "a new connection after one closed" });
      assert.equal(ok.data, payload);
    } finally {
      for (const h of held) h.destroy();
    }
  });
});

Deno.test("drain on SIGTERM: open connection works until the deadline, new ones refused, exit 0", async () => {
  await withEnv(async (env) => {
    const alice = await env.client("alice");
    const gate = await env.serve(["--drain-timeout", "2s"]);
    const live = await LiveClient.open(gate.port, alice);
    const pump = startPump(live);
    try {
      await waitFor(() => pump.times.length >= 3, { what: "pump running" });
      const t0 = Date.now();
      gate.kill("SIGTERM");
      await gate.waitForLog(/stopping: draining for up to 2000 ms/);
      const refused = await tlsAttempt(gate.port, alice, "too late\n");
      assert.equal(refused.data, "", "no new connection during the drain");
      const code = await gate.exited;
      const exitMs = Date.now() - t0;
      await live.closed;
      const { failure } = await pump.stop();
      assert.equal(code, 0, gate.log());
      assert.ok(exitMs >= 1_800 && exitMs <= 4_500, `exited after ${exitMs} ms`);
      const lastTick = Math.max(...pump.times);
      assert.ok(
        lastTick - t0 >= 1_500,
        `data kept flowing during the drain (last at +${lastTick - t0} ms)`,
      );
      assert.ok(live.closedAt! - t0 >= 1_800, "closed at the deadline, not before");
      assert.ok(failure === undefined || /closed/.test(failure), failure);
      assert.match(gate.log(), /WARN drain deadline reached closed=1/);
    } finally {
      live.destroy();
    }
  });
});

Deno.test("drain on SIGTERM: exits promptly when the last connection ends by itself", async () => {
  await withEnv(async (env) => {
    const alice = await env.client("alice");
    const gate = await env.serve(["--drain-timeout", "30s"]);
    const live = await LiveClient.open(gate.port, alice);
    try {
      gate.kill("SIGTERM");
      await gate.waitForLog(/stopping: draining/);
      await live.echo("still served while draining\n");
      const t0 = Date.now();
      await live.end();
      const code = await gate.exited;
      const ms = Date.now() - t0;
      assert.equal(code, 0);
      assert.ok(ms < 3_000, `exited ${ms} ms after the connection ended`);
      assert.doesNotMatch(gate.log(), /drain deadline reached/);
    } finally {
      live.destroy();
    }
  });
});

// ------------------------------------------------------------------------------ target

/**
 * Failing connections in the fd-leak loop: 10 000 as the issue asks, each a full mTLS
 * handshake with both ends in Deno (~190/s on the idle 2-core box, ~50 s; ~150/s under other
 * load). Past {@linkcode FAILING_BUDGET_MS} the loop stops early, but never below
 * {@linkcode FAILING_MINIMUM}: even one leaked fd per failure would show plainly.
 */
const FAILING_CONNECTIONS = 10_000;
const FAILING_MINIMUM = 2_000;
const FAILING_BUDGET_MS = 60_000;

Deno.test("target restart: clean close while it is down, served again after; no fd leak", async () => {
  await withEnv(async (env) => {
    const alice = await env.client("alice");
    const gate = await env.serve();
    await assertAccepted(gate, alice, "alice");

    await env.target.stop();
    let m = gate.log().length;
    const down = await tlsAttempt(gate.port, alice, "anyone there?\n");
    assert.equal(down.data, "");
    assert.equal(down.timedOut, false, "closed by the gate, not left hanging");
    const line = await waitForLine(
      gate,
      m,
      new RegExp(`ERROR target unavailable ${peerRe(down.localPort)}`),
    );
    assert.ok(line.includes(env.target.path), line);

    await env.target.start();
    await assertAccepted(gate, alice, "alice");

    // Many failing connections must not leak descriptors.
    await env.target.stop();
    const pid = gate.child.pid;
    const base = fdCount(pid);
    m = gate.log().length;
    const t0 = Date.now();
    let next = 0;
    let served = 0;
    let hung = 0;
    const deadline = t0 + FAILING_BUDGET_MS;
    const worker = async () => {
      while (
        next < FAILING_CONNECTIONS && (next < FAILING_MINIMUM || Date.now() < deadline)
      ) {
        next++;
        const out = await tlsAttempt(gate.port, alice, "x\n");
        if (out.data !== "") served++;
        if (out.timedOut) hung++;
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    const loopMs = Date.now() - t0;
    const attempts = next;
    console.error(`${attempts} failing connections in ${loopMs} ms`);
    assert.ok(attempts >= FAILING_MINIMUM);
    assert.equal(served, 0);
    assert.equal(hung, 0, "every failing connection was closed by the gate");
    await waitFor(
      () => linesAfter(gate, m, /ERROR target unavailable/).length >= attempts,
      {
        timeoutMs: 30_000,
        what: "every failure logged",
      },
    );
    const after = await waitFor(() => {
      const n = fdCount(pid);
      return n <= base + 5 ? n : undefined;
    }, { timeoutMs: 10_000, what: `fd count back near ${base}` }).catch(() => fdCount(pid));
    console.error(`serve fds: ${base} before, ${after} after`);
    assert.ok(after <= base + 5, `serve fds grew from ${base} to ${after}`);

    await env.target.start();
    await assertAccepted(gate, alice, "alice");
  });
});

// ------------------------------------------------------------------------------ testssl

function testsslBin(): string | undefined {
  return which("testssl") ?? which("testssl.sh");
}

/** For `ignore:`: true, after a loud SKIP line, when testssl.sh is missing (never under CI). */
function testsslUnavailable(): boolean {
  if (testsslBin() !== undefined || Deno.env.get("CI")) return false;
  console.error(
    `\n${"!".repeat(78)}\nSKIP: testssl.sh scan needs Debian's testssl.sh\n${"!".repeat(78)}\n`,
  );
  return true;
}

Deno.test({
  name: "testssl.sh: no SSLv2/3, TLS 1.0/1.1; only AEAD ciphers; no client cert refused",
  ignore: testsslUnavailable(),
}, async () => {
  const bin = testsslBin();
  assert.ok(bin, "testssl.sh is installed (scripts/test.sh installs it)");
  await withEnv(async (env) => {
    const gate = await env.serve();
    const json = join(env.dir, "testssl.json");
    // Protocols and each cipher (--fast: one openssl probe per cipher, bounded time).
    const out = await new Deno.Command(bin, {
      args: [
        "--quiet",
        "--color",
        "0",
        "--warnings",
        "off",
        "--fast",
        "-p",
        "-e",
        "--connect-timeout",
        "5",
        "--openssl-timeout",
        "5",
        "--jsonfile",
        json,
        `127.0.0.1:${gate.port}`,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(150_000),
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    const findings = JSON.parse(await readFile(json, "utf8")) as { id: string; finding: string }[];
    const by = (id: string) => findings.find((f) => f.id === id)?.finding;
    // testssl 3.0 (Debian 12) has no --mtls; protocols and ciphers are negotiated in the
    // hellos, before the client certificate is asked for, so it still sees what is offered.
    assert.ok(findings.length > 0, text);
    for (const p of ["SSLv2", "SSLv3", "TLS1", "TLS1_1"]) {
      assert.equal(by(p), "not offered", `${p}\n${text}`);
    }
    assert.match(by("TLS1_2") ?? "", /^offered/);
    assert.match(by("TLS1_3") ?? "", /^offered/);
    const ciphers = findings.filter((f) => f.id.startsWith("cipher_x"));
    assert.ok(ciphers.length >= 3, text);
    for (const c of ciphers) {
      assert.match(
        c.finding,
        /\s(AESGCM|CHACHA20|ChaCha20|AESCCM)\s/i,
        `non-AEAD cipher offered: ${c.finding}`,
      );
      assert.doesNotMatch(c.finding, /CBC|SHA1?\s|RC4|3DES|NULL/, c.finding);
    }

    // And without a client certificate nothing gets through.
    const before = { conns: env.target.connections, bytes: env.target.bytes };
    const s = await new Deno.Command("openssl", {
      // -ign_eof: keep reading after our request until the server closes (with its alert).
      args: [
        "s_client",
        "-ign_eof",
        "-connect",
        `127.0.0.1:${gate.port}`,
        "-servername",
        "localhost",
        "-CAfile",
        pkiLayout(env.pki).caCert,
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(20_000),
    }).spawn();
    const w = s.stdin.getWriter();
    await w.write(new TextEncoder().encode("GET /containers/json HTTP/1.1\r\nHost: d\r\n\r\n"))
      .catch(() => {});
    await w.close().catch(() => {});
    const so = await s.output();
    const sText = new TextDecoder().decode(so.stdout) + new TextDecoder().decode(so.stderr);
    // The refusal reaches the client as the TLS 1.3 "certificate required" alert, or, when the
    // server closes before openssl reads the alert (seen under load), as an EOF/reset. What
    // matters is below: nothing came back and nothing reached the target.
    assert.match(
      sText,
      /alert certificate required|unexpected eof|errno=104|reset by peer/i,
      sText,
    );
    assert.doesNotMatch(sText, /HTTP\/1\.1|containers/, "no application data came back");
    assert.deepEqual({ conns: env.target.connections, bytes: env.target.bytes }, before);
    await gate.waitForLog(/WARN refused .*(certificate|CERTIFICATE)/);
  });
});
