/**
 * Property test of the HTTP-aware relay: random and mutated request streams from a
 * no-escape identity, over real TLS. Properties: the gate never crashes (a fresh request is
 * served afterwards), never hangs (every exchange ends), and never forwards a request the
 * policy denies: every request the recording target parsed (its parser is not ours) is
 * decided again from what the target saw, and must be allowed.
 *
 * The seed is printed; set DOCKGATE_FUZZ_SEED to replay a run, DOCKGATE_FUZZ_N for more cases.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { jsonRequest, splitResponses, tlsExchange } from "./helpers/http_raw.ts";
import { withApiGate } from "./helpers/api_gate.ts";
import { decideRequest, inspectionFor } from "../src/docker/api_policy.ts";
import { parseApiTarget } from "../src/docker/api_path.ts";
import { parseStrictJson } from "../src/docker/strict_json.ts";

/** mulberry32: small, seedable, good enough to pick mutations. */
function rng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const PRIV = '{"Image":"bb","HostConfig":{"Privileged":true}}';
const SEEDS = [
  "GET /v1.41/_ping HTTP/1.1\r\nHost: d\r\n\r\n",
  "GET /v1.41/containers/json?all=1 HTTP/1.1\r\nHost: d\r\n\r\n",
  jsonRequest("POST", "/v1.41/containers/create", '{"Image":"bb","Cmd":["true"]}'),
  jsonRequest("POST", "/v1.41/containers/create?name=x", PRIV),
  jsonRequest("POST", "/v1.41/containers/create", '{"Image":"bb","HostConfig":{"Binds":["/:/h"]}}'),
  jsonRequest(
    "POST",
    "/v1.41/containers/create",
    '{"Image":"bb","HostConfig":{"Binds":["/srv/ci/a:/a"]}}',
  ),
  jsonRequest("POST", "/v1.41/containers/c/exec", '{"Cmd":["sh"],"Privileged":true}'),
  jsonRequest(
    "POST",
    "/v1.41/volumes/create",
    '{"Name":"v","DriverOpts":{"type":"none","o":"bind","device":"/"}}',
  ),
  jsonRequest("POST", "/v1.41/containers/c/start", '{"HostConfig":{"Privileged":true}}'),
  "POST /v1.41/containers/create HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\n" +
  `Transfer-Encoding: chunked\r\n\r\n${PRIV.length.toString(16)}\r\n${PRIV}\r\n0\r\n\r\n`,
  "POST /v1.41/plugins/pull?remote=x HTTP/1.1\r\nHost: d\r\n\r\n",
  "POST /v1.41/containers/c/attach?stream=1 HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n",
  "PUT /v1.41/containers/c/archive?path=/ HTTP/1.1\r\nHost: d\r\nContent-Length: 5\r\n\r\nhello",
  "POST /v1.41/build?networkmode=host HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\n\r\n",
];
const INSERTS = [
  "\r\n",
  "\n",
  "\r",
  " ",
  "\t",
  "\0",
  ":",
  "Transfer-Encoding: chunked\r\n",
  "Content-Length: 5\r\n",
  "Content-Length: 0\r\n",
  "Connection: close\r\n",
  "ſ",
  "\u212a",
  "/../",
  "//",
  "%2f",
  "%25",
  "0\r\n\r\n",
  "privileged",
  '"Privileged":true,',
  "HTTP/1.0",
  "Upgrade: tcp\r\nConnection: Upgrade\r\n",
];
const BYTES = [
  0x0d,
  0x0a,
  0x20,
  0x3a,
  0x00,
  0x09,
  0x30,
  0x39,
  0x61,
  0x41,
  0x80,
  0x25,
  0x2f,
  0x2e,
  0x22,
];

