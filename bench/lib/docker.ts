/**
 * Workload 5: the real Docker CLI against a private dockerd, through each gate, through
 * `dockgate connect`, over SSH (`DOCKER_HOST=ssh://…`, a loopback sshd started here) and
 * directly on the unix socket.
 *
 * @module
 */

import { join } from "node:path";
import { type Dockerd, makeBigImage, startDockerd } from "../../tests/helpers/dockerd.ts";
import type { Contender, Pki } from "./contenders.ts";
import { findExe, freePort, type Proc, run, runOk, startProc, waitForPort } from "./proc.ts";
import { attempt, type Bench, startContender, subdir } from "./workloads.ts";

const IMAGE = "benchbig:latest";

/** A loopback sshd whose sessions reach the test dockerd, and the client-side setup. */
interface Sshd {
  /** `ssh://root@127.0.0.1:PORT`. */
  host: string;
  /** Dir with an `ssh` wrapper that adds our client config (first on the CLI's PATH). */
  binDir: string;
  proc: Proc;
}

async function startSshd(bench: Bench, dockerSocket: string): Promise<Sshd> {
  const sshd = findExe("sshd")!;
  const dir = await subdir(bench, "sshd");
  await Deno.chmod(dir, 0o700);
  for (const k of ["host_key", "client_key"]) {
    await runOk("ssh-keygen", [
      "-q",
      "-t",
      "ed25519",
      "-N",
      "",
      "-C",
      "dockgate-bench",
      "-f",
      join(dir, k),
    ]);
  }
  await Deno.copyFile(join(dir, "client_key.pub"), join(dir, "authorized_keys"));
  // sshd's privilege-separation dir (normally made by its init script).
  await Deno.mkdir("/run/sshd", { recursive: true, mode: 0o755 });
  const port = freePort();
  await Deno.writeTextFile(
    join(dir, "sshd_config"),
    [
      `Port ${port}`,
      "ListenAddress 127.0.0.1",
      `HostKey ${dir}/host_key`,
      "PidFile none",
      `AuthorizedKeysFile ${dir}/authorized_keys`,
      "PermitRootLogin prohibit-password",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "UsePAM no",
      "StrictModes no",
      "UseDNS no",
      "PrintMotd no",
      "PrintLastLog no",
      // The remote `docker system dial-stdio` must reach the test dockerd; sshd's default
      // PATH (/usr/local/bin:/usr/bin:/bin:…) finds /usr/local/bin/docker.
      // SHLVL=1: bash then skips ~/.bashrc for the session (it sources it only for a
      // top-level shell started by sshd). root's .bashrc here runs `pyenv init`, ~0.7 s per
      // session, which would be this machine's shell profile, not SSH.
      `SetEnv DOCKER_HOST=unix://${dockerSocket} SHLVL=1`,
      "",
    ].join("\n"),
  );
  const hostPub = (await Deno.readTextFile(join(dir, "host_key.pub"))).trim();
  await Deno.writeTextFile(join(dir, "known_hosts"), `[127.0.0.1]:${port} ${hostPub}\n`);
  await Deno.writeTextFile(
    join(dir, "ssh_config"),
    [
      "Host 127.0.0.1",
      `  IdentityFile ${dir}/client_key`,
      "  IdentitiesOnly yes",
      `  UserKnownHostsFile ${dir}/known_hosts`,
      "  StrictHostKeyChecking yes",
      "  BatchMode yes",
      "  LogLevel ERROR",
      "",
    ].join("\n"),
  );
  const binDir = join(dir, "bin");
  await Deno.mkdir(binDir);
  await Deno.writeTextFile(
    join(binDir, "ssh"),
    `#!/bin/sh\nexec ${findExe("ssh")} -F ${dir}/ssh_config "$@"\n`,
  );
  await Deno.chmod(join(binDir, "ssh"), 0o755);
  const proc = startProc(sshd, ["-D", "-e", "-f", join(dir, "sshd_config")], join(dir, "log"));
  await waitForPort(port, proc, "sshd");
  return { host: `ssh://root@127.0.0.1:${port}`, binDir, proc };
}

/** How the Docker CLI reaches the daemon for one contender. */
interface Route {
  id: string;
  args: string[];
  env: Record<string, string>;
}

