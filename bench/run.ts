/**
 * dockgate's benchmark against its peers (socat, stunnel4, HAProxy, Docker over SSH), on
 * loopback, all in the same role with the same certificates. See bench/README.md.
 *
 *   deno task bench            full run (~20 min), writes bench/RESULTS.md
 *   deno task bench --quick    tiny smoke run, writes bench/out/RESULTS-quick.md
 *
 * Options: --quick, --runs N, --workloads bulk,connrate,latency,memory,docker,policy,isolation,chains,
 * enroll,
 * --contenders dockgate-deno,dockgate-node,dockgate-deno-policy,dockgate-node-policy,
 * dockgate-deno-full-audit,dockgate-node-full-audit,
 * dockgate-deno-isolated,dockgate-node-isolated,tunnel-deno,socat,stunnel,haproxy,
 * --keys ecdsa-p256,rsa-2048, --out FILE, --json FILE, --no-install, --keep, and size overrides
 * --bulk-mib N, --hold N,N (connection counts for the memory workload); --render FILE.json writes
 * the report again from saved results without measuring.
 *
 * @module
 */

import { nodeBundleArgs } from "../scripts/lib/build_common.ts";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { ALL_CONTENDERS, type Contender, type Pki } from "./lib/contenders.ts";
import { dockerMissing, dockerWorkload, policyDockerPs } from "./lib/docker.ts";
import { findExe, run, runOk } from "./lib/proc.ts";
import { Report } from "./lib/report.ts";
import { Results } from "./lib/results.ts";
import {
  attempt,
  type Bench,
  bulkWorkload,
  connrateWorkload,
  ISOLATION_PAIRS,
  isolationWorkload,
  latencyWorkload,
  memoryWorkload,
  POLICY_PAIRS,
  POLICY_PEERS,
  policyWorkload,
  type Sizes,
  startTarget,
} from "./lib/workloads.ts";
import { chainsWorkload } from "./lib/chains.ts";
import { enrollWorkload } from "./lib/enroll.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const WORKLOADS = [
  "bulk",
  "connrate",
  "latency",
  "memory",
  "docker",
  "policy",
  "isolation",
  "chains",
  "enroll",
];
/**
 * Which workloads run with each certificate type. The certificate type only matters for
 * handshakes, so the RSA run is the connection-rate workload.
 */
const KEY_WORKLOADS: Record<string, string[]> = {
  "ecdsa-p256": WORKLOADS,
  "rsa-2048": ["connrate"],
};

const FULL: Sizes = {
  runs: 3,
  bulkBytes: 2 * 1024 ** 3,
  concurrency: [1, 16, 64],
  connrateMs: 1500,
  latencyCount: 20000,
  holdSteps: [1000, 10_000],
  memoryRuns: 1,
  socatHoldMax: 1000,
  imageMiB: 200,
  versionCount: 100,
  enrollCount: 300,
};
const QUICK: Sizes = {
  runs: 1,
  bulkBytes: 32 * 1024 ** 2,
  concurrency: [1, 16, 64],
  connrateMs: 400,
  latencyCount: 300,
  holdSteps: [100],
  memoryRuns: 1,
  socatHoldMax: 200,
  imageMiB: 8,
  versionCount: 5,
  enrollCount: 12,
};

/** A bad command line: printed as one line, exit 2. */
class UsageError extends Error {}

