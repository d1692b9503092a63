/**
 * docker-py's own integration suite, run twice against a private dockerd: directly on the
 * daemon's socket, and through `dockgate serve` with a wide no-escape role (every allowance
 * opened; `--role isolate`: the same role with `isolate` on; `--role no-escape,isolate`: one direct
 * run and a gate run per role). Prints each test's outcomes per role
 * and the differences; a difference is explained only when the test is on
 * `tests/docker_py_forbidden.json` (isolate: or on `tests/docker_py_forbidden_isolate.json`) and
 * its gate failure carries that entry's refusal text (the rule the role applies). Tests that fail
 * both ways (registry, network, alpine's own tools) do not count.
 *
 * Setup it does: the docker-py tag of the installed python3-docker, copied out of the bare
 * mirror (`git archive`) and run from that checkout with `/usr/bin/python3 -m pytest`; a fresh
 * dockerd per run with a bridge of its own (the harness's daemons have none); the harness's
 * busybox image tagged under the names the suite uses (`alpine:3.10`, `busybox`, …).
 *
 * Usage (as root):
 * `deno run -A scripts/docker_py_suite.ts [--engine 20.10|26] [--role no-escape|isolate]
 *   [--only direct|gate] [--timeout SECONDS] [--json OUT] [-k EXPR] [PYTEST_PATH ...]`
 * (paths relative to the docker-py checkout, default `tests/integration`).
 * `--compare DIRECT.xml GATE.xml` compares the JUnit files of earlier runs (each run's are kept
 * in its work dir) without running anything.
 * Exit 0 when every difference is explained, 1 otherwise.
 *
 * @module
 */

import { join } from "node:path";
import { type Engine, startDockerd } from "../tests/helpers/dockerd.ts";
import { startPolicyGate } from "../tests/helpers/gate.ts";
import { freeTempDir } from "../tests/helpers/wait.ts";

const ROOT = join(import.meta.dirname!, "..");
/** docker-py's repository (a bare git dir): `$DOCKGATE_DOCKER_PY_REPO`, default the mirror. */
export const DOCKER_PY_REPO = Deno.env.get("DOCKGATE_DOCKER_PY_REPO") ??
  "/work/.mirror/docker+docker-py/repo";
const PYTHON = "/usr/bin/python3";
/** The image names docker-py's suite expects to find (base.py TEST_IMG and the tests' own). */
const IMAGE_NAMES = [
  "alpine:3.10",
  "alpine:latest",
  "busybox:latest",
  "busybox:buildroot-2014.02",
  "hello-world:latest",
];

/** A wide no-escape role: every allowance a policy can open, and no more. */
export const WIDE_NO_ESCAPE = {
  roles: {
    py: {
      preset: "no-escape",
      allowBindMounts: ["/tmp"],
      allowCapabilities: ["ALL_NONDEFAULT_PLACEHOLDER"],
      allowRuntimes: ["runc"],
      allowVolumesFrom: ["foobar_vol0", "foobar_vol1"],
      allowLogDrivers: ["syslog", "asdf", "gelf", "fluentd", "awslogs", "splunk", "etwlogs"],
      allowVolumeDrivers: ["local", "foo", "invalid.driver"],
      allowDownloads: true,
      allowPrivateAddresses: true,
      allowImageNames: ["*"],
    },
  },
  identities: [{ cn: "dockerpy", role: "py" }],
};
// Linux's capabilities beyond Docker's default set.
WIDE_NO_ESCAPE.roles.py.allowCapabilities = (
  "AUDIT_CONTROL AUDIT_READ BLOCK_SUSPEND BPF CHECKPOINT_RESTORE DAC_READ_SEARCH IPC_LOCK " +
  "IPC_OWNER LEASE LINUX_IMMUTABLE MAC_ADMIN MAC_OVERRIDE NET_ADMIN NET_BROADCAST PERFMON " +
  "SYS_ADMIN SYS_BOOT SYS_MODULE SYS_NICE SYS_PACCT SYS_PTRACE SYS_RAWIO SYS_RESOURCE " +
  "SYS_TIME SYS_TTY_CONFIG SYSLOG WAKE_ALARM"
).split(" ");

