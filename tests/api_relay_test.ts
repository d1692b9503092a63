/**
 * The HTTP-aware relay (src/docker/api_relay.ts) over real TLS to a recording target whose
 * parser is not ours (node:http): order under pipelining, refusals in line and never
 * forwarded, re-framed inspected bodies, streamed bulk bodies, the switch to a raw stream
 * (held bytes, half-close), a failed switch, body caps, audit mode, the raw relay for full
 * roles, and a reload that restricts a full identity.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { jsonRequest, splitResponses, tarHeader, tlsExchange } from "./helpers/http_raw.ts";
import { fakeContainerId, TEST_POLICY, withApiGate } from "./helpers/api_gate.ts";
import { tlsConnect } from "./helpers/tls_peers.ts";
import { waitFor } from "./helpers/wait.ts";
import { compileApiPolicy } from "../src/docker/api_policy.ts";

const GET = (path: string) => `GET ${path} HTTP/1.1\r\nHost: d\r\n\r\n`;

Deno.test("api relay: pipelined requests answered in order, refusals in their place, never forwarded", async () => {
  await withApiGate(async (f) => {
    const ci = await f.creds("ci");
    const ex = await tlsExchange(
      f.port,
      ci,
      GET("/v1.41/_ping") + "POST /v1.41/plugins/pull?remote=evil HTTP/1.1\r\nHost: d\r\n\r\n" +
        GET("/v1.41/version") +
        jsonRequest("POST", "/v1.41/containers/create", `{"HostConfig":{"Privileged":true}}`) +
        GET("/v1.41/info"),
    );
    const rs = splitResponses(ex.data);
    assert.deepEqual(rs.map((r) => r.status), [200, 403, 200, 403, 200]);
    assert.match(
      rs[1].body,
      /dockgate: ci may not POST \/plugins\/pull: no-escape: .*can reach the host/,
    );
    assert.match(rs[3].body, /HostConfig\.Privileged/);
    assert.deepEqual(f.recorded.map((r) => r.url), [
      "/v1.41/_ping",
      "/v1.41/version",
      "/v1.41/info",
    ]);
    const denied = f.audit.filter((a) => a.event === "request" && a.decision === "deny");
    assert.deepEqual(denied.map((a) => a.path), ["/plugins/pull", "/containers/create"]);
  });
});

Deno.test("api relay: an inspected chunked body is forwarded as the checked bytes with a Content-Length", async () => {
  await withApiGate(async (f) => {
    const ci = await f.creds("ci");
    const body = JSON.stringify({ Image: "bb", Cmd: ["echo", "x".repeat(3000)] });
    const chunks = body.match(/.{1,100}/gs)!.map((c) => `${c.length.toString(16)}\r\n${c}\r\n`);
    const ex = await tlsExchange(
      f.port,
      ci,
      "POST /v1.41/containers/create HTTP/1.1\r\nHost: d\r\nContent-Type: application/json; charset=utf-8\r\n" +
        `Transfer-Encoding: chunked\r\n\r\n${chunks.join("")}0\r\n\r\n`,
    );
    assert.equal(splitResponses(ex.data)[0]?.status, 200, ex.data.toString());
    const [r] = f.recorded;
    assert.equal(r.headers["content-length"], String(body.length));
    assert.equal(r.headers["transfer-encoding"], undefined);
    assert.equal(r.body.toString(), body);
  });
});

Deno.test("api relay: bulk bodies that need no inspection stream through byte-exact", async () => {
  await withApiGate(async (f) => {
    const ci = await f.creds("ci");
    const payload = Buffer.alloc(8 << 20);
    for (let i = 0; i < payload.length; i += 65536) {
      crypto.getRandomValues(payload.subarray(i, Math.min(payload.length, i + 65536)));
    }
    // An archive upload must start as plain tar (a restricted role's rule): a real header.
    tarHeader("data.bin", payload.length - 512).copy(payload);
    const md5 = createHash("md5").update(payload).digest("hex");
    // Chunked (docker cp's archive upload) in uneven chunks, then Content-Length (docker load).
    const parts: Buffer[] = [
      Buffer.from(
        "PUT /v1.41/containers/c1/archive?path=/ HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n\r\n",
      ),
    ];
    for (let off = 0, n = 1; off < payload.length; off += n, n = (n * 7) % 200_003 + 1) {
      const c = payload.subarray(off, off + n);
      parts.push(Buffer.from(`${c.length.toString(16)}\r\n`), c, Buffer.from("\r\n"));
    }
    parts.push(Buffer.from("0\r\n\r\n"));
    parts.push(
      Buffer.from(
        `POST /v1.41/images/load HTTP/1.1\r\nHost: d\r\nContent-Length: ${payload.length}\r\n\r\n`,
      ),
    );
    parts.push(payload);
    const ex = await tlsExchange(f.port, ci, Buffer.concat(parts), { timeoutMs: 60_000 });
    assert.deepEqual(splitResponses(ex.data).map((r) => r.status), [200, 200]);
    assert.equal(f.recorded.length, 2);
    for (const r of f.recorded) {
      assert.equal(createHash("md5").update(r.body).digest("hex"), md5, r.url);
    }
  });
});

Deno.test("api relay: after 101 the connection is raw both ways, held bytes first, half-close kept", async () => {
  await withApiGate(async (f) => {
    const ci = await f.creds("ci");
    const ex = await tlsExchange(
      f.port,
      ci,
      "POST /v1.41/containers/c1/attach?stream=1&stdin=1 HTTP/1.1\r\nHost: d\r\n" +
        "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n" +
        // Sent before the answer: stdin for the stream, not a request (it looks like one).
        "POST /v1.41/plugins/pull HTTP/1.1\r\nHost: d\r\n\r\nmore stdin",
    );
    const text = ex.data.toString();
    assert.match(text, /^HTTP\/1\.1 101 UPGRADED\r\n/);
    assert.ok(text.endsWith("stream-end\n"), `the target's reply after our half-close: ${text}`);
    await waitFor(() => f.upgraded[0]?.length > 0, { what: "the raw stream's end at the target" });
    assert.equal(
      f.upgraded[0].toString(),
      "POST /v1.41/plugins/pull HTTP/1.1\r\nHost: d\r\n\r\nmore stdin",
    );
    assert.ok(!f.recorded.some((r) => r.url.includes("plugins")), "raw bytes are not requests");
    const rec = f.audit.find((a) => a.path === "/containers/c1/attach");
    assert.equal(rec?.status, 101);
  });
});

Deno.test("api relay: when attach does not switch, the held bytes are requests again and are decided", async () => {
  await withApiGate(async (f) => {
    const ci = await f.creds("ci");
    // No Upgrade header: the target answers 404; what followed must be read as HTTP.
    const ex = await tlsExchange(
      f.port,
      ci,
      "POST /v1.41/containers/nosuch/attach?stream=1 HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\n\r\n" +
        "POST /v1.41/plugins/pull HTTP/1.1\r\nHost: d\r\n\r\n" + GET("/v1.41/version"),
    );
    assert.deepEqual(splitResponses(ex.data).map((r) => r.status), [404, 403, 200]);
    assert.deepEqual(f.recorded.map((r) => r.url), [
      // Forwarded by the full ID the gate's container check read (check and act on one object).
      `/v1.41/containers/${fakeContainerId("nosuch")}/attach?stream=1`,
      "/v1.41/version",
    ]);
  });
});

Deno.test("api relay: a body too big to inspect is refused with 413 and never forwarded", async () => {
  await withApiGate(async (f) => {
    const ci = await f.creds("ci");
    const big = JSON.stringify({ Image: "bb", Env: ["A=" + "a".repeat(5000)] });
    for (
      const bytes of [
        jsonRequest("POST", "/v1.41/containers/create", big),
        "POST /v1.41/containers/create HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\n" +
        `Transfer-Encoding: chunked\r\n\r\n${big.length.toString(16)}\r\n${big}\r\n0\r\n\r\n`,
      ]
    ) {
      const ex = await tlsExchange(f.port, ci, bytes);
      const [r] = splitResponses(ex.data);
      assert.equal(r.status, 413);
      assert.equal(r.headers.connection, "close");
    }
    assert.equal(f.recorded.length, 0);
  }, { maxBodyBytes: 4096 });
});

Deno.test("api relay: an over-long head gets 400 and the connection closes; nothing is forwarded", async () => {
  await withApiGate(async (f) => {
    const ci = await f.creds("ci");
    const ex = await tlsExchange(
      f.port,
      ci,
      `GET /v1.41/_ping HTTP/1.1\r\nHost: d\r\nX-Pad: ${"a".repeat(70 * 1024)}\r\n\r\n`,
      { keepOpen: true },
    );
    const [r] = splitResponses(ex.data);
    assert.equal(r.status, 400);
    assert.match(r.body, /message head too long/);
    assert.equal(r.headers.connection, "close");
    assert.equal(ex.timedOut, false, "the gate closes the connection itself");
    assert.equal(f.recorded.length, 0);
  });
});

Deno.test("api relay: audit mode forwards what enforce would deny and records would_deny", async () => {
  await withApiGate(async (f) => {
    const ro = await f.creds("ro");
    const ex = await tlsExchange(
      f.port,
      ro,
      jsonRequest("POST", "/v1.41/containers/create", `{"Image":"bb"}`),
    );
    assert.equal(splitResponses(ex.data)[0].status, 200);
    assert.equal(f.recorded.length, 1);
    const rec = f.audit.find((a) => a.event === "request")!;
    assert.equal(rec.decision, "would_deny");
    assert.match(rec.rule!, /read-only: POST \/containers\/create changes state/);
  }, { mode: "audit" });
});

Deno.test("api relay: full roles get the raw relay (no parsing at all)", async () => {
  await withApiGate(async (f) => {
    const root = await f.creds("root");
    const ex = await tlsExchange(f.port, root, "GARBAGE\r\n\r\n");
    const rs = splitResponses(ex.data);
    // The target's own parser answered the garbage: it reached it, untouched by the gate.
    assert.equal(rs[0]?.status, 400, ex.data.toString());
    assert.doesNotMatch(ex.data.toString(), /dockgate/);
    await waitFor(() => f.audit.find((a) => a.event === "connection"), {
      what: "connection record",
    });
    assert.equal(f.audit.find((a) => a.event === "connection")!.relay, "raw");
  });
});

Deno.test("api relay: a reload that restricts a full identity ends its raw connection", async () => {
  await withApiGate(async (f) => {
    const root = await f.creds("root");
    const socket = tlsConnect(f.port, root);
    await new Promise((r) => socket.once("secureConnect", r));
    socket.on("error", () => {});
    socket.write(GET("/v1.41/_ping"));
    await waitFor(() => f.recorded.length === 1, { what: "first request" });
    const restricted = structuredClone(TEST_POLICY);
    (restricted.roles.root as { preset: string }).preset = "read-only";
    f.gate.reload({ apiPolicy: compileApiPolicy(restricted, "reloaded") });
    const ended = await waitFor(
      () => f.audit.find((a) => a.event === "connection" && a.identity === "root"),
      { what: "the raw connection ended" },
    );
    assert.match(
      ended.error ?? "",
      /ended at reload: role root is now read-only: a raw relay cannot be restricted/,
    );
    socket.destroy();
  });
});

Deno.test("api relay: a reload that asks a full role for request audit ends its raw connection", async () => {
  await withApiGate(async (f) => {
    const root = await f.creds("root");
    const socket = tlsConnect(f.port, root);
    await new Promise((r) => socket.once("secureConnect", r));
    socket.on("error", () => {});
    socket.write(GET("/v1.41/_ping"));
    await waitFor(() => f.recorded.length === 1, { what: "first request" });
    const audited = structuredClone(TEST_POLICY);
    (audited.roles.root as { audit?: string }).audit = "requests";
    f.gate.reload({ apiPolicy: compileApiPolicy(audited, "reloaded") });
    const ended = await waitFor(
      () => f.audit.find((a) => a.event === "connection" && a.identity === "root"),
      { what: "the raw connection ended" },
    );
    assert.match(
      ended.error ?? "",
      /ended at reload: role root now audits requests: a raw relay cannot record them/,
    );
    socket.destroy();
    // A new connection of the role goes through the HTTP-aware relay, each request recorded.
    const ex = await tlsExchange(f.port, root, GET("/v1.41/_ping"));
    assert.equal(splitResponses(ex.data)[0].status, 200);
    const rec = await waitFor(
      () => f.audit.find((a) => a.event === "request" && a.identity === "root"),
      { what: "root's request record" },
    );
    assert.equal(rec.rule, "full");
  });
});

Deno.test("api relay: a flood of refused requests does not stop the gate or reorder answers", async () => {
  await withApiGate(async (f) => {
    const ci = await f.creds("ci");
    const n = 400;
    const flood = Array.from(
      { length: n },
      (_, i) =>
        i % 2 ? GET("/v1.41/_ping") : "POST /v1.41/plugins/pull HTTP/1.1\r\nHost: d\r\n\r\n",
    ).join("");
    const pending = tlsExchange(f.port, ci, flood, { timeoutMs: 60_000 });
    // Meanwhile another client is served.
    const other = await tlsExchange(f.port, ci, GET("/v1.41/version"));
    assert.equal(splitResponses(other.data)[0].status, 200);
    const statuses = splitResponses((await pending).data).map((r) => r.status);
    assert.equal(statuses.length, n);
    assert.ok(statuses.every((s, i) => s === (i % 2 ? 200 : 403)));
  });
});

Deno.test("api relay: a raw stream nobody reads holds the client back (the gate does not buffer it)", async () => {
  await withApiGate(async (f) => {
    const ci = await f.creds("ci");
    const socket = tlsConnect(f.port, ci);
    socket.on("error", () => {});
    await new Promise((r) => socket.once("secureConnect", r));
    let got = "";
    socket.on("data", (d: Buffer) => (got += d.toString("latin1")));
    socket.write(
      "POST /v1.41/containers/hold=1/attach?stream=1&stdin=1 HTTP/1.1\r\nHost: d\r\n" +
        "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n",
    );
    await waitFor(() => got.includes("stream-start"), { what: "the switch" });
    const total = 64 << 20;
    const block = Buffer.alloc(1 << 20, 0x61);
    for (let i = 0; i < total / block.length; i++) socket.write(block);
    // Kernel buffers take a few MiB and the gate at most 256 KiB; without backpressure the gate
    // took all 64 MiB within ~1.5 s. Watch for 4 s that the client's queue does not drain.
    const drained = await waitFor(
      () => socket.writableLength < total - (24 << 20) ? true : undefined,
      { what: "the client's queue draining", timeoutMs: 4000 },
    ).then(() => true, () => false);
    assert.equal(
      drained,
      false,
      `the gate took ${
        ((total - socket.writableLength) / 2 ** 20).toFixed(1)
      } MiB from a stream nobody reads`,
    );
    socket.destroy();
  });
});

Deno.test("api relay: an owner check that cannot read the daemon's answer fails closed, in line", async () => {
  await withApiGate(async (f) => {
    const iso = await f.creds("iso");
    // The recording target answers an inspect with {"ok":true}: no ID, no owner.
    const ex = await tlsExchange(
      f.port,
      iso,
      GET("/v1.41/_ping") + GET("/v1.41/containers/web/logs") + GET("/v1.41/version") +
        GET("/v1.41/containers/json?all=1"),
    );
    const rs = splitResponses(ex.data);
    // The list's answer ({"ok":true}) is no list: the gate cannot filter it, so 502 too.
    assert.deepEqual(rs.map((r) => r.status), [200, 502, 200, 502]);
    assert.match(rs[1].body, /owner check failed: inspect of container web: no ID/);
    // The gate's own inspect reached the target; the logs request never did.
    const urls = f.recorded.map((r) => r.url);
    assert.ok(urls.includes("/containers/web/json"), String(urls));
    assert.ok(!urls.some((u) => u.includes("/logs")), String(urls));
    const list = urls.find((u) => u.startsWith("/v1.41/containers/json"))!;
    const filters = new URL(list, "http://x").searchParams.get("filters")!;
    assert.deepEqual(JSON.parse(filters), { label: { "dockgate.owner=iso": true } });
    assert.equal(new URL(list, "http://x").searchParams.get("all"), "1");
  }, { gateQuestions: false });
});

Deno.test("api relay: a streamed body whose chunked framing breaks gets 400 and a close, not silence", async () => {
  await withApiGate(async (f) => {
    const ci = await f.creds("ci");
    const broken = [
      "zz\r\n",
      "3\r\nabcde\r\n0\r\n\r\n",
      "3;ext=1\r\nabc\r\n0\r\n\r\n",
      "3\nabc\n0\n\n",
      "0\r\nX-T: 1\r\n\r\n",
      "ffffffffffffffffff\r\n",
      "-1\r\n",
      "3\r\nabc0\r\n\r\n",
    ];
    for (const body of broken) {
      // The client keeps its side open, as one waiting for an answer does.
      const ex = await tlsExchange(
        f.port,
        ci,
        "POST /v1.41/images/load HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n\r\n" + body,
        { keepOpen: true, timeoutMs: 5_000 },
      );
      assert.equal(ex.timedOut, false, `${JSON.stringify(body)}: the gate answered and closed`);
      assert.deepEqual(splitResponses(ex.data).map((r) => r.status), [400], JSON.stringify(body));
    }
    // Behind a pipelined request (its bytes still in the write batch): both answered, in order,
    // and the create after the broken body is never read (the attacker helper found silence).
    const ex = await tlsExchange(
      f.port,
      ci,
      GET("/v1.41/containers/json") +
        "POST /v1.41/containers/prune HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n\r\n0;x\r\n\r\n" +
        jsonRequest("POST", "/v1.41/containers/create", `{"HostConfig":{"Binds":["/:/h"]}}`),
      { keepOpen: true, timeoutMs: 5_000 },
    );
    assert.deepEqual(splitResponses(ex.data).map((r) => r.status), [200, 400]);
    assert.ok(f.recorded.every((r) => !r.url.includes("create")), "the create never reached it");
  });
});
