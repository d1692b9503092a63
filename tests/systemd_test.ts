/**
 * systemd integration with real tools and no systemd as PID 1:
 *
 * - Readiness: a notify socket made by Python (AF_UNIX, SOCK_DGRAM), as systemd's would be;
 *   serve on Deno (its own datagram socket) and on Node (through `systemd-notify`) sends
 *   READY=1 once listening, RELOADING=1 (with MONOTONIC_USEC) then READY=1 on SIGHUP, and
 *   STOPPING=1 on SIGTERM.
 * - Socket activation: `systemd-socket-activate` owns the port and execs serve with fd 3;
 *   the real Docker CLI goes through it to a real dockerd.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { cliCommand, DENO, ROOT, runCli, spawnProcess, tlsFlags } from "./helpers/gate.ts";
import { dockerdUnavailable, startDockerd, which } from "./helpers/dockerd.ts";
import { freePort, freeTempDir, waitFor } from "./helpers/wait.ts";

const RECEIVER = `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("bound", flush=True)
while True:
    data = s.recv(65536)
    print(" ".join(data.decode().split()), flush=True)
`;

/** A notify socket and the messages it received, one line per datagram. */
async function notifySocket(path: string) {
  const child = new Deno.Command("/usr/bin/python3", {
    args: ["-c", RECEIVER, path],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines: string[] = [];
  let buf = "";
  void (async () => {
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      const parts = buf.split("\n");
      buf = parts.pop()!;
      lines.push(...parts);
    }
  })();
  await waitFor(() => lines[0] === "bound");
  return {
    messages: () => lines.slice(1),
    stop: async () => {
      child.kill("SIGKILL");
      await child.status;
    },
  };
}

for (const runtime of ["deno", "node"] as const) {
  Deno.test({
    name: `systemd notify (${runtime}): READY, RELOADING then READY on SIGHUP, STOPPING`,
    sanitizeResources: false,
    sanitizeOps: false,
  }, async () => {
    const dir = await freeTempDir("dg-sd-");
    const notify = await notifySocket(join(dir, "notify.sock"));
    try {
      const pki = join(dir, "pki");
      assert.equal((await runCli(["keygen", "--dir", pki])).code, 0);
      const target = net.createServer((s) => s.end());
      const sock = join(dir, "t.sock");
      await new Promise<void>((r) => target.listen(sock, () => r()));
      const [cmd, args] = await cliCommand(runtime, [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--target",
        `unix://${sock}`,
        "--certs",
        join(pki, "server"),
      ]);
      const env = { ...Deno.env.toObject(), NOTIFY_SOCKET: join(dir, "notify.sock") };
      const gate = spawnProcess(cmd, args, { cwd: ROOT, env });
      try {
        await gate.waitForLog(/listening on tcp:/);
        const has = (re: RegExp) => notify.messages().some((m) => re.test(m));
        await waitFor(() => has(/(^| )READY=1( |$)/), { timeoutMs: 10_000 });
        assert.ok(has(/STATUS=listening on tcp:\/\/127\.0\.0\.1:\d+/), String(notify.messages()));
        const before = notify.messages().length;
        gate.kill("SIGHUP");
        await waitFor(() => notify.messages().slice(before).some((m) => /READY=1/.test(m)), {
          timeoutMs: 10_000,
        });
        const after = notify.messages().slice(before);
        const reloading = after.findIndex((m) => /RELOADING=1/.test(m));
        assert.ok(reloading >= 0, String(after));
        assert.match(after[reloading], /MONOTONIC_USEC=\d+/);
        assert.ok(after.findIndex((m) => /READY=1/.test(m)) > reloading, "READY after RELOADING");
        gate.kill("SIGTERM");
        await waitFor(() => has(/STOPPING=1/), { timeoutMs: 10_000 });
        assert.equal(await gate.exited, 0);
      } finally {
        await gate.stop();
        target.close();
      }
    } finally {
      await notify.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
}

Deno.test({
  name: "systemd socket activation: serve takes fd 3 from systemd-socket-activate; docker works",
  ignore: dockerdUnavailable(),
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const activate = which("systemd-socket-activate");
  if (!activate) throw new Error("systemd-socket-activate is needed (Debian's systemd package)");
  const d = await startDockerd();
  if (!d) return;
  const dir = await freeTempDir("dg-sa-");
  assert.equal((await runCli(["keygen", "--dir", join(dir, "pki")])).code, 0);
  const port = await freePort();
  const gate = spawnProcess(activate, [
    "-l",
    `127.0.0.1:${port}`,
    DENO,
    "run",
    "-A",
    "--quiet",
    join(ROOT, "cli.ts"),
    "serve",
    "--certs",
    join(dir, "pki", "server"),
    "--target",
    d.host,
  ], { cwd: ROOT });
  try {
    await gate.waitForLog(/Listening on 127\.0\.0\.1:\d+ as 3/);
    // The first connection makes systemd-socket-activate exec serve, which accepts it on fd 3.
    const r = await d.docker([
      ...tlsFlags(join(dir, "pki", "clients", "default")),
      "version",
      "-f",
      "{{.Server.APIVersion}}",
    ], {
      host: `tcp://127.0.0.1:${port}`,
      timeoutMs: 60_000,
    });
    assert.equal(r.code, 0, r.stderr + gate.log());
    assert.equal(r.stdout, "1.41\n");
    assert.match(
      gate.log(),
      new RegExp(`listening on tcp://127\\.0\\.0\\.1:${port} .*from="systemd \\(fd 3\\)"`),
    );
    const ps = await d.docker([...tlsFlags(join(dir, "pki", "clients", "default")), "ps", "-a"], {
      host: `tcp://127.0.0.1:${port}`,
    });
    assert.equal(ps.code, 0, ps.stderr);
  } finally {
    await gate.stop();
    await d.stop();
    await rm(dir, { recursive: true, force: true });
  }
});