/**
 * The same wide role with `isolate` on: each identity sees and touches only what it created
 * (containers, volumes, networks, build containers), on top of no-escape.
 */
export const WIDE_ISOLATE = {
  roles: { py: { ...WIDE_NO_ESCAPE.roles.py, isolate: true } },
  identities: WIDE_NO_ESCAPE.identities,
};

/** The restricted roles the script runs the suite through. */
export type SuiteRole = "no-escape" | "isolate";

/** The role's policy and the forbidden lists whose entries explain its differences. */
export const SUITE_ROLES: Record<SuiteRole, { policy: unknown; lists: string[] }> = {
  "no-escape": { policy: WIDE_NO_ESCAPE, lists: ["docker_py_forbidden.json"] },
  // isolate is no-escape and more: what no-escape forbids stays forbidden.
  isolate: {
    policy: WIDE_ISOLATE,
    lists: ["docker_py_forbidden.json", "docker_py_forbidden_isolate.json"],
  },
};

/** One test's outcome. */
interface Outcome {
  status: "passed" | "failed" | "skipped";
  message: string;
}

interface Options {
  engine: Engine;
  /** The roles to run the gate side through (one direct run serves them all). */
  roles: SuiteRole[];
  only?: "direct" | "gate";
  timeout: number;
  json?: string;
  keyword?: string;
  /** JUnit files of an earlier direct and gate run: compare them, run nothing. */
  compare?: [string, string];
  paths: string[];
}

function parseArgs(argv: string[]): Options {
  const o: Options = { engine: "20.10", roles: ["no-escape"], timeout: 120, paths: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new RangeError(`${a} needs a value`);
      return argv[++i];
    };
    if (a === "--engine") o.engine = next() as Engine;
    else if (a === "--role") o.roles = next().split(",") as SuiteRole[];
    else if (a === "--only") o.only = next() as "direct" | "gate";
    else if (a === "--timeout") o.timeout = Number(next());
    else if (a === "--json") o.json = next();
    else if (a === "-k") o.keyword = next();
    else if (a === "--compare") o.compare = [next(), next()];
    else if (a.startsWith("-")) throw new RangeError(`unknown option ${a}`);
    else o.paths.push(a);
  }
  const bad = o.roles.find((r) => !(r in SUITE_ROLES));
  if (bad !== undefined) throw new RangeError(`--role: no-escape or isolate, not ${bad}`);
  if (o.compare && o.roles.length !== 1) throw new RangeError("--compare takes one --role");
  if (o.paths.length === 0) o.paths.push("tests/integration");
  return o;
}

