// The benchmark's load generator (run with Node, whose node:tls client is fast enough not to
// be the bottleneck; its own CPU use is reported with every result so that can be checked).
//
// Usage: node loadgen.mjs MODE (--port N [--host H] --ca F --cert F --key F | --unix PATH) ...
//   bulk     --dir up|down --bytes N         one connection, N bytes through the target's sink
//   upload   --bytes N                       one HTTP POST /v1.41/images/load of N bytes
//            (Content-Length, docker load's shape) on one connection; waits for the 200
//   connrate --concurrency C --duration-ms D new mTLS connection + GET /_ping + close, in a loop
//   latency  --count N [--warmup W]          GET /_ping N times on one keep-alive connection
//   hold     --steps 1000,10000 [--parallel P]
//            open connections (each does one GET /_ping and then stays idle); at each step,
//            print {"held":n,...} and wait for a line on stdin before going on; at the end
//            close everything
// Every result is one JSON line on stdout, with cpuMs (user+system of this process) and wallMs.

import fs from "node:fs";
import net from "node:net";
import tls from "node:tls";
import readline from "node:readline";
import { randomFillSync } from "node:crypto";
import process from "node:process";

const mode = process.argv[2];
const args = new Map();
for (let i = 3; i < process.argv.length; i += 2) {
  args.set(process.argv[i].replace(/^--/, ""), process.argv[i + 1]);
}
const num = (k, d) => (args.has(k) ? Number(args.get(k)) : d);

// One secure context for every connection (as the Docker CLI builds one TLS config): the
// client's cost per connection is then the handshake, not parsing PEM files.
const tlsOptions = args.has("ca")
  ? {
    host: args.get("host") ?? "127.0.0.1",
    port: num("port"),
    secureContext: tls.createSecureContext({
      ca: [fs.readFileSync(args.get("ca"))],
      cert: fs.readFileSync(args.get("cert")),
      key: fs.readFileSync(args.get("key")),
    }),
    rejectUnauthorized: true,
  }
  : null;

/** Connect (mTLS or plain unix); resolves once the connection is usable. */
function open() {
  return new Promise((resolve, reject) => {
    const s = tlsOptions ? tls.connect(tlsOptions) : net.connect({ path: args.get("unix") });
    s.once(tlsOptions ? "secureConnect" : "connect", () => {
      s.off("error", reject);
      resolve(s);
    });
    s.once("error", reject);
  });
}

const cpuMs = (since) => {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1000;
};
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
// --path picks the request (default GET /_ping; the policy rows use /v1.41/containers/json,
// a route the policy relay decides like any other).
const PATH = args.get("path") ?? "/_ping";
const PING = Buffer.from(
  `GET ${PATH} HTTP/1.1\r\nHost: docker\r\nUser-Agent: dockgate-bench\r\n\r\n`,
);
const PING_CLOSE = Buffer.from(`GET ${PATH} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n`);

/** Resolves with the text once a whole 200 response with body "OK" has arrived on `s`. */
function readResponse(s) {
  return new Promise((resolve, reject) => {
    let buf = "";
    const onData = (d) => {
      buf += d.toString("latin1");
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const m = /content-length:\s*(\d+)/i.exec(buf.slice(0, end));
      const len = m ? Number(m[1]) : 0;
      if (buf.length < end + 4 + len) return;
      cleanup();
      if (!buf.startsWith("HTTP/1.1 200")) reject(new Error(`bad response: ${buf.slice(0, 40)}`));
      else resolve(buf);
    };
    const onEnd = () => {
      cleanup();
      reject(new Error("connection ended before the response"));
    };
    const cleanup = () => {
      s.off("data", onData);
      s.off("end", onEnd);
      s.off("error", onEnd);
    };
    s.on("data", onData);
    s.once("end", onEnd);
    s.once("error", onEnd);
  });
}