function cleanEnv(extra: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(Deno.env.toObject())) {
    if (!k.startsWith("DOCKER_")) env[k] = v;
  }
  return { ...env, ...extra };
}

const q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

/** Why workload 5 cannot run here, or undefined. */
export function dockerMissing(): string | undefined {
  if (Deno.uid() !== 0) return "not root";
  if (!findExe("dockerd") || !findExe("docker")) return "dockerd/docker not installed";
  return undefined;
}

/** Workload 5. */
export async function dockerWorkload(
  bench: Bench,
  contenders: Contender[],
  pki: Pki,
): Promise<void> {
  const res = bench.results;
  const docker = findExe("docker")!;
  bench.say("  starting a private dockerd");
  const d: Dockerd | null = await startDockerd();
  if (!d) throw new Error("dockerd harness unavailable");
  const stops: (() => Promise<void>)[] = [];
  try {
    bench.say(`  building a ${bench.sizes.imageMiB} MiB image`);
    await makeBigImage(d, bench.sizes.imageMiB, IMAGE);
    const cliConfig = await subdir(bench, "docker-cli");
    await Deno.writeTextFile(join(cliConfig, "config.json"), "{}\n");
    const baseEnv = { DOCKER_CONFIG: cliConfig };
    const c = pki.clientDir;
    const tlsArgs = [
      "--tlsverify",
      "--tlscacert",
      `${c}/ca.pem`,
      "--tlscert",
      `${c}/cert.pem`,
      "--tlskey",
      `${c}/key.pem`,
    ];
    const routes: Route[] = [{ id: "direct-unix", args: ["-H", d.host], env: cleanEnv(baseEnv) }];
    for (const con of contenders) {
      await attempt(bench, `docker: start ${con.id}`, async () => {
        const r = await startContender(bench, con, pki, d.socket);
        stops.push(() => r.stop());
        routes.push({
          id: con.id,
          args: "unix" in r.endpoint
            ? ["-H", `unix://${r.endpoint.unix}`]
            : ["-H", `tcp://127.0.0.1:${r.endpoint.port}`, ...tlsArgs],
          env: cleanEnv(baseEnv),
        });
      });
    }
    if (findExe("sshd") && findExe("ssh")) {
      await attempt(bench, "docker: start sshd", async () => {
        const sshd = await startSshd(bench, d.socket);
        stops.push(() => sshd.proc.stop());
        routes.push({
          id: "ssh",
          args: ["-H", sshd.host],
          env: cleanEnv({
            ...baseEnv,
            PATH: `${sshd.binDir}:${Deno.env.get("PATH") ?? "/usr/bin:/bin"}`,
          }),
        });
      });
    } else {
      bench.say("  sshd/ssh not installed: no Docker-over-SSH row");
    }
    // Every route must work before anything is timed.
    const working: Route[] = [];
    for (const r of routes) {
      await attempt(bench, `docker version via ${r.id}`, async () => {
        const v = await run(docker, [...r.args, "version", "--format", "{{.Server.Version}}"], {
          env: r.env,
          timeoutMs: 60_000,
        });
        if (v.code !== 0) throw new Error(v.stderr.slice(-1000));
        working.push(r);
      });
    }
    const dockerCmd = (r: Route) => [docker, ...r.args].map(q).join(" ");
    for (let i = 0; i < bench.sizes.runs; i++) {
      for (const r of working) {
        await attempt(bench, `docker ${pki.keyType} run ${i + 1} ${r.id}`, async () => {
          const n = bench.sizes.versionCount;
          const v = await run("bash", [
            "-c",
            `for i in $(seq ${n}); do ${dockerCmd(r)} version >/dev/null || exit 1; done`,
          ], { env: r.env, timeoutMs: 600_000 });
          if (v.code !== 0) {
            throw new Error(`docker version loop via ${r.id} failed: ${v.stderr.slice(-1000)}`);
          }
          res.add("docker", pki.keyType, r.id, "version_ms", v.ms / n);
          // `docker ps`: the daemon side is lighter than `version` (which asks containerd and
          // runs runc for its component versions), so the route weighs more in it.
          const ps = await run("bash", [
            "-c",
            `for i in $(seq ${n}); do ${dockerCmd(r)} ps -a >/dev/null || exit 1; done`,
          ], { env: r.env, timeoutMs: 600_000 });
          if (ps.code !== 0) {
            throw new Error(`docker ps loop via ${r.id} failed: ${ps.stderr.slice(-1000)}`);
          }
          res.add("docker", pki.keyType, r.id, "ps_ms", ps.ms / n);
          const sl = await run("bash", [
            "-c",
            `set -o pipefail; ${dockerCmd(r)} save ${IMAGE} | ${dockerCmd(r)} load -q`,
          ], { env: r.env, timeoutMs: 900_000 });
          if (sl.code !== 0) {
            throw new Error(`docker save | load via ${r.id} failed: ${sl.stderr.slice(-1000)}`);
          }
          res.add("docker", pki.keyType, r.id, "saveload_s", sl.ms / 1000);
          bench.say(
            `  docker ${pki.keyType} run ${i + 1} ${r.id}: version ${
              (v.ms / n).toFixed(0)
            } ms/cmd, ps ${(ps.ms / n).toFixed(0)} ms/cmd, ` +
              `save|load ${(sl.ms / 1000).toFixed(2)} s`,
          );
        });
      }
    }
  } finally {
    for (const s of stops.reverse()) await s().catch(() => {});
    await d.stop();
  }
}