async function run(cmd: string, args: string[], opts: Deno.CommandOptions = {}) {
  const out = await new Deno.Command(cmd, { args, stdin: "null", ...opts }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

/**
 * docker-py's own later fixes to its tests, applied to the checkout (commit -> why): races in
 * the test that make a direct run fail or pass by timing alone, so that a difference means the
 * gate.
 */
export const UPSTREAM_TEST_FIXES: Record<string, string> = {
  // test_attach_no_stream attached (logs, no stream) before the container's `echo` had run and
  // read empty logs: failed direct in a full run, passed through the gate (slower, so later).
  "74e0c5eb8c38f0a219cc0120bc51de99c1c8159e": "test: fix flaky container log test (6.0.0)",
};

/** Apply {@linkcode UPSTREAM_TEST_FIXES} (test files only) to the checkout at `src`. */
async function applyUpstreamFixes(src: string): Promise<void> {
  for (const commit of Object.keys(UPSTREAM_TEST_FIXES)) {
    const r = await run("sh", [
      "-c",
      'git -C "$1" diff "$2^" "$2" -- tests/integration | git apply -p1 -',
      "sh",
      DOCKER_PY_REPO,
      commit,
    ], { cwd: src });
    if (r.code !== 0) throw new Error(`docker-py fix ${commit}: ${r.stderr}`);
  }
}

/** docker-py's checkout at the installed python3-docker's version, under `dir`. */
async function checkout(dir: string): Promise<string> {
  const v = await run(PYTHON, ["-c", "import docker; print(docker.__version__)"], { cwd: "/" });
  const tag = v.stdout.trim();
  if (v.code !== 0 || !/^\d+\.\d+\.\d+$/.test(tag)) throw new Error(`docker-py: ${v.stderr}`);
  const src = join(dir, `docker-py-${tag}`);
  await Deno.mkdir(src, { recursive: true });
  const r = await run("sh", [
    "-c",
    'git -C "$1" archive "$2" | tar -x -C "$3"',
    "sh",
    DOCKER_PY_REPO,
    tag,
    src,
  ]);
  if (r.code !== 0) throw new Error(`git archive ${tag}: ${r.stderr}`);
  await applyUpstreamFixes(src);
  // The suite turns every warning into an error; Python 3.11 warns about the distutils
  // version classes docker-py 5 uses, which would fail every test before it starts. And a
  // ResourceWarning for a socket some earlier client left unclosed is raised in whichever test
  // the garbage collector happens to run in (over TLS only: an ssl.SSLSocket to the gate);
  // it failed test_execute_command through both gates on 26.1 in the small subset.
  const conftest = join(src, "tests", "integration", "conftest.py");
  const text = await Deno.readTextFile(conftest);
  await Deno.writeTextFile(
    conftest,
    text.replace(
      "warnings.simplefilter('error')",
      "warnings.simplefilter('error')\n    warnings.filterwarnings('ignore', category=DeprecationWarning)" +
        "\n    warnings.filterwarnings('ignore', category=ResourceWarning)",
    ),
  );
  return src;
}

/** A bridge of the run's own with a free /24, for dockerd's `--bridge`. */
async function makeBridge(): Promise<{ name: string; stop: () => Promise<void> }> {
  const name = `dgpy${(Deno.pid % 10000).toString(16)}${Math.floor(Math.random() * 256)}`;
  const used = (await run("ip", ["-4", "-o", "addr"])).stdout;
  let net = "";
  for (let n = 0; n < 256 && !net; n++) {
    const cand = `10.126.${(n + Deno.pid) % 256}`;
    if (!used.includes(` ${cand}.`)) net = cand;
  }
  for (
    const args of [
      ["link", "add", name, "type", "bridge"],
      ["addr", "add", `${net}.1/24`, "dev", name],
      ["link", "set", name, "up"],
    ]
  ) {
    const r = await run("ip", args);
    if (r.code !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr}`);
  }
  return { name, stop: async () => void await run("ip", ["link", "del", name]) };
}

/** Unescape the five XML entities (and numeric ones) in an attribute or text. */
function unxml(s: string): string {
  return s.replace(
    /&(lt|gt|quot|apos|amp|#\d+|#x[0-9a-f]+);/gi,
    (_, e: string) =>
      ({ lt: "<", gt: ">", quot: '"', apos: "'", amp: "&" } as Record<string, string>)[e] ??
        String.fromCodePoint(e[1] === "x" ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10)),
  );
}

/** pytest's JUnit (xunit2) as node id -> outcome. */
export function readJunit(xml: string): Map<string, Outcome> {
  const out = new Map<string, Outcome>();
  const re = /<testcase\b([^>]*?)(?:\/>|>([\s\S]*?)<\/testcase>)/g;
  for (const m of xml.matchAll(re)) {
    const attr = (n: string) => unxml(m[1].match(new RegExp(`\\s${n}="([^"]*)"`))?.[1] ?? "");
    const parts = attr("classname").split(".");
    const cls = /^[A-Z]/.test(parts.at(-1) ?? "") ? parts.pop() : undefined;
    const id = `${parts.join("/")}.py::${cls ? cls + "::" : ""}${attr("name")}`;
    const body = m[2] ?? "";
    const fail = body.match(/<(failure|error)\b([^>]*?)(?:\/>|>([\s\S]*?)<\/\1>)/);
    if (fail) {
      out.set(id, { status: "failed", message: unxml(`${fail[2]}\n${fail[3] ?? ""}`) });
    } else if (/<skipped\b/.test(body)) {
      // An xfail is a skip whose message says why (a test that turns an APIError into one).
      const why = body.match(/<skipped\b([^>]*)/)?.[1].match(/\smessage="([^"]*)"/)?.[1] ?? "";
      out.set(id, { status: "skipped", message: unxml(why) });
    } else out.set(id, { status: "passed", message: "" });
  }
  return out;
}