/** Write `total` bytes of `block` (repeated) to `s`, with backpressure. */
function sendBlocks(s, block, total) {
  let sent = 0;
  return new Promise((resolve) => {
    const pump = () => {
      while (sent < total) {
        const n = Math.min(block.length, total - sent);
        sent += n;
        if (!s.write(n === block.length ? block : block.subarray(0, n))) {
          s.once("drain", pump);
          return;
        }
      }
      resolve();
    };
    pump();
  });
}

async function bulk() {
  const dir = args.get("dir");
  const total = num("bytes");
  const s = await open();
  const cipher = tlsOptions ? s.getCipher().standardName ?? s.getCipher().name : "none";
  const protocol = tlsOptions ? s.getProtocol() : "none";
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  if (dir === "up") {
    const block = randomFillSync(Buffer.alloc(1 << 20));
    const answered = new Promise((resolve, reject) => {
      let text = "";
      s.on("data", (d) => (text += d));
      s.on(
        "end",
        () => (text.startsWith("OK")
          ? resolve()
          : reject(new Error(`sink said ${JSON.stringify(text)}`))),
      );
      s.on("error", reject);
    });
    s.write(`UP ${total}\n`);
    await sendBlocks(s, block, total);
    await answered;
    s.end();
  } else {
    let got = 0;
    await new Promise((resolve, reject) => {
      s.on("data", (d) => (got += d.length));
      s.on("end", resolve);
      s.on("error", reject);
      s.write(`DOWN ${total}\n`);
    });
    if (got !== total) throw new Error(`received ${got} of ${total} bytes`);
    s.end();
  }
  const wallMs = performance.now() - t0;
  out({
    mode,
    dir,
    bytes: total,
    wallMs,
    cpuMs: cpuMs(cpu0),
    mbps: total / 1e6 / (wallMs / 1000),
    cipher,
    protocol,
  });
}

async function upload() {
  const total = num("bytes");
  const s = await open();
  const block = randomFillSync(Buffer.alloc(1 << 20));
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const answered = readResponse(s);
  s.write(
    `POST /v1.41/images/load?quiet=1 HTTP/1.1\r\nHost: docker\r\nContent-Type: application/x-tar\r\n` +
      `Content-Length: ${total}\r\n\r\n`,
  );
  await sendBlocks(s, block, total);
  await answered;
  const wallMs = performance.now() - t0;
  s.end();
  out({ mode, bytes: total, wallMs, cpuMs: cpuMs(cpu0), mbps: total / 1e6 / (wallMs / 1000) });
}

