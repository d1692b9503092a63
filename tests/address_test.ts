import assert from "node:assert/strict";
import { formatAddress, isLoopbackHost, parseAddress } from "../src/net/address.ts";

Deno.test("parseAddress accepts Docker's -H forms", () => {
  assert.deepEqual(parseAddress("unix:///var/run/docker.sock"), {
    transport: "unix",
    path: "/var/run/docker.sock",
  });
  assert.deepEqual(parseAddress("unix://rel/d.sock"), { transport: "unix", path: "rel/d.sock" });
  assert.deepEqual(parseAddress("tcp://127.0.0.1:2376"), {
    transport: "tcp",
    host: "127.0.0.1",
    port: 2376,
  });
  assert.deepEqual(parseAddress("tcp://docker.example:2376/"), {
    transport: "tcp",
    host: "docker.example",
    port: 2376,
  });
  assert.deepEqual(parseAddress("localhost:0"), { transport: "tcp", host: "localhost", port: 0 });
  assert.deepEqual(parseAddress("[::1]:2376"), { transport: "tcp", host: "::1", port: 2376 });
  assert.deepEqual(parseAddress("tcp://[fe80::1%eth0]:1"), {
    transport: "tcp",
    host: "fe80::1%eth0",
    port: 1,
  });
  assert.deepEqual(parseAddress("host", { defaultPort: 2376 }), {
    transport: "tcp",
    host: "host",
    port: 2376,
  });
});

Deno.test("parseAddress rejects malformed addresses with the input in the message", () => {
  const bad = [
    "",
    " tcp://a:1",
    "unix://",
    "http://a:1",
    "a:99999",
    "a:-1",
    "a:x",
    "::1:2376",
    "[::1",
    "[a]:1",
    "tcp://a:1/path",
    ":2376",
    "a b:1",
    "host",
  ];
  for (const text of bad) {
    assert.throws(() => parseAddress(text), (err: Error) => {
      assert.ok(err instanceof TypeError, `${text}: ${err}`);
      assert.ok(err.message.includes(`"${text}"`), err.message);
      return true;
    });
  }
});

Deno.test("formatAddress round-trips", () => {
  for (
    const text of [
      "unix:///tmp/x.sock",
      "tcp://127.0.0.1:2376",
      "tcp://[::1]:0",
      "tcp://example.com:1",
    ]
  ) {
    assert.equal(formatAddress(parseAddress(text)), text);
  }
});

Deno.test("isLoopbackHost", () => {
  for (const h of ["127.0.0.1", "127.1.2.3", "::1", "localhost", "LOCALHOST"]) {
    assert.ok(isLoopbackHost(h), h);
  }
  for (const h of ["0.0.0.0", "10.0.0.1", "::", "example.com", "128.0.0.1"]) {
    assert.ok(!isLoopbackHost(h), h);
  }
});
