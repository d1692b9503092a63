/**
 * The npm package, as a Node user gets it: `scripts/build_npm.ts` builds and packs it (once per
 * run, into a temp dir), the tarball is installed into a fresh project, and then, under the
 * machine's Node.js (>= 20): `npx dockgate keygen`, `serve` and `connect` relay real mutual TLS;
 * the library API works from a plain `.mjs`; its types check with `tsc --noEmit`; and the
 * Docker CLI works through `serve` and `connect` (dockerd harness).
 */
import assert from "node:assert/strict";
import { mkdir, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { dockerdUnavailable, startDockerd } from "./helpers/dockerd.ts";
import { type CliProcess, DENO, ROOT, runCli } from "./helpers/gate.ts";
import {
  assertDockerThroughGate,
  assertRelayAndRefusals,
  builtOnce,
  ok,
  run,
} from "./helpers/packaged.ts";
import { packagedDocs } from "../scripts/build_npm.ts";

// ------------------------------------------------------------------ the package, built once

interface Fixture {
  /** Temp root (short path under /tmp). */
  tmp: string;
  /** Package dir written by the build. */
  npmDir: string;
  /** The tarball. */
  tarball: string;
  /** The consumer project with the tarball installed. */
  app: string;
  /** The version the test built. */
  version: string;
  /** Env for Node children: the test's env, `node` from PATH. */
  env: Record<string, string>;
  /** Build + pack + install time. */
  ms: number;
}

const installedPackage = builtOnce("dg-npm-", async (tmp): Promise<Fixture> => {
  const t0 = performance.now();
  const deno = JSON.parse(await readFile(join(ROOT, "deno.json"), "utf8"));
  const version = `${deno.version}-npmtest.1`;
  const npmDir = join(tmp, "npm");
  const build = ok(
    await run(DENO, [
      "run",
      "-A",
      "scripts/build_npm.ts",
      version,
      "--out",
      npmDir,
      "--pack-dest",
      join(tmp, "dist"),
    ], {
      cwd: ROOT,
      timeoutMs: 180_000,
    }),
    "build_npm.ts",
  );
  const tarballs = (await readdir(join(tmp, "dist"))).filter((f) => f.endsWith(".tgz"));
  assert.deepEqual(tarballs, [`dockgate-${version}.tgz`], build.stderr);
  const tarball = join(tmp, "dist", tarballs[0]);

  const app = join(tmp, "app");
  await mkdir(app);
  await writeFile(
    join(app, "package.json"),
    JSON.stringify({ name: "app", private: true, type: "module" }),
  );
  const env = Deno.env.toObject();
  ok(
    await run("npm", [
      "install",
      "--no-audit",
      "--no-fund",
      "--prefer-offline",
      "--loglevel=error",
      tarball,
    ], {
      cwd: app,
      env,
      timeoutMs: 180_000,
    }),
    "npm install TARBALL",
  );
  const ms = Math.round(performance.now() - t0);
  console.error(`npm package built, packed and installed in ${ms} ms\n${build.stderr}`);
  return { tmp, npmDir, tarball, app, version, env, ms };
});

/** Import lines of a JS/TS file (JSDoc examples excluded): the module specifiers. */
function specifiers(code: string): string[] {
  return [
    ...code.matchAll(
      // Not across a comment: a statement without ";" (`export class E extends Error {}`) must
      // not run on into a JSDoc example's import.
      /^(?:import|export)\b(?:[^;*]|\*(?= as ))*?\bfrom\s+["']([^"']+)["']|^import\s+["']([^"']+)["']/gm,
    ),
  ]
    .map((m) => m[1] ?? m[2]);
}

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...await filesUnder(p));
    else out.push(p);
  }
  return out;
}

// ------------------------------------------------------------------ tests

