/**
 * Keeps the benchmark harness (bench/) from rotting: runs `bench/run.ts --quick` on a small
 * subset — dockgate on Deno and on Node, plus socat when it is installed — and checks that
 * every workload produced numbers. The full benchmark is far too long for CI.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { dockerdUnavailable, which } from "./helpers/dockerd.ts";
import { freeTempDir } from "./helpers/wait.ts";
import { DENO, ROOT } from "./helpers/gate.ts";

interface Sample {
  workload: string;
  keyType: string;
  contender: string;
  metric: string;
  value: number;
}

interface BenchOutput {
  info: { skipped: string[]; failures: string[]; quick: boolean };
  samples: Sample[];
}

/** Run the quick bench with `args`; returns its JSON output and Markdown report. */
async function runBench(args: string[]): Promise<{ out: BenchOutput; md: string; log: string }> {
  const dir = await freeTempDir("dg-bench-");
  try {
    const json = join(dir, "results.json");
    const md = join(dir, "RESULTS.md");
    const child = new Deno.Command(DENO, {
      args: [
        "run",
        "-A",
        "--quiet",
        join(ROOT, "bench", "run.ts"),
        "--quick",
        "--no-install",
        "--keys",
        "ecdsa-p256",
        "--hold",
        "50",
        "--out",
        md,
        "--json",
        json,
        ...args,
      ],
      cwd: ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    // A hung harness must fail the test, not the CI job's time limit.
    const timer = setTimeout(() => child.kill("SIGKILL"), 150_000);
    const result = await child.output();
    clearTimeout(timer);
    const dec = new TextDecoder();
    const log = dec.decode(result.stdout) + dec.decode(result.stderr);
    assert.equal(result.code, 0, `bench failed:\n${log.slice(-4000)}`);
    return {
      out: JSON.parse(await Deno.readTextFile(json)),
      md: await Deno.readTextFile(md),
      log,
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The contenders expected to have run: dockgate on Deno and Node, socat if installed. */
function expectedContenders(): string[] {
  return ["dockgate-deno", "dockgate-node", ...(which("socat") ? ["socat"] : [])];
}

function valuesOf(out: BenchOutput, workload: string, contender: string, metric: string): number[] {
  return out.samples.filter((s) =>
    s.workload === workload && s.contender === contender && s.metric === metric
  ).map((s) => s.value);
}

function assertPositive(out: BenchOutput, workload: string, contender: string, metric: string) {
  const v = valuesOf(out, workload, contender, metric);
  assert.ok(v.length > 0, `no ${workload}/${metric} for ${contender}`);
  for (const x of v) {
    assert.ok(Number.isFinite(x) && x > 0, `${workload}/${metric} for ${contender} = ${x}`);
  }
}

Deno.test("bench --quick: bulk, new connections, latency and memory produce numbers for every contender", async () => {
  const contenders = expectedContenders();
  const { out, md, log } = await runBench([
    "--workloads",
    "bulk,connrate,latency,memory",
    "--contenders",
    contenders.join(","),
  ]);
  assert.deepEqual(out.info.skipped, [], `contenders were skipped:\n${log.slice(-2000)}`);
  assert.deepEqual(out.info.failures, [], `measurements failed:\n${log.slice(-2000)}`);
  for (const c of [...contenders, "direct-tls"]) {
    assertPositive(out, "bulk", c, "up_MBps");
    assertPositive(out, "bulk", c, "down_MBps");
    assertPositive(out, "bulk", c, "up_loadgen_cpu_pct");
    for (const n of [1, 16, 64]) {
      assertPositive(out, "connrate", c, `c${n}_per_s`);
      assert.deepEqual(
        valuesOf(out, "connrate", c, `c${n}_errors`),
        [0],
        `${c} c=${n}: failed connections`,
      );
    }
    assertPositive(out, "latency", c, "p50_us");
    assertPositive(out, "latency", c, "p999_us");
    assert.equal(valuesOf(out, "latency", c, "added_p50_us").length, 1, `${c}: no added latency`);
  }
  // The Deno node:tls sink: the ceiling of anything on Deno's node:tls.
  assertPositive(out, "bulk", "direct-tls-deno", "up_MBps");
  assertPositive(out, "bulk", "direct-tls-deno", "down_MBps");
  assertPositive(out, "latency", "direct-tls-deno", "p50_us");
  assert.ok(md.includes("Deno node:tls sink (no gate)"), "report lacks the Deno sink baseline");
  for (const c of contenders) {
    assertPositive(out, "bulk", c, "up_gate_cpu_s_per_GB");
    assert.deepEqual(
      valuesOf(out, "memory", c, "held_at_50"),
      [50],
      `${c}: not every connection held`,
    );
    assert.deepEqual(valuesOf(out, "memory", c, "errors_at_50"), [0]);
    assertPositive(out, "memory", c, "mem_MiB_at_50");
  }
  for (
    const heading of [
      "## 1. Bulk",
      "## 2. New connections",
      "## 3. Keep-alive",
      "## 4. Memory",
      "## Targets",
    ]
  ) {
    assert.ok(md.includes(heading), `report lacks "${heading}"`);
  }
  assert.match(md, /^Machine: nproc=\d+, .+ GiB RAM, /m);
});

Deno.test({
  name: "bench --quick: real Docker through the gates produces numbers",
  ignore: dockerdUnavailable(),
  async fn() {
    const contenders = expectedContenders();
    const { out, md } = await runBench([
      "--workloads",
      "docker",
      "--contenders",
      contenders.join(","),
    ]);
    assert.deepEqual(out.info.failures, []);
    for (const c of ["direct-unix", ...contenders]) {
      assertPositive(out, "docker", c, "version_ms");
      assertPositive(out, "docker", c, "ps_ms");
      assertPositive(out, "docker", c, "saveload_s");
    }
    if (which("sshd") && which("ssh")) {
      assertPositive(out, "docker", "ssh", "version_ms");
      assertPositive(out, "docker", "ssh", "ps_ms");
      assert.match(
        md,
        /`docker ps -a` through dockgate ≥5× faster than over SSH .*no gate at all: \d/,
      );
    }
    assert.ok(md.includes("## 5. Real Docker"), "report lacks the Docker section");
  },
});

Deno.test("bench --quick: the policy relay rows produce numbers next to the raw relay", async () => {
  const contenders = [
    "dockgate-deno",
    "dockgate-deno-policy",
    "dockgate-node",
    "dockgate-node-policy",
    // docker-socket-proxy's rules on HAProxy, the filtering proxy workload 6 compares with.
    ...(which("haproxy") ? ["socket-proxy"] : []),
  ];
  const { out, md, log } = await runBench([
    "--workloads",
    "policy",
    "--contenders",
    contenders.join(","),
  ]);
  assert.deepEqual(out.info.failures, [], `measurements failed:\n${log.slice(-2000)}`);
  for (const c of contenders) {
    for (const n of [1, 16]) {
      assertPositive(out, "policy", c, `c${n}_per_s`);
      assert.deepEqual(valuesOf(out, "policy", c, `c${n}_errors`), [0], `${c} c=${n}: errors`);
    }
    assertPositive(out, "policy", c, "p50_us");
    assertPositive(out, "policy", c, "upload_MBps");
    assertPositive(out, "policy", c, "ka_c1_req_per_s");
    assertPositive(out, "policy", c, "ka_c8_req_per_s");
    // `docker ps` with the real CLI needs root and dockerd; the bench says when it skipped it.
    if (!out.info.skipped.some((s) => s.includes("docker ps"))) {
      assertPositive(out, "policy", c, "docker_ps_ms");
    }
  }
  assert.ok(md.includes("## 6. Policy relay"), "report lacks the policy section");
  if (contenders.includes("socket-proxy")) {
    assert.match(
      md,
      /no-escape keep-alive `GET \/containers\/json` req\/s c=1 ≥1\.0× docker-socket-proxy's \| dockgate no-escape \(Deno\)/,
    );
  }
  assert.match(md, /policy relay added p50 ≤1\.5× the raw relay's \| dockgate no-escape \(Deno\)/);
});

Deno.test("bench --quick: the isolation rows produce numbers next to the no-escape role", async () => {
  const contenders = [
    "dockgate-deno-policy",
    "dockgate-deno-isolated",
    "dockgate-node-policy",
    "dockgate-node-isolated",
  ];
  const { out, md, log } = await runBench([
    "--workloads",
    "isolation",
    "--contenders",
    contenders.join(","),
  ]);
  assert.deepEqual(out.info.failures, [], `measurements failed:\n${log.slice(-2000)}`);
  for (const c of contenders) {
    for (const n of [1, 8]) assertPositive(out, "isolation", c, `c${n}_req_per_s`);
  }
  assert.ok(md.includes("## 7. Owner isolation"), "report lacks the isolation section");
  assert.match(
    md,
    /isolated inspect req\/s c=8 ≥0\.5× the no-escape role's \| dockgate isolated \(Node\)/,
  );
});

Deno.test("bench --quick: enrolment and renewal (workload 9) produce numbers on Deno and Node", async () => {
  // 12 enrolments and 12 renewals per runtime, and the API port's handshakes with and without
  // --enroll: ~12 s.
  const contenders = ["dockgate-deno", "dockgate-node"];
  const { out, md, log } = await runBench([
    "--workloads",
    "enroll",
    "--contenders",
    contenders.join(","),
  ]);
  assert.deepEqual(out.info.failures, [], `measurements failed:\n${log.slice(-2000)}`);
  for (const c of contenders) {
    for (
      const m of [
        "enroll_per_s",
        "renew_per_s",
        "enroll_gate_cpu_ms",
        "renew_gate_cpu_ms",
        "handshake_c16_per_s",
        "handshake_c16_per_s_enroll",
      ]
    ) assertPositive(out, "enroll", c, m);
  }
  assert.ok(md.includes("## 9. Enrolment and renewal"), "report lacks the enrolment section");
});
