/**
 * `maxInFlight` slots end for requests the gate never put in line (src/docker/request_reader.ts):
 * a body too big to inspect (413, the connection closes) and a body the client cut short (it
 * went away mid-body) each took a slot at their head; a slot that never ended would lock the
 * identity out on every connection, for good.
 */
import assert from "node:assert/strict";
import { jsonRequest, splitResponses, tlsExchange } from "./helpers/http_raw.ts";
import { TEST_POLICY, withApiGate } from "./helpers/api_gate.ts";
import { waitFor } from "./helpers/wait.ts";

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
