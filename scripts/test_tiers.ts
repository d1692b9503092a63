/**
 * The two tiers of the test suite and the rule that puts a test file in one of them.
 *
 * - **e2e**: every `tests/*_e2e_test.ts`, and the files named in {@linkcode E2E_FILES} (they
 *   start a dockerd, need root, or build packages; renaming them is not worth the churn).
 * - **unit**: every other `tests/*_test.ts`. It runs as three `deno test` processes at once, with
 *   `DOCKGATE_TEST_TIER=unit` set, so that `startDockerd()`/`dockerdUnavailable()` in
 *   tests/helpers/dockerd.ts throw (a unit-tier file that starts dockerd fails, it cannot drift
 *   into the fast tier unnoticed), and, as root where `unshare` exists, in a private network
 *   namespace holding only loopback (a unit test that reaches beyond 127.0.0.1 fails).
 *
 * Usage:
 *   deno run -A scripts/test_tiers.ts list unit|e2e      the tier's files, one a line
 *   deno run -A scripts/test_tiers.ts run unit [ARGS…]   `deno test` of the unit tier
 *                                                         (`deno task test:unit`); its files
 *                                                         are type-checked once first, by
 *                                                         one `deno check`, unless ARGS
 *                                                         say --no-check
 *
 * @module
 */

import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");

/** The environment variable that marks a unit-tier run, and its value. */
export const TIER_ENV = "DOCKGATE_TEST_TIER";

/**
 * Test files in the e2e tier although their names do not end in `_e2e_test.ts`, each with why.
 * A new end-to-end file should be named `*_e2e_test.ts` instead of being added here.
 */
export const E2E_FILES: Record<string, string> = {
  "tests/access_test.ts": "starts dockerd; testssl.sh",
  "tests/attack_relay_test.ts": "starts dockerd",
  "tests/bench_smoke_test.ts": "runs `bench --quick` (all peers, ~1.5 min)",
  "tests/binary_test.ts": "builds the binary with deno compile; starts dockerd",
  "tests/dockerd_harness_test.ts": "starts dockerd",
  "tests/doctor_test.ts": "starts dockerd",
  "tests/env_test.ts": "starts dockerd",
  "tests/hardening_test.ts": "needs root (chown to other users)",
  "tests/image_test.ts": "builds the container image; starts dockerd",
  "tests/npm_package_test.ts": "builds and installs the npm package; starts dockerd",
  "tests/systemd_test.ts": "starts dockerd",
  "tests/systemd_unit_test.ts": "runs serve under setpriv (root) to a real dockerd",
};

/** `"unit"` or `"e2e"`. */
export type Tier = "unit" | "e2e";

/**
 * The tier of one test file, by the rule above (path relative to the repository root).
 *
 * @example
 * ```ts
 * import { tierOf } from "./test_tiers.ts";
 * if (tierOf("tests/chain_e2e_test.ts") !== "e2e") throw new Error("by name");
 * if (tierOf("tests/http_test.ts") !== "unit") throw new Error("the default");
 * ```
 */
export function tierOf(file: string): Tier {
  if (!file.endsWith("_test.ts")) throw new TypeError(`${file} is not a test file`);
  return file.endsWith("_e2e_test.ts") || file in E2E_FILES ? "e2e" : "unit";
}

/**
 * Every test file under `tests/` (not in helpers or tools), sorted, relative to the root.
 *
 * @example
 * ```ts
 * import { testFiles } from "./test_tiers.ts";
 * if (!testFiles().includes("tests/http_test.ts")) throw new Error("missing");
 * ```
 */
export function testFiles(root: string = ROOT): string[] {
  return [...Deno.readDirSync(join(root, "tests"))]
    .filter((e) => e.isFile && e.name.endsWith("_test.ts"))
    .map((e) => relative(root, join(root, "tests", e.name)))
    .sort();
}

/**
 * The files of one tier.
 *
 * @example
 * ```ts
 * import { tierFiles } from "./test_tiers.ts";
 * if (tierFiles("unit").some((f) => f.endsWith("_e2e_test.ts"))) throw new Error("by name");
 * ```
 */
