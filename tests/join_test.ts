/**
 * Enrolment end to end, two directories as two machines: the PKI with `serve --enroll` on
 * one side, `dockgate join` / `dockgate renew` on the other, all through the real CLI.
 */
import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { cliCommand, runCli, type Runtime, type ServeProcess, startServe } from "./helpers/gate.ts";
import { keygenInProcess, keygenOk } from "./helpers/keygen_inproc.ts";
import { freeTempDir, waitFor } from "./helpers/wait.ts";
import { OpensslCa, SERVER_EXT } from "./helpers/openssl_ca.ts";
import { x509 } from "../src/pki/x509.ts";
import { parseCertificatesPem } from "../src/pki/pem.ts";
import { parseJoinToken } from "../src/pki/join_token.ts";
import { connectPinned } from "../src/enroll/pinned_tls.ts";
import { lineOf, MAX_ANSWER_BYTES, parseAnswer, readLine } from "../src/enroll/protocol.ts";

/** Every file's bytes under `dir`, as one text. */
async function allText(dir: string): Promise<string> {
  let text = "";
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) text += await readFile(join(e.parentPath, e.name), "latin1");
  }
  return text;
}

/** A unix socket that records every connection: what a gate must never reach from enrolment. */
async function recordingTarget(dir: string) {
  const path = join(dir, "target.sock");
  const seen: string[] = [];
  const server = net.createServer((s) => {
    seen.push("connection");
    s.on("data", (d) => seen.push(String(d)));
    s.on("error", () => {});
  });
  await new Promise<void>((r) => server.listen(path, r));
  return { address: `unix://${path}`, seen, close: () => server.close() };
}

interface Gate {
  pki: string;
  serve: ServeProcess;
  enrollPort: number;
  audit: string;
  target: Awaited<ReturnType<typeof recordingTarget>>;
  token(name: string, ...flags: string[]): Promise<string>;
  stop(): Promise<void>;
}

