/**
 * Session 11's fourth attacker, end to end: attacks on restricted roles that got through, as raw
 * requests over real TLS through `dockgate serve --policy` to a private dockerd the test
 * starts, on every engine the harness has. Each effect is judged by what the daemon did on the
 * host (a file written outside the role's bind roots), never by an exit code.
 *
 * - A no-escape role with `allowBindMounts: [ROOT]` bound `ROOT/x` (a real directory when the
 *   gate resolved it at create), then, from another container that binds `ROOT`, replaced `x`
 *   by a symlink to any host directory. dockerd reads a bind source at every start, not at
 *   create: the start mounted the host directory the link names (the host's `/` included), read
 *   and write. The gate had read the source once, not as dockerd reads it.
 * - A role with `nonRootUser` ran containers and execs as uid 0 with `User: "+0"` (or `-0`,
 *   `+0:+0`): the gate's root test saw no `0`, dockerd's (Go's `strconv.Atoi`) takes the sign.
 *   And a user name is looked up in the image's `/etc/passwd`, which the gate never reads: an
 *   image the role builds or loads can name uid 0 anything.
 * - `LogConfig` with no `Type` is the daemon's default log driver, and dockerd lays the
 *   request's `Config` over the default's options: on a daemon that logs to gelf (syslog,
 *   fluentd, splunk) by default, a no-escape role set the address, and dockerd connected from
 *   the host to any address it named (a service only the host reaches), though the role's
 *   allowLogDrivers lists none of those drivers.
 * - `HostConfig.Tmpfs` options were forwarded unread: dockerd hands them to runc as mount
 *   options, and runc reads `rbind` as a bind mount of a host path (relative to the bundle
 *   directory) instead of a tmpfs. Not a path the role can make today, but no value on a list.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type E2eGate, e2eGate, forEachEngine } from "./helpers/e2e_gate.ts";
import { freeTempDir, waitFor } from "./helpers/wait.ts";
import { jsonRequest, splitResponses, tlsExchange } from "./helpers/http_raw.ts";

/** A JSON request through the gate as `who`: the status and the raw answer. */
async function send(g: E2eGate, who: string, method: string, target: string, body?: unknown) {
  const ex = await tlsExchange(
    g.gate.port,
    await g.creds(who),
    // Kept open until dockerd closes it: a half-closed request cancels a start (Go's context).
    jsonRequest(
      method,
      target,
      body === undefined ? "" : JSON.stringify(body),
      "Connection: close\r\n",
    ),
    { keepOpen: true },
  );
  const [answer] = splitResponses(ex.data);
  return { status: answer?.status, raw: ex.data.toString("latin1") };
}

/** The API version prefix the daemon speaks (`/v1.41`). */
async function apiPrefix(g: E2eGate): Promise<string> {
  return `/v${(await g.d.docker(["version", "-f", "{{.Server.APIVersion}}"])).stdout.trim()}`;
}

