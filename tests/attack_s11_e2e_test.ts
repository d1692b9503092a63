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
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type E2eGate, e2eGate, forEachEngine } from "./helpers/e2e_gate.ts";
import { freeTempDir } from "./helpers/wait.ts";
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
