/**
 * Session 9's second attacker, without a dockerd: attacks on the PKI paths this session added,
 * through the real CLI (`keygen`, `serve`) and real TLS. What the gate let through is judged by
 * what reached its target, a unix socket of the test's own that counts its connections.
 *
 * - `keygen rotate-ca` re-signs every intermediate under the new root, the one the old root
 *   revoked too: its revocation is on the old root's CRL only, so the new path (new root, the
 *   intermediate's new certificate) is clean and what it issued gets in again.
 * - During the overlap, `keygen revoke SERIAL` of an intermediate's certificate under the old
 *   root revoked that certificate only: the same key re-signed by the new root still let in
 *   everything the intermediate issued.
 * - (Holds, kept as a guard) an intermediate revoked during the overlap by its current serial
 *   stays revoked for a client whose bundle still carries its certificate under the old root.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type ServeProcess, startServe } from "./helpers/gate.ts";
import { keygenOk } from "./helpers/keygen_inproc.ts";
import { tlsExchange } from "./helpers/http_raw.ts";
import { bundleCreds } from "./helpers/tls_peers.ts";
import { freeTempDir } from "./helpers/wait.ts";
import { parseCertificatePem } from "../src/pki/pem.ts";
import { normalizeSerial } from "../src/pki/serial.ts";
import { x509 } from "../src/pki/x509.ts";
import { parseJoinToken } from "../src/pki/join_token.ts";
import { connectPinned } from "../src/enroll/pinned_tls.ts";
import { lineOf, MAX_ANSWER_BYTES, parseAnswer, readLine } from "../src/enroll/protocol.ts";
import { readIssued } from "../src/ca/records.ts";

/** A unix-socket "daemon" that answers `200` and keeps what reached it. */
function recordingTarget(path: string): { seen(): string; close(): void } {
  const listener = Deno.listen({ transport: "unix", path });
  let seen = "";
  const serve = async (conn: Deno.Conn) => {
    const buf = new Uint8Array(4096);
    const n = await conn.read(buf).catch(() => null);
    seen += new TextDecoder().decode(buf.subarray(0, n ?? 0));
    const answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nApi-Version: 1.41\r\n\r\nOK";
    await conn.write(new TextEncoder().encode(answer)).catch(() => {});
    conn.close();
  };
  (async () => {
    for await (const conn of listener) serve(conn);
  })().catch(() => {});
  return { seen: () => seen, close: () => listener.close() };
}

/** The PKI steps of an attack, in process (keygen's own command line is not under test). */
const keygen = keygenOk;

