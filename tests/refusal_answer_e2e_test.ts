/**
 * A client the gate refuses after the handshake is told why: the real Docker CLI prints the
 * gate's reason (`Error response from daemon: dockgate: …`) instead of `EOF`, for a revoked
 * certificate, one on no allow-list, one with no role in the API policy, and when the daemon
 * does not answer. Nothing the refused client sent reaches the target (a recording stand-in).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { runCli, startServe } from "./helpers/gate.ts";
import { which } from "./helpers/dockerd.ts";
import { freeTempDir } from "./helpers/wait.ts";
import { tlsExchange } from "./helpers/http_raw.ts";
import { bundleCreds, RecordingTarget } from "./helpers/tls_peers.ts";

/** The real Docker CLI against `host` with a client bundle; no daemon of its own. */
async function dockerCli(host: string, bundle: string, args: string[]) {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(Deno.env.toObject())) {
    if (!k.startsWith("DOCKER_")) env[k] = v;
  }
  const r = await new Deno.Command("docker", {
    args: [
      "--tlsverify",
      "--tlscacert",
      join(bundle, "ca.pem"),
      "--tlscert",
      join(bundle, "cert.pem"),
      "--tlskey",
      join(bundle, "key.pem"),
      "-H",
      host,
      ...args,
    ],
    env: { ...env, DOCKER_CONFIG: join(bundle, ".docker") },
    clearEnv: true,
    stdin: "null",
    signal: AbortSignal.timeout(60_000),
  }).output();
  return { code: r.code, stderr: new TextDecoder().decode(r.stderr) };
}

async function pki(dir: string, clients: string[]): Promise<string> {
  const p = join(dir, "pki");
  const ok = (r: { code: number; stderr: string }) => assert.equal(r.code, 0, r.stderr);
  ok(await runCli(["keygen", "--dir", p]));
  for (const c of clients) ok(await runCli(["keygen", "client", c, "--dir", p]));
  return p;
}

const CASES: {
  name: string;
  setup: (dir: string, p: string) => Promise<string[]>;
  said: RegExp;
}[] = [
  {
    name: "a revoked certificate",
    setup: async (_dir, p) => {
      const r = await runCli(["keygen", "revoke", "alice", "--dir", p]);
      assert.equal(r.code, 0, r.stderr);
      return [];
    },
    said: /Error response from daemon: dockgate: certificate serial [0-9a-f]+ is revoked/,
  },
  {
    name: "a certificate on no allow-list",
    setup: () => Promise.resolve(["--allow-cn", "bob"]),
    said: /Error response from daemon: dockgate: alice is not allowed on this gate/,
  },
  {
    name: "an identity with no role in the API policy",
    setup: async (dir) => {
      const file = join(dir, "policy.json");
      await Deno.writeTextFile(
        file,
        JSON.stringify({
          roles: { ro: { preset: "read-only" } },
          identities: [{ cn: "bob", role: "ro" }],
        }),
        { mode: 0o600 },
      );
      return ["--policy", file];
    },
    said: /Error response from daemon: dockgate: .*no role for this identity/,
  },
];

for (const c of CASES) {
  Deno.test({
    name: `refused after the handshake, the Docker CLI says why: ${c.name}`,
    ignore: !which("docker"),
    sanitizeResources: false,
    sanitizeOps: false,
    async fn() {
      const dir = await freeTempDir();
      const target = new RecordingTarget(join(dir, "target.sock"));
      await target.start();
      const p = await pki(dir, ["alice"]);
      const extra = await c.setup(dir, p);
      const gate = await startServe([
        "--certs",
        join(p, "server"),
        "--target",
        `unix://${target.path}`,
        ...extra,
      ]);
      try {
        const r = await dockerCli(gate.host, join(p, "clients", "alice"), ["ps"]);
        assert.notEqual(r.code, 0);
        assert.match(r.stderr, c.said);
        assert.doesNotMatch(r.stderr, /EOF|connection reset/);
        // A HEAD gets the head alone, and the connection closes after it.
        const head = await tlsExchange(
          gate.port,
          await bundleCreds(p, "alice"),
          "HEAD /_ping HTTP/1.1\r\nHost: d\r\n\r\n",
          { keepOpen: true },
        );
        assert.equal(head.timedOut, false, "the gate kept a refused connection open");
        const text = head.data.toString("latin1");
        assert.match(text, /^HTTP\/1\.1 403 Forbidden\r\n/);
        assert.match(text, /\r\nDockgate-Refused: [^\r]+\r\n/);
        assert.ok(text.endsWith("\r\n\r\n"), `a body after a HEAD answer: ${text}`);
        assert.equal(target.bytes, 0, "bytes of a refused client reached the target");
        assert.match(gate.log(), /"refused"|refused/);
      } finally {
        await gate.stop();
        await target.stop();
      }
    },
  });
}

Deno.test({
  name: "the daemon not answering: the Docker CLI says so (502), not EOF",
  ignore: !which("docker"),
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await freeTempDir();
    const p = await pki(dir, ["alice"]);
    const gate = await startServe([
      "--certs",
      join(p, "server"),
      "--target",
      `unix://${join(dir, "nothing-here.sock")}`,
    ]);
    try {
      const r = await dockerCli(gate.host, join(p, "clients", "alice"), ["ps"]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /dockgate: the Docker daemon is not answering/);
      assert.match(gate.log(), /target unavailable/);
    } finally {
      await gate.stop();
    }
  },
});
