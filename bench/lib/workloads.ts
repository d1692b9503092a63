/**
 * Workloads 1–4 (bulk, new connections, keep-alive latency, idle memory) against the
 * contenders, with the Node load generator and target in `bench/tools/`.
 *
 * @module
 */

import { join } from "node:path";
import type { Contender, Pki, Running, StartContext } from "./contenders.ts";
import { run, treeCpuSeconds, treeMemoryKiB, withNofile } from "./proc.ts";
import type { Results } from "./results.ts";

/** Sizes of one bench mode (full or quick). */
export interface Sizes {
  /** Runs per figure. */
  runs: number;
  /** Bytes per bulk transfer (each direction). */
  bulkBytes: number;
  /** Concurrency levels for the connection rate. */
  concurrency: number[];
  /** Duration of one connection-rate measurement. */
  connrateMs: number;
  /** Requests per latency measurement. */
  latencyCount: number;
  /** Connection counts at which memory is read. */
  holdSteps: number[];
  /** Runs of the memory workload (a count, not a rate: it varies little; opening 10,000 mTLS
   * connections per contender takes minutes here). */
  memoryRuns: number;
  /** socat forks a process per connection: its memory run stops at this many. */
  socatHoldMax: number;
  /** Size of the image for docker save | load, MiB. */
  imageMiB: number;
  /** Sequential `docker version` runs. */
  versionCount: number;
  /** Enrolments (and as many renewals) per run of workload 9. */
  enrollCount: number;
  /** The hard open-files limit seen (set at start). */
  nofile?: number;
}

/** Shared state of a bench run. */
export interface Bench {
  /** Repository root. */
  root: string;
  /** Deno binary. */
  deno: string;
  /** Node binary. */
  node: string;
  /** Command line prefix of dockgate on Node. */
  nodeDockgate?: string[];
  /** Temp dir of the run. */
  tmp: string;
  /** Sizes. */
  sizes: Sizes;
  /** Samples. */
  results: Results;
  /** Progress output. */
  say(line: string): void;
  /** What failed (the run goes on without that figure). */
  failures: string[];
}

/** Run `fn`; on failure record it in `bench.failures` and go on. */
export async function attempt(
  bench: Bench,
  what: string,
  fn: () => Promise<void>,
): Promise<boolean> {
  try {
    await fn();
    return true;
  } catch (e) {
    const msg = (e as Error).message.split("\n").slice(0, 6).join(" | ").slice(0, 600);
    bench.failures.push(`${what}: ${msg}`);
    bench.say(`  FAILED ${what}: ${msg}`);
    return false;
  }
}

const TOOLS = new URL("../tools/", import.meta.url).pathname;
let dirCounter = 0;

/** A fresh subdirectory of the run's temp dir. */
export async function subdir(bench: Bench, name: string): Promise<string> {
  const dir = join(bench.tmp, `${name}-${++dirCounter}`);
  await Deno.mkdir(dir, { recursive: true });
  return dir;
}

/** Where the load generator connects. */
export type Endpoint = { port: number } | { unix: string };

function endpointArgs(endpoint: Endpoint, pki: Pki): string[] {
  if ("unix" in endpoint) return ["--unix", endpoint.unix];
  const c = pki.clientDir;
  return [
    "--port",
    String(endpoint.port),
    "--ca",
    `${c}/ca.pem`,
    "--cert",
    `${c}/cert.pem`,
    "--key",
    `${c}/key.pem`,
  ];
}

// deno-lint-ignore no-explicit-any
type Json = any;

/** Run the load generator once; returns its last JSON line. */
export async function loadgen(
  bench: Bench,
  mode: string,
  endpoint: Endpoint,
  pki: Pki,
  extra: string[],
): Promise<Json> {
  const r = await run(bench.node, [
    join(TOOLS, "loadgen.mjs"),
    mode,
    ...endpointArgs(endpoint, pki),
    ...extra,
  ], {
    timeoutMs: 600_000,
  });
  const lines = r.stdout.trim().split("\n").filter(Boolean);
  if (r.code !== 0 || !lines.length) {
    throw new Error(`loadgen ${mode} failed (exit ${r.code}): ${r.stderr.slice(-1500)}`);
  }
  return JSON.parse(lines[lines.length - 1]);
}

/** The target process (unix socket + optional TLS sink for the direct baseline). */
export interface Target {
  /** Its unix socket. */
  socket: string;
  /** Port of the direct mTLS sink. */
  tlsPort: number;
  /** Its pid. */
  pid: number;
  /**
   * The same target run on Deno, when started: its TLS sink is the baseline `direct-tls-deno`,
   * the ceiling for anything built on Deno's `node:tls`.
   */
  denoSink?: Target;
  /** Stop it. */
  stop(): Promise<void>;
}

