/**
 * `connect` checks the server it dialled with the gate's own chain walk, for the "server"
 * purpose: the runtime's handshake verdict alone let through, on Deno, a server whose
 * anchor had expired and one below an intermediate that the root's path length forbids.
 * Certificates are made with `openssl` here, not with our keygen.
 */
import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import { join } from "node:path";
import { connect } from "../src/connect.ts";
import type { Logger } from "../src/observe/logger.ts";
import { CLIENT_EXT, daysFromNow, OpensslCa, SERVER_EXT } from "./helpers/openssl_ca.ts";
import { freeTempDir } from "./helpers/wait.ts";

/** A TLS server presenting `chain` that records every byte it receives and answers "ok". */
async function echoServer(cert: string, key: string) {
  const got: string[] = [];
  const server = tls.createServer({ cert, key }, (s) => {
    s.on("data", (d) => {
      got.push(String(d));
      s.write("ok");
    });
    s.on("error", () => {});
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { port: (server.address() as net.AddressInfo).port, got, server };
}

/** Dial `connect`'s local socket, send "ping", and return what came back before close. */
function ask(path: string): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(path);
    let out = "";
    s.on("data", (d) => {
      out += String(d);
      if (out === "ok") s.end();
    });
    s.on("error", () => resolve(out));
    s.on("close", () => resolve(out));
    s.on("connect", () => s.write("ping"));
    setTimeoutUnref(() => s.end(), 3_000);
  });
}

function setTimeoutUnref(fn: () => void, ms: number): void {
  const t = setTimeout(fn, ms);
  Deno.unrefTimer(t);
}

async function attempt(dir: string, ca: OpensslCa, serverCert: string, serverKey: string) {
  const client = ca.issue("alice", { subject: "/CN=alice", extensions: CLIENT_EXT });
  const target = await echoServer(serverCert, serverKey);
  const lines: string[] = [];
  const logger: Logger = { log: (level, msg, f) => lines.push(`${level} ${msg} ${f?.reason}`) };
  const path = join(dir, `c-${target.port}.sock`);
  const tunnel = await connect({
    server: { transport: "tcp", host: "127.0.0.1", port: target.port },
    listen: { transport: "unix", path },
    tls: { certPem: client.cert, keyPem: client.key, caPem: ca.cert },
    serverName: "localhost",
    logger,
  });
  try {
    const answer = await ask(path);
    return { answer, got: target.got.join(""), lines };
  } finally {
    await tunnel.shutdown(2_000);
    await new Promise((r) => target.server.close(r));
  }
}

Deno.test("connect relays to a server whose chain is valid", async () => {
  const dir = await freeTempDir();
  const ca = OpensslCa.create(join(dir, "ca"));
  const server = ca.issue("server", { subject: "/CN=localhost", extensions: SERVER_EXT });
  const out = await attempt(dir, ca, server.cert, server.key);
  assert.equal(out.got, "ping");
  assert.equal(out.answer, "ok", out.lines.join("\n"));
});

Deno.test("connect refuses a server under an expired anchor, before sending a byte", async () => {
  const dir = await freeTempDir();
  const ca = OpensslCa.create(join(dir, "ca"), {
    notBefore: daysFromNow(-30),
    notAfter: daysFromNow(-1),
  });
  const server = ca.issue("server", { subject: "/CN=localhost", extensions: SERVER_EXT });
  const out = await attempt(dir, ca, server.cert, server.key);
  assert.equal(out.got, "", "the server got the client's bytes");
  assert.equal(out.answer, "");
  assert.ok(out.lines.some((l) => /server refused|cannot reach server/.test(l)), out.lines.join());
});

Deno.test("connect refuses a server below an intermediate the root's pathlen forbids", async () => {
  const dir = await freeTempDir();
  const root = OpensslCa.create(join(dir, "ca"), {
    extensions: [
      "basicConstraints = critical, CA:TRUE, pathlen:0",
      "keyUsage = critical, keyCertSign, cRLSign",
    ],
  });
  const mid = root.intermediate(join(dir, "mid"));
  const leaf = mid.issue("server", { subject: "/CN=localhost", extensions: SERVER_EXT });
  // The server sends its chain; the client trusts only the root.
  const out = await attempt(dir, root, leaf.cert + mid.cert, leaf.key);
  assert.equal(out.got, "", "the server got the client's bytes");
  assert.ok(out.lines.some((l) => /server refused|cannot reach server/.test(l)), out.lines.join());
});

Deno.test("connect refuses a server whose certificate is a client certificate", async () => {
  const dir = await freeTempDir();
  const ca = OpensslCa.create(join(dir, "ca"));
  const wrong = ca.issue("server", {
    subject: "/CN=localhost",
    extensions: [...CLIENT_EXT, "subjectAltName = DNS:localhost"],
  });
  const out = await attempt(dir, ca, wrong.cert, wrong.key);
  assert.equal(out.got, "", "the server got the client's bytes");
});