/** The environment pytest runs in: ours minus Docker's and CA overrides, plus `extra`. */
function pyEnv(extra: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(Deno.env.toObject())) {
    if (!/^DOCKER_|CA_BUNDLE|SSL_CERT|CA_CERTS/.test(k)) env[k] = v;
  }
  return { ...env, ...extra };
}

/** One run of the suite direct or through a gate for a role, on a fresh dockerd; by node id. */
async function runSuite(
  mode: "direct" | SuiteRole,
  src: string,
  work: string,
  o: Options,
): Promise<Map<string, Outcome>> {
  const bridge = await makeBridge();
  const d = await startDockerd({ engine: o.engine, extraArgs: [`--bridge=${bridge.name}`] });
  if (!d) throw new Error("dockerd cannot run here");
  const dir = join(work, mode === "direct" ? mode : `gate-${mode}`);
  await Deno.mkdir(dir, { recursive: true });
  let gate: Awaited<ReturnType<typeof startPolicyGate>> | undefined;
  try {
    for (const name of IMAGE_NAMES) await d.docker(["tag", d.image, name]);
    let env: Record<string, string> = { DOCKER_HOST: d.host };
    if (mode !== "direct") {
      gate = await startPolicyGate(d.host, dir, SUITE_ROLES[mode].policy, ["dockerpy"], [
        "--audit-log",
        join(dir, "audit.jsonl"),
      ]);
      env = {
        DOCKER_HOST: `tcp://127.0.0.1:${gate.gate.port}`,
        DOCKER_TLS_VERIFY: "1",
        DOCKER_CERT_PATH: join(gate.pki, "clients", "dockerpy"),
      };
    }
    // docker-py keeps its contexts beside the Docker config file it finds, or in the working
    // directory (the checkout, shared by the runs) when there is none; a context test leaves
    // "test" behind, which failed the next run's context tests. Each run has a config of its own.
    const config = join(dir, "docker-config");
    await Deno.mkdir(config, { recursive: true });
    await Deno.writeTextFile(join(config, "config.json"), "{}\n");
    env.DOCKER_CONFIG = config;
    const junit = join(dir, "junit.xml");
    const args = [
      "-m",
      "pytest",
      "-p",
      "no:cacheprovider",
      "-q",
      `--timeout=${o.timeout}`,
      `--junitxml=${junit}`,
      ...(o.keyword ? ["-k", o.keyword] : []),
      ...o.paths,
    ];
    const started = Date.now();
    const r = await run(PYTHON, args, { cwd: src, env: pyEnv(env), clearEnv: true });
    await Deno.writeTextFile(join(dir, "pytest.log"), r.stdout + r.stderr);
    console.error(
      `${mode}: pytest exit ${r.code} in ${((Date.now() - started) / 1000).toFixed(0)} s ` +
        `(log ${join(dir, "pytest.log")})`,
    );
    return readJunit(await Deno.readTextFile(junit));
  } finally {
    if (gate) {
      await Deno.writeTextFile(join(dir, "gate.log"), gate.gate.log());
      await gate.gate.stop();
    }
    await d.stop();
    await bridge.stop();
  }
}

/** The tests whose difference lies outside the gate, from the no-escape list: node id -> why. */
export interface OutsideGate {
  /** `directFailures`: fail direct, pass through the gate, for a reason on the direct side. */
  direct: Map<string, string>;
  /**
   * `races`: dockerd's own races that a full run's timing decides, either way; explained only
   * while the gate's failure carries no refusal of the gate's (no "dockgate:").
   */
  races: Map<string, string>;
}

/** The no-escape list's `directFailures` and `races`; see {@linkcode OutsideGate}. */
export async function outsideGate(): Promise<OutsideGate> {
  const raw = JSON.parse(
    await Deno.readTextFile(join(ROOT, "tests", SUITE_ROLES["no-escape"].lists[0])),
  );
  const map = (list: { test: string; why: string }[] = []) =>
    new Map(list.map((t) => [t.test, t.why]));
  return { direct: map(raw.directFailures), races: map(raw.races) };
}

/**
 * The tests `role` forbids: node id -> the refusal texts of which its gate failure must carry
 * one (a test may be refused for more than one reason, e.g. one per engine).
 */
