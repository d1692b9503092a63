/**
 * Soak check: does `dockgate serve` give memory back after a flood of failing handshakes?
 * Not a timed test and not part of CI (it takes minutes): run it by hand, on each runtime.
 *
 *   deno run -A bench/soak_handshakes.ts [--runtime deno|node] [--failures 50000]
 *     [--concurrency 32] [--idle-seconds 30] [--kind mixed|garbage|nocert|good] [--bare]
 *
 * `--bare` floods `tools/bare_tls_server.mjs` instead (a node:tls server with the gate's TLS
 * settings and nothing else) on the same runtime: whatever it also shows is the runtime's.
 *
 * It starts serve on a fresh PKI in front of an echo target, measures the gate's RSS
 * (/proc/PID/status) after warm-up, floods it with failing handshakes (half TLS clients
 * without a certificate, half garbage bytes), checks that a good client is still served,
 * then idles and measures again. Prints one JSON line and a verdict: the idle RSS must come
 * back within 1.5x the baseline plus 32 MiB (the allocators keep some arenas), and a growth
 * that keeps climbing with the number of failures is a leak.
 *
 * @module
 */

import net from "node:net";
import tls from "node:tls";
import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { clientBundlePaths, pkiLayout } from "../src/ca/layout.ts";
import { initPki } from "../src/ca/keygen.ts";
import { cliCommand, type Runtime } from "../tests/helpers/gate.ts";

const { values } = parseArgs({
  options: {
    runtime: { type: "string", default: "deno" },
    failures: { type: "string", default: "50000" },
    concurrency: { type: "string", default: "32" },
    "idle-seconds": { type: "string", default: "30" },
    kind: { type: "string", default: "mixed" },
    bare: { type: "boolean", default: false },
  },
});
const kind = values.kind as "mixed" | "garbage" | "nocert" | "good";
const runtime = values.runtime as Runtime;
const failures = Number(values.failures);
const concurrency = Number(values.concurrency);
const idleSeconds = Number(values["idle-seconds"]);

const dir = await Deno.makeTempDir({ prefix: "dg-soak-" });
const pki = join(dir, "pki");
await initPki({ dir: pki });
const target = net.createServer((s) => {
  s.on("data", (d) => s.write(d));
  s.on("error", () => {});
});
const sock = join(dir, "target.sock");
await new Promise<void>((r) => target.listen(sock, () => r()));

const bare = join(import.meta.dirname!, "tools", "bare_tls_server.mjs");
const bareArgs = [bare, pkiLayout(pki).server.dir];
const [cmd, args] = values.bare
  ? (runtime === "node" ? ["node", bareArgs] : [Deno.execPath(), ["run", "-A", ...bareArgs]])
  : await cliCommand(runtime, [
    "serve",
    "--listen",
    "127.0.0.1:0",
    "--certs",
    pkiLayout(pki).server.dir,
    "--target",
    `unix://${sock}`,
    // The flood comes from one address: lift the per-address cap so it is all handshakes.
    "--max-handshakes-per-address",
    "100000",
    "--max-handshakes",
    "100000",
  ]);
const child = new Deno.Command(cmd, { args, stdin: "null", stdout: "null", stderr: "piped" })
  .spawn();
// The port from the log's "listening on" line; the rest of the log is read and dropped.
const port = await listeningPort(child.stderr);
const bundle = clientBundlePaths(pki, "default");
const good = {
  ca: await readFile(bundle.ca, "utf8"),
  cert: await readFile(bundle.cert, "utf8"),
  key: await readFile(bundle.key, "utf8"),
};

const rss = async () => {
  const status = await readFile(`/proc/${child.pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) / 1024;
};

for (let i = 0; i < 20; i++) await goodRoundTrip();
await sleep(2000);
const baseline = await rss();
let peak = baseline;
const sampler = setInterval(async () => (peak = Math.max(peak, await rss())), 200);
const t0 = Date.now();
let done = 0;
/** Flood clients that the gate had not closed after 2 s (cut by the client). */
const slow = { noCert: 0, garbage: 0 };
const checkpoints: { failures: number; rssMiB: number }[] = [];
await Promise.all(Array.from({ length: concurrency }, async (_, w) => {
  for (let i = w; i < failures; i += concurrency) {
    const k = kind === "mixed" ? (i % 2 ? "nocert" : "garbage") : kind;
    await (k === "good" ? goodRoundTrip() : k === "nocert" ? noCertClient() : garbageClient());
    if (++done % Math.max(1, Math.floor(failures / 5)) === 0) {
      checkpoints.push({ failures: done, rssMiB: round(await rss()) });
    }
  }
}));
const floodSeconds = (Date.now() - t0) / 1000;
const afterFlood = await rss();
await goodRoundTrip();
await sleep(idleSeconds * 1000);
clearInterval(sampler);
const idle = await rss();
const limit = baseline * 1.5 + 32;
const result = {
  runtime,
  server: values.bare ? "bare node:tls" : "dockgate serve",
  kind,
  failures,
  floodSeconds: round(floodSeconds),
  baselineMiB: round(baseline),
  peakMiB: round(peak),
  afterFloodMiB: round(afterFlood),
  idleMiB: round(idle),
  checkpoints,
  slowClients: slow,
  limitMiB: round(limit),
  ok: idle <= limit,
};
console.log(JSON.stringify(result));
console.log(
  result.ok ? "OK: RSS came back near the baseline" : "NOT OK: RSS stayed up after the flood",
);
child.kill("SIGTERM");
await child.status;
target.close();
await rm(dir, { recursive: true, force: true });
Deno.exit(result.ok ? 0 : 1);

function round(n: number) {
  return Math.round(n * 10) / 10;
}

function sleep(ms: number) {
  return new Promise((r) => setTimeout(r, ms));
}

async function listeningPort(log: ReadableStream<Uint8Array>): Promise<number> {
  const reader = log.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (true) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`serve exited before listening:\n${text}`);
    text += value;
    const m = /listening on tcp:\/\/127\.0\.0\.1:(\d+)/.exec(text);
    if (m) {
      (async () => {
        while (!(await reader.read()).done) { /* drop */ }
      })();
      return Number(m[1]);
    }
  }
}

function goodRoundTrip(): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: "127.0.0.1", port, servername: "localhost", ...good });
    s.on("secureConnect", () => s.write("ping\n"));
    s.on("data", () => s.end());
    s.on("error", reject);
    s.on("close", () => resolve());
  });
}

function noCertClient(): Promise<void> {
  return new Promise((resolve) => {
    const s = tls.connect({ host: "127.0.0.1", port, servername: "localhost", ca: good.ca });
    // End at once: Deno's TLS client does not always notice a Node gate's refusal alert.
    s.on("secureConnect", () => s.end("x"));
    s.setTimeout(2000, () => (slow.noCert++, s.destroy()));
    s.on("error", () => {});
    s.on("close", () => resolve());
  });
}

function garbageClient(): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect({ host: "127.0.0.1", port });
    s.on("connect", () => s.end("\x16\x03\x01\x00\x05garbage-that-is-not-tls\r\n"));
    s.setTimeout(2000, () => (slow.garbage++, s.destroy()));
    s.on("error", () => {});
    s.on("close", () => resolve());
  });
}
