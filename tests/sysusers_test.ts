/**
 * contrib/dockgate.sysusers as systemd-sysusers reads it: installed as
 * /usr/lib/sysusers.d/dockgate.conf under a scratch `--root`, it creates the user dockgate with
 * the home the unit's StateDirectory uses, in the group docker, and systemd has nothing to say
 * about any of its lines (docs/operating.md's first step runs exactly this).
 */
import assert from "node:assert/strict";
import { copyFile, mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { ROOT } from "./helpers/gate.ts";
import { which } from "./helpers/dockerd.ts";
import { freeTempDir } from "./helpers/wait.ts";

const sysusers = which("systemd-sysusers");

Deno.test({
  name: "contrib/dockgate.sysusers: systemd-sysusers takes every line (user, home, docker group)",
  ignore: !sysusers,
  async fn() {
    const root = await freeTempDir();
    await mkdir(join(root, "etc"), { recursive: true });
    await mkdir(join(root, "usr/lib/sysusers.d"), { recursive: true });
    await copyFile(
      join(ROOT, "contrib", "dockgate.sysusers"),
      join(root, "usr/lib/sysusers.d/dockgate.conf"),
    );
    const r = await new Deno.Command(sysusers!, { args: [`--root=${root}`], stdin: "null" })
      .output();
    const stderr = new TextDecoder().decode(r.stderr);
    assert.equal(r.code, 0, stderr);
    // systemd-sysusers skips a line it cannot read with a message and goes on (exit 0), and a
    // later `m` line then makes the user with no home: every line must be taken.
    assert.doesNotMatch(stderr, /not a valid|invalid|failed/i, stderr);
    const passwd = (await readFile(join(root, "etc/passwd"), "utf8")).split("\n");
    const user = passwd.find((l) => l.startsWith("dockgate:"))?.split(":");
    assert.ok(user, "no user dockgate");
    assert.equal(user[5], "/var/lib/dockgate", "home");
    assert.notEqual(user[2], "0", "uid");
    const group = (await readFile(join(root, "etc/group"), "utf8")).split("\n")
      .find((l) => l.startsWith("docker:"))?.split(":");
    assert.ok(group?.[3].split(",").includes("dockgate"), `dockgate in docker: ${group}`);
  },
});