export async function forbidden(role: SuiteRole): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  for (const list of SUITE_ROLES[role].lists) {
    const raw = JSON.parse(await Deno.readTextFile(join(ROOT, "tests", list)));
    for (const t of raw.tests as { test: string; refusal: string }[]) {
      out.set(t.test, [...out.get(t.test) ?? [], t.refusal]);
    }
  }
  return out;
}

function firstLine(o: Outcome | undefined): string {
  if (!o || o.status !== "failed") return "";
  const line = o.message.split("\n").find((l) => /403|denied|not allowed|refus/i.test(l)) ??
    o.message.split("\n")[0];
  return line.replace(/\s+/g, " ").slice(0, 200);
}

/** The comparison of a direct run with one role's gate run; the count of unexplained. */
async function compare(
  role: SuiteRole,
  direct: Map<string, Outcome>,
  gate: Map<string, Outcome>,
  o: Options,
): Promise<{ unexplained: number; rows: Record<string, unknown>[] }> {
  const allowedFail = await forbidden(role);
  const outside = await outsideGate();
  const ids = [...new Set([...direct.keys(), ...gate.keys()])].sort();
  const rows: Record<string, unknown>[] = [];
  let unexplained = 0;
  console.log(`\n== direct vs gate (${role}), engine ${o.engine}`);
  for (const id of ids) {
    const a = direct.get(id)?.status ?? "-";
    const b = gate.get(id)?.status ?? "-";
    let note = "";
    if (o.only === undefined && a !== b && !(a === "failed" && b === "failed")) {
      const rule = allowedFail.get(id)?.find((r) => gate.get(id)?.message.includes(r));
      const refused = gate.get(id)?.message.includes("dockgate:") ?? false;
      const why = a === "failed" && b === "passed"
        ? outside.direct.get(id)
        : refused
        ? undefined
        : outside.races.get(id);
      const explained = (rule !== undefined && b !== "passed") || why !== undefined;
      note = why !== undefined
        ? `outside the gate: ${why.slice(0, 100)}…`
        : explained
        ? `forbidden: ${rule}`
        : `DIFFERENCE ${firstLine(gate.get(id))}`;
      if (!explained) unexplained++;
    }
    rows.push({ test: id, role, engine: o.engine, direct: a, gate: b, note });
    console.log(`${a.padEnd(8)} ${b.padEnd(8)} ${id}${note ? "  " + note : ""}`);
  }
  const count = (m: Map<string, Outcome>, s: string) =>
    [...m.values()].filter((x) => x.status === s).length;
  const sum = (m: Map<string, Outcome>) =>
    `${count(m, "passed")} passed, ${count(m, "failed")} failed, ${count(m, "skipped")} skipped`;
  console.log(`\ndirect: ${sum(direct)}\ngate (${role}): ${sum(gate)}`);
  console.log(
    `differences not explained by ${SUITE_ROLES[role].lists.join(" + ")} (${role}, engine ` +
      `${o.engine}): ${unexplained}`,
  );
  return { unexplained, rows };
}

async function main() {
  const o = parseArgs(Deno.args);
  let direct: Map<string, Outcome>;
  const gates = new Map<SuiteRole, Map<string, Outcome>>();
  if (o.compare) {
    const [a, b] = await Promise.all(
      o.compare.map(async (f) => readJunit(await Deno.readTextFile(f))),
    );
    direct = a;
    gates.set(o.roles[0], b);
  } else {
    const work = await freeTempDir("dgpy-");
    console.error(`work dir ${work}`);
    const src = await checkout(work);
    direct = o.only === "gate" ? new Map() : await runSuite("direct", src, work, o);
    for (const role of o.roles) {
      gates.set(role, o.only === "direct" ? new Map() : await runSuite(role, src, work, o));
    }
  }
  let unexplained = 0;
  const rows: Record<string, unknown>[] = [];
  for (const [role, gate] of gates) {
    const r = await compare(role, direct, gate, o);
    unexplained += r.unexplained;
    rows.push(...r.rows);
  }
  if (o.json) await Deno.writeTextFile(o.json, JSON.stringify(rows, null, 1) + "\n");
  Deno.exit(unexplained === 0 ? 0 : 1);
}

if (import.meta.main) await main();
