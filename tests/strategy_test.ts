/**
 * The target side (src/net/strategy.ts): connecting says what failed and where, and the raw
 * strategy relays bytes both ways through a real unix socket.
 */

import assert from "node:assert/strict";
import net from "node:net";
import { join } from "node:path";
import { connectTarget, rawStrategy } from "../src/net/strategy.ts";
import type { PeerIdentity } from "../src/access/identity.ts";
import { freeTempDir } from "./helpers/wait.ts";

Deno.test("connectTarget: a missing socket and a refused port are one clear line each", async () => {
  const dir = await freeTempDir("dg-strategy-");
  try {
    const missing = join(dir, "none.sock");
    await assert.rejects(
      connectTarget({ transport: "unix", path: missing }, 1_000),
      new RegExp(`Cannot connect to target "${missing}": .*ENOENT`),
    );
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const port = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    await assert.rejects(
      connectTarget({ transport: "tcp", host: "127.0.0.1", port }, 1_000),
      new RegExp(`Cannot connect to target "127\\.0\\.0\\.1:${port}": .*ECONNREFUSED`),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("rawStrategy relays both ways to a unix target and honours a half-close", async () => {
  const dir = await freeTempDir("dg-strategy-");
  const path = join(dir, "echo.sock");
  const echo = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on("data", (d) => s.write(d));
    s.on("end", () => s.end("bye"));
  });
  await new Promise<void>((r) => echo.listen(path, r));
  const front = net.createServer({ allowHalfOpen: true });
  await new Promise<void>((r) => front.listen(0, "127.0.0.1", r));
  try {
    const accepted = new Promise<net.Socket>((r) => front.once("connection", r));
    const client = net.connect({
      port: (front.address() as net.AddressInfo).port,
      host: "127.0.0.1",
      allowHalfOpen: true,
    });
    const handle = await rawStrategy().start({
      client: (await accepted) as unknown as import("node:tls").TLSSocket,
      identity: {} as PeerIdentity,
      target: { transport: "unix", path },
      connectTimeoutMs: 1_000,
    });
    let got = "";
    client.on("data", (d) => (got += d));
    client.end("ping");
    const result = await handle.done;
    await new Promise((r) => client.once("close", r));
    assert.equal(got, "pingbye", JSON.stringify(result));
    assert.deepEqual([result.bytesIn, result.bytesOut, result.error], [4, 7, undefined]);
    client.destroy();
  } finally {
    await new Promise<void>((r) => front.close(() => r()));
    await new Promise<void>((r) => echo.close(() => r()));
    await Deno.remove(dir, { recursive: true });
  }
});
