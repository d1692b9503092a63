/**
 * Process plumbing for the benchmark: start long-running processes with their output in a
 * log file and a raised open-files limit, run commands to completion, and read CPU time and
 * memory of whole process trees from /proc.
 *
 * @module
 */

import { waitFor } from "../../tests/helpers/wait.ts";

/** Open-files limit asked for every child (10,000 held connections need 2 fds each in a gate). */
export const NOFILE = 65536;

const dec = new TextDecoder();

/** A started background process. */
export interface Proc {
  /** Its pid (the command itself: the wrapper shell `exec`s it). */
  pid: number;
  /** Path of the file holding its stdout and stderr. */
  logPath: string;
  /** The log so far. */
  log(): string;
  /** Resolves with the exit code. */
  exited: Promise<number>;
  /** Whether it has exited. */
  done(): boolean;
  /** SIGTERM to the whole tree, SIGKILL after `graceMs`; resolves once the root exited. */
  stop(graceMs?: number): Promise<void>;
}

/**
 * A shell prefix that raises the open-files limit (as far as allowed) and then `exec`s the
 * command, so the pid stays the command's own.
 */
export function withNofile(cmd: string, args: string[], redirect?: string): string[] {
  const script = `ulimit -n ${NOFILE} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$@"` +
    (redirect ? ` >"${redirect}" 2>&1` : "");
  return ["-c", script, "bench", cmd, ...args];
}