function mutate(input: Buffer, r: () => number): Buffer {
  let b = input;
  const times = 1 + Math.floor(r() * 3);
  for (let k = 0; k < times; k++) {
    const at = Math.floor(r() * (b.length + 1));
    switch (Math.floor(r() * 6)) {
      case 0: {
        if (b.length === 0) break;
        b = Buffer.from(b);
        b[Math.min(at, b.length - 1)] = BYTES[Math.floor(r() * BYTES.length)];
        break;
      }
      case 1:
        b = Buffer.concat([
          b.subarray(0, at),
          Buffer.from(INSERTS[Math.floor(r() * INSERTS.length)]),
          b.subarray(at),
        ]);
        break;
      case 2:
        b = Buffer.concat([
          b.subarray(0, at),
          b.subarray(Math.min(b.length, at + 1 + Math.floor(r() * 8))),
        ]);
        break;
      case 3: {
        // Duplicate one header line.
        const text = b.toString("latin1");
        const lines = text.split("\r\n");
        if (lines.length > 2) {
          const i = 1 + Math.floor(r() * (lines.length - 2));
          lines.splice(i, 0, lines[i]);
          b = Buffer.from(lines.join("\r\n"), "latin1");
        }
        break;
      }
      case 4:
        b = Buffer.from(b.toString("latin1").replace("Privileged", "privileged"), "latin1");
        break;
      default:
        b = Buffer.concat([b, Buffer.from(SEEDS[Math.floor(r() * SEEDS.length)])]);
    }
  }
  return b;
}

Deno.test("api relay fuzz: never crashes, never hangs, never forwards what the policy denies", async () => {
  const seed = Number(Deno.env.get("DOCKGATE_FUZZ_SEED") ?? Date.now() % 2 ** 31);
  const n = Number(Deno.env.get("DOCKGATE_FUZZ_N") ?? 400);
  console.error(`fuzz seed ${seed} (DOCKGATE_FUZZ_SEED=${seed} to replay), ${n} cases`);
  const r = rng(seed);
  await withApiGate(async (f) => {
    const ci = await f.creds("ci");
    const cases: Buffer[] = [];
    for (let i = 0; i < n; i++) {
      const parts = 1 + Math.floor(r() * 3);
      const bytes: Buffer[] = [];
      for (let p = 0; p < parts; p++) {
        const s = Buffer.from(SEEDS[Math.floor(r() * SEEDS.length)]);
        bytes.push(r() < 0.8 ? mutate(s, r) : s);
      }
      cases.push(Buffer.concat(bytes));
    }
    let next = 0;
    let statuses = 0;
    const worker = async () => {
      while (next < cases.length) {
        const i = next++;
        const ex = await tlsExchange(f.port, ci, cases[i], { timeoutMs: 15_000 });
        assert.equal(
          ex.timedOut,
          false,
          `case ${i} hung: ${JSON.stringify(cases[i].toString("latin1"))}`,
        );
        statuses += splitResponses(ex.data).length;
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    // Still up, still deciding.
    const fresh = await tlsExchange(f.port, ci, "GET /v1.41/version HTTP/1.1\r\nHost: d\r\n\r\n");
    assert.equal(splitResponses(fresh.data)[0]?.status, 200);
    assert.ok(
      statuses > n / 2,
      `too few answers (${statuses}): the cases are not exercising the relay`,
    );
    // Every request the target parsed, decided again from what it saw: allowed.
    const role = f.policy.roles.get("ci")!;
    for (const rec of f.recorded) {
      const what = `${rec.method} ${rec.url} ${
        JSON.stringify(rec.body.toString("latin1").slice(0, 200))
      }`;
      const target = parseApiTarget(rec.url); // throws if the gate forwarded a non-canonical path
      const needs = inspectionFor(role, rec.method, target.path);
      if (rec.bodyUnseen) {
        // The target's code never saw this body: only the route can be judged here.
        const d = decideRequest(role, { method: rec.method, target, body: needs ? {} : undefined });
        assert.ok(d.allow || /needs a JSON body/.test(d.rule), `forwarded a denied route: ${what}`);
        continue;
      }
      const body = needs && rec.body.length > 0 ? parseStrictJson(rec.body) : undefined;
      const d = decideRequest(role, {
        method: rec.method,
        target,
        body,
        hasBody: rec.body.length > 0,
      });
      assert.ok(d.allow, `forwarded a denied request: ${what}: ${d.rule}`);
    }
    console.error(
      `fuzz: ${n} streams, ${statuses} answers, ${f.recorded.length} requests reached the target`,
    );
  });
});
