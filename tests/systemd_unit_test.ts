/**
 * contrib/dockgate.service judged by systemd's own tools, and run with the identity it gives:
 *
 * - `systemd-analyze verify` accepts it (with ExecStart pointing at a binary that exists here).
 * - `systemd-analyze security --offline=true` rates its exposure at 3.0 or less.
 * - serve started by `setpriv` with the unit's User (a uid that is not 0), SupplementaryGroups
 *   (docker), CapabilityBoundingSet/AmbientCapabilities and NoNewPrivileges works: the Docker CLI
 *   goes through it to a real dockerd, and a no-escape bind under another user's 0700 directory
 *   is resolved (allowed inside the allowed root, refused where a link leads out of it).
 * - contrib/dockgate.logrotate passes `logrotate --debug`, and a real rotation of a running
 *   serve's audit log, with its postrotate signal, leaves each record in one of the two files.
 */
import assert from "node:assert/strict";
import { chmod, chown, mkdir, readFile, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { cliCommand, ROOT, runCli, spawnProcess, startServe, tlsFlags } from "./helpers/gate.ts";
import { tlsExchange } from "./helpers/http_raw.ts";
import { bundleCreds, RecordingTarget } from "./helpers/tls_peers.ts";
import { dockerdUnavailable, startDockerd, which } from "./helpers/dockerd.ts";
import { freeTempDir, waitFor } from "./helpers/wait.ts";

const UNIT = join(ROOT, "contrib", "dockgate.service");

/** The [Service] section's settings, in order (a key may repeat). */
async function serviceSettings(): Promise<[string, string][]> {
  const text = await readFile(UNIT, "utf8");
  const section = text.split(/^\[/m).find((s) => s.startsWith("Service]")) ?? "";
  return section.split("\n").flatMap((line) => {
    const m = /^(\w+)=(.*)$/.exec(line.trim());
    return m ? [[m[1], m[2]] as [string, string]] : [];
  });
}

/** The unit with ExecStart's program replaced by `program` (verify wants one that exists). */
async function unitWithProgram(dir: string, program: string): Promise<string> {
  const text = await readFile(UNIT, "utf8");
  const out = join(dir, "dockgate.service");
  await writeFile(out, text.replace(/^ExecStart=\S+/m, `ExecStart=${program}`));
  await writeFile(
    join(dir, "dockgate.socket"),
    await readFile(join(ROOT, "contrib", "dockgate.socket")),
  );
  return out;
}

async function run(cmd: string, args: string[]) {
  const r = await new Deno.Command(cmd, { args, stdin: "null" }).output();
  const d = new TextDecoder();
  return { code: r.code, stdout: d.decode(r.stdout), stderr: d.decode(r.stderr) };
}

const analyze = which("systemd-analyze");

Deno.test({
  name: "contrib/dockgate.service: systemd-analyze verify has nothing to say",
  ignore: !analyze,
  async fn() {
    const dir = await freeTempDir();
    const unit = await unitWithProgram(dir, Deno.execPath());
    const r = await run(analyze!, ["verify", unit]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr.trim(), "", `verify complained:\n${r.stderr}`);
  },
});

Deno.test({
  name: "contrib/dockgate.service: systemd-analyze security rates its exposure 3.0 or less",
  ignore: !analyze,
  async fn() {
    const dir = await freeTempDir();
    const unit = await unitWithProgram(dir, Deno.execPath());
    const r = await run(analyze!, ["security", "--offline=true", unit]);
    const m = /Overall exposure level for dockgate\.service: (\d+\.\d+)/.exec(r.stdout);
    assert.ok(m, `no exposure level in:\n${r.stdout}${r.stderr}`);
    assert.ok(Number(m[1]) <= 3.0, `exposure ${m[1]} > 3.0:\n${r.stdout}`);
  },
});

/** setpriv flags for the unit's identity: uid/gid `id`, the unit's groups, caps and NNP. */
async function unitIdentity(id: number): Promise<string[]> {
  const settings = await serviceSettings();
  const one = (key: string) => settings.filter(([k]) => k === key).map(([, v]) => v).join(" ");
  assert.notEqual(one("User"), "root", "the unit runs as root");
  assert.ok(one("User") !== "", "the unit names no User");
  const groups = one("SupplementaryGroups").split(/\s+/).filter(Boolean).map((g) => {
    const line = Deno.readTextFileSync("/etc/group").split("\n").find((l) => l.startsWith(`${g}:`));
    assert.ok(line, `group ${g} does not exist here`);
    return line.split(":")[2];
  });
  const caps = (key: string) =>
    one(key).split(/\s+/).filter(Boolean).map((c) => c.replace(/^CAP_/, "").toLowerCase());
  const bounding = caps("CapabilityBoundingSet");
  const ambient = caps("AmbientCapabilities");
  const plus = (list: string[]) => list.map((c) => `+${c}`).join(",");
  return [
    `--reuid=${id}`,
    `--regid=${id}`,
    groups.length ? `--groups=${groups.join(",")}` : "--clear-groups",
    `--bounding-set=-all${bounding.length ? "," + plus(bounding) : ""}`,
    ...(ambient.length ? [`--inh-caps=${plus(ambient)}`, `--ambient-caps=${plus(ambient)}`] : []),
    ...(one("NoNewPrivileges") === "true" ? ["--no-new-privs"] : []),
  ];
}

Deno.test({
  name: "serve runs with the unit's identity (not root, group docker, one capability)",
  ignore: !which("setpriv") || Deno.uid() !== 0 || dockerdUnavailable(),
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const d = await startDockerd();
    if (!d) return;
    const work = await freeTempDir();
    const serveProc: { kill(): void }[] = [];
    try {
      // Another user's 0700 home, with a data directory inside and a second root that is a
      // link into it (only a gate that can read the home sees that it lies under the first).
      const home = join(work, "home");
      const root = join(home, "data");
      await mkdir(join(root, "sub"), { recursive: true });
      const into = join(home, "into");
      await symlink(join(root, "sub"), into);
      await chown(home, 4321, 4321);
      await chmod(home, 0o700);
      const pki = join(work, "pki");
      assert.equal((await runCli(["keygen", "--dir", pki])).code, 0);
      assert.equal((await runCli(["keygen", "client", "ci-runner", "--dir", pki])).code, 0);
      const policy = join(work, "policy.json");
      await writeFile(
        policy,
        JSON.stringify({
          roles: { ci: { preset: "no-escape", allowBindMounts: [root, into] } },
          identities: [{ cn: "ci-runner", role: "ci" }],
        }),
        { mode: 0o600 },
      );
      const [cmd, args] = await cliCommand("node", [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--certs",
        join(pki, "server"),
        "--target",
        d.host,
        "--policy",
        policy,
      ]);
      const proc = spawnProcess("setpriv", [...await unitIdentity(64123), cmd, ...args]);
      serveProc.push(proc);
      const m = await proc.waitForLog(/listening on tcp:\/\/127\.0\.0\.1:(\d+)/);
      const status = await readFile(`/proc/${proc.child.pid}/status`, "utf8");
      assert.match(status, /^Uid:\s+64123\b/m);
      assert.match(status, /^NoNewPrivs:\s+1$/m);
      // CAP_DAC_READ_SEARCH is bit 2: nothing else effective.
      assert.match(status, /^CapEff:\s+0000000000000004$/m, status);
      const host = `tcp://127.0.0.1:${m[1]}`;
      const bundle = join(pki, "clients", "ci-runner");
      const cli = (a: string[]) => d.docker([...tlsFlags(bundle), ...a], { host });
      const ok = await cli(["create", "--name", "in", "-v", `${root}:/d`, d.image, "true"]);
      assert.equal(ok.code, 0, ok.stderr);
      const out = await cli(["create", "--name", "out", "-v", `${into}:/d`, d.image, "true"]);
      assert.notEqual(out.code, 0, "a root that links into another root was accepted");
      assert.match(out.stderr, /lies under/, "the gate did not see where the link leads");
      const names = await d.docker(["ps", "-a", "--format", "{{.Names}}"]);
      assert.deepEqual(names.stdout.trim().split("\n").sort(), ["in"]);
    } finally {
      for (const p of serveProc) p.kill();
      await d.stop();
    }
  },
});

Deno.test({
  name:
    "contrib/dockgate.logrotate: logrotate accepts it, and a rotation with serve loses no record",
  ignore: !which("logrotate") || Deno.uid() !== 0,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await freeTempDir();
    const target = new RecordingTarget(join(dir, "target.sock"));
    await target.start();
    const pki = join(dir, "pki");
    assert.equal((await runCli(["keygen", "--dir", pki])).code, 0);
    assert.equal((await runCli(["keygen", "client", "alice", "--dir", pki])).code, 0);
    const log = join(dir, "audit.log");
    const gate = await startServe([
      "--certs",
      join(pki, "server"),
      "--target",
      `unix://${target.path}`,
      "--audit-log",
      log,
    ]);
    try {
      const creds = await bundleCreds(pki, "alice");
      const lines = async (f: string) =>
        (await readFile(f, "utf8").catch(() => "")).split("\n").filter(Boolean);
      await tlsExchange(gate.port, creds, "one");
      await waitFor(async () => (await lines(log)).length === 1);
      // The shipped file, pointed at this test's log, its postrotate signalling this serve.
      const text = (await readFile(join(ROOT, "contrib", "dockgate.logrotate"), "utf8"))
        .replaceAll("/var/log/dockgate/audit.log", log)
        .replace(/create 0640 dockgate dockgate/, "create 0640 root root")
        .replace(/^\s*systemctl kill .*$/m, `        kill -HUP ${gate.child.pid}`);
      const conf = join(dir, "logrotate.conf");
      await writeFile(conf, text, { mode: 0o644 });
      const state = join(dir, "state");
      const debug = await run("logrotate", ["--debug", "--state", state, conf]);
      assert.equal(debug.code, 0, debug.stderr);
      const r = await run("logrotate", ["--force", "--state", state, conf]);
      assert.equal(r.code, 0, r.stderr);
      await gate.waitForLog(/reloaded.*SIGHUP/);
      await tlsExchange(gate.port, creds, "two");
      await waitFor(async () => (await lines(log)).length === 1);
      assert.equal((await lines(`${log}.1`)).length, 1, "the first record moved with the file");
      assert.notEqual((await lines(log))[0], (await lines(`${log}.1`))[0]);
    } finally {
      gate.kill();
      await target.stop();
    }
  },
});