export function tierFiles(tier: Tier, root: string = ROOT): string[] {
  if (tier !== "unit" && tier !== "e2e") throw new TypeError(`unknown tier ${tier}`);
  return testFiles(root).filter((f) => tierOf(f) === tier);
}

/** Whether `cmd` is on PATH (or in /usr/sbin, /sbin). */
function have(cmd: string): boolean {
  return new Deno.Command("sh", {
    args: ["-c", `command -v ${cmd} >/dev/null || [ -x /usr/sbin/${cmd} ] || [ -x /sbin/${cmd} ]`],
  }).outputSync().success;
}

/**
 * The command line that runs `deno test` on `files` of the unit tier, inside a network
 * namespace with only loopback up when root can make one (`unshare -n`).
 */
export function unitCommand(deno: string, extra: string[], files: string[]): string[] {
  const test = [deno, "test", "-A", ...extra, ...files];
  if (Deno.uid() !== 0 || !have("unshare") || !have("ip")) return test;
  // `ip link set lo up` first: a new namespace's loopback is down.
  return ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "unit-tier", ...test];
}

/**
 * `files` in `n` shards of about equal size (bytes of source, a stand-in for run time),
 * biggest first into the lightest shard.
 */
export function shardsOf(files: string[], n: number, size: (f: string) => number): string[][] {
  const shards: { files: string[]; weight: number }[] = Array.from(
    { length: n },
    () => ({ files: [], weight: 0 }),
  );
  const sized = files.map((f) => ({ f, w: size(f) })).sort((a, b) => b.w - a.w);
  for (const { f, w } of sized) {
    const lightest = shards.reduce((a, b) => (b.weight < a.weight ? b : a));
    lightest.files.push(f);
    lightest.weight += w;
  }
  return shards.map((s) => s.files.sort()).filter((s) => s.length > 0);
}

/** The JUnit documents of the shards as one (their test suites under one `<testsuites>`). */
export function mergeJunit(docs: string[]): string {
  const suites = docs.map((d) => {
    const open = d.search(/<testsuites\b[^>]*>/);
    const start = open === -1 ? -1 : d.indexOf(">", open) + 1;
    const end = d.lastIndexOf("</testsuites>");
    return start > 0 && end > start ? d.slice(start, end).trim() : "";
  }).filter((x) => x !== "");
  return `<?xml version="1.0" encoding="UTF-8"?>\n<testsuites name="deno test">\n${
    suites.join("\n")
  }\n</testsuites>\n`;
}

/**
 * Seconds the slowest unit files took, each run alone on the 2-core machine on 2026-12-07
 * after the tier's speed-ups (the others are weighed by their size, about 10 KB of source a
 * second there). Only the shards' balance depends on it: a stale figure makes the tier
 * slower, never wrong.
 */
const UNIT_SECONDS: Readonly<Record<string, number>> = {
  "tests/join_test.ts": 10,
  "tests/api_relay_test.ts": 9,
  "tests/cli_help_test.ts": 8,
  "tests/intermediates_test.ts": 7.5,
  "tests/policy_check_cli_test.ts": 7,
  "tests/renew_test.ts": 7,
  "tests/attack_s9b_test.ts": 6,
  "tests/crl_url_test.ts": 6,
  "tests/metrics_test.ts": 5.5,
  "tests/relay_test.ts": 5,
  "tests/serve_test.ts": 5,
  "tests/config_test.ts": 4,
  "tests/answer_backpressure_test.ts": 3.5,
  "tests/api_relay_fuzz_test.ts": 3,
  "tests/chain_test.ts": 3,
  "tests/inspect_test.ts": 3,
  "tests/crl_own_chain_test.ts": 2.5,
  "tests/reloader_test.ts": 2.5,
  "tests/tls_reason_test.ts": 2,
  "tests/credentials_test.ts": 2,
  "tests/issue_test.ts": 2,
  "tests/keygen_test.ts": 2,
};

