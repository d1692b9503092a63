/**
 * `maxInFlight` slots end for requests the gate never put in line (src/docker/request_reader.ts):
 * a body too big to inspect (413, the connection closes) and a body the client cut short (it
 * went away mid-body) each took a slot at their head; a slot that never ended would lock the
 * identity out on every connection, for good.
 */
import assert from "node:assert/strict";
import type { Buffer } from "node:buffer";
import { jsonRequest, splitResponses, tlsExchange } from "./helpers/http_raw.ts";
import { TEST_POLICY, withApiGate } from "./helpers/api_gate.ts";
import { waitFor } from "./helpers/wait.ts";
import { tlsConnect } from "./helpers/tls_peers.ts";

const POLICY = {
  roles: { ...TEST_POLICY.roles, one: { preset: "no-escape", maxInFlight: 1 } },
  identities: [...TEST_POLICY.identities, { cn: "one", role: "one" }],
};

const PING = "GET /v1.41/_ping HTTP/1.1\r\nHost: d\r\n\r\n";

Deno.test("request limits: a request dropped before it was in line ends its maxInFlight slot", async () => {
  await withApiGate(async (f) => {
    const one = await f.creds("one");
    const ping = async () => splitResponses((await tlsExchange(f.port, one, PING)).data)[0]?.status;
    assert.equal(await ping(), 200);

    const big = JSON.stringify({ Image: "bb", Env: ["A=" + "a".repeat(5000)] });
    const tooBig = splitResponses(
      (await tlsExchange(f.port, one, jsonRequest("POST", "/v1.41/containers/create", big))).data,
    );
    assert.equal(tooBig[0]?.status, 413);
    // The slot ends with the refusal: the next request of the identity is let in.
    await waitFor(async () => (await ping()) === 200, { timeoutMs: 3000 });

    const body = JSON.stringify({ Image: "bb" });
    const cut = `POST /v1.41/containers/create HTTP/1.1\r\nHost: d\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n` +
      body.slice(0, 5);
    await tlsExchange(f.port, one, cut);
    await waitFor(async () => (await ping()) === 200, { timeoutMs: 3000 });
    assert.equal(f.recorded.filter((r) => r.url.includes("create")).length, 0);
  }, { maxBodyBytes: 4096, policy: POLICY });
});

Deno.test("request limits: an attach holds its maxInFlight slot while its stream runs", async () => {
  await withApiGate(async (f) => {
    const one = await f.creds("one");
    const ping = async () => splitResponses((await tlsExchange(f.port, one, PING)).data)[0]?.status;
    const attach = tlsConnect(f.port, one);
    let seen = "";
    attach.on("data", (d: Buffer) => void (seen += d.toString()));
    attach.on("error", () => {});
    attach.on("secureConnect", () =>
      attach.write(
        "POST /v1.41/containers/c1/attach?stream=1&stdin=1 HTTP/1.1\r\nHost: d\r\n" +
          "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n",
      ));
    try {
      await waitFor(() => seen.startsWith("HTTP/1.1 101"), { what: "the switch to a raw stream" });
      assert.equal(await ping(), 429, "the running stream is the one request in flight");
    } finally {
      attach.end();
    }
    await waitFor(async () => (await ping()) === 200, { timeoutMs: 3000 });
  }, { policy: POLICY });
});

Deno.test("request limits: a full role with audit: requests is limited (429)", async () => {
  const policy = {
    roles: {
      ...TEST_POLICY.roles,
      fast: { preset: "full", audit: "requests", rate: { perSecond: 0.001, burst: 1 } },
    },
    identities: [...TEST_POLICY.identities, { cn: "fast", role: "fast" }],
  };
  await withApiGate(async (f) => {
    const fast = await f.creds("fast");
    const answers = splitResponses((await tlsExchange(f.port, fast, PING + PING)).data);
    assert.deepEqual(answers.map((a) => a.status), [200, 429], "the burst is one request");
  }, { policy });
});