function parseArgs(argv: string[]) {
  const o = {
    quick: false,
    runs: undefined as number | undefined,
    bulkMiB: undefined as number | undefined,
    hold: undefined as number[] | undefined,
    render: undefined as string | undefined,
    workloads: WORKLOADS,
    contenders: ALL_CONTENDERS.map((c) => c.id),
    keys: Object.keys(KEY_WORKLOADS),
    out: undefined as string | undefined,
    json: undefined as string | undefined,
    install: true,
    keep: false,
  };
  const list = (v: string | undefined) => (v ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split("=", 2);
    const val = () => inline ?? argv[++i];
    switch (flag) {
      case "--quick":
        o.quick = true;
        break;
      case "--bulk-mib":
        o.bulkMiB = Number(val());
        break;
      case "--render":
        o.render = val();
        break;
      case "--hold":
        o.hold = list(val()).map(Number);
        break;
      case "--runs":
        o.runs = Number(val());
        break;
      case "--workloads":
        o.workloads = list(val());
        break;
      case "--contenders":
        o.contenders = list(val());
        break;
      case "--keys":
        o.keys = list(val());
        break;
      case "--out":
        o.out = val();
        break;
      case "--json":
        o.json = val();
        break;
      case "--no-install":
        o.install = false;
        break;
      case "--keep":
        o.keep = true;
        break;
      default:
        throw new UsageError(`bench: unknown option ${argv[i]}`);
    }
  }
  for (const w of o.workloads) {
    if (!WORKLOADS.includes(w)) throw new UsageError(`bench: unknown workload ${w}`);
  }
  for (const c of o.contenders) {
    if (!ALL_CONTENDERS.some((x) => x.id === c)) {
      throw new UsageError(`bench: unknown contender ${c}`);
    }
  }
  for (const k of o.keys) {
    if (!KEY_WORKLOADS[k]) throw new UsageError(`bench: unknown key type ${k}`);
  }
  return o;
}

async function makePki(dir: string, keyType: string, deno: string): Promise<Pki> {
  const flag = keyType === "rsa-2048" ? "rsa2048" : "p256";
  await runOk(deno, [
    "run",
    "-A",
    "--quiet",
    join(ROOT, "cli.ts"),
    "keygen",
    "--dir",
    dir,
    "--key-type",
    flag,
  ]);
  const serverDir = join(dir, "server");
  const combined = join(dir, "server-combined.pem");
  await Deno.writeTextFile(
    combined,
    (await Deno.readTextFile(join(serverDir, "cert.pem"))) +
      (await Deno.readTextFile(join(serverDir, "key.pem"))),
    { mode: 0o600 },
  );
  return {
    keyType,
    serverDir,
    clientDir: join(dir, "clients", "default"),
    serverCombined: combined,
  };
}

/**
 * dockgate on Node: the npm build (`npm/`, from `deno task build:npm`) when present, else a
 * bundle of cli.ts made here with esbuild (the local one, or `npx esbuild`).
 */
/** Every file under `dir`, recursively (src/ is grouped in folders). */
function sourceFiles(dir: string): string[] {
  return [...Deno.readDirSync(dir)].flatMap((e) =>
    e.isDirectory ? sourceFiles(join(dir, e.name)) : [join(dir, e.name)]
  );
}

async function nodeDockgate(
  node: string,
  outDir: string,
  say: (s: string) => void,
  notes: string[],
): Promise<string[] | undefined> {
  try {
    const pkg = JSON.parse(await Deno.readTextFile(join(ROOT, "npm", "package.json")));
    const bin = typeof pkg.bin === "string" ? pkg.bin : pkg.bin && Object.values(pkg.bin)[0];
    if (bin) {
      const path = join(ROOT, "npm", bin as string);
      const built = (await Deno.stat(path)).mtime!.getTime();
      // A build older than the sources would benchmark old code: bundle instead.
      const sources = [join(ROOT, "cli.ts"), ...sourceFiles(join(ROOT, "src"))];
      const newest = Math.max(...sources.map((f) => Deno.statSync(f).mtime!.getTime()));
      if (built >= newest) {
        // Snapshot it: npm/ may be rebuilt by someone else while the bench runs.
        const snap = join(outDir, "npm-snapshot");
        await Deno.remove(snap, { recursive: true }).catch(() => {});
        await runOk("cp", ["-r", join(ROOT, "npm"), snap]);
        const entry = join(snap, bin as string);
        if ((await run(node, [entry, "help"])).code === 0) {
          say(`dockgate on Node: npm build (${join("npm", bin as string)}, snapshot in ${snap})`);
          notes.push(`dockgate on Node: the npm build (\`node npm/${bin}\`).`);
          return [node, entry];
        }
        say("dockgate on Node: the npm build does not run, bundling instead");
      }
      say("dockgate on Node: npm/ is older than src/, not using it");
    }
  } catch { /* no npm build */ }
  const out = join(outDir, "dockgate.mjs");
  const local = join(ROOT, "node_modules", ".bin", "esbuild");
  const esbuild = findExe("esbuild")
    ? "esbuild"
    : (await Deno.stat(local).then(() => local, () => undefined));
  const args = nodeBundleArgs(join(ROOT, "cli.ts"), out);
  const r = esbuild
    ? await run(esbuild, args, { cwd: ROOT })
    : await run("npx", ["--yes", "esbuild@0.25", ...args], { cwd: ROOT });
  if (r.code !== 0) {
    say(`esbuild failed: ${r.stderr.slice(-500)}`);
    return undefined;
  }
  say(`dockgate on Node: no usable npm/ build, bundled cli.ts with esbuild into ${out}`);
  notes.push(
    "dockgate on Node: `cli.ts` bundled by esbuild for Node 20 (`bench/out/dockgate.mjs`), because no npm build " +
      "as new as the sources was there.",
  );
  return [node, out];
}

