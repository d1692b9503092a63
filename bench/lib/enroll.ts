/**
 * Workload 9: enrolment and renewal (`serve --enroll`), dockgate on Deno and on Node.
 *
 * - Enrolments/s and renewals/s: N join tokens (made in the PKI beforehand, as
 *   `keygen token` makes them) redeemed with a CSR over TLS by `tools/enroll_load.mjs`, then
 *   each enrolled certificate renewed over mTLS; the gate pinned to one core
 *   (`taskset -c 0`), the load generator to the other. Besides the rates, the gate's CPU
 *   seconds per operation (from `/proc`), which contention on a shared machine moves less.
 * - Handshakes/s on the API port (full mTLS handshake + `GET /_ping` + close, c=16) of the
 *   same gate started with `--enroll` against without, both pinned, runs interleaved.
 *
 * @module
 */

import { join } from "node:path";
import type { Contender, Pki, StartContext } from "./contenders.ts";
import { freePort, run, runOk, startProc, treeCpuSeconds, waitForLog } from "./proc.ts";
import { type Bench, loadgen, subdir, type Target } from "./workloads.ts";
import { x509 } from "../../src/pki/x509.ts";
import { exportKeyPem } from "../../src/pki/pem.ts";
import { createJoinToken } from "../../src/ca/tokens.ts";

const TOOLS = new URL("../tools/", import.meta.url).pathname;
/** The intermediate that signs enrolled clients. */
const ISSUER = "bench-enroll";

/** A copy of `pki` with an enrolment intermediate, a client key and its CSR. */
async function enrollPki(bench: Bench, pki: Pki) {
  const dir = await subdir(bench, "enroll");
  const p = join(dir, "pki");
  await runOk("cp", ["-a", join(pki.serverDir, ".."), p]);
  await runOk(bench.deno, [
    "run",
    "-A",
    "--quiet",
    join(bench.root, "cli.ts"),
    "keygen",
    "intermediate",
    ISSUER,
    "--dir",
    p,
  ]);
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const keys = await crypto.subtle.generateKey(alg, true, ["sign", "verify"]);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: "CN=bench",
    keys,
    signingAlgorithm: alg,
  });
  const csrFile = join(dir, "csr.pem");
  const keyFile = join(dir, "key.pem");
  await Deno.writeTextFile(csrFile, csr.toString("pem"));
  await Deno.writeTextFile(keyFile, await exportKeyPem(keys.privateKey), { mode: 0o600 });
  return { dir, pkiDir: p, serverDir: join(p, "server"), csrFile, keyFile };
}

/** The gate's command line (the one `contenders.ts` runs: `deno run … cli.ts` or Node's). */
function gateCmd(bench: Bench, c: Contender): string[] {
  return c.id === "dockgate-node"
    ? bench.nodeDockgate!
    : [bench.deno, "run", "-A", "--quiet", join(bench.root, "cli.ts")];
}

