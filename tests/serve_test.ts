/**
 * Core refusals of `dockgate serve`, end to end: the real CLI, real TLS, a real unix-socket
 * target that records every byte it receives. Each bad client must be refused, get no
 * application data, leave the target untouched (no connection, no byte), be logged as
 * `refused` with a reason, and the gate must go on serving the next good client.
 *
 * Also: the CLI's one-line errors for bad input, and that startup passes the fail-closed
 * self-test.
 */

import assert from "node:assert/strict";
import net from "node:net";
import { chmod, copyFile, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { freeTempDir, waitFor } from "./helpers/wait.ts";
import { runCli, type ServeProcess, startServe } from "./helpers/gate.ts";
import {
  type Creds,
  fdCount,
  linesAfter,
  rawAttempt,
  RecordingTarget,
  REFUSAL_ANSWER,
  tlsAttempt,
  waitForLine,
} from "./helpers/tls_peers.ts";
import { clientBundlePaths, pkiLayout } from "../src/ca/layout.ts";
import { initPki, issueClientBundle } from "../src/ca/keygen.ts";
import { loadCa } from "../src/ca/issuers.ts";
import { createCa, issueClient } from "../src/ca/issue.ts";

// ------------------------------------------------------------------------------ helpers

/** Run a command, return exit code and combined output; bounded in time. */
async function run(cmd: string, args: string[], stdin = "", timeoutMs = 20_000) {
  const child = new Deno.Command(cmd, {
    args,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(timeoutMs),
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(stdin)).catch(() => {});
  await w.close().catch(() => {});
  const out = await child.output();
  const d = new TextDecoder();
  return { code: out.code, output: d.decode(out.stdout) + d.decode(out.stderr) };
}

interface Env {
  dir: string;
  pki: string;
  target: RecordingTarget;
  gate: ServeProcess;
  alice: Creds;
  caPem: string;
}

interface Mark {
  log: number;
  connections: number;
  bytes: number;
}

function mark(env: Env): Mark {
  return {
    log: env.gate.log().length,
    connections: env.target.connections,
    bytes: env.target.bytes,
  };
}

let serial = 0;

/**
 * After a refusal: a good client round-trips, and the target saw exactly that client
 * (one connection, its bytes) since `m`, i.e. nothing from the refused one.
 */
async function assertStillServesAndTargetUntouched(env: Env, m: Mark): Promise<void> {
  const payload = `good-client-${++serial}-${crypto.randomUUID()}\n`;
  const good = await tlsAttempt(env.gate.port, env.alice, payload);
  assert.equal(
    good.data,
    payload,
    `good client after refusal: ${JSON.stringify(good)}\n${env.gate.log()}`,
  );
  await env.gate.waitForLog(new RegExp(`INFO closed peer=127\\.0\\.0\\.1:${good.localPort} `));
  assert.equal(
    env.target.connections,
    m.connections + 1,
    "target connections: only the good client",
  );
  assert.equal(env.target.bytes, m.bytes + payload.length, "target bytes: only the good client's");
}

/** A refused TLS client: no application data, a `refused` line naming it, target untouched. */
async function assertTlsRefused(env: Env, creds: Creds, reason: RegExp): Promise<string> {
  const m = mark(env);
  const out = await tlsAttempt(
    env.gate.port,
    creds,
    "GET /containers/json HTTP/1.1\r\nHost: x\r\n\r\n",
  );
  // Nothing (the runtime's TLS refused), or the gate's refusal answer alone (its own checks).
  if (out.data !== "") {
    assert.match(out.data, REFUSAL_ANSWER, `refused client got data: ${JSON.stringify(out)}`);
  }
  assert.equal(out.timedOut, false, "the gate must close the connection itself");
  assert.ok(out.localPort, "client port known");
  const line = await waitForLine(
    env.gate,
    m.log,
    new RegExp(`WARN refused peer=127\\.0\\.0\\.1:${out.localPort} `),
  );
  assert.match(line, reason);
  await assertStillServesAndTargetUntouched(env, m);
  return line;
}

async function withGate(fn: (env: Env) => Promise<void>, extra: string[] = []): Promise<void> {
  const dir = await freeTempDir("dg-serve-");
  const target = new RecordingTarget(join(dir, "target.sock"));
  let gate: ServeProcess | undefined;
  try {
    const pki = join(dir, "pki");
    await initPki({ dir: pki });
    await issueClientBundle("alice", { dir: pki });
    const a = clientBundlePaths(pki, "alice");
    const alice = {
      ca: await readFile(a.ca, "utf8"),
      cert: await readFile(a.cert, "utf8"),
      key: await readFile(a.key, "utf8"),
    };
    await target.start();
    gate = await startServe([
      "--certs",
      join(pki, "server"),
      "--target",
      `unix://${target.path}`,
      ...extra,
    ]);
    await fn({ dir, pki, target, gate, alice, caPem: alice.ca });
  } finally {
    await gate?.stop();
    await target.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

const DAY = 86_400_000;

// ------------------------------------------------------------------------------ refusals

Deno.test("serve refuses bad clients; target sees nothing; next good client is served", async (t) => {
  await withGate(async (env) => {
    const ca = await loadCa(env.pki);

    await t.step("startup passed the fail-closed self-test and announced its policy", async () => {
      assert.match(env.gate.log(), /INFO listening on tcp:\/\/127\.0\.0\.1:\d+/);
      await env.gate.waitForLog(/INFO policy: any certificate signed by the CA is accepted/);
      assert.doesNotMatch(env.gate.log(), /refusing to serve|RuntimeTrustError/);
      // The startup target probe connects without sending anything.
      assert.equal(env.target.bytes, 0);
    });

    await t.step("baseline: alice round-trips", async () => {
      await assertStillServesAndTargetUntouched(env, mark(env));
    });

    await t.step("no client certificate", async () => {
      await assertTlsRefused(
        env,
        { ca: env.caPem },
        /reason="[^"]*(no certificate|peer sent no certificates|CERTIFICATE)/i,
      );
    });

    await t.step("certificate from another CA", async () => {
      const foreignCa = await createCa({ commonName: "dockgate CA" }); // same name, other key
      const mallory = await issueClient(foreignCa, "alice");
      await assertTlsRefused(
        env,
        { ca: env.caPem, ...pemCreds(mallory) },
        /reason="certificate not verified: [A-Z_]+"/,
      );
    });

    await t.step("expired certificate", async () => {
      const old = await issueClient(ca, "alice", {
        notBefore: new Date(Date.now() - 10 * DAY),
        notAfter: new Date(Date.now() - DAY),
      });
      await assertTlsRefused(
        env,
        { ca: env.caPem, ...pemCreds(old) },
        /reason="(certificate not verified: CERT_HAS_EXPIRED|certificate expired \d{4}-[^"]+Z)"/,
      );
    });

    await t.step("certificate not yet valid", async () => {
      const future = await issueClient(ca, "alice", {
        notBefore: new Date(Date.now() + DAY),
        notAfter: new Date(Date.now() + 10 * DAY),
      });
      await assertTlsRefused(
        env,
        { ca: env.caPem, ...pemCreds(future) },
        /reason="(certificate not verified: CERT_NOT_YET_VALID|certificate not valid before \d{4}-[^"]+Z)"/,
      );
    });

    await t.step("serverAuth-only certificate used as a client", async () => {
      const server = await issueClient(ca, "alice", { extKeyUsages: ["serverAuth"] });
      await assertTlsRefused(
        env,
        { ca: env.caPem, ...pemCreds(server) },
        /reason="certificate not verified: (INVALID_PURPOSE|UNABLE_TO_VERIFY_LEAF_SIGNATURE)"/,
      );
    });

    await t.step("the CA certificate and key used as a client", async () => {
      await assertTlsRefused(
        env,
        { ca: env.caPem, ...pemCreds(ca) },
        /reason="[^"]*CA certificate/i,
      );
    });

    for (
      const [name, bytes] of [
        [
          "an HTTP request instead of a ClientHello",
          new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"),
        ],
        ["random bytes instead of a ClientHello", crypto.getRandomValues(new Uint8Array(512))],
      ] as const
    ) {
      await t.step(name, async () => {
        const m = mark(env);
        const out = await rawAttempt(env.gate.port, bytes);
        assert.equal(out.timedOut, false, "the gate must close the connection itself");
        // At most a TLS alert record (content type 21), never application data.
        if (out.received.length > 0) assert.equal(out.received[0], 21, `got ${out.received}`);
        const line = await waitForLine(
          env.gate,
          m.log,
          new RegExp(`WARN refused peer=127\\.0\\.0\\.1:${out.localPort} `),
        );
        assert.match(line, /reason="[^"]*(version|corrupt|http|record|invalid)/i);
        await assertStillServesAndTargetUntouched(env, m);
      });
    }

    for (const [flag, version] of [["-tls1", "TLSv1"], ["-tls1_1", "TLSv1.1"]] as const) {
      await t.step(`a ${version} client (openssl s_client ${flag})`, async () => {
        const m = mark(env);
        const alice = clientBundlePaths(env.pki, "alice");
        const r = await run("openssl", [
          "s_client",
          flag,
          "-cipher",
          "DEFAULT@SECLEVEL=0",
          "-connect",
          `127.0.0.1:${env.gate.port}`,
          "-servername",
          "localhost",
          "-CAfile",
          alice.ca,
          "-cert",
          alice.cert,
          "-key",
          alice.key,
        ], "GET /containers/json HTTP/1.1\r\n\r\n");
        assert.notEqual(r.code, 0, r.output);
        // s_client prints "New, TLSv1, Cipher is X" only when a handshake completed.
        assert.doesNotMatch(r.output, /New, TLSv1(\.1)?, Cipher is (?!\(NONE\))/, r.output);
        assert.match(r.output, /Cipher is \(NONE\)/, r.output);
        assert.match(r.output, /alert (handshake failure|protocol version)/, r.output);
        const line = await waitForLine(env.gate, m.log, /WARN refused /);
        assert.match(line, /reason="[^"]*(incompatible|version|protocol|handshake)/i);
        await assertStillServesAndTargetUntouched(env, m);
      });
    }

    await t.step("10 good clients in a row: each gets its own bytes, nothing leaks", async () => {
      const m = mark(env);
      // Let the previous steps' sockets settle before taking the baseline.
      const fdsBefore = fdCount(env.gate.child.pid);
      let sent = 0;
      const ports: number[] = [];
      for (let i = 0; i < 10; i++) {
        const payload = `client-${i}-${crypto.randomUUID()}\n`.repeat(i + 1);
        const out = await tlsAttempt(env.gate.port, env.alice, payload);
        assert.equal(out.data, payload, `client ${i}`);
        sent += payload.length;
        ports.push(out.localPort!);
      }
      for (const p of ports) {
        await env.gate.waitForLog(new RegExp(`INFO closed peer=127\\.0\\.0\\.1:${p} `));
      }
      assert.equal(env.target.connections, m.connections + 10);
      assert.equal(env.target.bytes, m.bytes + sent);
      assert.equal(linesAfter(env.gate, m.log, /WARN refused/).length, 0);
      // Every closed line reports exactly the bytes relayed both ways.
      const closed = linesAfter(env.gate, m.log, /INFO closed /);
      assert.equal(closed.length, 10);
      for (const l of closed) {
        const inb = Number(l.match(/bytes_in=(\d+)/)![1]);
        assert.equal(Number(l.match(/bytes_out=(\d+)/)![1]), inb, l);
      }
      const fdsAfter = await waitFor(() => {
        const n = fdCount(env.gate.child.pid);
        return n <= fdsBefore + 2 ? n : undefined;
      }, { what: "serve's fd count back to its baseline" });
      assert.ok(fdsAfter <= fdsBefore + 2, `fds ${fdsBefore} -> ${fdsAfter}`);
    });
  });
});

