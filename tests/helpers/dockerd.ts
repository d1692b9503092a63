/**
 * Real-Docker test harness: starts a private `dockerd` (20.10, from Debian's docker.io, or with
 * `engine: "26"` Docker Engine 26.1 unpacked by scripts/test.sh, see {@linkcode ENGINE26_DIR})
 * in a fresh temp dir, imports a tiny busybox image built from the host's static busybox, and
 * runs the real `docker` CLI (the engine's own) against it. {@linkcode availableEngines} lists
 * the engines to loop e2e tests over.
 *
 * Each harness is fully isolated from any system dockerd and from other harnesses: its own
 * data-root, exec-root (dockerd 20.10 starts its own containerd under it; for 26 the harness
 * starts one there, see startContainerd), socket, pidfile and an
 * empty `--config-file`. Paths live under `/tmp/dg-XXXX` to stay well below the ~108-byte
 * unix-socket path limit (containerd's sockets live under the exec-root).
 *
 * Availability: needs root plus `dockerd` and `docker` on the machine. When they are missing,
 * {@linkcode startDockerd} prints a loud `SKIP:` line to stderr and returns `null` — except when
 * the `CI` env var is set, where it throws: tests never skip silently in CI.
 * `DOCKGATE_DOCKERD=skip` forces the skip path (for checking it; it also throws under CI).
 *
 * @module
 */

import { freeTempDir, waitFor } from "./wait.ts";

/** Result of one `docker` CLI run. */
export interface DockerResult {
  /** Exit code of the CLI. */
  code: number;
  /** Stdout decoded as UTF-8. */
  stdout: string;
  /** Stderr decoded as UTF-8. */
  stderr: string;
  /** Raw stdout bytes. */
  stdoutBytes: Uint8Array;
}

/** Options for {@linkcode Dockerd.docker}. */
export interface DockerRunOptions {
  /** Bytes or text to pipe to the CLI's stdin (stdin is closed after). Default: no stdin. */
  stdin?: string | Uint8Array;
  /** Extra environment for the CLI (applied after all `DOCKER_*` vars are cleared). */
  env?: Record<string, string>;
  /** Kill the CLI and throw after this long. Default 120 000 ms. */
  timeoutMs?: number;
  /**
   * Value for `-H`. Default: the harness's raw socket, unless `env` sets `DOCKER_HOST` or
   * `DOCKER_CONTEXT`, in which case no `-H` is passed.
   */
  host?: string;
}

/** A running private dockerd. */
export interface Dockerd {
  /** Path of dockerd's unix socket. */
  socket: string;
  /** `unix://` + {@linkcode Dockerd.socket}. */
  host: string;
  /** The imported busybox image, `"bb:latest"` (CMD `sh`). */
  image: string;
  /** The harness's temp dir (removed by {@linkcode Dockerd.stop}); free for tests to use. */
  tmp: string;
  /** dockerd's pid. */
  pid: number;
  /** Which engine runs (see {@linkcode StartDockerdOptions.engine}). */
  engine: Engine;
  /** Runs the real `docker` CLI; see {@linkcode DockerRunOptions}. Never throws on non-zero exit. */
  docker(args: string[], opts?: DockerRunOptions): Promise<DockerResult>;
  /** Last `lines` lines of dockerd's log (for failure messages). */
  logTail(lines?: number): Promise<string>;
  /** Stops dockerd (SIGTERM, then SIGKILL), waits for it and removes the temp dir. Idempotent. */
  stop(): Promise<void>;
}

/** Options for {@linkcode startDockerd}. */
export interface StartDockerdOptions {
  /** Bound on the time to wait for dockerd's `/_ping`. Default 60 000 ms. */
  readyTimeoutMs?: number;
  /** Image tag to import busybox as. Default `"bb:latest"`. */
  image?: string;
  /** Extra dockerd flags. */
  extraArgs?: string[];
  /**
   * Which Docker Engine: `"20.10"` (default, the system's Debian 12 docker.io) or `"26"` (26.1,
   * API 1.45, unpacked by scripts/test.sh into {@linkcode ENGINE26_DIR}; its own dockerd,
   * docker CLI and containerd, the system's runc).
   */
  engine?: Engine;
}

