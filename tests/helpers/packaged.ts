/**
 * Helpers for the tests of dockgate as shipped (the npm package under Node, the standalone
 * binary): running its commands, a fixture built once per run, and the `serve` + `connect`
 * scenarios both packagings must pass (an HTTP target, the Docker CLI).
 */

import assert from "node:assert/strict";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { type Dockerd } from "./dockerd.ts";
import { freeTempDir } from "./wait.ts";
import { type CliProcess, spawnProcess, tlsFlags } from "./gate.ts";

const dec = new TextDecoder();
const enc = new TextEncoder();

// ------------------------------------------------------------------ processes

/** A finished process. */
export interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** Where and how a process runs. */
export interface RunOptions {
  cwd: string;
  /** With `clearEnv`, the whole environment. */
  env?: Record<string, string>;
  clearEnv?: boolean;
  timeoutMs?: number;
}

/** Run `cmd ARGS…` to completion (killed after `timeoutMs`, default 120 s). */
export async function run(cmd: string, args: string[], opts: RunOptions): Promise<Ran> {
  const out = await new Deno.Command(cmd, {
    args,
    cwd: opts.cwd,
    env: opts.env,
    clearEnv: opts.clearEnv,
    stdin: "null",
    signal: AbortSignal.timeout(opts.timeoutMs ?? 120_000),
  }).output();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Assert `r` exited 0 (showing its output otherwise); returns it. */
export function ok(r: Ran, what: string): Ran {
  assert.equal(
    r.code,
    0,
    `${what} exited ${r.code}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`,
  );
  return r;
}

/** A long-running `cmd ARGS…` whose stdout and stderr are its log (`waitForLog`: 30 s). */
export function spawn(cmd: string, args: string[], opts: RunOptions): CliProcess {
  return spawnProcess(cmd, args, {
    cwd: opts.cwd,
    env: opts.env,
    clearEnv: opts.clearEnv,
    logTimeoutMs: 30_000,
  });
}

/**
 * `build(tmp)` once per test run, in a fresh temp dir (`prefix…`, short, under /tmp) that is
 * removed when the tests end. Returns the getter of the (shared) result.
 */
export function builtOnce<T>(prefix: string, build: (tmp: string) => Promise<T>): () => Promise<T> {
  let fixture: Promise<T> | undefined;
  let dir: string | undefined;
  globalThis.addEventListener("unload", () => {
    if (dir) Deno.removeSync(dir, { recursive: true });
  });
  return () =>
    fixture ??= (async () => {
      const tmp = await freeTempDir(prefix);
      dir = tmp;
      return await build(tmp);
    })();
}

// ------------------------------------------------------------------ sockets

/** A local HTTP service standing in for the target; counts requests. */
export function startTarget(): {
  port: number;
  requests: () => number;
  close: () => Promise<void>;
} {
  let n = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    n++;
    return new Response(`pong ${new URL(req.url).pathname}\n`);
  });
  return { port: server.addr.port, requests: () => n, close: () => server.shutdown() };
}

/**
 * `GET path` as HTTP/1.0 over the connection `connecting` opens; returns what came back before
 * EOF. A refused peer (connect, handshake or read fails) gets back whatever arrived: usually "".
 */
