// The load generator of workload 9 (enrolment and renewal), on Node like loadgen.mjs, so the
// client is not the bottleneck; its own CPU use is in its result line.
//
// Usage: node enroll_load.mjs MODE --port N --ca ROOT.pem --csr CSR.pem --concurrency C ...
//   enroll --tokens FILE --out FILE   redeem every token of FILE (one a line) with the CSR;
//                                     the certificates (leaf + chain) go to --out, one JSON
//                                     string a line
//   renew  --certs FILE --key F       renew each certificate of FILE over mTLS (key F) with the
//                                     same CSR
// Every request comes from an address of its own (127.B.x.y, B = --addr-base): the gate allows
// 20 requests a minute per address, and 4 connections at once, which a fleet spread over many
// machines never meets; the bench measures the signing, not that limit.
// The result is one JSON line: {"ops","errors","perSec","wallMs","cpuMs","lastError"}.

import fs from "node:fs";
import tls from "node:tls";
import process from "node:process";

const mode = process.argv[2];
const args = new Map();
for (let i = 3; i < process.argv.length; i += 2) {
  args.set(process.argv[i].replace(/^--/, ""), process.argv[i + 1]);
}
const num = (k, d) => (args.has(k) ? Number(args.get(k)) : d);
const lines = (f) => fs.readFileSync(f, "utf8").split("\n").filter(Boolean);

const port = num("port");
const base = num("addr-base", 10);
const ca = fs.readFileSync(args.get("ca"));
const csr = fs.readFileSync(args.get("csr"), "utf8");
const concurrency = num("concurrency", 8);

/** The source address of request `i`: unique per request within one run. */
const addressOf = (i) => `127.${base}.${Math.floor(i / 250)}.${(i % 250) + 1}`;

/** One exchange: connect, send the line, read the answer line. */
function exchange(i, line, client) {
  return new Promise((resolve, reject) => {
    const s = tls.connect({
      host: "127.0.0.1",
      port,
      localAddress: addressOf(i),
      // The gate presents its certificate and the root; `dockgate join` pins the root's key,
      // the bench trusts the root (same cost class, and not the gate's).
      ca,
      ...client,
    });
    let text = "";
    s.setEncoding("utf8");
    s.on("data", (d) => (text += d));
    s.once("secureConnect", () => s.write(line));
    s.once("error", reject);
    s.once("close", () => {
      const nl = text.indexOf("\n");
      if (nl < 0) return reject(new Error(`no answer (${text.length} bytes)`));
      try {
        resolve(JSON.parse(text.slice(0, nl)));
      } catch (e) {
        reject(e);
      }
    });
  });
}

async function main() {
  const jobs = mode === "enroll"
    ? lines(args.get("tokens")).map((token) => ({ line: { op: "enroll", token, csr } }))
    : lines(args.get("certs")).map((c) => ({
      line: { op: "renew", csr },
      client: { cert: JSON.parse(c), key: fs.readFileSync(args.get("key")) },
    }));
  if (mode !== "enroll" && mode !== "renew") throw new Error(`unknown mode ${mode}`);
  const certs = [];
  let errors = 0;
  let lastError = "";
  let next = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const worker = async () => {
    while (next < jobs.length) {
      const i = next++;
      try {
        const a = await exchange(i, JSON.stringify(jobs[i].line) + "\n", jobs[i].client);
        if (!a.ok) throw new Error(a.error);
        certs.push(a.cert);
      } catch (e) {
        errors++;
        lastError = String(e?.message ?? e);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const wallMs = performance.now() - t0;
  const u = process.cpuUsage(cpu0);
  if (args.has("out")) {
    fs.writeFileSync(args.get("out"), certs.map((c) => JSON.stringify(c)).join("\n") + "\n");
  }
  console.log(JSON.stringify({
    ops: certs.length,
    errors,
    lastError,
    perSec: (certs.length * 1000) / wallMs,
    wallMs,
    cpuMs: (u.user + u.system) / 1000,
  }));
}

await main();