async function versions(node: string, deno: string): Promise<Record<string, string>> {
  const first = async (cmd: string, args: string[], re: RegExp) => {
    const exe = findExe(cmd);
    if (!exe) return undefined;
    const r = await run(exe, args);
    return (r.stdout + r.stderr).match(re)?.[1];
  };
  const v: Record<string, string | undefined> = {
    Deno: Deno.version.deno,
    "Node.js": (await run(node, ["--version"])).stdout.trim().replace(/^v/, ""),
    socat: await first("socat", ["-V"], /socat version (\S+)/),
    stunnel: await first("stunnel4", ["-version"], /stunnel (\S+)/),
    HAProxy: await first("haproxy", ["-v"], /version (\S+)/),
    OpenSSL: await first("openssl", ["version"], /OpenSSL (\S+)/),
    OpenSSH: await first("sshd", ["-V"], /OpenSSH_(\S+?),/),
    "docker CLI": await first("docker", ["--version"], /version ([^,]+)/),
    dockerd: await first("dockerd", ["--version"], /version ([^,]+)/),
  };
  void deno;
  return Object.fromEntries(Object.entries(v).filter(([, x]) => x)) as Record<string, string>;
}

async function machine(): Promise<string> {
  const cpu = await Deno.readTextFile("/proc/cpuinfo");
  const model = cpu.match(/^model name\s*:\s*(.+)$/m)?.[1] ?? "unknown CPU";
  const mem = Number(
    (await Deno.readTextFile("/proc/meminfo")).match(/^MemTotal:\s+(\d+)/m)?.[1] ?? 0,
  );
  const kernel = (await run("uname", ["-sr"])).stdout.trim();
  return `nproc=${navigator.hardwareConcurrency}, ${model}, ${
    (mem / 1024 / 1024).toFixed(1)
  } GiB RAM, ${kernel}`;
}

/** `--render FILE.json [--out FILE.md]`: write the report again from saved results. */
async function render(json: string, out: string | undefined) {
  const saved = JSON.parse(await Deno.readTextFile(json));
  const results = new Results();
  for (const s of saved.samples) results.add(s.workload, s.keyType, s.contender, s.metric, s.value);
  const md = new Report(results, saved.info).render();
  const path = out ??
    (saved.info.quick
      ? join(ROOT, "bench", "out", "RESULTS-quick.md")
      : join(ROOT, "bench", "RESULTS.md"));
  await Deno.writeTextFile(path, md);
  console.log(`wrote ${path} from ${json}`);
}