export async function httpGet(connecting: Promise<Deno.Conn>, path: string): Promise<string> {
  const conn = await connecting.catch(() => null);
  if (!conn) return "";
  let text = "";
  try {
    await conn.write(enc.encode(`GET ${path} HTTP/1.0\r\nHost: gate\r\nConnection: close\r\n\r\n`));
    const buf = new Uint8Array(16384);
    while (true) {
      const n = await conn.read(buf);
      if (n === null) return text;
      text += dec.decode(buf.subarray(0, n));
    }
  } catch {
    return text;
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
}

// ------------------------------------------------------------------ serve + connect

/** A started `serve` and `connect` pair. */
export interface GatePair {
  serve: CliProcess;
  connect: CliProcess;
  /** serve's port on 127.0.0.1. */
  port: number;
  /** connect's port on 127.0.0.1 (with a `tcp://` listen address). */
  local?: number;
}

/**
 * `cmd serve --listen 127.0.0.1:0 --certs pki/server --target TARGET …serveExtra`, then
 * `cmd connect` to it with `pki/clients/default`, listening on `listen` (loopback TCP or a unix
 * socket); both run in `opts.cwd` and are added to `procs` (the caller stops them).
 */
export async function startPair(
  cmd: string,
  opts: RunOptions,
  procs: CliProcess[],
  { target, listen, serveExtra = [] }: { target: string; listen: string; serveExtra?: string[] },
): Promise<GatePair> {
  const serve = spawn(cmd, [
    "serve",
    "--listen",
    "127.0.0.1:0",
    "--certs",
    "pki/server",
    "--target",
    target,
    ...serveExtra,
  ], opts);
  procs.push(serve);
  const port = Number((await serve.waitForLog(/listening on tcp:\/\/127\.0\.0\.1:(\d+)/))[1]);
  const connect = spawn(cmd, [
    "connect",
    "--server",
    `127.0.0.1:${port}`,
    "--certs",
    "pki/clients/default",
    "--listen",
    listen,
  ], opts);
  procs.push(connect);
  if (listen.startsWith("unix://")) {
    await connect.waitForLog(/listening on unix:\/\//);
    return { serve, connect, port };
  }
  const local = Number((await connect.waitForLog(/listening on tcp:\/\/127\.0\.0\.1:(\d+)/))[1]);
  return { serve, connect, port, local };
}

/** Extra checks for {@linkcode assertRelayAndRefusals}. */
export interface RelayChecks {
  /** Once both run: more to wait for in serve's log. */
  ready?: (pair: GatePair) => Promise<unknown>;
  /** After the anonymous client: more clients that must be refused. */
  refuseMore?: (pair: GatePair, caPem: string) => Promise<void>;
}

/**
 * With `cmd` in `opts.cwd`, which holds `pki/` from `cmd keygen`: `serve` (target: a local HTTP
 * service) and `connect` (loopback TCP) relay `GET path` over mutual TLS and serve logs the
 * client `accepted`; TLS with the right CA but no client certificate is refused and logged (as
 * are whatever `checks.refuseMore` tries), and the target never hears of them; both exit 0 on
 * SIGTERM.
 */
export async function assertRelayAndRefusals(
  cmd: string,
  opts: RunOptions,
  path: string,
  checks: RelayChecks = {},
): Promise<void> {
  const target = startTarget();
  const procs: CliProcess[] = [];
  try {
    const pair = await startPair(cmd, opts, procs, {
      target: `tcp://127.0.0.1:${target.port}`,
      listen: "tcp://127.0.0.1:0",
      serveExtra: ["--drain-timeout", "2s"],
    });
    const { serve, connect, port } = pair;
    await checks.ready?.(pair);

    const reply = await httpGet(Deno.connect({ hostname: "127.0.0.1", port: pair.local! }), path);
    assert.match(reply, /^HTTP\/1\.[01] 200/);
    assert.ok(reply.endsWith(`pong ${path}\n`), reply);
    await serve.waitForLog(/INFO accepted peer=127\.0\.0\.1:\d+ identity=default .*relay=raw/);

    // TLS with the right CA but without a client certificate: refused, the target never hears.
    const before = target.requests();
    const caPem = await readFile(join(opts.cwd, "pki", "clients", "default", "ca.pem"), "utf8");
    const anon = Deno.connectTls({ hostname: "127.0.0.1", port, caCerts: [caPem] });
    assert.equal(await httpGet(anon, "/anonymous"), "");
    await serve.waitForLog(/WARN refused peer=127\.0\.0\.1:\d+ reason=/);
    await checks.refuseMore?.(pair, caPem);
    assert.equal(target.requests(), before);

    assert.equal(await connect.stop(), 0, connect.log());
    assert.equal(await serve.stop(), 0, serve.log());
    assert.match(serve.log(), /INFO stopped/);
  } finally {
    for (const p of procs) await p.stop();
    await target.close();
  }
}

/**
 * With `cmd` in `opts.cwd`, which holds `pki/` from `cmd keygen`: `serve` in front of dockerd
 * `d` and `connect` on `opts.cwd/docker.sock` (mode 0600) start (into `procs`, the caller stops
 * them); the Docker CLI gets the server version and pipes `greeting` through `docker run -i`
 * over the tunnel, and with its own TLS (`tlsFlags`) runs `direct` straight against serve.
 * Returns serve, and `direct`'s result (asserted to exit 0).
 */
export async function assertDockerThroughGate(
  d: Dockerd,
  cmd: string,
  opts: RunOptions,
  procs: CliProcess[],
  greeting: string,
  direct: string[],
): Promise<{ pair: GatePair; direct: { stdout: string } }> {
  const sock = join(opts.cwd, "docker.sock");
  const pair = await startPair(cmd, opts, procs, { target: d.host, listen: `unix://${sock}` });
  assert.equal((await stat(sock)).mode & 0o777, 0o600);

  const version = await d.docker(["version", "--format", "{{.Server.Version}}"], {
    host: `unix://${sock}`,
  });
  assert.equal(version.code, 0, version.stderr);
  assert.match(version.stdout.trim(), /^\d+\.\d+/);

  const cat = await d.docker([
    "run",
    "--rm",
    "-i",
    "--network",
    "none",
    d.image,
    "sh",
    "-c",
    "cat; echo done",
  ], {
    host: `unix://${sock}`,
    stdin: greeting,
  });
  assert.equal(cat.code, 0, cat.stderr);
  assert.equal(cat.stdout, `${greeting}done\n`);

  const tls = await d.docker([
    ...tlsFlags(join(opts.cwd, "pki", "clients", "default")),
    ...direct,
  ], {
    host: `tcp://127.0.0.1:${pair.port}`,
  });
  assert.equal(tls.code, 0, tls.stderr);
  assert.match(pair.serve.log(), /INFO accepted peer=127\.0\.0\.1:\d+ identity=default /);
  return { pair, direct: tls };
}
