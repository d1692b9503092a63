import assert from "node:assert/strict";
import { defaultConnectListen, DEFAULTS, parseCommand, UsageError } from "../src/cli/args.ts";

const env = { HOME: "/home/u" };

Deno.test("help and version", () => {
  assert.deepEqual(parseCommand([], env), { kind: "help", topic: undefined });
  assert.deepEqual(parseCommand(["help", "serve"], env), { kind: "help", topic: "serve" });
  assert.deepEqual(parseCommand(["serve", "--help"], env), { kind: "help", topic: "serve" });
  assert.deepEqual(parseCommand(["--version"], env), { kind: "version" });
});

Deno.test("keygen forms", () => {
  assert.deepEqual(parseCommand(["keygen"], env), {
    kind: "keygen",
    action: "init",
    dir: "pki",
    keyType: "p256",
    days: 365,
    caDays: 3650,
    sans: [],
    force: false,
  });
  assert.deepEqual(
    parseCommand([
      "keygen",
      "server",
      "--san",
      "a.example",
      "--san",
      "10.0.0.5",
      "--dir",
      "d",
      "--force",
    ], env),
    {
      kind: "keygen",
      action: "server",
      dir: "d",
      keyType: "p256",
      days: 365,
      sans: ["a.example", "10.0.0.5"],
      force: true,
    },
  );
  assert.deepEqual(
    parseCommand([
      "keygen",
      "client",
      "alice",
      "--ou",
      "ops",
      "--key-type",
      "rsa2048",
      "--days",
      "30",
    ], env),
    {
      kind: "keygen",
      action: "client",
      dir: "pki",
      keyType: "rsa2048",
      days: 30,
      name: "alice",
      ous: ["ops"],
      force: false,
      revokeOld: false,
    },
  );
  assert.equal(
    (parseCommand(["keygen", "client", "a", "--force", "--revoke-old"], env) as {
      revokeOld: boolean;
    })
      .revokeOld,
    true,
  );
  assert.throws(
    () => parseCommand(["keygen", "client", "a", "--revoke-old"], env),
    /--revoke-old goes with --force/,
  );
  assert.deepEqual(parseCommand(["keygen", "crl", "--dir", "x"], env), {
    kind: "keygen",
    action: "crl",
    dir: "x",
  });
  assert.deepEqual(parseCommand(["keygen", "revoke", "bob", "--dir", "x"], env), {
    kind: "keygen",
    action: "revoke",
    dir: "x",
    subject: "bob",
  });
  const init = parseCommand(["keygen", "--ca-days", "100", "--key-type", "P-384"], env);
  assert.equal(init.kind === "keygen" && init.action === "init" && init.caDays, 100);
  assert.equal(init.kind === "keygen" && init.action === "init" && init.keyType, "p384");
});

Deno.test("serve defaults", () => {
  const c = parseCommand(["serve"], env);
  assert.equal(c.kind, "serve");
  if (c.kind !== "serve") return;
  assert.deepEqual(c.listen, { transport: "tcp", host: "0.0.0.0", port: 2376 });
  assert.deepEqual(c.target, { transport: "unix", path: "/var/run/docker.sock" });
  assert.equal(c.source.certs, DEFAULTS.serveCerts);
  assert.equal(c.defaultCerts, true);
  assert.equal(c.handshakeTimeoutMs, 10_000);
  assert.equal(c.maxConnections, 1024);
  assert.equal(c.maxHandshakes, 128);
  assert.equal(c.maxHandshakesPerAddress, 16);
  assert.equal(c.crlStale, "warn");
  assert.equal(c.keepRevokedConnections, false);
  assert.equal(c.drainTimeoutMs, 30_000);
  assert.equal(c.maxConnLifetimeMs, undefined);
  assert.equal(c.insecureKeyPerms, false);
  assert.deepEqual([c.allowCn, c.allowSan, c.allowOu], [[], [], []]);
});

Deno.test("serve flags", () => {
  const c = parseCommand([
    "serve",
    "--listen",
    "tcp://127.0.0.1:0",
    "--target",
    "tcp://10.0.0.2:2375",
    "--cert",
    "c",
    "--key",
    "k",
    "--ca",
    "a",
    "--crl",
    "r",
    "--allow-cn",
    "alice",
    "--allow-cn",
    "*.ci",
    "--allow-san",
    "spiffe://x",
    "--allow-ou",
    "ops",
    "--handshake-timeout",
    "500ms",
    "--max-connections",
    "3",
    "--max-handshakes",
    "7",
    "--max-handshakes-per-address",
    "2",
    "--crl-stale",
    "refuse",
    "--keep-revoked-connections",
    "--drain-timeout",
    "2s",
    "--max-conn-lifetime",
    "1h",
    "--insecure-key-perms",
    "--log-level",
    "debug",
  ], env);
  assert.ok(c.kind === "serve");
  if (c.kind !== "serve") return;
  assert.equal(c.defaultCerts, false);
  assert.deepEqual(c.source, { certs: undefined, cert: "c", key: "k", ca: "a" });
  assert.deepEqual(c.target, { transport: "tcp", host: "10.0.0.2", port: 2375 });
  assert.deepEqual(c.allowCn, ["alice", "*.ci"]);
  assert.equal(c.handshakeTimeoutMs, 500);
  assert.equal(c.maxConnections, 3);
  assert.deepEqual([c.maxHandshakes, c.maxHandshakesPerAddress, c.crlStale], [7, 2, "refuse"]);
  assert.equal(c.keepRevokedConnections, true);
  assert.throws(() => parseCommand(["serve", "--crl-stale", "maybe"], env), /Invalid --crl-stale/);
  assert.equal(c.maxConnLifetimeMs, 3_600_000);
  assert.equal(c.logLevel, "debug");
});