/**
 * Workload 6's real-CLI row: `docker ps` (the CLI's `HEAD /_ping` + `GET /containers/json`)
 * through each of `contenders`, relaying to a private dockerd, and straight on its socket; ms
 * per command, runs interleaved. Recorded under workload "policy" as `docker_ps_ms`.
 */
export async function policyDockerPs(
  bench: Bench,
  contenders: Contender[],
  pki: Pki,
): Promise<void> {
  const docker = findExe("docker")!;
  bench.say("  starting a private dockerd for `docker ps`");
  const d: Dockerd | null = await startDockerd();
  if (!d) throw new Error("dockerd harness unavailable");
  const stops: (() => Promise<void>)[] = [];
  try {
    const cliConfig = await subdir(bench, "docker-cli-ps");
    await Deno.writeTextFile(join(cliConfig, "config.json"), "{}\n");
    const env = cleanEnv({ DOCKER_CONFIG: cliConfig });
    const c = pki.clientDir;
    const tls = ["--tlsverify", "--tlscacert", `${c}/ca.pem`, "--tlscert", `${c}/cert.pem`];
    const routes: Route[] = [{ id: "direct-unix", args: ["-H", d.host], env }];
    for (const con of contenders) {
      await attempt(bench, `docker ps: start ${con.id}`, async () => {
        const r = await startContender(bench, con, pki, d.socket);
        stops.push(() => r.stop());
        const port = (r.endpoint as { port: number }).port;
        const args = ["-H", `tcp://127.0.0.1:${port}`, ...tls, "--tlskey", `${c}/key.pem`];
        // Every route must answer before anything is timed.
        const v = await run(docker, [...args, "ps", "-q"], { env, timeoutMs: 60_000 });
        if (v.code !== 0) throw new Error(`docker ps via ${con.id}: ${v.stderr.slice(-1000)}`);
        routes.push({ id: con.id, args, env });
      });
    }
    const n = bench.sizes.versionCount;
    for (let i = 0; i < bench.sizes.runs; i++) {
      for (const r of routes) {
        await attempt(bench, `docker ps ${pki.keyType} run ${i + 1} ${r.id}`, async () => {
          const cmd = [docker, ...r.args].map(q).join(" ");
          const ps = await run("bash", [
            "-c",
            `for i in $(seq ${n}); do ${cmd} ps >/dev/null || exit 1; done`,
          ], { env: r.env, timeoutMs: 600_000 });
          if (ps.code !== 0) throw new Error(`docker ps via ${r.id}: ${ps.stderr.slice(-1000)}`);
          bench.results.add("policy", pki.keyType, r.id, "docker_ps_ms", ps.ms / n);
          bench.say(
            `  policy ${pki.keyType} run ${i + 1} ${r.id}: docker ps ${(ps.ms / n).toFixed(1)} ms`,
          );
        });
      }
    }
  } finally {
    for (const s of stops.reverse()) await s().catch(() => {});
    await d.stop();
  }
}
