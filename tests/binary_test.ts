/**
 * The standalone binary: `scripts/build_bin.ts` builds it (once per run, into a temp dir), and
 * it runs `keygen`, `serve` and `connect` from a temp directory with no node_modules anywhere
 * above it and a PATH with neither `node` nor `deno` (an empty dir; a cleared environment).
 * The Docker CLI then works through it (dockerd harness).
 */
import assert from "node:assert/strict";
import { mkdir, readdir, readFile, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { dockerdUnavailable, freeTempDir, startDockerd, waitFor } from "./helpers/dockerd.ts";
import { ROOT, tlsFlags } from "./helpers/gate.ts";

const DENO = Deno.execPath();
const dec = new TextDecoder();
const enc = new TextEncoder();

// ------------------------------------------------------------------ processes

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

interface RunOptions {
  cwd: string;
  /** With `clearEnv`, the whole environment. */
  env?: Record<string, string>;
  clearEnv?: boolean;
  timeoutMs?: number;
}

async function run(cmd: string, args: string[], opts: RunOptions): Promise<Ran> {
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

function ok(r: Ran, what: string): Ran {
  assert.equal(
    r.code,
    0,
    `${what} exited ${r.code}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`,
  );
  return r;
}

/** A long-running process whose stdout and stderr are collected as its log. */
interface Proc {
  log(): string;
  waitForLog(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** SIGTERM (SIGKILL after 10 s); resolves with the exit code. */
  stop(): Promise<number>;
}

function spawn(cmd: string, args: string[], opts: RunOptions): Proc {
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
  const pump = async (s: ReadableStream<Uint8Array>) => {
    const d = new TextDecoder();
    for await (const chunk of s) text += d.decode(chunk, { stream: true });
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
  let done = false;
  const exited = child.status.then(async (s) => {
    done = true;
    await pumps;
    return s.code;
  });
  return {
    log: () => text,
    async waitForLog(re, timeoutMs = 30_000) {
      return await waitFor(() => {
        const m = text.match(re);
        if (m) return m;
        if (done) throw new Error(`exited before the log matched ${re}`);
        return undefined;
      }, { timeoutMs, what: `log ${re}` }).catch((err) => {
        throw new Error(`${(err as Error).message}\n--- log of ${args.join(" ")} ---\n${text}`);
      });
    },
    async stop() {
      const kill = (sig: Deno.Signal) => {
        if (!done) {
          try {
            child.kill(sig);
          } catch { /* already gone */ }
        }
      };
      kill("SIGTERM");
      const timer = setTimeout(() => kill("SIGKILL"), 10_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

// ------------------------------------------------------------------ sockets

/** A local HTTP service standing in for the target; counts requests. */
function startTarget(): { port: number; requests: () => number; close: () => Promise<void> } {
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
async function httpGet(connecting: Promise<Deno.Conn>, path: string): Promise<string> {
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

// ------------------------------------------------------------------ the binary, built once

interface Fixture {
  /** Temp root (short path under /tmp). */
  tmp: string;
  /** The executable. */
  binary: string;
  /** The version it reports. */
  version: string;
  /** The binary's whole environment: PATH is an empty dir, HOME a temp dir. */
  env: Record<string, string>;
}

let fixture: Promise<Fixture> | undefined;
let fixtureDir: string | undefined;

globalThis.addEventListener("unload", () => {
  if (fixtureDir) Deno.removeSync(fixtureDir, { recursive: true });
});

function builtBinary(): Promise<Fixture> {
  return fixture ??= (async () => {
    const tmp = await freeTempDir("dg-bin-");
    fixtureDir = tmp;
    const binary = join(tmp, "bin", "dockgate-linux-x64");
    const t0 = performance.now();
    const build = ok(
      await run(DENO, ["run", "-A", "scripts/build_bin.ts", "--out", binary], {
        cwd: ROOT,
        timeoutMs: 300_000,
      }),
      "build_bin.ts",
    );
    console.error(`binary built in ${Math.round(performance.now() - t0)} ms\n${build.stderr}`);
    const emptyPath = join(tmp, "empty-path");
    const home = join(tmp, "home");
    await mkdir(emptyPath);
    await mkdir(home);
    const deno = JSON.parse(await readFile(join(ROOT, "deno.json"), "utf8"));
    return { tmp, binary, version: deno.version, env: { PATH: emptyPath, HOME: home } };
  })();
}

/** A fresh work dir; asserts no node_modules in it or any directory above it. */
async function workDir(f: Fixture, name: string): Promise<string> {
  const dir = join(f.tmp, name);
  await mkdir(dir);
  for (let d = dir;; d = dirname(d)) {
    const nm = await stat(join(d, "node_modules")).catch(() => null);
    assert.equal(nm, null, `${d}/node_modules exists`);
    if (d === "/") break;
  }
  return dir;
}

// ------------------------------------------------------------------ tests

Deno.test("binary: keygen, serve and connect without node, deno or node_modules", async (t) => {
  const f = await builtBinary();
  const dir = await workDir(f, "work");
  const opts = { cwd: dir, env: f.env, clearEnv: true };

  await t.step("one executable; PATH holds no node or deno", async () => {
    const st = await stat(f.binary);
    assert.ok(st.mode & 0o100, "executable");
    assert.ok(st.size > 20e6, `size ${st.size}`);
    const head = new Uint8Array(4);
    const file = await Deno.open(f.binary);
    try {
      await file.read(head);
    } finally {
      file.close();
    }
    assert.deepEqual([...head], [0x7f, 0x45, 0x4c, 0x46], "ELF");
    assert.deepEqual(await readdir(f.env.PATH), []);
    assert.equal(
      ok(await run(f.binary, ["version"], opts), "version").stdout,
      `dockgate ${f.version}\n`,
    );
    const usage = await run(f.binary, ["bogus"], opts);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /^dockgate: /);
  });

  await t.step("keygen: PKI, a second client, a revocation", async () => {
    const k = ok(await run(f.binary, ["keygen", "--dir", "pki"], opts), "keygen");
    assert.match(k.stderr, /created pki\/server\/cert\.pem/);
    for (const key of ["ca/ca-key.pem", "server/key.pem", "clients/default/key.pem"]) {
      assert.equal((await stat(join(dir, "pki", key))).mode & 0o777, 0o600, key);
    }
    ok(await run(f.binary, ["keygen", "client", "bob", "--dir", "pki"], opts), "keygen client bob");
    const r = ok(await run(f.binary, ["keygen", "revoke", "bob", "--dir", "pki"], opts), "revoke");
    assert.match(r.stderr, /revoked serial [0-9a-f]+ \(client bob\)/);
    assert.match(
      await readFile(join(dir, "pki", "server", "crl.pem"), "utf8"),
      /^-----BEGIN X509 CRL-----/,
    );
  });

  await t.step(
    "serve + connect relay over mutual TLS; anonymous and revoked peers refused",
    async () => {
      const target = startTarget();
      const procs: Proc[] = [];
      try {
        const serve = spawn(f.binary, [
          "serve",
          "--listen",
          "127.0.0.1:0",
          "--certs",
          "pki/server",
          "--target",
          `tcp://127.0.0.1:${target.port}`,
          "--drain-timeout",
          "2s",
        ], opts);
        procs.push(serve);
        const port = Number((await serve.waitForLog(/listening on tcp:\/\/127\.0\.0\.1:(\d+)/))[1]);
        await serve.waitForLog(/INFO policy: .* crl="1 revoked"/);
        const connect = spawn(f.binary, [
          "connect",
          "--server",
          `127.0.0.1:${port}`,
          "--certs",
          "pki/clients/default",
          "--listen",
          "tcp://127.0.0.1:0",
        ], opts);
        procs.push(connect);
        const local = Number(
          (await connect.waitForLog(/listening on tcp:\/\/127\.0\.0\.1:(\d+)/))[1],
        );

        const reply = await httpGet(
          Deno.connect({ hostname: "127.0.0.1", port: local }),
          "/through-the-binary",
        );
        assert.match(reply, /^HTTP\/1\.[01] 200/);
        assert.ok(reply.endsWith("pong /through-the-binary\n"), reply);
        await serve.waitForLog(/INFO accepted peer=127\.0\.0\.1:\d+ identity=default .*relay=raw/);

        const before = target.requests();
        const pki = join(dir, "pki");
        const caPem = await readFile(join(pki, "ca", "ca.pem"), "utf8");
        const anon = Deno.connectTls({ hostname: "127.0.0.1", port, caCerts: [caPem] });
        assert.equal(await httpGet(anon, "/anonymous"), "");
        await serve.waitForLog(/WARN refused peer=127\.0\.0\.1:\d+ reason=/);

        const bob = Deno.connectTls({
          hostname: "127.0.0.1",
          port,
          caCerts: [caPem],
          cert: await readFile(join(pki, "clients", "bob", "cert.pem"), "utf8"),
          key: await readFile(join(pki, "clients", "bob", "key.pem"), "utf8"),
        });
        assert.equal(await httpGet(bob, "/revoked"), "");
        await serve.waitForLog(
          /WARN refused peer=127\.0\.0\.1:\d+ identity=bob .*reason="[^"]*revoked/,
        );
        assert.equal(target.requests(), before);

        assert.equal(await connect.stop(), 0, connect.log());
        assert.equal(await serve.stop(), 0, serve.log());
        assert.match(serve.log(), /INFO stopped/);
      } finally {
        for (const p of procs) await p.stop();
        await target.close();
      }
    },
  );
});

Deno.test({
  name: "binary: the Docker CLI through the binary's serve and connect",
  ignore: dockerdUnavailable(),
}, async () => {
  const f = await builtBinary();
  const d = await startDockerd();
  assert.ok(d, "dockerd harness");
  const procs: Proc[] = [];
  try {
    const dir = await workDir(f, "docker");
    const opts = { cwd: dir, env: f.env, clearEnv: true };
    ok(await run(f.binary, ["keygen", "--dir", "pki"], opts), "keygen");
    const serve = spawn(f.binary, [
      "serve",
      "--listen",
      "127.0.0.1:0",
      "--certs",
      "pki/server",
      "--target",
      d.host,
    ], opts);
    procs.push(serve);
    const port = Number((await serve.waitForLog(/listening on tcp:\/\/127\.0\.0\.1:(\d+)/))[1]);
    const sock = join(dir, "docker.sock");
    const connect = spawn(f.binary, [
      "connect",
      "--server",
      `127.0.0.1:${port}`,
      "--certs",
      "pki/clients/default",
      "--listen",
      `unix://${sock}`,
    ], opts);
    procs.push(connect);
    await connect.waitForLog(/listening on unix:\/\//);
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
      stdin: "hello from the binary\n",
    });
    assert.equal(cat.code, 0, cat.stderr);
    assert.equal(cat.stdout, "hello from the binary\ndone\n");

    const direct = await d.docker([
      ...tlsFlags(join(dir, "pki", "clients", "default")),
      "images",
      "--format",
      "{{.Repository}}",
    ], {
      host: `tcp://127.0.0.1:${port}`,
    });
    assert.equal(direct.code, 0, direct.stderr);
    assert.ok(direct.stdout.split("\n").includes(d.image.split(":")[0]), direct.stdout);

    assert.match(serve.log(), /INFO accepted peer=127\.0\.0\.1:\d+ identity=default /);
    assert.equal(await connect.stop(), 0, connect.log());
    assert.equal(await serve.stop(), 0, serve.log());
  } finally {
    for (const p of procs) await p.stop();
    await d.stop();
  }
});