/** Whether `path` exists on the host. */
async function present(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

forEachEngine(
  (e) => `attack s11 (Docker ${e}): a bind under an allowed root cannot be swapped for a symlink`,
  async (_t, engine) => {
    // ROOT is the role's bind root; OUTSIDE stands for any host directory (the host's /).
    const root = await freeTempDir("dgs11root-");
    const outside = await freeTempDir("dgs11out-");
    const policy = {
      roles: { ci: { preset: "no-escape", allowBindMounts: [root] } },
      identities: [{ cn: "ci", role: "ci" }],
    };
    const g = await e2eGate(engine, policy, ["ci"]);
    if (!g) return;
    try {
      const v = await apiPrefix(g);
      /** Create (through the gate) and run to its end a container binding ROOT at /w. */
      const inRoot = async (name: string, script: string) => {
        const body = {
          Image: g.d.image,
          Cmd: ["sh", "-c", script],
          HostConfig: { NetworkMode: "none", Binds: [`${root}:/w`] },
        };
        const c = await send(g, "ci", "POST", `${v}/containers/create?name=${name}`, body);
        assert.equal(c.status, 201, `a bind of the root itself: ${c.raw}`);
        const s = await send(g, "ci", "POST", `${v}/containers/${name}/start`);
        assert.equal(s.status, 204, s.raw);
        assert.equal((await g.d.docker(["wait", name])).stdout.trim(), "0", `${name} failed`);
      };
      await inRoot("mk", "mkdir /w/x");
      // x is a real directory under ROOT now: the create is what the old gate checked.
      const late = {
        Image: g.d.image,
        Cmd: ["sh", "-c", "echo pwned > /h/pwned"],
        HostConfig: { NetworkMode: "none", Binds: [`${root}/x:/h`] },
      };
      const made = await send(g, "ci", "POST", `${v}/containers/create?name=late`, late);
      // The swap, by the role's own container.
      await inRoot("swap", `rmdir /w/x && ln -s ${outside} /w/x`);
      if (made.status === 201) {
        await send(g, "ci", "POST", `${v}/containers/late/start`);
        await g.d.docker(["wait", "late"]);
      }
      assert.equal(
        await present(join(outside, "pwned")),
        false,
        `the container wrote outside the role's bind root (create answered ${made.status})`,
      );
      assert.equal(made.status, 403, `a bind below the root must be refused: ${made.raw}`);
      assert.match(made.raw, /allowBindMounts/);
      // The same through Mounts.
      const mounts = {
        ...late,
        HostConfig: {
          NetworkMode: "none",
          Mounts: [{ Type: "bind", Source: `${root}/x`, Target: "/h" }],
        },
      };
      const m = await send(g, "ci", "POST", `${v}/containers/create?name=late2`, mounts);
      assert.equal(m.status, 403, m.raw);
    } finally {
      await g.stop();
      await Deno.remove(root, { recursive: true }).catch(() => {});
      await Deno.remove(outside, { recursive: true }).catch(() => {});
    }
  },
);

/** The uid a running container's process has on the host (`/proc/PID/status`), by name. */
async function hostUid(g: E2eGate, name: string): Promise<string> {
  const pid = (await g.d.docker(["inspect", "-f", "{{.State.Pid}}", name])).stdout.trim();
  if (!/^[1-9][0-9]*$/.test(pid)) return `not running (pid ${pid})`;
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  return /^Uid:\s+(\d+)/m.exec(status)?.[1] ?? "?";
}

forEachEngine(
  (e) => `attack s11 (Docker ${e}): nonRootUser runs nothing as uid 0, by sign or by name`,
  async (_t, engine) => {
    const policy = {
      roles: { app: { preset: "no-escape", nonRootUser: true } },
      identities: [{ cn: "app", role: "app" }],
    };
    const g = await e2eGate(engine, policy, ["app"]);
    if (!g) return;
    try {
      const v = await apiPrefix(g);
      // An image whose /etc/passwd names uid 0 "app" (one the role could build or load;
      // made here on the daemon's own socket).
      const base = await g.d.docker([
        "run",
        "--name",
        "passwd",
        "--network",
        "none",
        g.d.image,
        "sh",
        "-c",
        "echo app:x:0:0::/:/bin/sh >> /etc/passwd",
      ]);
      assert.equal(base.code, 0, base.stderr);
      assert.equal((await g.d.docker(["commit", "passwd", "bbapp"])).code, 0);
      const cases: [string, string][] = [
        ["+0", g.d.image],
        ["-0", g.d.image],
        ["+0:+0", g.d.image],
        ["app", "bbapp"],
      ];
      for (const [i, [user, image]] of cases.entries()) {
        const name = `u${i}`;
        const body = {
          Image: image,
          User: user,
          Cmd: ["sleep", "60"],
          HostConfig: { NetworkMode: "none" },
        };
        const c = await send(g, "app", "POST", `${v}/containers/create?name=${name}`, body);
        if (c.status === 201) {
          await send(g, "app", "POST", `${v}/containers/${name}/start`);
          const uid = await hostUid(g, name);
          assert.notEqual(uid, "0", `User ${JSON.stringify(user)} ran as uid 0 on the host`);
        }
        assert.equal(c.status, 403, `User ${JSON.stringify(user)}: ${c.raw}`);
      }
      // An exec as "+0" in a container of a numeric non-root user.
      const ok = await send(g, "app", "POST", `${v}/containers/create?name=plain`, {
        Image: g.d.image,
        User: "1000:1000",
        Cmd: ["sleep", "60"],
        HostConfig: { NetworkMode: "none" },
      });
      assert.equal(ok.status, 201, ok.raw);
      assert.equal((await send(g, "app", "POST", `${v}/containers/plain/start`)).status, 204);
      assert.equal(await hostUid(g, "plain"), "1000");
      const exec = await send(g, "app", "POST", `${v}/containers/plain/exec`, {
        User: "+0",
        Cmd: ["sh", "-c", "id -u > /tmp/uid"],
      });
      if (exec.status === 201) {
        const id = JSON.parse(exec.raw.slice(exec.raw.indexOf("\r\n\r\n") + 4)).Id;
        await send(g, "app", "POST", `${v}/exec/${id}/start`, { Detach: true });
        const owner = await waitFor(async () => {
          const r = await g.d.docker(["exec", "plain", "cat", "/tmp/uid"]);
          return r.code === 0 && r.stdout.trim() !== "" ? r.stdout.trim() : undefined;
        }, { what: "the exec's file" });
        assert.notEqual(owner, "0", "the exec ran as uid 0");
      }
      assert.equal(exec.status, 403, exec.raw);
    } finally {
      await g.stop();
    }
  },
);

forEachEngine(
  (e) => `attack s11 (Docker ${e}): log options of the daemon's default driver reach nothing`,
  async (_t, engine) => {
    // A service only the host reaches, standing for the host's own (a metadata endpoint).
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    let reached = false;
    const accepting = (async () => {
      for await (const conn of listener) {
        reached = true;
        conn.close();
      }
    })();
    const policy = {
      roles: { ci: { preset: "no-escape" } },
      identities: [{ cn: "ci", role: "ci" }],
    };
    // The daemon's default: gelf over UDP to a port nothing needs to listen on.
    const dockerdArgs = ["--log-driver", "gelf", "--log-opt", "gelf-address=udp://127.0.0.1:9"];
    const g = await e2eGate(engine, policy, ["ci"], { dockerdArgs });
    if (!g) {
      listener.close();
      return;
    }
    try {
      const v = await apiPrefix(g);
      const port = (listener.addr as Deno.NetAddr).port;
      const body = {
        Image: g.d.image,
        Cmd: ["echo", "hello"],
        HostConfig: {
          NetworkMode: "none",
          LogConfig: { Type: "", Config: { "gelf-address": `tcp://127.0.0.1:${port}` } },
        },
      };
      const c = await send(g, "ci", "POST", `${v}/containers/create?name=logs`, body);
      if (c.status === 201) await send(g, "ci", "POST", `${v}/containers/logs/start`);
      assert.equal(reached, false, `dockerd connected to 127.0.0.1:${port} (create ${c.status})`);
      assert.equal(c.status, 403, c.raw);
      assert.match(c.raw, /LogConfig/);
      // The local drivers' own options still pass, with the driver named or not.
      for (const [name, type] of [["sized", ""], ["json", "json-file"]]) {
        const ok = await send(g, "ci", "POST", `${v}/containers/create?name=${name}`, {
          Image: g.d.image,
          HostConfig: {
            NetworkMode: "none",
            LogConfig: { Type: type, Config: { "max-size": "1m", tag: "x" } },
          },
        });
        assert.notEqual(ok.status, 403, ok.raw);
      }
    } finally {
      await g.stop();
      listener.close();
      await accepting.catch(() => {});
    }
  },
);

forEachEngine(
  (e) => `attack s11 (Docker ${e}): tmpfs options are tmpfs options, not a bind`,
  async (_t, engine) => {
    const policy = {
      roles: { ci: { preset: "no-escape" } },
      identities: [{ cn: "ci", role: "ci" }],
    };
    const g = await e2eGate(engine, policy, ["ci"]);
    if (!g) return;
    try {
      const v = await apiPrefix(g);
      for (const [i, options] of ["rbind", "bind", "size=1m,rbind"].entries()) {
        const body = {
          Image: g.d.image,
          HostConfig: { NetworkMode: "none", Tmpfs: { "/x": options } },
        };
        const c = await send(g, "ci", "POST", `${v}/containers/create?name=t${i}`, body);
        const stored = await g.d.docker(["inspect", "-f", "{{json .HostConfig.Tmpfs}}", `t${i}`]);
        assert.notEqual(stored.code, 0, `dockerd stored Tmpfs ${stored.stdout.trim()}`);
        assert.equal(c.status, 403, c.raw);
      }
      const ok = await send(g, "ci", "POST", `${v}/containers/create?name=fine`, {
        Image: g.d.image,
        HostConfig: { NetworkMode: "none", Tmpfs: { "/run": "rw,noexec,nosuid,size=65536k" } },
      });
      assert.equal(ok.status, 201, ok.raw);
    } finally {
      await g.stop();
    }
  },
);
