/**
 * Test helpers that run the real `dockgate` CLI (`deno run -A cli.ts …`) as a subprocess and
 * read its bound address from the log, as a user would.
 */

import { nodeBundleArgs } from "../../scripts/lib/build_common.ts";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { freeTempDir } from "./wait.ts";

/** Repository root. */
export const ROOT: string = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
/** The Deno binary running the tests. */
export const DENO: string = Deno.execPath();

/** A running CLI process. */
export interface CliProcess {
  /** The child process. */
  child: Deno.ChildProcess;
  /** Everything written to stderr so far (the log). */
  log(): string;
  /** Resolves with the exit code. */
  exited: Promise<number>;
  /** Wait until the log matches `re`; returns the match. */
  waitForLog(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Send a signal. */
  kill(signal?: Deno.Signal): void;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code. */
  stop(graceMs?: number): Promise<number>;
}

/** How {@linkcode spawnProcess} starts a process. */
export interface SpawnOptions {
  /** Working directory (default: the test's). */
  cwd?: string;
  /** Environment additions, or with `clearEnv` the whole environment. */
  env?: Record<string, string>;
  /** Start from an empty environment. */
  clearEnv?: boolean;
  /** Default timeout of `waitForLog` (default 20 s). */
  logTimeoutMs?: number;
}

/** Spawn `cmd ARGS…`; stdout and stderr are both collected as its log. */
export function spawnProcess(cmd: string, args: string[], opts: SpawnOptions = {}): CliProcess {
  const child = new Deno.Command(cmd, {
    args,
    cwd: opts.cwd,
    env: opts.env,
    clearEnv: opts.clearEnv,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let text = "";
  const decoder = new TextDecoder();
  // Each waitForLog's check, called whenever the log grows and once at the exit: a wait ends
  // as soon as its line is there, not at the next tick of a backoff.
  const checks = new Set<() => void>();
  const changed = () => checks.forEach((check) => check());
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) {
      text += decoder.decode(chunk, { stream: true });
      changed();
    }
  };
  const pumpErr = pump(child.stderr);
  const pumpOut = pump(child.stdout);
  let done = false;
  const exited = child.status.then(async (s) => {
    await Promise.all([pumpErr, pumpOut]);
    // Set only once both pipes are drained: what the process wrote last is in `text`.
    done = true;
    changed();
    return s.code;
  });
  const proc: CliProcess = {
    child,
    log: () => text,
    exited,
    waitForLog(re, timeoutMs = opts.logTimeoutMs ?? 20_000) {
      return new Promise<RegExpMatchArray>((resolve, reject) => {
        const end = () => {
          clearTimeout(timer);
          checks.delete(check);
        };
        // An exit fails the wait at once, so a "serve refuses to start" does not wait out
        // the whole timeout.
        const check = () => {
          const m = text.match(re);
          if (!m && !done) return;
          end();
          if (m) resolve(m);
          else reject(new Error(`process exited before log matched ${re}:\n${text}`));
        };
        const timer = setTimeout(() => {
          end();
          reject(
            new Error(
              `timed out after ${timeoutMs} ms waiting for log ${re}\n` +
                `--- log of ${cmd} ${args.join(" ")} ---\n${text}`,
            ),
          );
        }, timeoutMs);
        checks.add(check);
        check();
      });
    },
    kill(signal = "SIGTERM") {
      if (!done) {
        try {
          child.kill(signal);
        } catch { /* already gone */ }
      }
    },
    async stop(graceMs = 10_000) {
      proc.kill("SIGTERM");
      const timer = setTimeout(() => proc.kill("SIGKILL"), graceMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
  return proc;
}

/** Which runtime runs the CLI: Deno (`deno run cli.ts`) or Node (cli.ts bundled by esbuild). */
export type Runtime = "deno" | "node";

let nodeBundle: Promise<string> | undefined;

/**
 * `cli.ts` bundled for Node 20 by esbuild (from node_modules), built once per test process
 * into a temporary directory: the same sources the npm package ships, without its build.
 */
export function nodeCliBundle(): Promise<string> {
  nodeBundle ??= (async () => {
    const dir = await Deno.makeTempDir({ prefix: "dg-node-cli-" });
    globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
    const out = join(dir, "dockgate.mjs");
    const r = await new Deno.Command(join(ROOT, "node_modules", ".bin", "esbuild"), {
      args: nodeBundleArgs(join(ROOT, "cli.ts"), out),
      cwd: ROOT,
      stdin: "null",
    }).output();
    if (r.code !== 0) throw new Error(`esbuild failed: ${new TextDecoder().decode(r.stderr)}`);
    return out;
  })();
  return nodeBundle;
}

/** The command line that runs `dockgate ARGS…` on `runtime`. */
export async function cliCommand(runtime: Runtime, args: string[]): Promise<[string, string[]]> {
  if (runtime === "node") return ["node", [await nodeCliBundle(), ...args]];
  return [DENO, ["run", "-A", "--quiet", join(ROOT, "cli.ts"), ...args]];
}

/** Spawn `dockgate ARGS…` from the repo (cwd defaults to the repo root). */
export function spawnCli(
  args: string[],
  opts: { cwd?: string; env?: Record<string, string> } = {},
): CliProcess {
  return spawnProcess(DENO, ["run", "-A", "--quiet", join(ROOT, "cli.ts"), ...args], {
    cwd: opts.cwd ?? ROOT,
    env: opts.env,
  });
}

/**
 * Run `dockgate ARGS…` to completion; killed after `timeoutMs` (default 60 s), so a command
 * expected to fail that runs on instead (a `serve` that should have refused to start) fails
 * the test rather than hanging it.
 */
export async function runCli(
  args: string[],
  opts: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(DENO, {
    args: ["run", "-A", "--quiet", join(ROOT, "cli.ts"), ...args],
    cwd: opts.cwd ?? ROOT,
    env: opts.env,
    stdin: "null",
    signal: AbortSignal.timeout(opts.timeoutMs ?? 60_000),
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

/** A started `serve`: the process and its TCP port. */
export interface ServeProcess extends CliProcess {
  /** Bound port. */
  port: number;
  /** `tcp://127.0.0.1:PORT`. */
  host: string;
}

/**
 * Start `dockgate serve --listen 127.0.0.1:0 …extra` and wait for its "listening on" line.
 */
export async function startServe(
  extra: string[],
  opts: { cwd?: string; env?: Record<string, string>; runtime?: Runtime } = {},
): Promise<ServeProcess> {
  // A policy's isolated roles need the owner record: a fresh one per gate unless one is given.
  const state = extra.includes("--policy") && !extra.includes("--state-dir")
    ? ["--state-dir", await freeTempDir("dg-state-")]
    : [];
  const args = ["serve", "--listen", "127.0.0.1:0", ...extra, ...state];
  const proc = opts.runtime === "node"
    ? spawnProcess(...await cliCommand("node", args), { cwd: opts.cwd ?? ROOT, env: opts.env })
    : spawnCli(args, opts);
  const m = await proc.waitForLog(/listening on tcp:\/\/127\.0\.0\.1:(\d+)/);
  const port = Number(m[1]);
  return Object.assign(proc, { port, host: `tcp://127.0.0.1:${port}` });
}

/** Start `dockgate connect …args` and wait for its "listening on" line; returns the address. */
export async function startConnect(
  args: string[],
  opts: { cwd?: string; env?: Record<string, string> } = {},
): Promise<CliProcess & { address: string }> {
  const proc = spawnCli(["connect", ...args], opts);
  const m = await proc.waitForLog(/listening on (\S+)/);
  return Object.assign(proc, { address: m[1] });
}

/** Docker CLI flags for `--tlsverify` with a client bundle directory. */
export function tlsFlags(bundle: string): string[] {
  return [
    "--tlsverify",
    "--tlscacert",
    join(bundle, "ca.pem"),
    "--tlscert",
    join(bundle, "cert.pem"),
    "--tlskey",
    join(bundle, "key.pem"),
  ];
}

/**
 * The restricted roles the attack tests drive (for {@linkcode startPolicyGate} with clients
 * `ro`, `ci`, `t1`, `t2`): `ro` read-only, `ci` no-escape, `t1` and `t2` isolated tenants.
 */
export const RESTRICTED_POLICY = {
  roles: {
    ro: { preset: "read-only" },
    ci: { preset: "no-escape" },
    tenant: { preset: "no-escape", isolate: true },
  },
  identities: [
    { cn: "ro", role: "ro" },
    { cn: "ci", role: "ci" },
    { cn: "t1", role: "tenant" },
    { cn: "t2", role: "tenant" },
  ],
};

/** What {@linkcode startPolicyGate} made. */
export interface PolicyGate {
  /** The running serve. */
  gate: ServeProcess;
  /** The PKI directory (`clients/NAME/` per client). */
  pki: string;
}

/**
 * A fresh PKI under `work` with a client bundle per name, `policy` (an object, or the file's
 * text) written 0600, and `dockgate serve --policy` in front of `target` (a dockerd's host).
 */
export async function startPolicyGate(
  target: string,
  work: string,
  policy: unknown,
  clients: readonly string[],
  extra: readonly string[] = [],
): Promise<PolicyGate> {
  const pki = join(work, "pki");
  const ok = (r: { code: number; stderr: string }) => {
    if (r.code !== 0) throw new Error(`keygen failed: ${r.stderr}`);
  };
  ok(await runCli(["keygen", "--dir", pki]));
  for (const name of clients) ok(await runCli(["keygen", "client", name, "--dir", pki]));
  const file = join(work, "policy.json");
  await Deno.writeTextFile(file, typeof policy === "string" ? policy : JSON.stringify(policy), {
    mode: 0o600,
  });
  const gate = await startServe([
    "--target",
    target,
    "--certs",
    join(pki, "server"),
    "--policy",
    file,
    ...extra,
  ]);
  return { gate, pki };
}