/**
 * Start `bench/tools/target.mjs` with a TLS sink using `pki`'s server certificate. On Node by
 * default; `runtime: "deno"` runs the same file on Deno, whose TLS sink is the ceiling for
 * any relay built on Deno's `node:tls`.
 */
export async function startTarget(
  bench: Bench,
  pki: Pki,
  runtime: "node" | "deno" = "node",
): Promise<Target> {
  const dir = await subdir(bench, `target-${runtime}`);
  const socket = join(dir, "t.sock");
  const s = pki.serverDir;
  const cmd = runtime === "node" ? [bench.node] : [bench.deno, "run", "-A", "--quiet"];
  const child = new Deno.Command("bash", {
    args: withNofile(cmd[0], [
      ...cmd.slice(1),
      join(TOOLS, "target.mjs"),
      "--unix",
      socket,
      "--tls-port",
      "0",
      "--cert",
      `${s}/cert.pem`,
      "--key",
      `${s}/key.pem`,
      "--ca",
      `${s}/ca.pem`,
    ]),
    stdout: "piped",
    stderr: "inherit",
    stdin: "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("target exited before it was ready");
    text += value;
  }
  const ready = JSON.parse(text.split("\n")[0]);
  // Keep draining stdout so the target never blocks on it.
  (async () => {
    while (!(await reader.read()).done) { /* drain */ }
  })();
  return {
    socket,
    tlsPort: ready.tlsPort,
    pid: child.pid,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      await child.status;
    },
  };
}

/** The `direct-tls-deno` baseline, if the target has a Deno sink. */
function denoSinkBaseline(target: Target) {
  return target.denoSink
    ? [{ id: "direct-tls-deno", endpoint: { port: target.denoSink.tlsPort }, pids: [] as number[] }]
    : [];
}

/** Start `c` for `target` with `pki` in a fresh dir. */
export async function startContender(
  bench: Bench,
  c: Contender,
  pki: Pki,
  target: string,
): Promise<Running> {
  const ctx: StartContext = {
    dir: await subdir(bench, c.id),
    pki,
    target,
    root: bench.root,
    deno: bench.deno,
    nodeDockgate: bench.nodeDockgate,
    maxConn: Math.floor(((bench.sizes.nofile ?? 60_000) - 100) / 2),
  };
  return await c.start(ctx);
}

const cpuOfAll = (pids: number[]) => pids.reduce((n, p) => n + treeCpuSeconds(p), 0);

/**
 * Start every contender once, then run `measure` for run 1 of each, run 2 of each, … so slow
 * drifts of a shared machine spread over all contenders; stop them at the end.
 */
async function interleaved(
  bench: Bench,
  contenders: Contender[],
  pki: Pki,
  target: Target,
  measure: (id: string, endpoint: Endpoint, gatePids: number[], runNo: number) => Promise<void>,
  baselines: { id: string; endpoint: Endpoint; pids: number[] }[],
): Promise<void> {
  const running: { c: Contender; r: Running }[] = [];
  try {
    for (const c of contenders) {
      await attempt(bench, `start ${c.id} (${pki.keyType})`, async () => {
        running.push({ c, r: await startContender(bench, c, pki, target.socket) });
      });
    }
    for (let i = 0; i < bench.sizes.runs; i++) {
      for (const b of baselines) {
        await attempt(
          bench,
          `${pki.keyType} run ${i + 1} ${b.id}`,
          () => measure(b.id, b.endpoint, b.pids, i),
        );
      }
      for (const { c, r } of running) {
        await attempt(
          bench,
          `${pki.keyType} run ${i + 1} ${c.id}`,
          () => measure(c.id, r.endpoint, r.pids, i),
        );
      }
    }
  } finally {
    for (const { r } of running) await r.stop();
  }
}