/** `dockgate ARGS…` on Node (the npm package's runtime), to completion. */
async function runNode(args: string[]): Promise<{ code: number; stderr: string }> {
  const [cmd, argv] = await cliCommand("node", args);
  const out = await new Deno.Command(cmd, { args: argv, stdin: "null" }).output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

/** A PKI with an enrolment intermediate, and serve --enroll on it. */
async function startGate(runtime: Runtime = "deno"): Promise<Gate> {
  const pki = await freeTempDir("dg-pki-");
  await keygenOk(["--dir", pki]);
  await keygenOk(["intermediate", "enroll", "--dir", pki]);
  const target = await recordingTarget(pki);
  const audit = join(pki, "audit.log");
  const serve = await startServe([
    "--certs",
    join(pki, "server"),
    "--target",
    target.address,
    "--enroll",
    "127.0.0.1:0",
    "--enroll-issuer",
    "enroll",
    "--audit-log",
    audit,
  ], { runtime });
  const m = await serve.waitForLog(/enrolment port on tcp:\/\/127\.0\.0\.1:(\d+)/);
  await serve.waitForLog(/listening on/);
  target.seen.length = 0; // serve's own startup check of the target
  return {
    pki,
    serve,
    enrollPort: Number(m[1]),
    audit,
    target,
    token: async (name, ...flags) => {
      return await keygenOk(["token", name, "--dir", pki, ...flags]);
    },
    stop: async () => {
      await serve.stop();
      target.close();
      await Deno.remove(pki, { recursive: true });
    },
  };
}

async function auditRecords(gate: Gate): Promise<{ event: string; decision: string }[]> {
  const text = await readFile(gate.audit, "utf8").catch(() => "");
  return text.split("\n").filter((l) => l).map((l) => JSON.parse(l));
}

Deno.test("join: the key is made on the client and is nowhere in the PKI; the token works once", async () => {
  const gate = await startGate();
  const client = await freeTempDir("dg-client-");
  try {
    const token = await gate.token("alice", "--role", "ci");
    const dir = join(client, "docker");
    const joined = await runCli(["join", `127.0.0.1:${gate.enrollPort}`, token, "--dir", dir]);
    assert.equal(joined.code, 0, joined.stderr);
    assert.match(joined.stderr, /joined as alice/);
    assert.match(joined.stderr, /DOCKER_CERT_PATH=/);
    const keyPem = await readFile(join(dir, "key.pem"), "utf8");
    assert.equal((await stat(join(dir, "key.pem"))).mode & 0o777, 0o600);
    const keyBody = keyPem.replace(/-----[^-]+-----|\s/g, "");
    assert.ok(!(await allText(gate.pki)).includes(keyBody), "the client's key is in the PKI");
    const [leaf, intermediate] = parseCertificatesPem(
      await readFile(join(dir, "cert.pem"), "utf8"),
    );
    assert.equal(leaf.subject, "OU=ci, CN=alice");
    assert.equal(intermediate.subject, "CN=enroll");
    assert.equal(
      await readFile(join(dir, "ca.pem"), "utf8"),
      await readFile(join(gate.pki, "ca", "ca.pem"), "utf8"),
    );
    // The certificate is short-lived by default: 24 h (plus the skew before now).
    const hours = (leaf.notAfter.getTime() - Date.now()) / 3_600_000;
    assert.ok(hours > 23.9 && hours <= 24, `lifetime ${hours} h`);
    // Once: the same token from another machine is refused, and nothing is written there.
    const other = join(client, "other");
    const again = await runCli(["join", `127.0.0.1:${gate.enrollPort}`, token, "--dir", other]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /token unknown, already used, or wrong/);
    await assert.rejects(stat(other));
    const { id } = parseJoinToken(token);
    await stat(join(gate.pki, "tokens", `${id}.used`));
    assert.deepEqual((await auditRecords(gate)).map((r) => `${r.event}:${r.decision}`), [
      "enroll:allow",
      "enroll:deny",
    ]);
    assert.deepEqual(gate.target.seen, [], "an enrolment reached the Docker API's target");
  } finally {
    await gate.stop();
    await Deno.remove(client, { recursive: true });
  }
});

Deno.test("join: an expired token is refused", async () => {
  const gate = await startGate();
  const client = await freeTempDir("dg-client-");
  try {
    const token = await gate.token("bob", "--ttl", "1s");
    const record = JSON.parse(
      await readFile(join(gate.pki, "tokens", `${parseJoinToken(token).id}.json`), "utf8"),
    );
    await waitFor(() => Date.now() > Date.parse(record.expiresAt) + 50, { what: "expiry" });
    const r = await runCli(["join", `127.0.0.1:${gate.enrollPort}`, token, "--dir", client + "/d"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /token expired/);
  } finally {
    await gate.stop();
    await Deno.remove(client, { recursive: true });
  }
});

Deno.test("join: a gate with another CA is refused before anything is sent", async () => {
  const gate = await startGate();
  const tmp = await freeTempDir("dg-other-");
  try {
    const token = await gate.token("carol");
    // 1. Another dockgate gate, with its own PKI: it must record no enrolment at all.
    const other = await startGate();
    try {
      const r = await runCli(["join", `127.0.0.1:${other.enrollPort}`, token, "--dir", tmp + "/a"]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /does not match the token's pin/);
      await other.serve.waitForLog(/enrolment connection ended without a request/);
      assert.deepEqual(await auditRecords(other), [], "the other gate heard a request");
    } finally {
      await other.stop();
    }
    // 2. An impostor made with openssl that even presents the real root after its own leaf:
    //    the leaf does not chain to it, and the impostor receives not one byte.
    const ca = OpensslCa.create(join(tmp, "ca"), { name: "impostor CA" });
    const leaf = ca.issue("gate", { subject: "/CN=localhost", extensions: SERVER_EXT });
    const realRoot = await readFile(join(gate.pki, "ca", "ca.pem"), "utf8");
    let received = 0;
    const impostor = tls.createServer({ cert: leaf.cert + realRoot, key: leaf.key }, (s) => {
      s.on("data", (d) => (received += d.length));
      s.on("error", () => {});
    });
    await new Promise<void>((r) => impostor.listen(0, "127.0.0.1", r));
    const port = (impostor.address() as net.AddressInfo).port;
    try {
      const r = await runCli(["join", `127.0.0.1:${port}`, token, "--dir", tmp + "/b"]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /does not chain to the pinned CA/);
      assert.equal(received, 0, "the impostor received the token or the CSR");
    } finally {
      impostor.close();
    }
    // The token was not used up by either attempt.
    await stat(join(gate.pki, "tokens", `${parseJoinToken(token).id}.json`));
    await assert.rejects(stat(tmp + "/a"));
  } finally {
    await gate.stop();
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("enrol: the gate names the certificate; the CSR's subject, SANs and EKU are ignored", async () => {
  const gate = await startGate();
  try {
    const token = await gate.token("dave", "--role", "ci");
    const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
    const keys = await crypto.subtle.generateKey(alg, true, ["sign", "verify"]);
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: "CN=root, OU=admin",
      keys,
      signingAlgorithm: alg,
      extensions: [
        new x509.SubjectAlternativeNameExtension([{ type: "dns", value: "gate.example" }]),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.BasicConstraintsExtension(true, 0, true),
      ],
    });
    const { pin } = parseJoinToken(token);
    const { socket } = await connectPinned({
      host: "127.0.0.1",
      port: gate.enrollPort,
      pin,
      timeoutMs: 5000,
    });
    socket.write(lineOf({ op: "enroll", token, csr: csr.toString("pem") }));
    const answer = parseAnswer(await readLine(socket, MAX_ANSWER_BYTES, 5000));
    socket.destroy();
    assert.ok(answer.ok, JSON.stringify(answer));
    const [leaf] = parseCertificatesPem(answer.cert);
    assert.equal(leaf.subject, "OU=ci, CN=dave");
    assert.equal(leaf.getExtension(x509.SubjectAlternativeNameExtension), null);
    assert.deepEqual([...leaf.getExtension(x509.ExtendedKeyUsageExtension)!.usages], [
      x509.ExtendedKeyUsage.clientAuth,
    ]);
    assert.equal(leaf.getExtension(x509.BasicConstraintsExtension)?.ca, false);
  } finally {
    await gate.stop();
  }
});

Deno.test("enrol: the port answers only its protocol; HTTP gets a refusal and reaches no target", async () => {
  const gate = await startGate();
  try {
    const token = await gate.token("erin");
    const { socket } = await connectPinned({
      host: "127.0.0.1",
      port: gate.enrollPort,
      pin: parseJoinToken(token).pin,
      timeoutMs: 5000,
    });
    socket.write("GET /v1.41/containers/json HTTP/1.1\r\nHost: x\r\n\r\n");
    const line = new TextDecoder().decode(await readLine(socket, MAX_ANSWER_BYTES, 5000));
    socket.destroy();
    assert.match(line, /"ok":false/);
    assert.doesNotMatch(line, /at |\.ts:/, "a stack trace reached the peer");
    // An oversized line is cut off, not buffered.
    const big = await connectPinned({
      host: "127.0.0.1",
      port: gate.enrollPort,
      pin: parseJoinToken(token).pin,
      timeoutMs: 5000,
    });
    big.socket.write("x".repeat(64 * 1024));
    const cut = new TextDecoder().decode(await readLine(big.socket, MAX_ANSWER_BYTES, 5000));
    big.socket.destroy();
    assert.match(cut, /longer than/);
    // 20 requests per minute per address: the 21st is refused before it is read.
    const answers: string[] = [];
    for (let i = 0; i < 19; i++) {
      const c = await connectPinned({
        host: "127.0.0.1",
        port: gate.enrollPort,
        pin: parseJoinToken(token).pin,
        timeoutMs: 5000,
      });
      c.socket.write("{}\n");
      answers.push(new TextDecoder().decode(await readLine(c.socket, MAX_ANSWER_BYTES, 5000)));
      c.socket.destroy();
    }
    assert.match(answers[17], /expected/);
    assert.match(answers[18], /too many requests from this address/);
    assert.deepEqual(gate.target.seen, []);
  } finally {
    await gate.stop();
  }
});

Deno.test("renew: an enrolled certificate renews over mTLS; once revoked it does not", async () => {
  const gate = await startGate();
  const client = await freeTempDir("dg-client-");
  try {
    const token = await gate.token("frank", "--cert-ttl", "10m");
    assert.equal(
      (await runCli(["join", `127.0.0.1:${gate.enrollPort}`, token, "--dir", client])).code,
      0,
    );
    const first = parseCertificatesPem(await readFile(join(client, "cert.pem"), "utf8"))[0];
    const r = await runCli(["renew", "--dir", client]);
    assert.equal(r.code, 0, r.stderr);
    const second = parseCertificatesPem(await readFile(join(client, "cert.pem"), "utf8"))[0];
    assert.notEqual(second.serialNumber, first.serialNumber);
    assert.equal(second.subject, "CN=frank");
    // The same lifetime again (10 min), for the same key.
    const minutes = (second.notAfter.getTime() - Date.now()) / 60_000;
    assert.ok(minutes > 9.5 && minutes <= 10, `lifetime ${minutes} min`);
    const revoked = await keygenInProcess(["revoke", "frank", "--dir", gate.pki]);
    assert.equal(revoked.code, 0, revoked.stderr);
    await gate.serve.waitForLog(/reloaded.*revoked=2/);
    const refused = await runCli(["renew", "--dir", client]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /renewal refused: .*revoked/);
    assert.equal(
      parseCertificatesPem(await readFile(join(client, "cert.pem"), "utf8"))[0].serialNumber,
      second.serialNumber,
      "a refused renewal changed cert.pem",
    );
    const metrics = (await auditRecords(gate)).map((a) => `${a.event}:${a.decision}`);
    assert.deepEqual(metrics, ["enroll:allow", "renew:allow", "renew:deny"]);
  } finally {
    await gate.stop();
    await Deno.remove(client, { recursive: true });
  }
});

Deno.test("renew: a certificate of another CA of the bundle (the root, another intermediate) does not renew", async () => {
  const gate = await startGate();
  const client = await freeTempDir("dg-client-");
  try {
    // Both pass the access decision (their CA is in the gate's bundle); only the enrolment
    // issuer's own certificates renew.
    await keygenOk(["intermediate", "other", "--dir", gate.pki]);
    await gate.serve.waitForLog(/reloaded/);
    await keygenOk(["client", "olga", "--issuer", "other", "--dir", gate.pki]);
    const token = await gate.token("frank");
    const joined = await runCli(["join", `127.0.0.1:${gate.enrollPort}`, token, "--dir", client]);
    assert.equal(joined.code, 0, joined.stderr);
    assert.equal((await runCli(["renew", "--dir", client])).code, 0, "the enrolled one renews");
    for (const name of ["default", "olga"]) {
      const bundle = join(gate.pki, "clients", name);
      for (const f of ["cert.pem", "key.pem"]) {
        await Deno.writeTextFile(join(client, f), await readFile(join(bundle, f), "utf8"));
      }
      const before = await readFile(join(client, "cert.pem"), "utf8");
      const refused = await runCli(["renew", "--dir", client]);
      assert.equal(refused.code, 1, `${name}: ${refused.stderr}`);
      assert.match(refused.stderr, /only certificates this gate enrolled renew here/);
      assert.equal(await readFile(join(client, "cert.pem"), "utf8"), before, name);
    }
    const metrics = (await auditRecords(gate)).map((a) => `${a.event}:${a.decision}`);
    assert.deepEqual(metrics, ["enroll:allow", "renew:allow", "renew:deny", "renew:deny"]);
  } finally {
    await gate.stop();
    await Deno.remove(client, { recursive: true });
  }
});

Deno.test("on Node: serve --enroll, join and renew; the impostor is refused there too", async () => {
  const gate = await startGate("node");
  const tmp = await freeTempDir("dg-node-");
  try {
    const token = await gate.token("gina");
    const ca = OpensslCa.create(join(tmp, "ca"), { name: "impostor CA" });
    const leaf = ca.issue("gate", { subject: "/CN=localhost", extensions: SERVER_EXT });
    const realRoot = await readFile(join(gate.pki, "ca", "ca.pem"), "utf8");
    let received = 0;
    const impostor = tls.createServer({ cert: leaf.cert + realRoot, key: leaf.key }, (s) => {
      s.on("data", (d) => (received += d.length));
      s.on("error", () => {});
    });
    await new Promise<void>((r) => impostor.listen(0, "127.0.0.1", r));
    const port = (impostor.address() as net.AddressInfo).port;
    try {
      const r = await runNode(["join", `127.0.0.1:${port}`, token, "--dir", tmp + "/x"]);
      assert.equal(r.code, 1);
      // Node's peer chain follows issuer names, so there the real root is not even on it.
      assert.match(r.stderr, /does not chain to the pinned CA|does not match the token's pin/);
      assert.equal(received, 0);
    } finally {
      impostor.close();
    }
    const dir = join(tmp, "docker");
    const joined = await runNode(["join", `127.0.0.1:${gate.enrollPort}`, token, "--dir", dir]);
    assert.equal(joined.code, 0, joined.stderr);
    const renewed = await runNode(["renew", "--dir", dir]);
    assert.equal(renewed.code, 0, renewed.stderr);
    assert.deepEqual((await auditRecords(gate)).map((a) => `${a.event}:${a.decision}`), [
      "enroll:allow",
      "renew:allow",
    ]);
  } finally {
    await gate.stop();
    await Deno.remove(tmp, { recursive: true });
  }
});
