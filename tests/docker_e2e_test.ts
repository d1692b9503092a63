/**
 * End-to-end tests of the core gate with the REAL docker CLI against a private dockerd:
 *
 * - A: `docker --tlsverify … -H tcp://127.0.0.1:PORT` straight to `dockgate serve`
 *   (and once through `DOCKER_HOST`/`DOCKER_TLS_VERIFY`/`DOCKER_CERT_PATH`);
 * - B: `docker -H unix://…` through `dockgate connect` (unix socket, 0600), which wraps
 *   every connection in mutual TLS to the same `serve`; plus a loopback-TCP `connect`.
 *
 * For each path: version, info, images, run, `run -i` (stdin EOF), `run -t` under a real pty,
 * `exec -i`, `logs -f`, `events`, and a byte-identical `save`/`load` of a 100 MiB image.
 * Also: serve's first run in an empty directory creates ./pki and a second run reuses it.
 *
 * One dockerd for the whole file; everything is stopped in `finally`.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import http from "node:http";
import { join } from "node:path";
import {
  type Dockerd,
  dockerdUnavailable,
  type DockerResult,
  type DockerRunOptions,
  makeBigImage,
  startDockerd,
  which,
} from "./helpers/dockerd.ts";
import { freeTempDir, waitFor } from "./helpers/wait.ts";
import {
  type CliProcess,
  runCli,
  type ServeProcess,
  startConnect,
  startServe,
  tlsFlags,
} from "./helpers/gate.ts";

const dec = new TextDecoder();

/** A way to reach dockerd with the docker CLI: `-H` plus global flags or env. */
interface Path {
  name: string;
  /** Value for `docker -H`, or undefined when `env` sets DOCKER_HOST. */
  host?: string;
  /** Global flags placed before the subcommand (TLS flags for A). */
  flags: string[];
  env?: Record<string, string>;
}

/** Runs `docker FLAGS… ARGS…` through `path`. */
function dockerVia(
  d: Dockerd,
  path: Path,
  args: string[],
  opts: DockerRunOptions = {},
): Promise<DockerResult> {
  return d.docker([...path.flags, ...args], {
    ...opts,
    host: path.host,
    env: { ...path.env, ...opts.env },
  });
}

