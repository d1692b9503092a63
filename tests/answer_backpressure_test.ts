/**
 * While an isolated container create waits for the owner record (its 201 is held until the
 * line is durable), the daemon's answers to the requests pipelined behind it are not read
 * without bound: the gate stops reading the daemon once they pass its bound. Before, a 64 MiB
 * image download behind a create whose record was slow went whole into the gate's memory.
 * An in-process gate, a `node:http` stand-in daemon, an owner record whose write is held.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import http from "node:http";
import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { initPki, issueClientBundle } from "../src/ca/keygen.ts";
import { pkiLayout } from "../src/ca/layout.ts";
import { resolveBundlePaths } from "../src/pki/credentials.ts";
import { loadServeConfig } from "../src/config/serve_config.ts";
import { serve } from "../src/serve.ts";
import { compileApiPolicy } from "../src/docker/api_policy.ts";
import { OwnerRecord } from "../src/docker/owner_record.ts";
import { tlsConnect } from "./helpers/tls_peers.ts";
import { freeTempDir, waitFor } from "./helpers/wait.ts";

const BIG = 64 * 1024 * 1024;
const ID = "c".repeat(64);

/** The stand-in daemon: a create answers 201, an image download streams `BIG` bytes. */
function daemon(progress: { written: number; finished: boolean }) {
  return http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      const path = req.url!.split("?")[0];
      const json = (status: number, v: unknown) => {
        const body = JSON.stringify(v);
        res.writeHead(status, {
          "content-type": "application/json",
          "content-length": body.length,
        });
        res.end(body);
      };
      if (path === "/version") return json(200, { Version: "20.10.24", ApiVersion: "1.41" });
      if (path === "/info") return json(200, { CgroupVersion: "2" });
      if (req.method === "POST" && path.endsWith("/containers/create")) {
        return json(201, { Id: ID, Warnings: [] });
      }
      if (path.endsWith("/images/bb/get")) {
        res.writeHead(200, { "content-type": "application/x-tar", "content-length": BIG });
        const chunk = Buffer.alloc(64 * 1024, 1);
        const pump = () => {
          while (progress.written < BIG) {
            progress.written += chunk.length;
            if (!res.write(chunk)) return void res.once("drain", pump);
          }
          res.end(() => (progress.finished = true));
        };
        return pump();
      }
      json(404, { message: "no such route here" });
    });
  });
}

Deno.test("a slow owner record holds the daemon's later answers back, not in memory", async () => {
  const dir = await freeTempDir("dg-bp-");
  const progress = { written: 0, finished: false };
  const target = daemon(progress);
  const sock = join(dir, "d.sock");
  await new Promise<void>((r) => target.listen(sock, () => r()));
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  const record = OwnerRecord.open(join(dir, "state"), {
    append: async () => await held,
  });
  await initPki({ dir: join(dir, "pki") });
  await issueClientBundle("t1", { dir: join(dir, "pki") });
  const config = await loadServeConfig({
    paths: resolveBundlePaths({ certs: pkiLayout(join(dir, "pki")).server.dir }),
    policy: { allowAny: true },
  });
  const gate = await serve({
    listen: { transport: "tcp", host: "127.0.0.1", port: 0 },
    target: { transport: "unix", path: sock },
    tls: config.tls,
    policy: config.policy,
    apiPolicy: compileApiPolicy({
      roles: { iso: { preset: "no-escape", isolate: true } },
      identities: [{ cn: "t1", role: "iso" }],
    }, "test"),
    containers: record,
    selfTest: false,
  });
  const bundle = join(dir, "pki", "clients", "t1");
  const client = tlsConnect((gate.address as { port: number }).port, {
    ca: config.tls.caPem,
    cert: await readFile(join(bundle, "cert.pem"), "utf8"),
    key: await readFile(join(bundle, "key.pem"), "utf8"),
  });
  let got = 0;
  client.on("data", (d: Buffer) => (got += d.length));
  client.on("error", () => {});
  try {
    const create = '{"Image":"bb","HostConfig":{"NetworkMode":"none"}}';
    client.write(
      `POST /v1.41/containers/create HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${create.length}\r\n\r\n${create}` +
        "GET /v1.41/images/bb/get HTTP/1.1\r\nHost: d\r\n\r\n",
    );
    // The daemon is stopped (its writes wait for a drain that does not come) or it wrote it
    // all: polled until one of them holds. Stopped is 2 s without a byte more (the daemon and
    // the gate share this event loop: a loaded machine delays them and the polls alike).
    let last = -1;
    let since = Date.now();
    await waitFor(() => {
      if (progress.finished) return true;
      if (progress.written !== last) [last, since] = [progress.written, Date.now()];
      return (last > 0 && Date.now() - since >= 2_000) || undefined;
    }, { timeoutMs: 30_000 });
    assert.equal(progress.finished, false, "the gate read the whole 64 MiB answer into memory");
    assert.ok(progress.written < 16 * 1024 * 1024, `the gate took ${progress.written} bytes`);
    assert.equal(got, 0, "an answer went out before the create's record");
    release();
    await waitFor(() => progress.finished || undefined, { timeoutMs: 30_000 });
    await waitFor(() => got > BIG || undefined, { timeoutMs: 30_000 });
  } finally {
    release();
    client.destroy();
    await gate.close();
    await new Promise<void>((r) => target.close(() => r()));
    await rm(dir, { recursive: true, force: true });
  }
});