async function connrate() {
  const concurrency = num("concurrency", 1);
  const durationMs = num("duration-ms", 2000);
  let done = 0;
  let errors = 0;
  let lastError = "";
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const deadline = t0 + durationMs;
  const one = async () => {
    const s = await open();
    s.write(PING_CLOSE);
    await readResponse(s);
    await new Promise((resolve) => {
      if (s.destroyed) return resolve();
      s.once("close", resolve);
      s.end();
    });
  };
  const worker = async () => {
    while (performance.now() < deadline) {
      try {
        await one();
        done++;
      } catch (e) {
        errors++;
        lastError = e.message;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const wallMs = performance.now() - t0;
  out({
    mode,
    concurrency,
    done,
    errors,
    lastError,
    wallMs,
    cpuMs: cpuMs(cpu0),
    perSec: done / (wallMs / 1000),
  });
}

// Keep-alive requests: --concurrency connections, each sending PATH and reading the answer in
// turn until --duration-ms ends (the isolation rows: `docker inspect`'s request).
async function requests() {
  const concurrency = num("concurrency", 1);
  const durationMs = num("duration-ms", 2000);
  let done = 0;
  let errors = 0;
  let lastError = "";
  const sockets = await Promise.all(Array.from({ length: concurrency }, () => open()));
  for (const s of sockets) s.setNoDelay?.(true);
  // One warm-up request per connection (the gate's own daemon connection opens on the first).
  for (const s of sockets) {
    s.write(PING);
    await readResponse(s);
  }
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const deadline = t0 + durationMs;
  const worker = async (s) => {
    while (performance.now() < deadline) {
      try {
        s.write(PING);
        await readResponse(s);
        done++;
      } catch (e) {
        errors++;
        lastError = e.message;
        return;
      }
    }
  };
  await Promise.all(sockets.map(worker));
  const wallMs = performance.now() - t0;
  for (const s of sockets) s.end();
  out({
    mode,
    concurrency,
    done,
    errors,
    lastError,
    wallMs,
    cpuMs: cpuMs(cpu0),
    perSec: done / (wallMs / 1000),
  });
}

async function latency() {
  const count = num("count", 1000);
  const warmup = num("warmup", Math.min(200, count));
  const s = await open();
  s.setNoDelay?.(true);
  // With --baseline-unix, every request through the gate is paired with one straight to the
  // target's unix socket in the same moment (alternating which goes first), so a noisy
  // machine slows both alike and "added latency" compares like with like.
  const base = args.has("baseline-unix") ? await openUnix(args.get("baseline-unix")) : null;
  const samples = new Float64Array(count);
  const baseSamples = new Float64Array(base ? count : 0);
  const timeOne = async (sock) => {
    const a = performance.now();
    sock.write(PING);
    await readResponse(sock);
    return performance.now() - a;
  };
  for (let i = 0; i < warmup; i++) {
    await timeOne(s);
    if (base) await timeOne(base);
  }
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    if (base && i % 2) {
      baseSamples[i] = await timeOne(base);
      samples[i] = await timeOne(s);
    } else {
      samples[i] = await timeOne(s);
      if (base) baseSamples[i] = await timeOne(base);
    }
  }
  const wallMs = performance.now() - t0;
  s.end();
  base?.end();
  const pct = (arr, p) => {
    const v = Float64Array.from(arr).sort();
    return v[Math.min(v.length - 1, Math.floor((p / 100) * v.length))] * 1000;
  };
  const result = {
    mode,
    count,
    wallMs,
    cpuMs: cpuMs(cpu0),
    p50us: pct(samples, 50),
    p99us: pct(samples, 99),
    p999us: pct(samples, 99.9),
  };
  if (base) {
    Object.assign(result, {
      baseP50us: pct(baseSamples, 50),
      baseP99us: pct(baseSamples, 99),
      baseP999us: pct(baseSamples, 99.9),
    });
  }
  out(result);
}

function openUnix(path) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ path });
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });
}

async function hold() {
  const steps = (args.get("steps") ?? "1000").split(",").map(Number);
  const parallel = num("parallel", 32);
  const held = [];
  let dropped = 0;
  let errors = 0;
  let lastError = "";
  let gaveUp = false;
  const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  for (const step of steps) {
    let next = held.length;
    const worker = async () => {
      while (next < step && !gaveUp) {
        next++;
        try {
          const s = await open();
          s.write(PING);
          await readResponse(s);
          s.on("close", () => dropped++);
          s.on("error", () => {});
          held.push(s);
        } catch (e) {
          errors++;
          lastError = e.message;
          // The gate refuses more: report what it holds instead of retrying forever.
          if (errors > 50 + step / 10) gaveUp = true;
          else next--; // retry this one
        }
      }
    };
    await Promise.all(Array.from({ length: parallel }, worker));
    out({
      mode,
      step,
      held: held.length,
      dropped,
      errors,
      lastError,
      gaveUp,
      wallMs: performance.now() - t0,
      cpuMs: cpuMs(cpu0),
    });
    await lines.next();
  }
  const final = { mode, done: true, dropped, errors };
  for (const s of held) s.destroy();
  out(final);
}

const modes = { bulk, upload, connrate, latency, hold, requests };
if (!modes[mode]) {
  process.stderr.write(`loadgen: unknown mode ${mode}\n`);
  process.exit(2);
}
modes[mode]().then(() => process.exit(0), (e) => {
  process.stderr.write(`loadgen ${mode}: ${e.stack ?? e}\n`);
  process.exit(1);
});