/** Workload 1: bulk throughput both ways into the unix sink. */
export async function bulkWorkload(
  bench: Bench,
  contenders: Contender[],
  pki: Pki,
  target: Target,
) {
  const bytes = bench.sizes.bulkBytes;
  const baselines = [
    { id: "direct-tls", endpoint: { port: target.tlsPort }, pids: [] as number[] },
    ...denoSinkBaseline(target),
  ];
  const res = bench.results;
  await interleaved(bench, contenders, pki, target, async (id, endpoint, pids, runNo) => {
    for (const dir of ["up", "down"]) {
      const gate0 = cpuOfAll(pids);
      const tgt0 = treeCpuSeconds(target.pid);
      const r = await loadgen(bench, "bulk", endpoint, pki, [
        "--dir",
        dir,
        "--bytes",
        String(bytes),
      ]);
      const gateCpu = cpuOfAll(pids) - gate0;
      const tgtCpu = treeCpuSeconds(target.pid) - tgt0;
      res.add("bulk", pki.keyType, id, `${dir}_MBps`, r.mbps);
      res.add("bulk", pki.keyType, id, `${dir}_loadgen_cpu_pct`, (100 * r.cpuMs) / r.wallMs);
      res.add("bulk", pki.keyType, id, `${dir}_target_cpu_pct`, (100 * tgtCpu * 1000) / r.wallMs);
      if (!id.startsWith("direct-")) {
        res.add("bulk", pki.keyType, id, `${dir}_gate_cpu_s_per_GB`, gateCpu / (bytes / 1e9));
      }
      bench.say(
        `  bulk ${pki.keyType} run ${runNo + 1} ${id} ${dir}: ${r.mbps.toFixed(0)} MB/s ` +
          `(loadgen ${((100 * r.cpuMs) / r.wallMs).toFixed(0)}% CPU, gate ${
            gateCpu.toFixed(1)
          } s CPU, ${r.cipher})`,
      );
    }
  }, baselines);
}

/** Workload 2: new mTLS connection + GET /_ping + close, at several concurrencies. */
export async function connrateWorkload(
  bench: Bench,
  contenders: Contender[],
  pki: Pki,
  target: Target,
) {
  const res = bench.results;
  await interleaved(bench, contenders, pki, target, async (id, endpoint, pids, runNo) => {
    for (const c of bench.sizes.concurrency) {
      const gate0 = cpuOfAll(pids);
      const r = await loadgen(bench, "connrate", endpoint, pki, [
        "--concurrency",
        String(c),
        "--duration-ms",
        String(bench.sizes.connrateMs),
      ]);
      const gateCpu = cpuOfAll(pids) - gate0;
      res.add("connrate", pki.keyType, id, `c${c}_per_s`, r.perSec);
      res.add("connrate", pki.keyType, id, `c${c}_errors`, r.errors);
      res.add("connrate", pki.keyType, id, `c${c}_loadgen_cpu_pct`, (100 * r.cpuMs) / r.wallMs);
      if (pids.length) {
        res.add(
          "connrate",
          pki.keyType,
          id,
          `c${c}_gate_cpu_pct`,
          (100 * gateCpu * 1000) / r.wallMs,
        );
      }
      bench.say(
        `  connrate ${pki.keyType} run ${runNo + 1} ${id} c=${c}: ${r.perSec.toFixed(0)}/s ` +
          `(${r.errors} errors${r.errors ? `: ${r.lastError}` : ""}; loadgen ${
            ((100 * r.cpuMs) / r.wallMs).toFixed(0)
          }% CPU)`,
      );
    }
  }, [{ id: "direct-tls", endpoint: { port: target.tlsPort }, pids: [] }]);
}

/**
 * Workload 3: GET /_ping latency on one keep-alive connection, each request paired with one
 * straight to the target's unix socket at the same moment (the baseline for "added").
 */
export async function latencyWorkload(
  bench: Bench,
  contenders: Contender[],
  pki: Pki,
  target: Target,
) {
  const res = bench.results;
  await interleaved(bench, contenders, pki, target, async (id, endpoint, _pids, runNo) => {
    const r = await loadgen(bench, "latency", endpoint, pki, [
      "--count",
      String(bench.sizes.latencyCount),
      "--baseline-unix",
      target.socket,
    ]);
    const k = pki.keyType;
    res.add("latency", k, id, "p50_us", r.p50us);
    res.add("latency", k, id, "p99_us", r.p99us);
    res.add("latency", k, id, "p999_us", r.p999us);
    res.add("latency", k, id, "added_p50_us", r.p50us - r.baseP50us);
    res.add("latency", k, id, "added_p99_us", r.p99us - r.baseP99us);
    res.add("latency", k, id, "added_p999_us", r.p999us - r.baseP999us);
    res.add("latency", k, id, "base_p50_us", r.baseP50us);
    bench.say(
      `  latency ${k} run ${runNo + 1} ${id}: p50 ${r.p50us.toFixed(0)} µs, p99 ${
        r.p99us.toFixed(0)
      } µs, ` +
        `p99.9 ${r.p999us.toFixed(0)} µs (paired direct: ${r.baseP50us.toFixed(0)}/${
          r.baseP99us.toFixed(0)
        }/` +
        `${r.baseP999us.toFixed(0)} µs)`,
    );
  }, [
    { id: "direct-unix", endpoint: { unix: target.socket }, pids: [] },
    { id: "direct-tls", endpoint: { port: target.tlsPort }, pids: [] },
    ...denoSinkBaseline(target),
  ]);
}