/** Start `cmd args…` in the background with its output in `logPath`. */
export function startProc(
  cmd: string,
  args: string[],
  logPath: string,
  opts: { env?: Record<string, string>; cwd?: string } = {},
): Proc {
  const child = new Deno.Command("bash", {
    args: withNofile(cmd, args, logPath),
    env: opts.env,
    cwd: opts.cwd,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  let finished = false;
  const exited = child.status.then((s) => {
    finished = true;
    return s.code;
  });
  const proc: Proc = {
    pid: child.pid,
    logPath,
    log: () => {
      try {
        return Deno.readTextFileSync(logPath);
      } catch {
        return "";
      }
    },
    exited,
    done: () => finished,
    async stop(graceMs = 5000) {
      if (finished) return;
      signalTree(child.pid, "SIGTERM");
      const timer = setTimeout(() => signalTree(child.pid, "SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
      // Children of a forking server (socat) that outlived their parent.
      for (const pid of descendants(child.pid)) signal(pid, "SIGKILL");
    },
  };
  return proc;
}

/** Result of a command run to completion. */
export interface RunResult {
  /** Exit code. */
  code: number;
  /** Stdout as text. */
  stdout: string;
  /** Stderr as text. */
  stderr: string;
  /** Wall time in milliseconds. */
  ms: number;
}

/** Run a command to completion (with the raised open-files limit); never throws on exit codes. */
export async function run(
  cmd: string,
  args: string[],
  opts: { env?: Record<string, string>; cwd?: string; stdin?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  const t0 = performance.now();
  const child = new Deno.Command("bash", {
    args: withNofile(cmd, args),
    env: opts.env,
    cwd: opts.cwd,
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (opts.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(opts.stdin));
    await w.close();
  }
  const timer = opts.timeoutMs
    ? setTimeout(() => signalTree(child.pid, "SIGKILL"), opts.timeoutMs)
    : undefined;
  const out = await child.output();
  clearTimeout(timer);
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
    ms: performance.now() - t0,
  };
}

/** Like {@linkcode run} but throws with the output when the exit code is not 0. */
export async function runOk(
  cmd: string,
  args: string[],
  opts: Parameters<typeof run>[2] = {},
): Promise<RunResult> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) {
    throw new Error(
      `${cmd} ${args.join(" ")} failed (exit ${r.code})\n${r.stdout.slice(-2000)}\n${
        r.stderr.slice(-2000)
      }`,
    );
  }
  return r;
}

function signal(pid: number, sig: Deno.Signal): void {
  try {
    Deno.kill(pid, sig);
  } catch { /* gone */ }
}

function signalTree(pid: number, sig: Deno.Signal): void {
  const kids = descendants(pid);
  signal(pid, sig);
  for (const k of kids) signal(k, sig);
}

/** Parent pid of every process (one pass over /proc). */
function parentMap(): Map<number, number[]> {
  const children = new Map<number, number[]>();
  for (const e of Deno.readDirSync("/proc")) {
    const pid = Number(e.name);
    if (!Number.isInteger(pid)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const list = children.get(ppid) ?? [];
      list.push(pid);
      children.set(ppid, list);
    } catch { /* exited meanwhile */ }
  }
  return children;
}

/** All live descendants of `pid`. */
export function descendants(pid: number): number[] {
  const children = parentMap();
  const out: number[] = [];
  const todo = [...(children.get(pid) ?? [])];
  while (todo.length) {
    const p = todo.pop()!;
    out.push(p);
    todo.push(...(children.get(p) ?? []));
  }
  return out;
}

/** utime, stime, cutime, cstime of one process in seconds (CLK_TCK = 100). */
function cpuOf(pid: number): [number, number] {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // Fields 14..17 of stat (1-based) are at 11..14 after the state field.
    const own = Number(f[11]) + Number(f[12]);
    const reaped = Number(f[13]) + Number(f[14]);
    return [own / 100, reaped / 100];
  } catch {
    return [0, 0];
  }
}

/**
 * CPU seconds used so far by `pid`, its live descendants and the children it already
 * reaped (a forking server's finished connections).
 */
export function treeCpuSeconds(pid: number): number {
  const [own, reaped] = cpuOf(pid);
  let total = own + reaped;
  for (const d of descendants(pid)) total += cpuOf(d)[0];
  return total;
}

/** Memory of a process tree: summed PSS (shared pages split fairly) and the root's RSS, in KiB. */
export function treeMemoryKiB(pid: number): { pss: number; rootRss: number; processes: number } {
  const pids = [pid, ...descendants(pid)];
  let pss = 0;
  let rootRss = 0;
  for (const p of pids) {
    try {
      const text = Deno.readTextFileSync(`/proc/${p}/smaps_rollup`);
      pss += Number(/^Pss:\s+(\d+)/m.exec(text)?.[1] ?? 0);
      if (p === pid) rootRss = Number(/^Rss:\s+(\d+)/m.exec(text)?.[1] ?? 0);
    } catch { /* exited */ }
  }
  return { pss, rootRss, processes: pids.length };
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Wait until something accepts TCP connections on 127.0.0.1:`port`. */
export async function waitForPort(port: number, proc: Proc, what: string): Promise<void> {
  await waitFor(async () => {
    if (proc.done()) throw new Error(`${what} exited:\n${proc.log().slice(-2000)}`);
    const c = await Deno.connect({ hostname: "127.0.0.1", port });
    c.close();
    return true;
  }, { timeoutMs: 20_000, what }).catch((e) => {
    throw new Error(`${e.message}\n--- ${what} log ---\n${proc.log().slice(-2000)}`);
  });
}

/** Wait until `proc`'s log matches `re`. */
export async function waitForLog(proc: Proc, re: RegExp, what: string): Promise<RegExpMatchArray> {
  return await waitFor(() => {
    const m = proc.log().match(re);
    if (m) return m;
    if (proc.done()) throw new Error(`${what} exited:\n${proc.log().slice(-2000)}`);
    return undefined;
  }, { timeoutMs: 30_000, what }).catch((e) => {
    throw new Error(`${e.message}\n--- ${what} log ---\n${proc.log().slice(-2000)}`);
  });
}

/** Whether an executable exists on PATH or in the sbin dirs; returns its path. */
export function findExe(name: string): string | undefined {
  const dirs = [
    ...(Deno.env.get("PATH") ?? "").split(":"),
    "/usr/local/sbin",
    "/usr/sbin",
    "/sbin",
  ];
  for (const d of dirs.filter(Boolean)) {
    try {
      const st = Deno.statSync(`${d}/${name}`);
      if (st.isFile && ((st.mode ?? 0) & 0o111)) return `${d}/${name}`;
    } catch { /* not here */ }
  }
  return undefined;
}
