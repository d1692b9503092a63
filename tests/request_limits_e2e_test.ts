/**
 * Per-identity limits (issue 24), end to end: the real docker CLI and raw requests over real
 * TLS through `dockgate serve --policy --metrics` to a private dockerd. A role with `rate`
 * gets 429 in Docker's error shape once its burst is spent (the CLI prints the gate's message),
 * shared by the identity's connections; a role with `maxInFlight: 1` holding an event stream
 * open gets 429 on another connection, and again 200 once the stream ended; each is counted in
 * `dockgate_requests_limited_total` and logged.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { dockerdUnavailable, startDockerd } from "./helpers/dockerd.ts";
import { freeTempDir, waitFor } from "./helpers/wait.ts";
import { type ServeProcess, startPolicyGate, tlsFlags } from "./helpers/gate.ts";
import { splitResponses, tlsExchange } from "./helpers/http_raw.ts";
import { bundleCreds, tlsConnect } from "./helpers/tls_peers.ts";

const POLICY = {
  roles: {
    slow: { preset: "read-only", rate: { perSecond: 0.01, burst: 3 } },
    one: { preset: "read-only", maxInFlight: 1 },
  },
  identities: [{ cn: "slow", role: "slow" }, { cn: "one", role: "one" }],
};

const INFO = "GET /info HTTP/1.1\r\nHost: d\r\n\r\n";

Deno.test({
  name: "request limits e2e: rate and maxInFlight answer 429, counted and logged",
  ignore: dockerdUnavailable(),
  sanitizeOps: false,
  sanitizeResources: false,
}, async (t) => {
  const d = await startDockerd();
  if (!d) return;
  const work = await freeTempDir("dgl-");
  let gate: ServeProcess | undefined;
  try {
    const g = await startPolicyGate(d.host, work, POLICY, ["slow", "one"], [
      "--metrics",
      "tcp://127.0.0.1:0",
    ]);
    gate = g.gate;
    const m = await gate.waitForLog(/metrics on (http:\/\/127\.0\.0\.1:\d+)\/metrics/);
    const metric = async (limit: string, who: string) => {
      const text = await (await fetch(`${m[1]}/metrics`)).text();
      const line = text.split("\n").find((l) =>
        l.startsWith(`dockgate_requests_limited_total{identity="${who}",limit="${limit}"}`)
      );
      return line ? Number(line.split(" ").at(-1)) : 0;
    };
    const as = (who: string, args: string[]) =>
      d.docker([...tlsFlags(join(g.pki, "clients", who)), ...args], { host: gate!.host });

    await t.step("rate: the burst passes, then the CLI shows the 429", async () => {
      const slow = await bundleCreds(g.pki, "slow");
      // Two connections of one identity share one bucket: 2 + 1 of a burst of 3.
      const first = splitResponses((await tlsExchange(gate!.port, slow, INFO + INFO)).data);
      assert.deepEqual(first.map((r) => r.status), [200, 200]);
      const third = splitResponses((await tlsExchange(gate!.port, slow, INFO + INFO)).data);
      assert.deepEqual(third.map((r) => r.status), [200, 429]);
      assert.equal(third[1].headers["content-type"], "application/json");
      const body = JSON.parse(third[1].body);
      assert.match(body.message, /^dockgate: slow may not GET \/info: rate: over 0\.01 requests/);
      const cli = await as("slow", ["info"]);
      assert.notEqual(cli.code, 0);
      assert.match(cli.stderr, /Error response from daemon: dockgate: slow may not GET .*rate/);
      assert.ok(await metric("rate", "slow") >= 2, "counted");
      await gate!.waitForLog(/WARN request limited .*identity=slow.*limit=rate/);
    });

    await t.step("maxInFlight: a held stream fills the slot on every connection", async () => {
      const one = await bundleCreds(g.pki, "one");
      const events = tlsConnect(gate!.port, one);
      let seen = "";
      events.on("data", (b) => (seen += b.toString("latin1")));
      events.on("secureConnect", () => events.write("GET /events HTTP/1.1\r\nHost: d\r\n\r\n"));
      await waitFor(() => seen.includes("200 OK") || undefined);
      const busy = splitResponses((await tlsExchange(gate!.port, one, INFO)).data);
      assert.equal(busy[0]?.status, 429, JSON.stringify(busy));
      assert.match(JSON.parse(busy[0].body).message, /maxInFlight: 1 request in flight/);
      assert.equal(await metric("in_flight", "one"), 1);
      events.destroy();
      // The stream's end frees its slot.
      await waitFor(async () => {
        const r = splitResponses((await tlsExchange(gate!.port, one, INFO)).data);
        return r[0]?.status === 200 || undefined;
      });
    });
  } finally {
    await gate?.stop();
    await d.stop();
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
});