/**
 * Workload 4: memory of a fresh gate holding many idle established connections (each served
 * one GET /_ping first). Memory = summed PSS of the gate's process tree; per connection =
 * growth over the idle gate, divided by the count.
 */
export async function memoryWorkload(
  bench: Bench,
  contenders: Contender[],
  pki: Pki,
  target: Target,
) {
  const res = bench.results;
  for (let i = 0; i < bench.sizes.memoryRuns; i++) {
    for (const c of contenders) {
      const steps = c.id === "socat"
        ? bench.sizes.holdSteps.filter((s) => s <= bench.sizes.socatHoldMax)
        : bench.sizes.holdSteps;
      if (!steps.length) continue;
      await attempt(bench, `memory ${pki.keyType} run ${i + 1} ${c.id}`, async () => {
        const r = await startContender(bench, c, pki, target.socket);
        try {
          await holdOnce(bench, c.id, r, pki, steps, i);
        } finally {
          await r.stop();
        }
      });
    }
  }
  void res;
}

async function holdOnce(
  bench: Bench,
  id: string,
  r: Running,
  pki: Pki,
  steps: number[],
  runNo: number,
) {
  const res = bench.results;
  // Warm the gate up with one connection so lazy initialisation is not counted per connection.
  await loadgen(bench, "latency", r.endpoint, pki, ["--count", "10", "--warmup", "0"]);
  const mem = () => r.pids.reduce((n, p) => n + treeMemoryKiB(p).pss, 0);
  const base = mem();
  const child = new Deno.Command("bash", {
    args: withNofile(bench.node, [
      join(TOOLS, "loadgen.mjs"),
      "hold",
      ...endpointArgs(r.endpoint, pki),
      "--steps",
      steps.join(","),
      "--parallel",
      "32",
    ]),
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const writer = child.stdin.getWriter();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  try {
    for (const step of steps) {
      while (!buf.includes("\n")) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`loadgen hold exited early: ${(await stderr).slice(-1500)}`);
        buf += value;
      }
      const nl = buf.indexOf("\n");
      const line = JSON.parse(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
      // Let the gate settle (GC, freed handshake buffers) before reading memory.
      await new Promise((ok) => setTimeout(ok, 1000));
      const kib = mem();
      const procs = r.pids.reduce((n, p) => n + treeMemoryKiB(p).processes, 0);
      res.add("memory", pki.keyType, id, `mem_MiB_at_${step}`, kib / 1024);
      const held = line.held - line.dropped;
      res.add(
        "memory",
        pki.keyType,
        id,
        `kib_per_conn_at_${step}`,
        (kib - base) / Math.max(1, held),
      );
      res.add("memory", pki.keyType, id, `held_at_${step}`, held);
      res.add("memory", pki.keyType, id, `errors_at_${step}`, line.errors);
      bench.say(
        `  memory ${pki.keyType} run ${runNo + 1} ${id}: ${line.held - line.dropped} held ` +
          `(${line.errors} errors) → ${(kib / 1024).toFixed(1)} MiB in ${procs} process(es), ` +
          `${((kib - base) / Math.max(1, held)).toFixed(1)} KiB/conn` +
          (line.gaveUp ? `; gave up after ${line.errors} errors: ${line.lastError}` : ""),
      );
      await writer.write(new TextEncoder().encode("next\n"));
    }
    await writer.close();
  } catch (e) {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
    throw e;
  } finally {
    const status = await child.status;
    if (!status.success) {
      bench.say(`  (loadgen hold exit ${status.code}: ${(await stderr).slice(-500)})`);
    }
  }
}

/**
 * The contenders of workload 6: each gate on its raw relay, and the same gate with a policy
 * (a no-escape role; a full role with `"audit": "requests"`).
 */
export const POLICY_PAIRS: [raw: string, policy: string][] = [
  ["dockgate-deno", "dockgate-deno-policy"],
  ["dockgate-node", "dockgate-node-policy"],
  ["dockgate-deno", "dockgate-deno-full-audit"],
  ["dockgate-node", "dockgate-node-full-audit"],
];

/**
 * The filtering proxies measured in workload 6 beside the pairs (and in no other workload):
 * docker-socket-proxy's rules on HAProxy.
 */
export const POLICY_PEERS: string[] = ["socket-proxy"];

/** Keep-alive connection counts of workload 6's request-rate rows. */
export const POLICY_KEEPALIVE = [1, 8];

/**
 * Workload 6: the policy relay (a no-escape identity: every request parsed and decided)
 * against the raw relay of the same runtime: new connections/s with one
 * `GET /v1.41/containers/json` each, keep-alive latency of the same request, and an upload in
 * `docker load`'s shape (one `POST /images/load` with a Content-Length body streamed through).
 */
export async function policyWorkload(
  bench: Bench,
  contenders: Contender[],
  pki: Pki,
  target: Target,
) {
  const res = bench.results;
  const path = "/v1.41/containers/json";
  const k = pki.keyType;
  await interleaved(bench, contenders, pki, target, async (id, endpoint, pids, runNo) => {
    for (const c of bench.sizes.concurrency.filter((c) => c <= 16)) {
      const r = await loadgen(bench, "connrate", endpoint, pki, [
        "--concurrency",
        String(c),
        "--duration-ms",
        String(bench.sizes.connrateMs),
        "--path",
        path,
      ]);
      res.add("policy", k, id, `c${c}_per_s`, r.perSec);
      res.add("policy", k, id, `c${c}_errors`, r.errors);
      bench.say(`  policy ${k} run ${runNo + 1} ${id} c=${c}: ${r.perSec.toFixed(0)} conns/s`);
    }
    const l = await loadgen(bench, "latency", endpoint, pki, [
      "--count",
      String(bench.sizes.latencyCount),
      "--baseline-unix",
      target.socket,
      "--path",
      path,
    ]);
    for (const c of POLICY_KEEPALIVE) {
      const q = await loadgen(bench, "requests", endpoint, pki, [
        "--concurrency",
        String(c),
        "--duration-ms",
        String(bench.sizes.connrateMs * 2),
        "--path",
        path,
      ]);
      if (q.errors) throw new Error(`${id}: ${q.errors} errors, last: ${q.lastError}`);
      res.add("policy", k, id, `ka_c${c}_req_per_s`, q.perSec);
      bench.say(
        `  policy ${k} run ${runNo + 1} ${id} keep-alive c=${c}: ${q.perSec.toFixed(0)} req/s`,
      );
    }
    res.add("policy", k, id, "p50_us", l.p50us);
    res.add("policy", k, id, "added_p50_us", l.p50us - l.baseP50us);
    res.add("policy", k, id, "added_p99_us", l.p99us - l.baseP99us);
    const gate0 = cpuOfAll(pids);
    const u = await loadgen(bench, "upload", endpoint, pki, [
      "--bytes",
      String(bench.sizes.bulkBytes),
    ]);
    res.add("policy", k, id, "upload_MBps", u.mbps);
    res.add(
      "policy",
      k,
      id,
      "upload_gate_cpu_s_per_GB",
      (cpuOfAll(pids) - gate0) / (u.bytes / 1e9),
    );
    bench.say(
      `  policy ${k} run ${runNo + 1} ${id}: added p50 ${(l.p50us - l.baseP50us).toFixed(0)} µs, ` +
        `upload ${u.mbps.toFixed(0)} MB/s`,
    );
  }, []);
}

/** The isolation rows: each runtime's isolated gate against its plain no-escape gate. */
export const ISOLATION_PAIRS: [plain: string, isolated: string][] = [
  ["dockgate-deno-policy", "dockgate-deno-isolated"],
  ["dockgate-node-policy", "dockgate-node-isolated"],
];

/**
 * Workload 7: owner isolation. `docker inspect`'s request (`GET /v1.41/containers/bench/json`,
 * a ~3 KiB answer) on keep-alive connections, as requests per second, through an isolated
 * role (one owner-check inspect by the gate per request, then the forwarded one) and through
 * a plain no-escape role (the request forwarded as it is).
 */
export async function isolationWorkload(
  bench: Bench,
  contenders: Contender[],
  pki: Pki,
  target: Target,
) {
  const res = bench.results;
  const k = pki.keyType;
  await interleaved(bench, contenders, pki, target, async (id, endpoint, _pids, runNo) => {
    for (const c of [1, 8]) {
      const r = await loadgen(bench, "requests", endpoint, pki, [
        "--concurrency",
        String(c),
        "--duration-ms",
        String(bench.sizes.connrateMs * 2),
        "--path",
        "/v1.41/containers/bench/json",
      ]);
      if (r.errors) throw new Error(`${id}: ${r.errors} errors, last: ${r.lastError}`);
      res.add("isolation", k, id, `c${c}_req_per_s`, r.perSec);
      bench.say(`  isolation ${k} run ${runNo + 1} ${id} c=${c}: ${r.perSec.toFixed(0)} req/s`);
    }
  }, []);
}