/** How long a unit file is expected to take, for {@linkcode shardsOf}. */
function unitWeight(file: string): number {
  return UNIT_SECONDS[file] ?? Deno.statSync(join(ROOT, file)).size / 10_000;
}

/**
 * Run the unit tier as `shards` `deno test` processes at once, each one file at a time, and
 * print each one's output whole when it ends. Why processes, not `--parallel`: its threads
 * share one table of file descriptors, and a fresh-clone CI run failed with "Bad file
 * descriptor (os error 9)" while revoke_test.ts loaded a CommonJS module, as if another
 * file's thread had closed that descriptor; processes share none.
 */
async function runUnitShards(deno: string, rest: string[], shards: number): Promise<number> {
  const junit = rest.find((a) => a.startsWith("--junit-path="))?.slice("--junit-path=".length);
  const extra = rest.filter((a) => !a.startsWith("--junit-path="));
  const parts = shardsOf(tierFiles("unit"), shards, unitWeight);
  const runs = parts.map(async (files, i) => {
    const path = junit && `${junit}.shard${i}`;
    const [cmd, ...args] = unitCommand(
      deno,
      [...extra, ...(path ? [`--junit-path=${path}`] : [])],
      files,
    );
    const out = await new Deno.Command(cmd, {
      args,
      cwd: ROOT,
      env: { [TIER_ENV]: "unit" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    console.log(`--- unit shard ${i + 1}/${parts.length} (${files.length} files) ---\n${text}`);
    return { code: out.code, path };
  });
  const done = await Promise.all(runs);
  if (junit) {
    const docs = done.map((d) => {
      try {
        return Deno.readTextFileSync(d.path!);
      } catch {
        return "";
      }
    });
    Deno.writeTextFileSync(junit, mergeJunit(docs));
  }
  return done.find((d) => d.code !== 0)?.code ?? 0;
}

/**
 * Type-check the unit tier's files once, as one `deno check` (their graphs overlap almost
 * whole), unless `rest` already says `--no-check`. Returns the arguments for the shards: with
 * `--no-check` added once the check passed, or `undefined` (after printing why) if it failed.
 * Why: three shards each checking their own files checked the shared graph three times, 18 s
 * of CPU on a fresh clone against 7 s for one check.
 */
async function checkedOnce(deno: string, rest: string[]): Promise<string[] | undefined> {
  if (rest.some((a) => a === "--no-check" || a.startsWith("--no-check="))) return rest;
  const out = await new Deno.Command(deno, {
    args: ["check", ...tierFiles("unit")],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (out.code !== 0) {
    const d = new TextDecoder();
    console.log(
      `--- deno check of the unit tier ---\n${d.decode(out.stdout)}${d.decode(out.stderr)}`,
    );
    console.error("unit tier: type errors (above); no test was run");
    return undefined;
  }
  return ["--no-check", ...rest];
}

async function main(args: string[]): Promise<number> {
  const [verb, tier, ...rest] = args;
  if (verb === "list" && (tier === "unit" || tier === "e2e")) {
    for (const f of tierFiles(tier)) console.log(f);
    return 0;
  }
  if (verb === "run" && tier === "unit") {
    const deno = join(ROOT, "node_modules", ".bin", "deno");
    const t0 = Date.now();
    // Three processes on two cores: a shard waiting on a child process or a socket leaves
    // the core to another. DOCKGATE_UNIT_SHARDS=1 runs the tier as one process.
    const shards = Number(Deno.env.get("DOCKGATE_UNIT_SHARDS") ?? "3");
    if (!Number.isInteger(shards) || shards < 1) {
      console.error(`test_tiers.ts: DOCKGATE_UNIT_SHARDS must be a whole number >= 1`);
      return 2;
    }
    const checked = await checkedOnce(deno, rest);
    if (!checked) return 1;
    const code = await runUnitShards(deno, checked, shards);
    console.error(`unit tier: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    return code;
  }
  console.error("usage: test_tiers.ts list unit|e2e | run unit [deno test args…]");
  return 2;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