/** A Docker Engine the harness can start; see {@linkcode availableEngines}. */
export type Engine = "20.10" | "26";

/**
 * Where scripts/test.sh unpacks Docker Engine 26.1 (Debian 13's docker.io, docker-cli and
 * containerd): `$DOCKGATE_ENGINE26_DIR`, default `/var/cache/dockgate-test/engine-26`.
 */
export const ENGINE26_DIR = Deno.env.get("DOCKGATE_ENGINE26_DIR") ??
  "/var/cache/dockgate-test/engine-26";

/** The binaries and PATH of one engine. */
interface EngineBins {
  dockerd: string;
  docker: string;
  /** Own containerd to start (engine 26), or undefined: dockerd starts its managed one. */
  containerd?: string;
  /** Dirs to put first on PATH (containerd-shim-runc-v2 is found there). */
  pathFirst: string[];
}

function engine26Bins(): EngineBins {
  return {
    dockerd: `${ENGINE26_DIR}/usr/sbin/dockerd`,
    docker: `${ENGINE26_DIR}/usr/bin/docker`,
    containerd: `${ENGINE26_DIR}/usr/bin/containerd`,
    pathFirst: [`${ENGINE26_DIR}/usr/sbin`, `${ENGINE26_DIR}/usr/bin`],
  };
}

function engine26Missing(): string | undefined {
  const b = engine26Bins();
  const missing = [b.dockerd, b.docker, b.containerd!].filter((p) => !isFile(p));
  if (missing.length === 0) return undefined;
  return `engine 26 not unpacked (missing ${missing.join(", ")}; bash scripts/test.sh as root ` +
    `unpacks it)`;
}

let engine26Warned = false;

/**
 * The engines to run real-Docker tests against: `"20.10"` when the system's `dockerd` is
 * installed, `"26"` when unpacked in {@linkcode ENGINE26_DIR}. A missing 26 prints a loud
 * `SKIP:` line (once) — except under `CI`, where `"26"` is always listed, so
 * {@linkcode startDockerd} throws for it: the install step was supposed to unpack it.
 *
 * @example Loop an e2e test over both engines
 * ```ts ignore
 * for (const engine of availableEngines()) {
 *   Deno.test(`thing works on dockerd ${engine}`, async () => {
 *     const d = await startDockerd({ engine });
 *     if (!d) return;
 *     try { await d.docker(["ps"]); } finally { await d.stop(); }
 *   });
 * }
 * ```
 */
export function availableEngines(): Engine[] {
  const engines: Engine[] = [];
  if (which("dockerd")) engines.push("20.10");
  const missing = engine26Missing();
  if (missing === undefined || Deno.env.get("CI")) {
    engines.push("26");
  } else if (!engine26Warned) {
    engine26Warned = true;
    console.error(`\n${"!".repeat(78)}\nSKIP: dockerd 26 tests: ${missing}\n${"!".repeat(78)}\n`);
  }
  return engines;
}