Deno.test({
  name: "attack s9b: an intermediate the old root revoked stays revoked after rotate-ca",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  const work = await freeTempDir("dg9b-");
  const pki = join(work, "pki");
  const target = recordingTarget(join(work, "d.sock"));
  try {
    await keygen(["--dir", pki]);
    await keygen(["intermediate", "int1", "--dir", pki]);
    await keygen(["client", "alice", "--issuer", "int1", "--dir", pki]);
    const int1 = parseCertificatePem(
      await Deno.readTextFile(join(pki, "intermediates", "int1", "ca.pem")),
    );
    await keygen(["revoke", normalizeSerial(int1.serialNumber), "--dir", pki]);
    const alice = await bundleCreds(pki, "alice");
    const attempt = async (when: string) => {
      const gate = await startServe([
        "--certs",
        join(pki, "server"),
        "--target",
        `unix://${join(work, "d.sock")}`,
      ]);
      try {
        const probe = `/containers/probe-${when.replace(/ /g, "-")}/json`;
        await tlsExchange(gate.port, alice, `GET ${probe} HTTP/1.1\r\nHost: x\r\n\r\n`);
        assert.ok(
          !target.seen().includes(probe),
          `${when}: a client of the revoked intermediate reached the daemon`,
        );
      } finally {
        await gate.stop();
      }
    };
    await attempt("before the rotation");
    await keygen(["rotate-ca", "--dir", pki]);
    await attempt("during the overlap");
    // After retire-ca the revoked intermediate chains to nothing: a serve given its bundle
    // refuses to start (the operator was told to remove it), or starts and lets none in.
    await keygen(["retire-ca", "--force", "--dir", pki]); // the default client is not renewed
    await attempt("after retire-ca").catch((err) => {
      if (!String(err).includes('"CN=int1", an intermediate CA that does not chain')) throw err;
    });
  } finally {
    target.close();
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
});

Deno.test({
  name: "attack s9b: an intermediate revoked during the overlap (its new serial) stays revoked",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  const work = await freeTempDir("dg9b-");
  const pki = join(work, "pki");
  const target = recordingTarget(join(work, "d.sock"));
  try {
    await keygen(["--dir", pki]);
    await keygen(["intermediate", "int1", "--dir", pki]);
    await keygen(["client", "alice", "--issuer", "int1", "--dir", pki]);
    await keygen(["rotate-ca", "--dir", pki]);
    const reaches = async (probe: string) => {
      const gate = await startServe([
        "--certs",
        join(pki, "server"),
        "--target",
        `unix://${join(work, "d.sock")}`,
      ]);
      try {
        // alice's bundle still carries the intermediate's certificate under the old root.
        const request = `GET ${probe} HTTP/1.1\r\nHost: x\r\n\r\n`;
        await tlsExchange(gate.port, await bundleCreds(pki, "alice"), request);
        return target.seen().includes(probe);
      } finally {
        await gate.stop();
      }
    };
    assert.ok(await reaches("/containers/control/json"), "the control: alice gets in");
    const dir = join(pki, "intermediates", "int1");
    const current = parseCertificatePem(await Deno.readTextFile(join(dir, "ca.pem")));
    await keygen(["revoke", normalizeSerial(current.serialNumber), "--dir", pki]);
    assert.ok(
      !(await reaches("/containers/probe-overlap/json")),
      "a client of the revoked intermediate got in",
    );
  } finally {
    target.close();
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
});

Deno.test({
  name: "attack s9b: revoking an intermediate by the serial it had before rotate-ca shuts it out",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  const work = await freeTempDir("dg9b-");
  const pki = join(work, "pki");
  const target = recordingTarget(join(work, "d.sock"));
  try {
    await keygen(["--dir", pki]);
    await keygen(["intermediate", "int1", "--dir", pki]);
    await keygen(["client", "alice", "--issuer", "int1", "--dir", pki]);
    const before = parseCertificatePem(
      await Deno.readTextFile(join(pki, "intermediates", "int1", "ca.pem")),
    );
    await keygen(["rotate-ca", "--dir", pki]);
    // The serial the operator knew (the intermediate's certificate under the old root): the
    // same key re-signed by the new root must not keep what it issued in.
    await keygen(["revoke", normalizeSerial(before.serialNumber), "--dir", pki]);
    const gate = await startServe([
      "--certs",
      join(pki, "server"),
      "--target",
      `unix://${join(work, "d.sock")}`,
    ]);
    try {
      const probe = "/containers/probe-old-serial/json";
      const request = `GET ${probe} HTTP/1.1\r\nHost: x\r\n\r\n`;
      await tlsExchange(gate.port, await bundleCreds(pki, "alice"), request);
      assert.ok(!target.seen().includes(probe), "a client of the revoked intermediate got in");
    } finally {
      await gate.stop();
    }
  } finally {
    target.close();
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
});

Deno.test({
  name: "attack s9b: one token redeemed by four connections at once buys one certificate",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  const work = await freeTempDir("dg9b-");
  const pki = join(work, "pki");
  const target = recordingTarget(join(work, "d.sock"));
  try {
    await keygen(["--dir", pki]);
    await keygen(["intermediate", "enroll", "--dir", pki]);
    const gate = await startServe([
      "--certs",
      join(pki, "server"),
      "--target",
      `unix://${join(work, "d.sock")}`,
      "--enroll",
      "127.0.0.1:0",
      "--enroll-issuer",
      "enroll",
    ]);
    try {
      const port = Number(
        (await gate.waitForLog(/enrolment port on tcp:\/\/127\.0\.0\.1:(\d+)/))[1],
      );
      const token = await keygen(["token", "racer", "--dir", pki]);
      const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
      const csrOf = async () => {
        const keys = await crypto.subtle.generateKey(alg, true, ["sign", "verify"]);
        const csr = await x509.Pkcs10CertificateRequestGenerator.create({
          name: "CN=racer",
          keys,
          signingAlgorithm: alg,
        });
        return csr.toString("pem");
      };
      const sockets = await Promise.all(
        [0, 1, 2, 3].map(() =>
          connectPinned({
            host: "127.0.0.1",
            port,
            pin: parseJoinToken(token).pin,
            timeoutMs: 5000,
          })
        ),
      );
      const lines = await Promise.all(
        sockets.map(async () => lineOf({ op: "enroll", token, csr: await csrOf() })),
      );
      sockets.forEach(({ socket }, i) => socket.write(lines[i]));
      const answers = await Promise.all(sockets.map(async ({ socket }) => {
        const line = await readLine(socket, MAX_ANSWER_BYTES, 10_000);
        socket.destroy();
        return parseAnswer(line);
      }));
      assert.equal(answers.filter((a) => a.ok).length, 1, JSON.stringify(answers));
      const issued = await readIssued(join(pki, "intermediates", "enroll"));
      assert.equal(issued.filter((e) => e.name === "racer").length, 1);
    } finally {
      await gate.stop();
    }
  } finally {
    target.close();
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
});

Deno.test({
  name: "attack s9b: two gates enrolling from one PKI at once record every certificate",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  const work = await freeTempDir("dg9b-");
  const pki = join(work, "pki");
  const target = recordingTarget(join(work, "d.sock"));
  const gates: ServeProcess[] = [];
  try {
    await keygen(["--dir", pki]);
    await keygen(["intermediate", "enroll", "--dir", pki]);
    const ports: number[] = [];
    for (let i = 0; i < 2; i++) {
      const gate = await startServe([
        "--certs",
        join(pki, "server"),
        "--target",
        `unix://${join(work, "d.sock")}`,
        "--enroll",
        "127.0.0.1:0",
        "--enroll-issuer",
        "enroll",
      ]);
      gates.push(gate);
      ports.push(
        Number((await gate.waitForLog(/enrolment port on tcp:\/\/127\.0\.0\.1:(\d+)/))[1]),
      );
    }
    const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
    const keys = await crypto.subtle.generateKey(alg, true, ["sign", "verify"]);
    const csr = (await x509.Pkcs10CertificateRequestGenerator.create({
      name: "CN=x",
      keys,
      signingAlgorithm: alg,
    })).toString("pem");
    const serials: string[] = [];
    for (let round = 0; round < 3; round++) {
      const tokens: string[] = [];
      for (let i = 0; i < 8; i++) {
        tokens.push(await keygen(["token", `c${round}-${i}`, "--dir", pki]));
      }
      // Four connections to each gate (its per-address cap), every line written at once.
      const sockets = await Promise.all(tokens.map((token, i) =>
        connectPinned({
          host: "127.0.0.1",
          port: ports[i % 2],
          pin: parseJoinToken(token).pin,
          timeoutMs: 5000,
        })
      ));
      sockets.forEach(({ socket }, i) =>
        socket.write(lineOf({ op: "enroll", token: tokens[i], csr }))
      );
      for (const { socket } of sockets) {
        const a = parseAnswer(await readLine(socket, MAX_ANSWER_BYTES, 10_000));
        socket.destroy();
        assert.ok(a.ok, JSON.stringify(a));
        serials.push(normalizeSerial(parseCertificatePem(a.cert).serialNumber));
      }
    }
    // What `keygen revoke NAME` finds: the records. A lost one is a certificate nobody can
    // revoke by name (its key and certificate are on the client, not in the PKI).
    const issued = await readIssued(join(pki, "intermediates", "enroll"));
    const recorded = new Set(issued.map((e) => normalizeSerial(e.serial)));
    const lost = serials.filter((s) => !recorded.has(s));
    assert.deepEqual(lost, [], `${lost.length} of ${serials.length} enrolments not recorded`);
  } finally {
    for (const g of gates) await g.stop();
    target.close();
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
});