Deno.test("npm package: build, pack and install; CLI, library API and types under Node", async (t) => {
  const f = await installedPackage();
  const pkgDir = join(f.app, "node_modules", "dockgate");
  const bin = join(f.app, "node_modules", ".bin", "dockgate");

  await t.step("Node.js >= 20 runs the tests", async () => {
    const v = ok(await run("node", ["--version"], { cwd: f.app, env: f.env }), "node --version")
      .stdout.trim();
    assert.ok(Number(v.slice(1).split(".")[0]) >= 20, `node is ${v}`);
  });

  await t.step(
    "package.json: name, version, ESM, exports, types, bin, engines, dependencies",
    async () => {
      const pkg = JSON.parse(await readFile(join(pkgDir, "package.json"), "utf8"));
      assert.equal(pkg.name, "dockgate");
      assert.equal(pkg.version, f.version);
      assert.equal(pkg.type, "module");
      assert.equal(pkg.license, "MIT");
      assert.equal(pkg.engines.node, ">=20");
      assert.equal(pkg.types, "./esm/mod.d.ts");
      assert.deepEqual(pkg.exports["."], { types: "./esm/mod.d.ts", default: "./esm/mod.js" });
      assert.deepEqual(pkg.bin, { dockgate: "esm/cli.js" });
      // Exactly the npm packages of deno.json's import map, with its version ranges.
      const deno = JSON.parse(await readFile(join(ROOT, "deno.json"), "utf8"));
      const want: Record<string, string> = {};
      for (const target of Object.values(deno.imports as Record<string, string>)) {
        const m = target.match(/^npm:((?:@[^/@]+\/)?[^/@]+)@([^/]+)$/);
        if (m) want[m[1]] = m[2];
      }
      assert.deepEqual(pkg.dependencies, want);
      for (const file of await packagedDocs()) {
        assert.equal(
          await readFile(join(pkgDir, file), "utf8"),
          await readFile(join(ROOT, file), "utf8"),
          file,
        );
      }
    },
  );

  await t.step(
    "emitted ESM: .js imports, package names, .d.ts per module, bin with a Node shebang",
    async () => {
      const files = await filesUnder(join(f.npmDir, "esm"));
      const rel = files.map((p) => p.slice(f.npmDir.length + 1)).sort();
      assert.ok(rel.includes("esm/mod.js") && rel.includes("esm/mod.d.ts"), rel.join(" "));
      assert.deepEqual(
        rel.filter((p) => p.endsWith(".ts") && !p.endsWith(".d.ts")),
        [],
        "no TS sources",
      );
      for (const js of rel.filter((p) => p.endsWith(".js") && p !== "esm/cli.js")) {
        assert.ok(rel.includes(js.replace(/\.js$/, ".d.ts")), `declarations for ${js}`);
      }
      const seenPackages = new Set<string>();
      for (const p of files) {
        for (const spec of specifiers(await readFile(p, "utf8"))) {
          if (spec.startsWith(".")) assert.match(spec, /\.js$/, `${p}: ${spec}`);
          else if (!spec.startsWith("node:")) seenPackages.add(spec);
          assert.doesNotMatch(spec, /^(npm|jsr|https?):/, `${p}: ${spec}`);
        }
      }
      // Exactly the npm packages of deno.json's import map.
      const deno = JSON.parse(await readFile(join(ROOT, "deno.json"), "utf8"));
      const mapped = Object.values(deno.imports as Record<string, string>)
        .map((t) => /^npm:((?:@[^/@]+\/)?[^/@]+)@/.exec(t)?.[1]).filter((n) => n !== undefined);
      assert.deepEqual([...seenPackages].sort(), mapped.sort());
      // x509.js loads the Reflect polyfill before @peculiar/x509.
      assert.deepEqual(specifiers(await readFile(join(f.npmDir, "esm/src/pki/x509.js"), "utf8")), [
        "reflect-metadata",
        "@peculiar/x509",
      ]);
      const cli = await readFile(join(f.npmDir, "esm", "cli.js"), "utf8");
      assert.ok(cli.startsWith("#!/usr/bin/env node\n"), cli.slice(0, 40));
      assert.equal((await stat(join(f.npmDir, "esm", "cli.js"))).mode & 0o111, 0o111);
      // The tarball holds the package and nothing else.
      const listed = ok(await run("tar", ["tzf", f.tarball], { cwd: f.tmp }), "tar tzf").stdout
        .split("\n")
        .filter(Boolean).map((p) => p.replace(/^package\//, "")).sort();
      assert.deepEqual(listed, [...await packagedDocs(), "package.json", ...rel].sort());
    },
  );

  await t.step("npx dockgate version and keygen", async () => {
    const v = ok(
      await run("npx", ["dockgate", "version"], { cwd: f.app, env: f.env }),
      "npx dockgate version",
    );
    assert.equal(v.stdout.trim(), `dockgate ${f.version}`);
    const k = ok(
      await run("npx", ["dockgate", "keygen", "--dir", "pki"], { cwd: f.app, env: f.env }),
      "keygen",
    );
    assert.match(k.stderr, /created pki\/clients\/default\/key\.pem/);
    for (const key of ["ca/ca-key.pem", "server/key.pem", "clients/default/key.pem"]) {
      assert.equal((await stat(join(f.app, "pki", key))).mode & 0o777, 0o600, key);
    }
    const cert = await readFile(join(f.app, "pki", "clients", "default", "cert.pem"), "utf8");
    assert.match(cert, /^-----BEGIN CERTIFICATE-----\n/);
    const bad = await run("npx", ["dockgate", "serve", "--bogus"], { cwd: f.app, env: f.env });
    assert.equal(bad.code, 2, bad.stderr);
  });

  await t.step(
    "dockgate serve + connect relay over mutual TLS; no client certificate, no entry",
    async () => {
      await assertRelayAndRefusals(bin, { cwd: f.app, env: f.env }, "/through-node");
    },
  );

  await t.step(
    "library API from a plain .mjs: initPki, serve, connect, refusal of a foreign CA",
    async () => {
      await writeFile(join(f.app, "lib.mjs"), LIBRARY_MJS);
      const work = join(f.tmp, "lib");
      await mkdir(work);
      const r = ok(
        await run("node", ["lib.mjs", work], { cwd: f.app, env: f.env, timeoutMs: 60_000 }),
        "node lib.mjs",
      );
      const out = JSON.parse(r.stdout.trim().split("\n").pop()!);
      assert.equal(out.version, f.version);
      assert.match(out.node, /^v\d+\./);
      // The CA (2 files), the server and client bundles (3 each), and the CRL a new CA
      // publishes into ca/ and server/.
      assert.equal(out.created, 10);
      assert.match(out.gate, /^tcp:\/\/127\.0\.0\.1:\d+$/);
      assert.equal(out.tunnel, `unix://${work}/tunnel.sock`);
      assert.equal(out.tunnelMode, 0o600);
      assert.equal(out.reply, "hello through the gate");
      assert.equal(out.mallory, "");
      assert.equal(out.caIsPem, true);
      assert.ok(
        out.lines.some((l: string) => / INFO accepted .*identity=default /.test(l)),
        out.lines.join("\n"),
      );
      assert.ok(out.lines.some((l: string) => / WARN refused /.test(l)), out.lines.join("\n"));
      assert.equal(out.closed, true);
    },
  );

  await t.step("types: a TypeScript consumer checks with tsc --noEmit (strict)", async () => {
    await writeFile(join(f.app, "check.ts"), CONSUMER_TS);
    await writeFile(
      join(f.app, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          target: "ES2022",
          module: "NodeNext",
          moduleResolution: "NodeNext",
          lib: ["ES2022", "DOM"],
          types: ["node"],
          typeRoots: [join(ROOT, "node_modules", "@types")],
          strict: true,
          noEmit: true,
          skipLibCheck: false,
        },
        files: ["check.ts"],
      }),
    );
    const tsc = join(ROOT, "node_modules", "typescript", "bin", "tsc");
    // check.ts holds a @ts-expect-error: it only passes when the package's types are really used.
    ok(await run("node", [tsc, "-p", "tsconfig.json"], { cwd: f.app, env: f.env }), "tsc --noEmit");
  });
});