const SEARCH_DIRS = ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin"];
const BUSYBOX_CANDIDATES = ["/bin/busybox", "/usr/bin/busybox", "/usr/lib/busybox/busybox"];
const enc = new TextEncoder();
const dec = new TextDecoder();

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** Finds an executable on PATH (plus the usual sbin dirs). */
export function which(cmd: string): string | undefined {
  const path = (Deno.env.get("PATH") ?? "").split(":").filter(Boolean);
  for (const dir of [...path, ...SEARCH_DIRS]) {
    const p = `${dir}/${cmd}`;
    try {
      const st = Deno.statSync(p);
      if (st.isFile && st.mode !== null && (st.mode & 0o111) !== 0) return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Env for child processes: the current env minus every `DOCKER_*` var, plus `extra`. */
function cleanEnv(
  extra: Record<string, string> = {},
  pathFirst: string[] = [],
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(Deno.env.toObject())) {
    if (!k.startsWith("DOCKER_")) env[k] = v;
  }
  // dockerd finds containerd/runc/docker-init on PATH; make sure the sbin dirs are there.
  const path = [...pathFirst, ...(env.PATH ?? "").split(":").filter(Boolean)];
  for (const d of SEARCH_DIRS) if (!path.includes(d)) path.push(d);
  env.PATH = path.join(":");
  return { ...env, ...extra };
}

/** One `GET /_ping` over the unix socket; true on `200 OK`. */
async function pingOnce(socket: string): Promise<boolean> {
  let conn: Deno.UnixConn | undefined;
  try {
    conn = await Deno.connect({ transport: "unix", path: socket });
    await conn.write(enc.encode("GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n"));
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(4096);
    while (true) {
      const n = await conn.read(buf);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
    }
    const text = dec.decode(concat(chunks));
    return /^HTTP\/1\.[01] 200/.test(text) && text.endsWith("OK");
  } catch {
    return false;
  } finally {
    try {
      conn?.close();
    } catch {
      // already closed
    }
  }
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}

async function tail(path: string, lines = 40): Promise<string> {
  try {
    const text = await Deno.readTextFile(path);
    return text.split("\n").slice(-lines - 1).join("\n");
  } catch (e) {
    return `(no log: ${String(e)})`;
  }
}

/** Runs a command to completion; returns code and output. */
async function run(
  cmd: string,
  args: string[],
  opts: { stdin?: string | Uint8Array; env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<DockerResult> {
  const child = new Deno.Command(cmd, {
    args,
    env: opts.env ?? cleanEnv(),
    clearEnv: true,
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let writing: Promise<void> = Promise.resolve();
  if (opts.stdin !== undefined) {
    const data = typeof opts.stdin === "string" ? enc.encode(opts.stdin) : opts.stdin;
    const w = child.stdin.getWriter();
    writing = (async () => {
      try {
        // Write in chunks so a huge payload doesn't sit in one buffer.
        for (let off = 0; off < data.length; off += 1 << 16) {
          await w.write(data.subarray(off, off + (1 << 16)));
        }
        await w.close();
      } catch {
        // the process exited before reading everything; its exit code tells the story
        try {
          await w.abort();
        } catch { /* ignore */ }
      }
    })();
  }
  let timedOut = false;
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  }, timeoutMs);
  try {
    const [out] = await Promise.all([child.output(), writing]);
    const stdout = dec.decode(out.stdout);
    const stderr = dec.decode(out.stderr);
    if (timedOut) {
      throw new Error(
        `${cmd} ${args.join(" ")} timed out after ${timeoutMs} ms\nstdout: ${
          stdout.slice(-2000)
        }\nstderr: ${stderr.slice(-2000)}`,
      );
    }
    return { code: out.code, stdout, stderr, stdoutBytes: out.stdout };
  } finally {
    clearTimeout(timer);
  }
}

/** Throws unless the result has exit code 0. */
function check(what: string, r: DockerResult): DockerResult {
  if (r.code !== 0) {
    throw new Error(`${what} failed (exit ${r.code})\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  }
  return r;
}

function findBusybox(): string {
  for (const p of BUSYBOX_CANDIDATES) {
    if (!isFile(p)) continue;
    // A dynamically linked busybox would not run in an empty rootfs: require busybox-static.
    const bytes = Deno.readFileSync(p);
    const head = dec.decode(bytes.subarray(0, Math.min(bytes.length, 4096)));
    if (head.includes("/lib64/ld-linux") || head.includes("/lib/ld-linux")) continue;
    return p;
  }
  throw new Error(
    "no statically linked busybox found (looked at " + BUSYBOX_CANDIDATES.join(", ") +
      "): apt-get install -y busybox-static",
  );
}

/**
 * Builds a rootfs dir with static busybox and its applet symlinks (sh, cat, echo, sleep, head,
 * wc, md5sum, ls, true, ...) plus /etc/passwd, /etc/group and /tmp.
 */
async function buildRootfs(dir: string): Promise<void> {
  const busybox = findBusybox();
  for (const d of ["bin", "etc", "tmp", "proc", "sys", "dev", "root"]) {
    await Deno.mkdir(`${dir}/${d}`, { recursive: true });
  }
  await Deno.chmod(`${dir}/tmp`, 0o1777);
  await Deno.copyFile(busybox, `${dir}/bin/busybox`);
  await Deno.chmod(`${dir}/bin/busybox`, 0o755);
  const list = check("busybox --list", await run(busybox, ["--list"]));
  for (const applet of list.stdout.split("\n").map((s) => s.trim()).filter(Boolean)) {
    if (applet === "busybox" || applet.includes("/")) continue;
    try {
      await Deno.symlink("busybox", `${dir}/bin/${applet}`);
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
    }
  }
  await Deno.writeTextFile(`${dir}/etc/passwd`, "root:x:0:0:root:/root:/bin/sh\n");
  await Deno.writeTextFile(`${dir}/etc/group`, "root:x:0:\n");
}

/** Tars `rootfs` and `docker import`s it as `tag` (CMD sh). */
async function importRootfs(d: Dockerd, rootfs: string, tag: string): Promise<void> {
  const tar = `${rootfs}.tar`;
  try {
    check("tar rootfs", await run("tar", ["-C", rootfs, "-cf", tar, "."], { timeoutMs: 600_000 }));
    check(
      `docker import ${tag}`,
      await d.docker(["import", "--change", 'CMD ["sh"]', tar, tag], { timeoutMs: 600_000 }),
    );
  } finally {
    await Deno.remove(tar).catch(() => {});
    await Deno.remove(rootfs, { recursive: true }).catch(() => {});
  }
}

/** Mount points at or under `dir`, deepest first (from /proc/self/mountinfo). */
async function mountsUnder(dir: string): Promise<string[]> {
  let info = "";
  try {
    info = await Deno.readTextFile("/proc/self/mountinfo");
  } catch {
    return [];
  }
  const unescape = (s: string) =>
    s.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
  return info.split("\n").map((l) => l.split(" ")[4]).filter((m): m is string => !!m)
    .map(unescape)
    .filter((m) => m === dir || m.startsWith(dir + "/"))
    .sort((a, b) => b.length - a.length);
}

/** Pids whose command line mentions `dir/` (containerd, shims of one harness), and their children. */
async function leftoverPids(dir: string): Promise<{ owners: number[]; children: number[] }> {
  const owners: number[] = [];
  const parents = new Map<number, number>();
  for await (const e of Deno.readDir("/proc")) {
    const pid = Number(e.name);
    if (!Number.isInteger(pid) || pid === Deno.pid) continue;
    try {
      const cmd = (await Deno.readTextFile(`/proc/${pid}/cmdline`)).replaceAll("\0", " ");
      if (cmd.includes(dir + "/")) owners.push(pid);
      const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
      parents.set(pid, Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
    } catch { /* exited meanwhile */ }
  }
  const children = [...parents].filter(([pid, ppid]) =>
    owners.includes(ppid) && !owners.includes(pid)
  )
    .map(([pid]) => pid);
  return { owners, children };
}

/** SIGKILLs what a dead dockerd left behind: container inits first, then shims and containerd. */
async function killLeftovers(dir: string): Promise<void> {
  const { owners, children } = await leftoverPids(dir);
  const all = [...children, ...owners];
  if (all.length === 0) return;
  console.error(`dockerd harness: killing leftover processes ${all.join(" ")}`);
  for (const pid of all) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch { /* gone */ }
  }
  await waitFor(() => all.every((p) => !pidAlive(p)), { timeoutMs: 10_000, what: "leftovers exit" })
    .catch(() => {});
}

/** True while `pid` exists and is not a zombie. */
function pidAlive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/** Live harnesses, so an exiting test process doesn't leave dockerds behind. */
const live = new Set<{ pid: number }>();
let unloadHooked = false;
function hookUnload() {
  if (unloadHooked) return;
  unloadHooked = true;
  globalThis.addEventListener("unload", () => {
    for (const h of live) {
      try {
        Deno.kill(h.pid, "SIGTERM");
      } catch { /* gone */ }
    }
  });
}

/** Why the harness can't run here (undefined when it can). Cheap and synchronous. */
function unavailableReason(engine: Engine = "20.10"): string | undefined {
  if (Deno.env.get("DOCKGATE_DOCKERD") === "skip") return "DOCKGATE_DOCKERD=skip";
  if (Deno.build.os !== "linux") return `not Linux: ${Deno.build.os}`;
  if (Deno.uid() !== 0) return `not root: uid ${Deno.uid()}`;
  if (engine === "26") return engine26Missing();
  const missing = ["dockerd", "docker"].filter((c) => !which(c));
  if (missing.length) return `not found: ${missing.join(", ")}`;
  return undefined;
}

/**
 * For `Deno.test({ ignore: dockerdUnavailable(), ... })`: true (after a loud `SKIP:` line on
 * stderr) when the harness can't run here. Under `CI` it is always false, so the test runs and
 * {@linkcode startDockerd} throws: tests never skip silently in CI.
 */
export function dockerdUnavailable(): boolean {
  refuseInUnitTier();
  if (Deno.env.get("CI")) return false;
  const reason = unavailableReason();
  if (reason === undefined) return false;
  skipOrThrow(reason);
  return true;
}

/**
 * The unit tier (scripts/test_tiers.ts sets `DOCKGATE_TEST_TIER=unit`) never starts dockerd:
 * a file that does belongs to the e2e tier, so it fails here rather than slowing the fast tier
 * or skipping there.
 */
function refuseInUnitTier(): void {
  if (Deno.env.get("DOCKGATE_TEST_TIER") !== "unit") return;
  throw new Error(
    "this test file starts dockerd but is in the unit tier: name it *_e2e_test.ts or add it to " +
      "E2E_FILES in scripts/test_tiers.ts",
  );
}

function skipOrThrow(reason: string): null {
  const msg = `dockerd tests need root and docker.io (${reason})`;
  if (Deno.env.get("CI")) {
    throw new Error(`CI is set, refusing to skip: ${msg}`);
  }
  console.error(`\n${"!".repeat(78)}\nSKIP: ${msg}\n${"!".repeat(78)}\n`);
  return null;
}

/** Spawns `bin args` with its output into `log` (`exec` keeps the pid the program's own). */
function spawnLogged(
  bin: string,
  args: string[],
  log: string,
  env: Record<string, string>,
): Deno.ChildProcess {
  return new Deno.Command("/bin/sh", {
    args: ["-c", 'log="$1"; shift; exec "$@" >"$log" 2>&1', "sh", log, bin, ...args],
    env,
    clearEnv: true,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
}

/** A containerd started for one harness. */
interface OwnContainerd {
  address: string;
  child: Deno.ChildProcess;
  status: Promise<Deno.CommandStatus>;
}

/**
 * Starts a containerd of its own under the harness dir (engine 26). Why not dockerd's managed
 * one: dockerd 26.1 uses `/run/containerd/containerd.sock` whenever that path exists (a system
 * containerd), and would share it (and its `moby` namespace) with every other daemon; only
 * without it does it spawn a managed containerd from PATH. Waits for the socket.
 */
async function startContainerd(
  bin: string,
  tmp: string,
  env: Record<string, string>,
): Promise<OwnContainerd> {
  const state = `${tmp}/exec/containerd`;
  const address = `${state}/containerd.sock`;
  const config = `${tmp}/containerd.toml`;
  await Deno.writeTextFile(
    config,
    [
      "version = 2",
      `root = "${tmp}/data/containerd"`,
      `state = "${state}"`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      "[grpc]",
      `  address = "${address}"`,
      "[debug]",
      `  address = "${state}/debug.sock"`,
      "",
    ].join("\n"),
  );
  const log = `${tmp}/containerd.log`;
  const child = spawnLogged(bin, ["--config", config], log, env);
  let exited: Deno.CommandStatus | undefined;
  const status = child.status.then((s) => exited = s);
  await waitFor(() => {
    if (exited) throw new Error(`containerd exited early with code ${exited.code}`);
    return isSocket(address);
  }, { timeoutMs: 30_000, what: `containerd socket ${address}` }).catch(async (e) => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
    await status;
    throw new Error(`${e.message}\n--- containerd log tail (${log}) ---\n${await tail(log)}`);
  });
  return { address, child, status };
}

/** SIGTERM, then SIGKILL after 10 s; waits for the exit. */
async function stopContainerd(c: OwnContainerd): Promise<void> {
  try {
    c.child.kill("SIGTERM");
  } catch { /* gone */ }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const graceful = await Promise.race([
    c.status.then(() => true),
    new Promise<boolean>((r) => timer = setTimeout(() => r(false), 10_000)),
  ]);
  clearTimeout(timer);
  if (!graceful) {
    try {
      c.child.kill("SIGKILL");
    } catch { /* gone */ }
  }
  await c.status;
}

function isSocket(path: string): boolean {
  try {
    return Deno.statSync(path).isSocket === true;
  } catch {
    return false;
  }
}

/**
 * Starts a private dockerd in a fresh temp dir, waits for `/_ping` (backoff, bounded by
 * `readyTimeoutMs`) and imports the busybox image. Returns `null` (after a loud `SKIP:` on
 * stderr) when not root or docker.io is missing — but throws instead when `CI` is set.
 * Always call {@linkcode Dockerd.stop} (e.g. in `finally`).
 */
export async function startDockerd(options: StartDockerdOptions = {}): Promise<Dockerd | null> {
  const engine = options.engine ?? "20.10";
  if (engine !== "20.10" && engine !== "26") throw new RangeError(`unknown engine ${engine}`);
  refuseInUnitTier();
  const reason = unavailableReason(engine);
  if (reason !== undefined) return skipOrThrow(reason);
  const bins: EngineBins = engine === "26"
    ? engine26Bins()
    : { dockerd: which("dockerd")!, docker: which("docker")!, pathFirst: [] };

  const tmp = await freeTempDir("dg-");
  const socket = `${tmp}/d.sock`;
  const host = `unix://${socket}`;
  const log = `${tmp}/dockerd.log`;
  const cliConfig = `${tmp}/cli`;
  await Deno.mkdir(`${tmp}/data`);
  await Deno.mkdir(`${tmp}/exec`);
  await Deno.mkdir(cliConfig);
  await Deno.writeTextFile(`${tmp}/daemon.json`, "{}\n");
  await Deno.writeTextFile(`${cliConfig}/config.json`, "{}\n");

  const args = [
    "--iptables=false",
    "--ip6tables=false",
    "--bridge=none",
    // A pool of its own (256 /24s): the host's routes (and bridges a killed test daemon left
    // behind) cannot exhaust the default /16s that user networks are cut from.
    "--default-address-pool=base=10.123.0.0/16,size=24",
    "--storage-driver=vfs",
    `--data-root=${tmp}/data`,
    `--exec-root=${tmp}/exec`,
    `-H`,
    host,
    `--pidfile=${tmp}/dockerd.pid`,
    `--config-file=${tmp}/daemon.json`,
    "--shutdown-timeout=5",
    ...(options.extraArgs ?? []),
  ];
  const env = cleanEnv({}, bins.pathFirst);
  hookUnload();
  let containerd: OwnContainerd | undefined;
  if (bins.containerd) {
    try {
      containerd = await startContainerd(bins.containerd, tmp, env);
    } catch (e) {
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
      throw e;
    }
    args.push(`--containerd=${containerd.address}`);
  }
  const ctdHandle = containerd && { pid: containerd.child.pid };
  if (ctdHandle) live.add(ctdHandle);
  // dockerd's output goes to the log file, not through our pipes.
  const child = spawnLogged(bins.dockerd, args, log, env);
  const handle = { pid: child.pid };
  live.add(handle);
  let exited: Deno.CommandStatus | undefined;
  const statusP = child.status.then((s) => {
    exited = s;
    return s;
  });

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    try {
      if (!exited) {
        // Remove containers first (SIGKILL), so shutdown doesn't wait on busybox PID-1s.
        try {
          const ps = await d.docker(["ps", "-aq"], { timeoutMs: 15_000 });
          const ids = ps.stdout.split("\n").filter(Boolean);
          if (ids.length) await d.docker(["rm", "-f", ...ids], { timeoutMs: 30_000 });
          // Networks are host bridges: removed here, or they outlive the daemon on the host.
          await d.docker(["swarm", "leave", "--force"], { timeoutMs: 30_000 });
          await d.docker(["network", "prune", "-f"], { timeoutMs: 30_000 });
          await d.docker(["network", "rm", "docker_gwbridge"], { timeoutMs: 15_000 });
        } catch { /* best effort */ }
        try {
          child.kill("SIGTERM");
        } catch { /* gone */ }
        let timer: ReturnType<typeof setTimeout> | undefined;
        const graceful = await Promise.race([
          statusP.then(() => true),
          new Promise<boolean>((r) => timer = setTimeout(() => r(false), 20_000)),
        ]);
        clearTimeout(timer);
        if (!graceful) {
          console.error(`dockerd ${child.pid} ignored SIGTERM for 20 s; SIGKILL`);
          try {
            child.kill("SIGKILL");
          } catch { /* gone */ }
        }
      }
      await statusP;
      if (containerd) await stopContainerd(containerd);
      // If dockerd died hard, its containerd, shims and containers may still run: kill them.
      await killLeftovers(tmp);
    } finally {
      live.delete(handle);
      if (ctdHandle) live.delete(ctdHandle);
      for (const m of await mountsUnder(tmp)) {
        await run("umount", ["-l", m], { timeoutMs: 15_000 }).catch(() => {});
      }
      await Deno.remove(tmp, { recursive: true }).catch((e) => {
        console.error(`dockerd harness: could not remove ${tmp}: ${e}`);
      });
    }
  };

  const d: Dockerd = {
    socket,
    host,
    image: options.image ?? "bb:latest",
    tmp,
    pid: child.pid,
    engine,
    docker(dargs, opts = {}) {
      const envHasHost = opts.env && ("DOCKER_HOST" in opts.env || "DOCKER_CONTEXT" in opts.env);
      const h = opts.host ?? (envHasHost ? undefined : host);
      return run(bins.docker, [...(h ? ["-H", h] : []), ...dargs], {
        stdin: opts.stdin,
        env: cleanEnv({ DOCKER_CONFIG: cliConfig, ...opts.env }, bins.pathFirst),
        timeoutMs: opts.timeoutMs,
      });
    },
    logTail: (lines) => tail(log, lines),
    stop,
  };

  try {
    const readyTimeoutMs = options.readyTimeoutMs ?? 60_000;
    await waitFor(async () => {
      if (exited) {
        throw new Error(`dockerd exited early with code ${exited.code}`);
      }
      return await pingOnce(socket);
    }, { timeoutMs: readyTimeoutMs, what: `dockerd /_ping on ${socket}` }).catch(async (e) => {
      throw new Error(`${e.message}\n--- dockerd log tail (${log}) ---\n${await tail(log)}`);
    });
    const rootfs = `${tmp}/rootfs`;
    await buildRootfs(rootfs);
    await importRootfs(d, rootfs, d.image);
  } catch (e) {
    await stop();
    throw e;
  }
  return d;
}

/**
 * Imports an image `tag` (busybox plus `/data/random.bin`, `sizeMiB` MiB of random bytes) into
 * `d`, for save/load round trips. Returns the hex md5 of the random file, which a container
 * can check with `md5sum /data/random.bin`.
 */
export async function makeBigImage(d: Dockerd, sizeMiB: number, tag: string): Promise<string> {
  const rootfs = await Deno.makeTempDir({ dir: d.tmp, prefix: "big-" });
  await buildRootfs(rootfs);
  await Deno.mkdir(`${rootfs}/data`);
  const file = await Deno.open(`${rootfs}/data/random.bin`, { write: true, create: true });
  try {
    const chunk = new Uint8Array(1 << 20);
    for (let i = 0; i < sizeMiB; i++) {
      for (let off = 0; off < chunk.length; off += 65536) {
        crypto.getRandomValues(chunk.subarray(off, off + 65536));
      }
      let written = 0;
      while (written < chunk.length) written += await file.write(chunk.subarray(written));
    }
  } finally {
    file.close();
  }
  const sum = check("md5sum", await run("md5sum", [`${rootfs}/data/random.bin`]));
  const md5 = sum.stdout.split(/\s+/)[0];
  await importRootfs(d, rootfs, tag);
  return md5;
}