Deno.test("connect defaults follow the Docker CLI", () => {
  const c = parseCommand(["connect", "--server", "dock.example"], {
    HOME: "/home/u",
    XDG_RUNTIME_DIR: "/run/user/1",
  });
  assert.ok(c.kind === "connect");
  if (c.kind !== "connect") return;
  assert.deepEqual(c.server, { transport: "tcp", host: "dock.example", port: 2376 });
  assert.equal(c.source.certs, "/home/u/.docker");
  assert.deepEqual(c.listen, { transport: "unix", path: "/run/user/1/dockgate.sock" });
  const d = parseCommand(["connect", "--server", "h:1", "--listen", "tcp://127.0.0.1:2375"], {
    DOCKER_CERT_PATH: "/certs",
  });
  assert.ok(d.kind === "connect" && d.source.certs === "/certs" && d.listen.transport === "tcp");
  assert.equal(defaultConnectListen({}, 42), "unix:///tmp/dockgate-42.sock");
});

Deno.test("usage errors are UsageError with a clear message", () => {
  const cases: [string[], RegExp][] = [
    [["bogus"], /Unknown command "bogus"/],
    [["serve", "--bogus"], /bogus/],
    [["serve", "--listen", "unix:///x.sock"], /TCP/],
    [["serve", "--listen", "a:99999"], /out of range/],
    [
      ["serve", "--handshake-timeout", "soon"],
      /Invalid --handshake-timeout "soon": expected a duration/,
    ],
    [["serve", "--max-connections", "0"], /--max-connections/],
    [["serve", "--log-level", "loud"], /--log-level/],
    [["serve", "extra"], /extra/],
    [["connect"], /--server/],
    [["connect", "--server", "unix:///x"], /HOST:PORT/],
    [["keygen", "client"], /NAME/],
    [["keygen", "client", "a", "--san", "x"], /--san/],
    [["keygen", "frobnicate"], /Unknown keygen action/],
    [["keygen", "--key-type", "dsa"], /dsa/],
    [["keygen", "--days", "-3"], /--days|-3/],
    [["keygen", "revoke"], /NAME or a certificate SERIAL/],
    [
      ["sevre"],
      /Unknown command "sevre" \(did you mean serve\?\); the commands are keygen, serve, connect, policy, env, use, inspect, doctor, join, renew, completion, help, version$/,
    ],
    [["help", "sevre"], /No help for "sevre" \(did you mean serve\?\)/],
    [
      ["keygen", "--days", "-5"],
      /^Invalid --days "-5": negative; expected a whole number of days of at least 1/,
    ],
    [["keygen", "client", "a", "--days=0"], /^Invalid --days "0": zero/],
    [["serve", "--max-connections", "-1"], /^Invalid --max-connections "-1": negative/],
    [
      ["serve", "--target", "/var/run/docker.sock"],
      /^Invalid --target "\/var\/run\/docker\.sock": that is a path; a unix socket is written unix:\/\/\/var\/run\/docker\.sock$/,
    ],
    [
      ["serve", "--log-level", "wran"],
      /expected debug, info, warn or error \(did you mean warn\?\)/,
    ],
    [["serve", "--drain-timeout"], /^--drain-timeout needs a value: --drain-timeout D$/],
    [
      ["serve", "--bogus"],
      /^Unknown option '--bogus': serve has no such flag \(see "dockgate serve --help"\)$/,
    ],
    [["keygen", "revoke", "bob", "--days", "3"], /--days does not apply to "keygen revoke"/],
    [["keygen", "clinet", "a"], /Unknown keygen action "clinet" \(did you mean client\?\)/],
    [["completion", "tcsh"], /takes one shell: bash, zsh, fish/],
    [["connect", "--server", "h:1", "--listen", "/tmp/x.sock"], /unix:\/\/\/tmp\/x\.sock/],
  ];
  for (const [argv, re] of cases) {
    assert.throws(() => parseCommand(argv, env), (err: Error) => {
      assert.ok(err instanceof UsageError, `${argv.join(" ")}: ${err}`);
      assert.match(err.message, re, argv.join(" "));
      assert.ok(!err.message.includes("\n"), "one line");
      return true;
    });
  }
});