/** Throws with the CLI's output unless it exited 0. */
function ok(what: string, r: DockerResult): DockerResult {
  assert.equal(r.code, 0, `${what}: exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

/** The environment the harness gives the docker CLI (no DOCKER_* vars, private config dir). */
function cliEnv(d: Dockerd, extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(Deno.env.toObject())) {
    if (!k.startsWith("DOCKER_")) env[k] = v;
  }
  return { ...env, DOCKER_CONFIG: join(d.tmp, "cli"), ...extra };
}

/** Single-quotes a word for `sh -c`. */
function shQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/** The full docker command line (argv) for `path`, for running under `script`. */
function dockerArgv(dockerBin: string, path: Path): string[] {
  return [dockerBin, ...(path.host ? ["-H", path.host] : []), ...path.flags];
}

function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let off = 0; off < n; off += 65536) {
    crypto.getRandomValues(out.subarray(off, Math.min(n, off + 65536)));
  }
  return out;
}

async function sha256File(file: string): Promise<string> {
  return createHash("sha256").update(await Deno.readFile(file)).digest("hex");
}

/** Plain HTTP GET through node:http, no keep-alive; resolves with status and body. */
function httpGet(
  host: string,
  port: number,
  path: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host, port, path, agent: false, timeout: 15_000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => body += c);
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
  });
}

/** True while `proc` has not exited. */
async function running(proc: CliProcess): Promise<boolean> {
  return await Promise.race([proc.exited.then(() => false), Promise.resolve(true)]);
}

/** Runs the docker CLI in `cwd` with `env` (and the harness's private config dir). */
async function dockerIn(
  d: Dockerd,
  dockerBin: string,
  cwd: string,
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(dockerBin, {
    args,
    cwd,
    env: cliEnv(d, env),
    clearEnv: true,
    stdin: "null",
    signal: AbortSignal.timeout(60_000),
  }).output();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** True while the child process has not exited. */
async function childRunning(child: Deno.ChildProcess): Promise<boolean> {
  return await Promise.race([child.status.then(() => false), Promise.resolve(true)]);
}

/** Number of log lines of `proc` matching `re` (global). */
function countLog(proc: CliProcess, re: RegExp): number {
  return proc.log().match(re)?.length ?? 0;
}

/** The per-path scenarios: everything the docker CLI does through the gate, in steps. */
async function scenarios(t: Deno.TestContext, d: Dockerd, path: Path, dockerBin: string) {
  const timed = async (name: string, fn: () => Promise<void>) => {
    const t0 = performance.now();
    await t.step(`${path.name}: ${name}`, async () => {
      await fn();
      console.error(`  ${path.name}: ${name}: ${Math.round(performance.now() - t0)} ms`);
    });
  };

  await timed("version shows the server version", async () => {
    const r = ok("version", await dockerVia(d, path, ["version", "--format", "{{json .}}"]));
    const v = JSON.parse(r.stdout);
    assert.ok(v.Server, `no Server section: ${r.stdout}`);
    assert.match(v.Server.Version, /^\d+\.\d+/);
    assert.match(v.Server.ApiVersion, /^1\.\d+$/);
  });

  await timed("info", async () => {
    const r = ok("info", await dockerVia(d, path, ["info", "--format", "{{json .}}"]));
    const info = JSON.parse(r.stdout);
    assert.equal(info.Driver, "vfs");
    assert.ok(info.Images >= 1, `Images=${info.Images}`);
  });

  await timed("images shows bb:latest", async () => {
    const r = ok(
      "images",
      await dockerVia(d, path, ["images", "--format", "{{.Repository}}:{{.Tag}}"]),
    );
    assert.ok(r.stdout.split("\n").includes(d.image), r.stdout);
  });

  await timed("run --rm echo hello", async () => {
    const r = ok(
      "run",
      await dockerVia(d, path, ["run", "--rm", "--network", "none", d.image, "echo", "hello"]),
    );
    assert.equal(r.stdout, "hello\n");
  });

  await timed("run -i: 2 MiB of stdin through md5sum", async () => {
    const data = randomBytes(2 << 20);
    const want = createHash("md5").update(data).digest("hex");
    const r = ok(
      "run -i md5sum",
      await dockerVia(d, path, ["run", "--rm", "-i", "--network", "none", d.image, "md5sum"], {
        stdin: data,
      }),
    );
    assert.equal(r.stdout, `${want}  -\n`);
  });

  await timed("run -i: the container sees stdin EOF", async () => {
    const r = ok(
      "run -i cat; echo done",
      await dockerVia(
        d,
        path,
        ["run", "--rm", "-i", "--network", "none", d.image, "sh", "-c", "cat; echo done"],
        { stdin: "first line\nsecond line\n", timeoutMs: 60_000 },
      ),
    );
    assert.equal(r.stdout, "first line\nsecond line\ndone\n");
  });

  await timed("run -t under a pseudo-terminal", async () => {
    const cmd = [
      ...dockerArgv(dockerBin, path),
      "run",
      "--rm",
      "-t",
      "--network",
      "none",
      d.image,
      "sh",
      "-c",
      "tty; echo ok",
    ].map(shQuote).join(" ");
    const child = new Deno.Command("script", {
      args: ["-qec", cmd, "/dev/null"],
      env: cliEnv(d, path.env),
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    const out = await child.output();
    clearTimeout(timer);
    const stdout = dec.decode(out.stdout);
    assert.equal(out.code, 0, `script: ${stdout}\n${dec.decode(out.stderr)}`);
    assert.match(stdout, /(^|\n)\/dev\/pts\/\d+\r*\n/);
    assert.match(stdout, /\nok\r*\n$/);
  });

  await timed("exec -i into a running container", async () => {
    const started = ok(
      "run -d",
      await dockerVia(d, path, ["run", "-d", "--network", "none", d.image, "sleep", "300"]),
    );
    const id = started.stdout.trim();
    assert.match(id, /^[0-9a-f]{64}$/);
    try {
      const r = ok(
        "exec -i",
        await dockerVia(d, path, ["exec", "-i", id, "sh", "-c", "cat | wc -c"], {
          stdin: randomBytes(100_000),
          timeoutMs: 60_000,
        }),
      );
      assert.equal(r.stdout.trim(), "100000");
    } finally {
      await d.docker(["rm", "-f", id]);
    }
  });

  await timed("logs -f follows a container to its end", async () => {
    const script = "i=1; while [ $i -le 10 ]; do echo line$i; i=$((i+1)); sleep 0.2; done";
    const started = ok(
      "run -d",
      await dockerVia(d, path, ["run", "-d", "--network", "none", d.image, "sh", "-c", script]),
    );
    const id = started.stdout.trim();
    try {
      const r = ok("logs -f", await dockerVia(d, path, ["logs", "-f", id], { timeoutMs: 60_000 }));
      const want = Array.from({ length: 10 }, (_, i) => `line${i + 1}\n`).join("");
      assert.equal(r.stdout, want);
      const state = ok("inspect", await d.docker(["inspect", "-f", "{{.State.Status}}", id]));
      assert.equal(state.stdout.trim(), "exited");
    } finally {
      await d.docker(["rm", "-f", id]);
    }
  });

  await timed("events stream live and replay", async () => {
    const since = (Date.now() / 1000 - 1).toFixed(3);
    const name = `ev-${path.name.toLowerCase()}-${crypto.randomUUID().slice(0, 8)}`;
    const format = "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}";
    // Live: `docker events` keeps its connection open and must see our container's events.
    const child = new Deno.Command(dockerBin, {
      args: [
        ...(path.host ? ["-H", path.host] : []),
        ...path.flags,
        "events",
        "--since",
        since,
        "--filter",
        `container=${name}`,
        "--format",
        format,
      ],
      env: cliEnv(d, path.env),
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    let live = "";
    const pump = (async () => {
      for await (const c of child.stdout) live += dec.decode(c, { stream: true });
    })();
    const errText = new Response(child.stderr).text();
    const seen = (action: string) =>
      waitFor(() => live.includes(`container ${action} ${name}\n`), {
        timeoutMs: 20_000,
        what: `a live "${action}" event for ${name}`,
      }).catch((e) => {
        throw new Error(`${e.message}; events so far: ${JSON.stringify(live)}`);
      });
    try {
      ok(
        "run -d",
        await dockerVia(d, path, [
          "run",
          "-d",
          "--name",
          name,
          "--network",
          "none",
          d.image,
          "sleep",
          "300",
        ]),
      );
      await seen("start");
      // The stream already delivered "start": what follows can only arrive live.
      assert.ok(!live.includes(`container die ${name}`), live);
      ok("rm -f", await dockerVia(d, path, ["rm", "-f", name]));
      await seen("die");
      await seen("destroy");
      assert.ok(await childRunning(child), "docker events exited early");
    } finally {
      try {
        child.kill("SIGTERM");
      } catch { /* already gone */ }
      await child.status;
      await pump;
      await errText;
    }
    // Bounded: --since/--until in the past returns the recorded events and exits 0.
    const until = (Date.now() / 1000 + 0.5).toFixed(3);
    const r = ok(
      "events --until",
      await dockerVia(d, path, [
        "events",
        "--since",
        since,
        "--until",
        until,
        "--filter",
        `container=${name}`,
        "--format",
        format,
      ], { timeoutMs: 30_000 }),
    );
    assert.ok(r.stdout.includes(`container start ${name}\n`), r.stdout);
    assert.ok(r.stdout.includes(`container destroy ${name}\n`), r.stdout);
  });
}

/** save through `path` to a file, compare with the raw save, rmi, load it back, check the data. */
async function saveLoadRoundTrip(
  d: Dockerd,
  path: Path,
  image: string,
  md5: string,
  rawSha: string,
  file: string,
) {
  let t0 = performance.now();
  ok("save", await dockerVia(d, path, ["save", "-o", file, image], { timeoutMs: 300_000 }));
  const saveMs = Math.round(performance.now() - t0);
  const size = (await Deno.stat(file)).size;
  assert.equal(await sha256File(file), rawSha, "docker save through the gate differs from raw");
  ok("rmi", await dockerVia(d, path, ["rmi", image]));
  const gone = await d.docker(["image", "inspect", image]);
  assert.notEqual(gone.code, 0, "image still there after rmi");
  t0 = performance.now();
  const loaded = ok(
    "load",
    await dockerVia(d, path, ["load", "-i", file], { timeoutMs: 300_000 }),
  );
  const loadMs = Math.round(performance.now() - t0);
  assert.match(loaded.stdout, new RegExp(`Loaded image: ${image.replace(".", "\\.")}`));
  const r = ok(
    "md5sum",
    await dockerVia(d, path, [
      "run",
      "--rm",
      "--network",
      "none",
      image,
      "md5sum",
      "/data/random.bin",
    ], { timeoutMs: 120_000 }),
  );
  assert.equal(r.stdout, `${md5}  /data/random.bin\n`);
  console.error(
    `  ${path.name}: save ${(size / 2 ** 20).toFixed(1)} MiB in ${saveMs} ms, load in ${loadMs} ms`,
  );
  await Deno.remove(file);
}

Deno.test({
  name: "docker e2e: the real docker CLI through serve (A) and connect (B)",
  ignore: dockerdUnavailable(),
  sanitizeOps: false,
  sanitizeResources: false,
}, async (t) => {
  const tStart = performance.now();
  const d = await startDockerd();
  if (!d) {
    console.error("SKIP: docker e2e test skipped (see SKIP line above)");
    return;
  }
  console.error(`dockerd ready in ${Math.round(performance.now() - tStart)} ms`);
  const dockerBin = which("docker")!;
  const work = await freeTempDir("dge-");
  const procs: CliProcess[] = [];
  try {
    const pki = join(work, "pki");
    const bundle = join(pki, "clients", "default");
    const kg = await runCli(["keygen", "--dir", pki]);
    assert.equal(kg.code, 0, kg.stderr);

    const serve: ServeProcess = await startServe([
      "--target",
      d.host,
      "--certs",
      join(pki, "server"),
    ]);
    procs.push(serve);

    const pathA: Path = { name: "A", host: serve.host, flags: tlsFlags(bundle) };

    await t.step("A: DOCKER_HOST/DOCKER_TLS_VERIFY/DOCKER_CERT_PATH env", async () => {
      const r = ok(
        "version via env",
        await d.docker(["version", "--format", "{{.Server.Version}}"], {
          env: {
            DOCKER_HOST: `tcp://localhost:${serve.port}`,
            DOCKER_TLS_VERIFY: "1",
            DOCKER_CERT_PATH: bundle,
          },
        }),
      );
      assert.match(r.stdout.trim(), /^\d+\.\d+/);
      await serve.waitForLog(/INFO accepted peer=\S+ identity=default serial=\S+ .*relay=raw/);
    });

    await t.step("A: no client certificate is refused", async () => {
      const r = await d.docker(["--tls", "--tlscacert", join(bundle, "ca.pem"), "version"], {
        host: serve.host,
        timeoutMs: 30_000,
      });
      assert.notEqual(r.code, 0, r.stdout);
      assert.doesNotMatch(r.stdout, /Server:/);
      await serve.waitForLog(/WARN refused peer=\S+ reason=/);
    });

    await scenarios(t, d, pathA, dockerBin);

    const sock = join(work, "docker.sock");
    const connect = await startConnect([
      "--server",
      `127.0.0.1:${serve.port}`,
      "--server-name",
      "localhost",
      "--listen",
      `unix://${sock}`,
      "--certs",
      bundle,
    ]);
    procs.push(connect);
    const pathB: Path = { name: "B", host: `unix://${sock}`, flags: [] };

    await t.step("B: the unix socket is mode 0600", async () => {
      assert.equal(connect.address, `unix://${sock}`);
      const st = await Deno.stat(sock);
      assert.ok(st.isSocket, "not a socket");
      assert.equal((st.mode ?? 0) & 0o777, 0o600);
    });

    await scenarios(t, d, pathB, dockerBin);

    await t.step("B: connect on loopback TCP answers plain HTTP /_ping and docker", async () => {
      const tcp = await startConnect([
        "--server",
        `127.0.0.1:${serve.port}`,
        "--server-name",
        "localhost",
        "--listen",
        "tcp://127.0.0.1:0",
        "--certs",
        bundle,
      ]);
      procs.push(tcp);
      const m = tcp.address.match(/^tcp:\/\/127\.0\.0\.1:(\d+)$/);
      assert.ok(m, tcp.address);
      const port = Number(m[1]);
      assert.ok(port > 0);
      const ping = await httpGet("127.0.0.1", port, "/_ping");
      assert.equal(ping.status, 200);
      assert.equal(ping.body, "OK");
      const r = ok(
        "version via tcp connect",
        await d.docker(["version", "--format", "{{.Server.Version}}"], { host: tcp.address }),
      );
      assert.match(r.stdout.trim(), /^\d+\.\d+/);
      assert.equal(await tcp.stop(), 0);
    });

    await t.step("save | load of a 100 MiB image, byte-identical, through A and B", async (t2) => {
      const image = "big:e2e";
      let t0 = performance.now();
      const md5 = await makeBigImage(d, 100, image);
      console.error(`  makeBigImage 100 MiB: ${Math.round(performance.now() - t0)} ms`);
      const raw = join(work, "raw.tar");
      t0 = performance.now();
      ok("raw save", await d.docker(["save", "-o", raw, image], { timeoutMs: 300_000 }));
      console.error(`  raw save: ${Math.round(performance.now() - t0)} ms`);
      assert.ok((await Deno.stat(raw)).size > 100 * 2 ** 20);
      const rawSha = await sha256File(raw);
      await Deno.remove(raw);
      for (const path of [pathA, pathB]) {
        const passed = await t2.step(`${path.name}: save, rmi, load, md5sum`, async () => {
          await saveLoadRoundTrip(d, path, image, md5, rawSha, join(work, `${path.name}.tar`));
        });
        if (!passed) break; // the image may be gone; B can't run on it
      }
      await d.docker(["rmi", "-f", image]);
    });

    await t.step("serve logged accepted identity=default and is still healthy", async () => {
      assert.ok(await running(serve), `serve exited:\n${serve.log()}`);
      assert.ok(await running(connect), `connect exited:\n${connect.log()}`);
      const r = ok(
        "final version",
        await dockerVia(d, pathA, ["version", "--format", "{{.Server.Version}}"]),
      );
      assert.match(r.stdout.trim(), /^\d+\.\d+/);
      const accepted = countLog(serve, /INFO accepted peer=\S+ identity=default /g);
      assert.ok(accepted >= 20, `only ${accepted} accepted lines`);
      // Every accepted connection is closed again (no stuck relays) once the CLIs are gone.
      await waitFor(
        () => countLog(serve, /INFO closed peer=\S+ identity=default /g) === accepted,
        { timeoutMs: 15_000, what: "a closed line for every accepted connection" },
      ).catch((e) => {
        throw new Error(`${e.message}\n--- serve log ---\n${serve.log()}`);
      });
      assert.doesNotMatch(serve.log(), / ERROR /, serve.log());
      assert.doesNotMatch(connect.log(), / ERROR /, connect.log());
    });

    await t.step("first run: serve without cert flags creates ./pki, then reuses it", async () => {
      const cwd = await freeTempDir("dgf-");
      try {
        assert.deepEqual([...Deno.readDirSync(cwd)], []);
        const first = await startServe(["--target", d.host], { cwd });
        procs.push(first);
        assert.match(first.log(), /INFO no certificates yet: creating a PKI in \.\/pki/);
        const hint = await first.waitForLog(
          /clients connect with: DOCKER_HOST=(\S+) DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=(\S+) docker version/,
        );
        assert.equal(hint[1], first.host);
        assert.equal(hint[2], "pki/clients/default");
        // Exactly what the hint says, run from the same directory (relative DOCKER_CERT_PATH).
        const env = { DOCKER_HOST: hint[1], DOCKER_TLS_VERIFY: "1", DOCKER_CERT_PATH: hint[2] };
        const v1 = await dockerIn(d, dockerBin, cwd, ["version"], env);
        assert.equal(v1.code, 0, `version with the new bundle: ${v1.stdout}\n${v1.stderr}`);
        assert.match(v1.stdout, /Server:/);
        for (const k of ["ca/ca-key.pem", "server/key.pem", "clients/default/key.pem"]) {
          const mode = (await Deno.stat(join(cwd, "pki", k))).mode! & 0o777;
          assert.equal(mode, 0o600, `${k} has mode ${mode.toString(8)}`);
        }
        const keys = [
          "ca/ca-key.pem",
          "ca/ca.pem",
          "server/key.pem",
          "server/cert.pem",
          "clients/default/key.pem",
          "clients/default/cert.pem",
        ];
        const before = await Promise.all(keys.map((k) => Deno.readTextFile(join(cwd, "pki", k))));
        assert.equal(await first.stop(), 0);

        const second = await startServe(["--target", d.host], { cwd });
        procs.push(second);
        const hint2 = await second.waitForLog(/clients connect with: DOCKER_HOST=(\S+) /);
        assert.doesNotMatch(second.log(), /no certificates yet|INFO created/);
        const after = await Promise.all(keys.map((k) => Deno.readTextFile(join(cwd, "pki", k))));
        assert.deepEqual(after, before, "the PKI changed on the second start");
        const v2 = await dockerIn(d, dockerBin, cwd, ["version"], {
          ...env,
          DOCKER_HOST: hint2[1],
        });
        assert.equal(v2.code, 0, `version with the reused bundle: ${v2.stdout}\n${v2.stderr}`);
        assert.match(v2.stdout, /Server:/);
        await second.waitForLog(/INFO accepted peer=\S+ identity=default /);
        assert.equal(await second.stop(), 0);
      } finally {
        await Deno.remove(cwd, { recursive: true }).catch(() => {});
      }
    });

    await t.step("serve and connect stop cleanly on SIGTERM", async () => {
      assert.equal(await connect.stop(), 0);
      assert.equal(await serve.stop(), 0);
      assert.match(serve.log(), /INFO stopped/);
    });
  } finally {
    for (const p of procs.reverse()) await p.stop(5_000).catch(() => {});
    await d.stop();
    await Deno.remove(work, { recursive: true }).catch(() => {});
    console.error(`docker e2e total: ${Math.round(performance.now() - tStart)} ms`);
  }
});
