/**
 * `serve --metrics` and `/healthz` through the real CLI: the exposition scraped and checked
 * by Prometheus's own `promtool check metrics`, its values against the traffic this test made
 * (accepted, revoked, certificate-less), the expiry gauges against `openssl x509 -enddate`;
 * `/healthz` following the target (gone: 503, back: 200). Also: serve starting before its
 * target (warning, then relaying), `--require-target`, and `--log-format json`.
 */
import assert from "node:assert/strict";
import http from "node:http";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { runCli, type ServeProcess, startServe } from "./helpers/gate.ts";
import { keygenOk } from "./helpers/keygen_inproc.ts";
import { splitResponses, tlsExchange } from "./helpers/http_raw.ts";
import { freeTempDir, waitFor } from "./helpers/wait.ts";
import { which } from "./helpers/dockerd.ts";
import { bundleCreds as creds } from "./helpers/tls_peers.ts";

/** A unix-socket HTTP target answering `/_ping` like dockerd. */
async function pingTarget(path: string): Promise<http.Server> {
  await rm(path, { force: true });
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { "content-type": "text/plain", "api-version": "1.41" }).end("OK");
  });
  await new Promise<void>((r) => server.listen(path, () => r()));
  return server;
}

/** Sample values by series (`name{labels}`), parsed from the exposition text. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const i = line.lastIndexOf(" ");
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

const PING = "GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n";

async function notAfter(cert: string): Promise<number> {
  const out = await new Deno.Command("openssl", {
    args: ["x509", "-noout", "-enddate", "-in", cert],
  })
    .output();
  const text = new TextDecoder().decode(out.stdout).trim().replace(/^notAfter=/, "");
  return Math.floor(Date.parse(text) / 1000);
}

Deno.test({
  name:
    "serve --metrics: promtool-valid exposition matching the traffic; /healthz follows the target",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const dir = await freeTempDir("dg-met-");
  let gate: ServeProcess | undefined;
  let target: http.Server | undefined;
  try {
    const pki = join(dir, "pki");
    await keygenOk(["--dir", pki]);
    for (const n of ["ci", "gone"]) {
      await keygenOk(["client", n, "--dir", pki]);
    }
    await keygenOk(["revoke", "gone", "--dir", pki]);
    const sock = join(dir, "t.sock");
    target = await pingTarget(sock);
    gate = await startServe([
      "--target",
      `unix://${sock}`,
      "--certs",
      join(pki, "server"),
      "--metrics",
      "tcp://127.0.0.1:0",
    ]);
    const m = await gate.waitForLog(/metrics on (http:\/\/127\.0\.0\.1:\d+)\/metrics/);
    const base = m[1];
    const ci = await creds(pki, "ci");
    let sent = 0;
    for (let i = 0; i < 3; i++) {
      const ex = await tlsExchange(gate.port, ci, PING);
      assert.equal(splitResponses(ex.data)[0]?.status, 200);
      sent += PING.length;
    }
    const revoked = await tlsExchange(gate.port, await creds(pki, "gone"), PING);
    // A revoked client gets the gate's refusal answer, nothing from the daemon.
    const [answer] = splitResponses(revoked.data);
    assert.equal(answer?.status, 403, revoked.data.toString("latin1"));
    assert.match(revoked.data.toString("latin1"), /\r\nDockgate-Refused: [^\r]*revoked/);
    // No client certificate: openssl's client, as an outsider would try.
    await new Deno.Command("openssl", {
      args: [
        "s_client",
        "-connect",
        `127.0.0.1:${gate.port}`,
        "-CAfile",
        join(pki, "ca", "ca.pem"),
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
      signal: AbortSignal.timeout(20_000),
    }).output();
    await gate.waitForLog(/WARN refused .*(certificate|CERTIFICATE)/);

    const scrape = async () => {
      const r = await fetch(`${base}/metrics`);
      assert.equal(r.status, 200);
      assert.match(r.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
      return await r.text();
    };
    const text = await waitFor(async () => {
      const t = await scrape();
      const s = samples(t);
      return s.get('dockgate_connections_open{identity="ci"}') === 0 &&
          (s.get('dockgate_refused_total{reason="tls"}') ?? 0) >= 1
        ? t
        : undefined;
    });
    const s = samples(text);
    assert.equal(s.get('dockgate_connections_total{identity="ci"}'), 3);
    assert.equal(s.get('dockgate_refused_total{reason="revoked"}'), 1);
    assert.equal(s.get('dockgate_refused_total{reason="limit"}'), 0);
    assert.ok(s.get('dockgate_relayed_bytes_total{direction="in"}')! >= sent);
    assert.ok(s.get('dockgate_relayed_bytes_total{direction="out"}')! >= 3 * "OK".length);
    assert.ok(s.get("dockgate_handshake_duration_seconds_count")! >= 4);
    assert.equal(s.get("dockgate_relay_errors_total"), 0);
    assert.equal(s.get("dockgate_last_reload_success"), 1);
    assert.ok(
      [...s.keys()].some((k) => /^dockgate_build_info\{version="[^"]+",runtime="deno"\}$/.test(k)),
    );
    assert.equal(
      s.get('dockgate_certificate_expiry_timestamp_seconds{certificate="server"}'),
      await notAfter(join(pki, "server", "cert.pem")),
    );
    assert.equal(
      s.get('dockgate_certificate_expiry_timestamp_seconds{certificate="ca"}'),
      await notAfter(join(pki, "server", "ca.pem")),
    );
    assert.ok(
      s.get('dockgate_certificate_expiry_timestamp_seconds{certificate="crl"}')! >
        Date.now() / 1000,
    );
    assert.equal(s.get("dockgate_crl_stale"), 0, "the fresh CRL is not stale");
    assert.equal(s.get('dockgate_crl_fetches_total{result="failed"}'), 0);

    // Prometheus's own checker reads the exposition.
    const promtool = which("promtool");
    if (!promtool) throw new Error("promtool is needed (scripts/test.sh installs prometheus)");
    const check = new Deno.Command(promtool, {
      args: ["check", "metrics"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const w = check.stdin.getWriter();
    await w.write(new TextEncoder().encode(text));
    await w.close();
    const out = await check.output();
    const dec = new TextDecoder();
    assert.equal(out.code, 0, `promtool: ${dec.decode(out.stdout)}${dec.decode(out.stderr)}`);

    // /healthz follows the target.
    assert.equal(
      (await fetch(`${base}/healthz`).then(async (r) => [r.status, await r.text()]))[0],
      200,
    );
    await new Promise<void>((r) => target!.close(() => r()));
    target.closeAllConnections();
    target = undefined;
    const down = await waitFor(async () => {
      const r = await fetch(`${base}/healthz`);
      const body = await r.text();
      return r.status === 503 ? body : undefined;
    });
    assert.match(down, /^unhealthy: target unix:\/\/.*t\.sock: /);
    target = await pingTarget(sock);
    await waitFor(async () =>
      (await fetch(`${base}/healthz`).then((r) => r.body?.cancel().then(() => r.status))) === 200
    );
    assert.equal(await fetch(`${base}/nope`).then(async (r) => (await r.text(), r.status)), 404);
  } finally {
    await gate?.stop();
    await new Promise<void>((r) => target ? target.close(() => r()) : r());
    await rm(dir, { recursive: true, force: true });
  }
});

Deno.test({
  name: "serve starts before its target (warning, then relays); --require-target fails at start",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const dir = await freeTempDir("dg-tgt-");
  let gate: ServeProcess | undefined;
  let target: http.Server | undefined;
  try {
    const pki = join(dir, "pki");
    await keygenOk(["--dir", pki]);
    const sock = join(dir, "later.sock");
    const strict = await runCli([
      "serve",
      "--listen",
      "127.0.0.1:0",
      "--target",
      `unix://${sock}`,
      "--certs",
      join(pki, "server"),
      "--require-target",
    ]);
    assert.equal(strict.code, 1);
    assert.match(strict.stderr, /^dockgate: error: .*later\.sock/m);
    gate = await startServe([
      "--target",
      `unix://${sock}`,
      "--certs",
      join(pki, "server"),
      "--metrics",
      "127.0.0.1:0",
      "--log-format",
      "json",
    ]);
    const warn = await gate.waitForLog(/\{[^\n]*"msg":"target not answering yet[^\n]*\}/);
    const line = JSON.parse(warn[0]);
    assert.equal(line.level, "warn");
    assert.match(line.target, /later\.sock$/);
    const base =
      JSON.parse((await gate.waitForLog(/\{[^\n]*"msg":"metrics on [^\n]*\}/))[0]).healthz;
    assert.equal(await fetch(base).then(async (r) => (await r.text(), r.status)), 503);
    target = await pingTarget(sock);
    const ex = await tlsExchange(gate.port, await creds(pki, "default"), PING);
    assert.equal(splitResponses(ex.data)[0]?.status, 200, "relays once the target answers");
    await waitFor(async () =>
      (await fetch(base).then(async (r) => (await r.text(), r.status))) === 200
    );
    // Every line of the log is one JSON object.
    for (const l of gate.log().split("\n").filter((l) => l.startsWith("{"))) JSON.parse(l);
  } finally {
    await gate?.stop();
    await new Promise<void>((r) => target ? target.close(() => r()) : r());
    await rm(dir, { recursive: true, force: true });
  }
});

Deno.test("serve --metrics refuses an address off loopback without --unsafe-metrics", async () => {
  const r = await runCli(["serve", "--metrics", "tcp://0.0.0.0:9323"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /Invalid --metrics "tcp:\/\/0\.0\.0\.0:9323": not a loopback address/);
});