function pemCreds(p: { certPem: string; keyPem: string }): { cert: string; key: string } {
  return { cert: p.certPem, key: p.keyPem };
}

// ------------------------------------------------------------------------------ CLI errors

/** One line `dockgate: …`, no stack trace. */
function assertOneLineError(r: { code: number; stderr: string }, code: number, re: RegExp): string {
  assert.equal(r.code, code, r.stderr);
  assert.doesNotMatch(r.stderr, /^\s+at /m, `stack trace in:\n${r.stderr}`);
  const lines = r.stderr.trimEnd().split("\n");
  // One line each; a usage error's line carries its own fix.
  assert.equal(lines.length, 1, `expected one line:\n${r.stderr}`);
  if (code !== 2) assert.match(lines[0], /^dockgate: error: /);
  assert.match(lines[0], /^dockgate: /);
  assert.match(lines[0], re);
  return lines[0];
}

Deno.test("CLI: bad input gives one clear line and the right exit code", async (t) => {
  const dir = await freeTempDir("dg-cli-");
  const target = new RecordingTarget(join(dir, "target.sock"));
  const blocker = net.createServer();
  try {
    const pki = join(dir, "pki");
    await initPki({ dir: pki });
    await target.start();
    const s = pkiLayout(pki).server;
    const def = clientBundlePaths(pki, "default");
    const tgt = ["--target", `unix://${target.path}`];
    const files = (over: { cert?: string; key?: string; ca?: string } = {}) => [
      "--cert",
      over.cert ?? s.cert,
      "--key",
      over.key ?? s.key,
      "--ca",
      over.ca ?? s.ca,
    ];

    await t.step("unknown flag: exit 2", async () => {
      const r = await runCli(["serve", "--no-such-flag", ...tgt]);
      assertOneLineError(r, 2, /no-such-flag/);
    });

    await t.step("unknown command: exit 2", async () => {
      const r = await runCli(["frobnicate"]);
      assertOneLineError(r, 2, /Unknown command "frobnicate"/);
    });

    await t.step("serve --listen on a port in use: exit 1, address already in use", async () => {
      await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", r));
      const port = (blocker.address() as net.AddressInfo).port;
      const r = await runCli(["serve", "--listen", `127.0.0.1:${port}`, "--certs", s.dir, ...tgt]);
      assertOneLineError(r, 1, /address already in use/);
      assert.ok(r.stderr.includes(String(port)), r.stderr);
    });

    await t.step("missing certificate file: exit 1, names the file", async () => {
      const missing = join(dir, "nope", "cert.pem");
      const r = await runCli([
        "serve",
        "--listen",
        "127.0.0.1:0",
        ...files({ cert: missing }),
        ...tgt,
      ]);
      assertOneLineError(r, 1, new RegExp(escape(missing)));
    });

    await t.step("malformed PEM: exit 1", async () => {
      const bad = join(dir, "bad-cert.pem");
      await writeFile(
        bad,
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
      );
      const r = await runCli(["serve", "--listen", "127.0.0.1:0", ...files({ cert: bad }), ...tgt]);
      assertOneLineError(
        r,
        1,
        new RegExp(`${escape(bad)}.*(malformed|Invalid)|Invalid certificate "${escape(bad)}"`),
      );
    });

    await t.step("key not matching the certificate: exit 1", async () => {
      const r = await runCli([
        "serve",
        "--listen",
        "127.0.0.1:0",
        ...files({ key: def.key }),
        ...tgt,
      ]);
      assertOneLineError(r, 1, /does not match/);
    });

    await t.step("CA file that is not a CA: exit 1", async () => {
      const r = await runCli([
        "serve",
        "--listen",
        "127.0.0.1:0",
        ...files({ ca: def.cert }),
        ...tgt,
      ]);
      assertOneLineError(r, 1, /not a CA certificate/);
    });

    await t.step("target socket missing, --require-target: exit 1, names the socket", async () => {
      const sock = join(dir, "no-docker.sock");
      const r = await runCli([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--certs",
        s.dir,
        "--target",
        `unix://${sock}`,
        "--require-target",
      ]);
      assertOneLineError(r, 1, new RegExp(escape(sock)));
    });

    await t.step(
      "key file mode 0644: exit 1 with chmod 600; --insecure-key-perms overrides",
      async () => {
        const loose = join(dir, "loose");
        await mkdir(loose);
        for (const f of ["ca.pem", "cert.pem", "key.pem"]) {
          await copyFile(join(s.dir, f), join(loose, f));
        }
        await chmod(join(loose, "key.pem"), 0o644);
        const r = await runCli(["serve", "--listen", "127.0.0.1:0", "--certs", loose, ...tgt]);
        const line = assertOneLineError(r, 1, /chmod 600/);
        assert.ok(line.includes(join(loose, "key.pem")), line);

        const gate = await startServe(["--certs", loose, ...tgt, "--insecure-key-perms"]);
        try {
          assert.match(gate.log(), /listening on/);
        } finally {
          assert.equal(await gate.stop(), 0);
        }
      },
    );

    await t.step("connect --listen tcp://0.0.0.0:0 refused without --unsafe-listen", async () => {
      const r = await runCli([
        "connect",
        "--server",
        "127.0.0.1:1",
        "--certs",
        def.dir,
        "--listen",
        "tcp://0.0.0.0:0",
      ]);
      assertOneLineError(r, 1, /not a loopback address.*--unsafe-listen/);
    });
  } finally {
    await new Promise<void>((r) => blocker.listening ? blocker.close(() => r()) : r());
    await target.stop();
    await rm(dir, { recursive: true, force: true });
  }
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