Deno.test({
  name: "npm package: the Docker CLI through dockgate serve and connect on Node",
  ignore: dockerdUnavailable(),
}, async () => {
  const f = await installedPackage();
  const bin = join(f.app, "node_modules", ".bin", "dockgate");
  const d = await startDockerd();
  assert.ok(d, "dockerd harness");
  const dir = join(f.app, "docker"); // inside the project, where npx finds the bin
  await mkdir(dir);
  const procs: CliProcess[] = [];
  try {
    ok(
      await run("npx", ["dockgate", "keygen", "--dir", "pki"], { cwd: dir, env: f.env }),
      "keygen",
    );
    // The Docker CLI's own TLS straight to serve: `info`.
    const { pair: { port, serve }, direct } = await assertDockerThroughGate(
      d,
      bin,
      { cwd: dir, env: f.env },
      procs,
      "hello from node\n",
      ["info", "--format", "{{.ID}}"],
    );
    assert.ok(direct.stdout.trim().length > 0);
    // Without a client certificate the CLI gets nothing.
    const anon = await d.docker([
      "--tls",
      "--tlscacert",
      join(dir, "pki", "clients", "default", "ca.pem"),
      "version",
    ], {
      host: `tcp://127.0.0.1:${port}`,
      timeoutMs: 30_000,
    });
    assert.notEqual(anon.code, 0, anon.stdout);
    assert.doesNotMatch(anon.stdout, /Server:/);

    assert.match(serve.log(), /INFO accepted peer=127\.0\.0\.1:\d+ identity=default /);
    assert.match(serve.log(), /WARN refused /);
  } finally {
    for (const p of procs) await p.stop();
    await d.stop();
    await rm(dir, { recursive: true, force: true });
  }
});