/** A gate pinned to core 0, with or without the enrolment port. */
async function startPinned(
  bench: Bench,
  c: Contender,
  serverDir: string,
  target: string,
  enroll: boolean,
) {
  const ctx: Pick<StartContext, "dir"> = { dir: await subdir(bench, `${c.id}-enroll`) };
  const port = freePort();
  const cmd = gateCmd(bench, c);
  const proc = startProc("taskset", [
    "-c",
    "0",
    ...cmd,
    "serve",
    "--listen",
    `127.0.0.1:${port}`,
    "--target",
    `unix://${target}`,
    "--certs",
    serverDir,
    "--max-handshakes-per-address",
    "1000",
    "--drain-timeout",
    "1s",
    ...(enroll ? ["--enroll", "127.0.0.1:0", "--enroll-issuer", ISSUER] : []),
  ], join(ctx.dir, "log"));
  await waitForLog(proc, /INFO listening on tcp:\/\//, `${c.id} serve`);
  const enrollPort = enroll
    ? Number((await waitForLog(proc, /enrolment port on tcp:\/\/127\.0\.0\.1:(\d+)/, c.id))[1])
    : 0;
  return { proc, port, enrollPort };
}

/** One phase of the load generator, pinned to core 1; its result line. */
async function enrollLoad(bench: Bench, mode: string, args: string[]) {
  const r = await run("taskset", [
    "-c",
    "1",
    bench.node,
    join(TOOLS, "enroll_load.mjs"),
    mode,
    ...args,
  ], {
    timeoutMs: 600_000,
  });
  const last = r.stdout.trim().split("\n").filter(Boolean).pop();
  if (r.code !== 0 || !last) {
    throw new Error(`enroll_load ${mode} failed (exit ${r.code}): ${r.stderr.slice(-1500)}`);
  }
  const out = JSON.parse(last);
  if (out.errors) {
    throw new Error(`enroll_load ${mode}: ${out.errors} errors, last: ${out.lastError}`);
  }
  return out as { ops: number; perSec: number; wallMs: number; cpuMs: number };
}

/** Workload 9: see the module doc. */
export async function enrollWorkload(
  bench: Bench,
  contenders: Contender[],
  pki: Pki,
  target: Target,
) {
  const res = bench.results;
  const k = pki.keyType;
  const e = await enrollPki(bench, pki);
  const n = bench.sizes.enrollCount;
  let base = 10;
  for (let i = 0; i < bench.sizes.runs; i++) {
    for (const c of contenders) {
      const gate = await startPinned(bench, c, e.serverDir, target.socket, true);
      try {
        const tokens: string[] = [];
        for (let t = 0; t < n; t++) {
          tokens.push((await createJoinToken(`b${i}-${t}`, { dir: e.pkiDir })).token);
        }
        const tokenFile = join(e.dir, "tokens.txt");
        const certFile = join(e.dir, "certs.txt");
        await Deno.writeTextFile(tokenFile, tokens.join("\n") + "\n");
        const common = [
          "--port",
          String(gate.enrollPort),
          "--ca",
          join(e.pkiDir, "ca", "ca.pem"),
          "--csr",
          e.csrFile,
          "--concurrency",
          "8",
        ];
        const cpu0 = treeCpuSeconds(gate.proc.pid);
        const en = await enrollLoad(bench, "enroll", [
          ...common,
          "--tokens",
          tokenFile,
          "--out",
          certFile,
          "--addr-base",
          String(base++),
        ]);
        const cpu1 = treeCpuSeconds(gate.proc.pid);
        const re = await enrollLoad(bench, "renew", [
          ...common,
          "--certs",
          certFile,
          "--key",
          e.keyFile,
          "--addr-base",
          String(base++),
        ]);
        const cpu2 = treeCpuSeconds(gate.proc.pid);
        res.add("enroll", k, c.id, "enroll_per_s", en.perSec);
        res.add("enroll", k, c.id, "renew_per_s", re.perSec);
        res.add("enroll", k, c.id, "enroll_gate_cpu_ms", ((cpu1 - cpu0) * 1000) / en.ops);
        res.add("enroll", k, c.id, "renew_gate_cpu_ms", ((cpu2 - cpu1) * 1000) / re.ops);
        bench.say(
          `  enroll ${k} run ${i + 1} ${c.id}: ${en.perSec.toFixed(1)} enrolments/s ` +
            `(${(((cpu1 - cpu0) * 1000) / en.ops).toFixed(1)} ms gate CPU each), ` +
            `${re.perSec.toFixed(1)} renewals/s (${
              (((cpu2 - cpu1) * 1000) / re.ops).toFixed(1)
            } ms each)`,
        );
      } finally {
        await gate.proc.stop();
      }
      await handshakePair(bench, c, e.serverDir, pki, target, i);
    }
  }
}

/** New connections/s on the API port of the same gate without and with `--enroll`. */
async function handshakePair(
  bench: Bench,
  c: Contender,
  serverDir: string,
  pki: Pki,
  target: Target,
  runNo: number,
) {
  const k = pki.keyType;
  const client: Pki = { ...pki, serverDir, clientDir: join(serverDir, "..", "clients", "default") };
  const rates: Record<string, number> = {};
  // Alternating which goes first, so a drift of the machine does not favour one.
  for (const enroll of runNo % 2 ? [true, false] : [false, true]) {
    const gate = await startPinned(bench, c, serverDir, target.socket, enroll);
    try {
      // Warm up (JIT, the certificate cache) before the measured run.
      await loadgen(bench, "connrate", { port: gate.port }, client, [
        "--concurrency",
        "16",
        "--duration-ms",
        "300",
      ]);
      const r = await loadgen(bench, "connrate", { port: gate.port }, client, [
        "--concurrency",
        "16",
        "--duration-ms",
        String(bench.sizes.connrateMs * 2),
      ]);
      if (r.errors) throw new Error(`${c.id}: ${r.errors} errors, last: ${r.lastError}`);
      const m = enroll ? "handshake_c16_per_s_enroll" : "handshake_c16_per_s";
      rates[m] = r.perSec;
      bench.results.add("enroll", k, c.id, m, r.perSec);
    } finally {
      await gate.proc.stop();
    }
  }
  bench.say(
    `  enroll ${k} run ${runNo + 1} ${c.id}: API port c=16 ${
      rates.handshake_c16_per_s.toFixed(0)
    }/s without --enroll, ${rates.handshake_c16_per_s_enroll.toFixed(0)}/s with`,
  );
}