async function main() {
  const opts = parseArgs(Deno.args);
  if (opts.render) return await render(opts.render, opts.out);
  const t0 = Date.now();
  const say = (s: string) => console.log(s);
  const sizes: Sizes = { ...(opts.quick ? QUICK : FULL) };
  if (opts.runs) sizes.runs = opts.runs;
  if (opts.bulkMiB) sizes.bulkBytes = opts.bulkMiB * 1024 ** 2;
  if (opts.hold) sizes.holdSteps = opts.hold;
  // A relaying gate needs two descriptors per connection; without CAP_SYS_RESOURCE the hard
  // open-files limit caps how many connections any single-process gate can hold.
  const hardNofile = Number((await run("bash", ["-c", "ulimit -Hn"])).stdout.trim()) || Infinity;
  // (minus headroom: stunnel, for one, refuses clients past (limit - ~470) / 2).
  const fdCap = Math.floor((hardNofile - 500) / 2 / 100) * 100;
  if (sizes.holdSteps.some((n) => n > fdCap)) {
    say(`open-files hard limit is ${hardNofile}: memory steps capped at ${fdCap} connections`);
    sizes.holdSteps = sizes.holdSteps.map((n) => Math.min(n, fdCap));
  }
  sizes.nofile = hardNofile;
  if (opts.install) {
    const r = await run("bash", [join(ROOT, "bench", "install_peers.sh")]);
    if (r.stderr.trim()) {
      say(r.stderr.trim().split("\n").filter((l) => l.startsWith("bench:")).join("\n"));
    }
  }
  const outDir = join(ROOT, "bench", "out");
  await Deno.mkdir(outDir, { recursive: true });
  const tmp = await Deno.makeTempDir({ dir: "/tmp", prefix: "dgb-" });
  const deno = Deno.execPath();
  const node = findExe("node");
  if (!node) throw new Error("bench: node is needed for the load generator");
  const results = new Results();
  const bench: Bench = { root: ROOT, deno, node, tmp, sizes, results, say, failures: [] };
  const notes: string[] = [];
  bench.nodeDockgate = await nodeDockgate(node, outDir, say, notes);

  const skipped: string[] = [];
  const contenders: Contender[] = [];
  for (const c of ALL_CONTENDERS.filter((c) => opts.contenders.includes(c.id))) {
    const why = c.missing({ nodeDockgate: bench.nodeDockgate });
    if (why) {
      skipped.push(`${c.label} (${why})`);
      say(`skipping ${c.label}: ${why}`);
    } else contenders.push(c);
  }
  // The policy contenders are measured in their own workload (6), against the raw relay.
  const special = (id: string) =>
    POLICY_PAIRS.some(([, p]) => p === id) || ISOLATION_PAIRS.some(([, i]) => i === id) ||
    POLICY_PEERS.includes(id);
  const gatesOnly = contenders.filter((c) => c.id !== "tunnel-deno" && !special(c.id));
  const others = contenders.filter((c) => !special(c.id));
  try {
    for (const keyType of opts.keys) {
      const pki = await makePki(join(tmp, `pki-${keyType}`), keyType, deno);
      const wanted = opts.workloads.filter((w) => KEY_WORKLOADS[keyType].includes(w));
      if (!wanted.length) continue;
      const target = await startTarget(bench, pki);
      if (wanted.includes("bulk") || wanted.includes("latency")) {
        await attempt(bench, `start the Deno TLS sink (${keyType})`, async () => {
          target.denoSink = await startTarget(bench, pki, "deno");
        });
      }
      try {
        for (const w of wanted) {
          say(`== ${w} (${keyType})`);
          const started = Date.now();
          await attempt(bench, `${w} (${keyType})`, async () => {
            if (w === "bulk") await bulkWorkload(bench, gatesOnly, pki, target);
            if (w === "connrate") await connrateWorkload(bench, gatesOnly, pki, target);
            if (w === "latency") await latencyWorkload(bench, others, pki, target);
            if (w === "memory") await memoryWorkload(bench, gatesOnly, pki, target);
            if (w === "policy") {
              const ids = [...POLICY_PAIRS.flat(), ...POLICY_PEERS];
              const those = contenders.filter((c) => ids.includes(c.id));
              await policyWorkload(bench, those, pki, target);
              const why = dockerMissing();
              if (why) {
                skipped.push(`workload 6, \`docker ps\` (${why})`);
                say(`skipping docker ps: ${why}`);
              } else await policyDockerPs(bench, those, pki);
            }
            if (w === "isolation") {
              const ids = ISOLATION_PAIRS.flat();
              await isolationWorkload(
                bench,
                contenders.filter((c) => ids.includes(c.id)),
                pki,
                target,
              );
            }
            if (w === "chains") {
              await chainsWorkload(
                bench,
                contenders.filter((c) => c.id === "dockgate-deno" || c.id === "dockgate-node"),
                pki,
                target,
              );
            }
            if (w === "enroll") {
              await enrollWorkload(
                bench,
                contenders.filter((c) => c.id === "dockgate-deno" || c.id === "dockgate-node"),
                pki,
                target,
              );
            }
            if (w === "docker") {
              const why = dockerMissing();
              if (why) {
                skipped.push(`workload 5, real Docker (${why})`);
                say(`skipping docker: ${why}`);
              } else await dockerWorkload(bench, others, pki);
            }
          });
          say(`   (${((Date.now() - started) / 1000).toFixed(0)} s)`);
        }
      } finally {
        await target.denoSink?.stop();
        await target.stop();
      }
    }
  } finally {
    if (!opts.keep) await Deno.remove(tmp, { recursive: true }).catch(() => {});
    else say(`kept ${tmp}`);
  }

  const info = {
    date: new Date().toISOString(),
    machine: await machine(),
    versions: await versions(node, deno),
    quick: opts.quick,
    sizes: {
      ...sizes,
      bulkBytes: `${sizes.bulkBytes / 1024 ** 2} MiB`,
      concurrency: sizes.concurrency.join("/"),
    } as Record<
      string,
      unknown
    >,
    elapsedS: (Date.now() - t0) / 1000,
    skipped,
    failures: bench.failures,
    notes: [
      ...notes,
      ...(opts.keys.includes("rsa-2048") && opts.workloads.includes("connrate")
        ? [
          "RSA 2048 (server, client and CA keys) is a second run of workload 2 only: the certificate type changes the handshake, not the bytes after it.",
        ]
        : []),
      `Memory (workload 4) is ${sizes.memoryRuns} run(s): it is a count, not a rate, and opening ~10,000 mTLS connections per contender takes minutes on this machine.`,
      "Docker over SSH: sshd started by the bench on loopback (own host key, one authorized key, `SetEnv DOCKER_HOST=… SHLVL=1` so bash skips root's ~/.bashrc, whose `pyenv init` costs ~0.7 s per session here); the CLI's `ssh` is a wrapper adding `-F` with our client config.",
    ],
    labels: Object.fromEntries(ALL_CONTENDERS.map((c) => [c.id, c.label])),
    peers: ALL_CONTENDERS.filter((c) => c.peer).map((c) => c.id),
  };
  const md = new Report(results, info).render();
  const out = opts.out ??
    (opts.quick ? join(outDir, "RESULTS-quick.md") : join(ROOT, "bench", "RESULTS.md"));
  // The full run's samples are kept next to RESULTS.md (`--render` rebuilds the report).
  const json = opts.json ??
    (opts.quick ? join(outDir, "results-quick.json") : join(ROOT, "bench", "results.json"));
  await Deno.writeTextFile(out, md);
  await Deno.writeTextFile(json, JSON.stringify({ info, samples: results.samples }, null, 1));
  say(`wrote ${out} and ${json} (${(info.elapsedS / 60).toFixed(1)} min)`);
  if (bench.failures.length) say(`${bench.failures.length} measurement(s) failed; see the report`);
}

if (import.meta.main) {
  try {
    await main();
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(e.message);
      Deno.exit(2);
    }
    console.error(`bench: error: ${(e as Error).stack ?? e}`);
    Deno.exit(1);
  }
}
