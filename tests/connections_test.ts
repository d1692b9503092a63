/**
 * Connection bookkeeping (src/net/connections.ts) on real sockets and relays: sockets are
 * counted until they close, a stop drains open relays up to its deadline and then aborts them,
 * and a second stop with no drain ends a drain in progress at once.
 */

import assert from "node:assert/strict";
import net from "node:net";
import { ConnectionSet, peerOf } from "../src/net/connections.ts";
import { relay } from "../src/net/relay.ts";

async function pair(): Promise<{ server: net.Server; client: net.Socket; accepted: net.Socket }> {
  const server = net.createServer({ allowHalfOpen: true });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const accepted = new Promise<net.Socket>((r) => server.once("connection", r));
  const client = net.connect((server.address() as net.AddressInfo).port, "127.0.0.1");
  await new Promise((r) => client.once("connect", r));
  return { server, client, accepted: await accepted };
}

Deno.test("ConnectionSet counts sockets until they close", async () => {
  const set = new ConnectionSet();
  const { server, client, accepted } = await pair();
  set.addSocket(accepted);
  assert.equal(set.size, 1);
  assert.match(peerOf(accepted), /^127\.0\.0\.1:\d+$/);
  const closed = new Promise((r) => accepted.once("close", r));
  accepted.on("end", () => accepted.end()); // a half-open server socket ends when told to
  client.destroy();
  await closed;
  assert.equal(set.size, 0);
  await set.stop(server, 0);
  assert.equal(set.accepting, false);
});

Deno.test("ConnectionSet.stop drains up to its deadline; a second stop(0) ends it at once", async () => {
  const set = new ConnectionSet();
  const a = await pair();
  const b = await pair();
  // A relay between two live connections that nobody ends.
  const handle = relay(a.accepted, b.client);
  set.addSocket(a.accepted);
  const done = set.addRelay(handle);
  const t0 = Date.now();
  const stopping = set.stop(a.server, 60_000);
  assert.equal(set.accepting, false);
  const again = set.stop(a.server, 0);
  await Promise.all([stopping, again]);
  assert.ok(Date.now() - t0 < 5_000, `ended at once (${Date.now() - t0} ms)`);
  const result = await done;
  assert.match(result.error?.message ?? "", /drain deadline reached/);
  for (const s of [a.client, b.accepted]) s.destroy();
  await new Promise<void>((r) => b.server.close(() => r()));
});