Deno.test("npm package on the client: npm install -g TARBALL, then dockgate use (docs/client.md)", async () => {
  const f = await installedPackage();
  const work = join(f.tmp, "client-install");
  const caHost = join(work, "ca-host");
  const prefix = join(work, "prefix");
  const home = join(work, "home");
  for (const d of [caHost, prefix, home]) await mkdir(d, { recursive: true });
  try {
    // The CA host makes the bundle archive (any dockgate; here the checkout's).
    ok(await runCli(["keygen", "--dir", "pki"], { cwd: caHost }), "keygen");
    ok(await runCli(["keygen", "client", "alice", "--dir", "pki"], { cwd: caHost }), "client");
    const archive = join(work, "alice.tar.gz");
    ok(
      await runCli(["env", "alice", "--bundle", archive, "--host", "gate.example:2376"], {
        cwd: caHost,
      }),
      "env --bundle",
    );
    // The client: the package tarball installed globally (into a temp prefix), then `use`.
    ok(
      await run("npm", [
        "install",
        "--global",
        "--prefix",
        prefix,
        "--no-audit",
        "--no-fund",
        "--prefer-offline",
        "--loglevel=error",
        f.tarball,
      ], { cwd: work, env: f.env, timeoutMs: 180_000 }),
      "npm install -g TARBALL",
    );
    const used = ok(
      await run(join(prefix, "bin", "dockgate"), ["use", archive, "--env"], {
        cwd: work,
        env: { PATH: `${join(prefix, "bin")}:${f.env.PATH}`, HOME: home },
        clearEnv: true,
      }),
      "dockgate use",
    );
    const dir = join(home, ".docker", "dockgate", "alice");
    assert.equal(
      used.stdout,
      `export DOCKER_HOST=tcp://gate.example:2376\nexport DOCKER_TLS_VERIFY=1\n` +
        `export DOCKER_CERT_PATH=${dir}\n`,
    );
    assert.equal((await stat(join(dir, "key.pem"))).mode & 0o777, 0o600);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});

// ------------------------------------------------------------------ consumer files

/** Run by node with a work dir argument; prints one JSON line. */
const LIBRARY_MJS = `
import { once } from "node:events";
import { statSync } from "node:fs";
import net from "node:net";
import tls from "node:tls";
import {
  connect, createCa, formatAddress, initPki, issueClient, lineLogger, loadCredentials,
  loadServeConfig, parseAddress, resolveBundlePaths, serve, VERSION,
} from "dockgate";

const work = process.argv[2];
const pki = work + "/pki";
const report = await initPki({ dir: pki });

const echo = net.createServer((s) => s.pipe(s)).listen(0, "127.0.0.1");
await once(echo, "listening");

const config = await loadServeConfig({
  paths: resolveBundlePaths({ certs: pki + "/server" }),
  policy: { allowCn: ["default"] },
});
const lines = [];
let sawRefusal;
const refusal = new Promise((resolve) => (sawRefusal = resolve));
const gate = await serve({
  listen: parseAddress("tcp://127.0.0.1:0"),
  target: { transport: "tcp", host: "127.0.0.1", port: echo.address().port },
  tls: config.tls,
  policy: config.policy,
  revocations: config.revocations,
  logger: lineLogger((l) => {
    lines.push(l);
    if (l.includes(" WARN refused ")) sawRefusal();
  }),
});
const client = await loadCredentials(resolveBundlePaths({ certs: pki + "/clients/default" }), { role: "client" });
const tunnel = await connect({
  server: gate.address,
  serverName: "localhost",
  listen: parseAddress("unix://" + work + "/tunnel.sock"),
  tls: { certPem: client.certPem, keyPem: client.keyPem, caPem: client.caPem },
});
const tunnelMode = statSync(tunnel.address.path).mode & 0o777;

async function drain(socket) {
  let text = "";
  try {
    for await (const chunk of socket) text += chunk;
  } catch {
    // refused: reset or alert
  }
  return text;
}

const viaTunnel = net.connect(tunnel.address.path);
viaTunnel.end("hello through the gate");
const reply = await drain(viaTunnel);

// A certificate from another CA: the gate refuses it, nothing reaches the target.
const foreignCa = await createCa();
const mallory = await issueClient(foreignCa, "mallory");
const direct = tls.connect({
  host: "127.0.0.1",
  port: gate.address.port,
  servername: "localhost",
  ca: client.caPem,
  cert: mallory.certPem,
  key: mallory.keyPem,
});
direct.on("secureConnect", () => direct.end("let me in"));
const refused = await drain(direct);
await refusal;

await tunnel.close();
await gate.close();
await gate.closed;
await tunnel.closed;
echo.close();
console.log(JSON.stringify({
  version: VERSION,
  node: process.version,
  created: report.created.length,
  gate: formatAddress(gate.address),
  tunnel: formatAddress(tunnel.address),
  tunnelMode,
  reply,
  mallory: refused,
  caIsPem: foreignCa.certPem.startsWith("-----BEGIN CERTIFICATE-----") && foreignCa.keyPem.startsWith("-----BEGIN PRIVATE KEY-----"),
  lines,
  closed: true,
}));
`;

/** Type-checked by tsc against the installed package. */
const CONSUMER_TS = `
import {
  type AccessPolicy, type Address, type ConnectHandle, type KeygenReport, type Logger, type PemPair,
  type ServeHandle, type TcpAddress, connect, createCa, evaluatePolicy, formatAddress, initPki,
  issueClient, issueServer, lineLogger, loadServeConfig, parseAddress, resolveBundlePaths,
  revokeCertificate, serve, VERSION,
} from "dockgate";

export async function start(dir: string): Promise<[ServeHandle, ConnectHandle]> {
  const report: KeygenReport = await initPki({ dir, sans: ["gate.example"] });
  const policy: AccessPolicy = { allowOu: ["ops"] };
  const config = await loadServeConfig({ paths: resolveBundlePaths({ certs: dir + "/server" }), policy });
  const logger: Logger = lineLogger((line) => console.error(line), "debug");
  const target: Address = parseAddress("unix:///var/run/docker.sock");
  const gate = await serve({ listen: parseAddress("tcp://127.0.0.1:0"), target, tls: config.tls, policy, logger });
  const ca: PemPair = await createCa({ keyType: "p384", days: 30 });
  const server: PemPair = await issueServer(ca, { sans: ["localhost"] });
  const alice = await issueClient(ca, "alice", { organizationalUnits: ["ops"] });
  const remote: TcpAddress = { transport: "tcp", host: "127.0.0.1", port: 2376 };
  const tunnel = await connect({ server: remote, listen: parseAddress("tcp://127.0.0.1:0"), tls: { ...alice, caPem: ca.certPem } });
  const allowed: boolean = evaluatePolicy(policy, { commonName: "alice", organizationalUnits: ["ops"], dnsNames: [], uris: [], ips: [] }).allow;
  const serial: string = (await revokeCertificate(dir, "default")).serial;
  console.log(report.created.length, formatAddress(gate.address), server.certPem.length, allowed, serial, VERSION);
  // @ts-expect-error: "dsa" is not a KeyType
  await createCa({ keyType: "dsa" });
  const closed: Promise<void> = gate.closed;
  await Promise.all([gate.shutdown(1_000), tunnel.close(), closed]);
  return [gate, tunnel];
}
`;