Deno.test("serve: API policy flags, defaults and mistakes", () => {
  const d = parseCommand(["serve"], env);
  assert.ok(d.kind === "serve");
  assert.equal(d.policy, undefined);
  assert.equal(d.policyMode, "enforce");
  assert.equal(d.auditLog, undefined);
  assert.equal(d.maxBodyBytes, 1024 * 1024);
  const c = parseCommand([
    "serve",
    "--policy",
    "p.yaml",
    "--policy-mode",
    "audit",
    "--audit-log",
    "/var/log/dockgate.audit",
    "--max-body",
    "256KiB",
  ], env);
  assert.ok(c.kind === "serve");
  assert.deepEqual(
    [c.policy, c.policyMode, c.auditLog, c.maxBodyBytes],
    ["p.yaml", "audit", "/var/log/dockgate.audit", 256 * 1024],
  );
  assert.throws(
    () => parseCommand(["serve", "--policy-mode", "warn"], env),
    /--policy-mode "warn"/,
  );
  assert.throws(() => parseCommand(["serve", "--max-body", "lots"], env), UsageError);
  assert.throws(() => parseCommand(["serve", "--max-body", "0"], env), /--max-body/);
});

Deno.test("policy check: FILE METHOD PATH with --identity, and its mistakes", () => {
  assert.deepEqual(
    parseCommand([
      "policy",
      "check",
      "p.json",
      "--identity",
      "ci-runner",
      "--ou",
      "ci",
      "POST",
      "/v1.41/containers/create",
      "--body",
      "b.json",
    ], env),
    {
      kind: "policy-check",
      file: "p.json",
      identity: "ci-runner",
      ous: ["ci"],
      sans: [],
      method: "POST",
      path: "/v1.41/containers/create",
      body: "b.json",
    },
  );
  assert.deepEqual(parseCommand(["policy"], env), { kind: "help", topic: "policy" });
  assert.throws(() => parseCommand(["policy", "lint", "p"], env), /Unknown policy action "lint"/);
  assert.throws(() => parseCommand(["policy", "check", "p", "GET", "/x"], env), /--identity/);
  assert.throws(
    () => parseCommand(["policy", "check", "p", "--identity", "a", "GET"], env),
    /FILE METHOD PATH/,
  );
  assert.throws(
    () => parseCommand(["policy", "check", "p", "--identity", "a", "get", "/x"], env),
    /Invalid METHOD/,
  );
});

Deno.test("--print-config: every setting, defaults as their values, never unset", async () => {
  const { formatSetting } = await import("../src/cli/print_config.ts");
  for (const verb of ["serve", "connect"]) {
    const server = verb === "connect" ? ["--server", "h:1"] : [];
    const c = parseCommand([verb, ...server, "--drain-timeout", "30"], env);
    assert.ok(c.kind === "serve" || c.kind === "connect");
    const lines = c.settings.map(formatSetting);
    assert.ok(lines.every((l) => !l.includes("unset")), lines.join("\n"));
    const line = (name: string) => lines.find((l) => l.startsWith(`${name} = `));
    assert.equal(
      line("drain-timeout"),
      "drain-timeout = 30 (a bare number is seconds: 30s)  (flag)",
    );
    assert.equal(line("log-level"), "log-level = info  (default)");
    if (verb === "serve") {
      assert.equal(line("max-connections"), "max-connections = 1024  (default)");
      assert.equal(line("metrics"), "metrics = off  (default)");
      assert.equal(line("allow-cn"), "allow-cn = any certificate from the CA  (default)");
    }
  }
});

Deno.test("keygen: validity defaults come from DEFAULTS (leaf, CA, intermediate)", () => {
  const i = parseCommand(["keygen", "intermediate", "team"], env);
  assert.ok(i.kind === "keygen" && i.action === "intermediate");
  assert.equal(i.days, DEFAULTS.intermediateDays);
  const r = parseCommand(["keygen", "renew", "alice"], env);
  assert.ok(r.kind === "keygen" && r.action === "renew");
  assert.equal(r.days, DEFAULTS.leafDays);
});

Deno.test("use: one archive, one mode, the Docker CLI's config directory by default", () => {
  const c = parseCommand(["use", "alice.tar.gz"], { HOME: "/home/a" });
  assert.equal(c.kind, "use");
  if (c.kind !== "use") return;
  assert.equal(c.mode, "context");
  assert.equal(c.dockerConfig, "/home/a/.docker");
  const e = parseCommand(["use", "a.tgz", "--env", "--host", "gate"], { DOCKER_CONFIG: "/cfg" });
  if (e.kind !== "use") throw new Error(e.kind);
  assert.equal(e.mode, "env");
  assert.equal(e.host, "gate:2376");
  assert.equal(e.dockerConfig, "/cfg");
  assert.throws(() => parseCommand(["use", "a.tgz", "--env", "--connect"], {}), /Give one of/);
  assert.throws(() => parseCommand(["use"], {}), /"use" needs one bundle archive/);
  const env = parseCommand(["env", "alice", "--bundle", "a.tar.gz", "--host", "g:1"], {});
  if (env.kind !== "env") throw new Error(env.kind);
  assert.equal(env.bundleHost, "g:1");
  const guessed = parseCommand(["env", "alice", "--bundle", "a.tar.gz"], {});
  if (guessed.kind !== "env") throw new Error(guessed.kind);
  assert.equal(guessed.bundleHost, undefined, "a default host name is never recorded");
});
