/**
 * Session 9's attacks on restricted roles that got through, end to end: raw requests over real
 * TLS through `dockgate serve --policy` to a private dockerd the test starts, on every engine
 * the harness has. Each effect is judged by what the daemon stored or did (its own socket, the
 * host's interfaces, a listener on the host's loopback), never by an exit code.
 *
 * - `POST /auth` carries the registry to log in to in its body (`serveraddress`): dockerd
 *   connects to it, so a no-escape identity reached services bound to the host's 127.0.0.1
 *   (and read their status from the answer) although the gate refuses such hosts in queries.
 * - `POST /networks/create` took any driver and any driver option: a no-escape identity put a
 *   network on an existing host bridge (`com.docker.network.bridge.name`; dockerd set the
 *   bridge up and replaced its addresses) or on a host interface (`macvlan`, `parent=`).
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  availableEngines,
  type Dockerd,
  dockerdUnavailable,
  type Engine,
  startDockerd,
} from "./helpers/dockerd.ts";
import { freeTempDir } from "./helpers/wait.ts";
import { RESTRICTED_POLICY, type ServeProcess, startPolicyGate, tlsFlags } from "./helpers/gate.ts";
import { jsonRequest, splitResponses, tlsExchange } from "./helpers/http_raw.ts";
import { bundleCreds, type Creds } from "./helpers/tls_peers.ts";

/** What each scenario gets: the daemon, the gate's port, client credentials, the API prefix. */
interface Scene {
  d: Dockerd;
  port: number;
  creds(name: string): Promise<Creds>;
  v: string;
  work: string;
  /** The docker CLI through the gate as client `who`. */
  as(who: string, args: string[]): ReturnType<Dockerd["docker"]>;
}

/** A private dockerd of `engine` and a gate with RESTRICTED_POLICY in front of it. */
async function withGate(engine: Engine, run: (s: Scene) => Promise<void>): Promise<void> {
  const d = await startDockerd({ engine });
  if (!d) return;
  const work = await freeTempDir("dga9-");
  let gate: ServeProcess | undefined;
  try {
    const g = await startPolicyGate(d.host, work, RESTRICTED_POLICY, ["ro", "ci", "t1", "t2"], [
      "--audit-log",
      join(work, "audit.log"),
    ]);
    gate = g.gate;
    await gate.waitForLog(/API policy: /);
    const v = `/v${(await d.docker(["version", "-f", "{{.Server.APIVersion}}"])).stdout.trim()}`;
    const host = gate.host;
    const as = (who: string, args: string[]) =>
      d.docker([...tlsFlags(join(g.pki, "clients", who)), ...args], { host });
    await run({ d, port: gate.port, creds: (n) => bundleCreds(g.pki, n), v, work, as });
  } finally {
    await gate?.stop();
    await d.stop();
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}

function e2e(name: string, run: (engine: Engine) => Promise<void>): void {
  for (const engine of availableEngines()) {
    Deno.test({
      name: `attack s9 (Docker ${engine}): ${name}`,
      ignore: dockerdUnavailable(),
      sanitizeOps: false,
      sanitizeResources: false,
    }, () => run(engine));
  }
}

/** A plain TCP listener on the host's loopback that counts the connections it gets. */
function loopbackListener(): { port: number; count(): number; close(): void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let n = 0;
  (async () => {
    for await (const conn of listener) {
      n++;
      conn.close();
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    count: () => n,
    close: () => listener.close(),
  };
}

e2e(
  "POST /auth does not make dockerd connect to the host's loopback",
  (engine) =>
    withGate(engine, async ({ port, creds, v }) => {
      const victim = loopbackListener();
      try {
        for (const who of ["ci", "t1"]) {
          for (const server of [`127.0.0.1:${victim.port}`, `http://localhost:${victim.port}`]) {
            const ex = await tlsExchange(
              port,
              await creds(who),
              jsonRequest(
                "POST",
                `${v}/auth`,
                JSON.stringify({ username: "u", password: "p", serveraddress: server }),
              ),
            );
            const [answer] = splitResponses(ex.data);
            assert.equal(answer?.status, 403, `${who} ${server}: ${ex.data}`);
          }
        }
        assert.equal(victim.count(), 0, "dockerd connected to a service on the host's 127.0.0.1");
      } finally {
        victim.close();
      }
    }),
);

/** `ip ARGS…`; throws with its stderr on failure. */
async function ip(args: string[]): Promise<string> {
  const out = await new Deno.Command("ip", { args, stdout: "piped", stderr: "piped" }).output();
  const dec = new TextDecoder();
  if (out.code !== 0) throw new Error(`ip ${args.join(" ")}: ${dec.decode(out.stderr)}`);
  return dec.decode(out.stdout);
}

e2e(
  "network create cannot take over a host bridge or interface",
  (engine) =>
    withGate(engine, async ({ d, port, creds, v, as }) => {
      const MTU = "com.docker.network.driver.mtu=1400";
      // A bridge of the host's own (libvirt's virbr0, a LAN bridge br0), with its address.
      const bridge = `dgab${crypto.randomUUID().slice(0, 8)}`;
      await ip(["link", "add", bridge, "type", "bridge"]);
      try {
        await ip(["addr", "add", "10.98.7.1/24", "dev", bridge]);
        const bodies: Record<string, unknown> = {
          "hostbridge": {
            Name: "hostbridge",
            Driver: "bridge",
            Options: { "com.docker.network.bridge.name": bridge },
            IPAM: { Config: [{ Subnet: "10.98.8.0/24" }] },
          },
          "onhostif": { Name: "onhostif", Driver: "macvlan", Options: { parent: bridge } },
        };
        for (const who of ["ci", "t1"]) {
          for (const [name, body] of Object.entries(bodies)) {
            const ex = await tlsExchange(
              port,
              await creds(who),
              jsonRequest("POST", `${v}/networks/create`, JSON.stringify(body)),
            );
            assert.equal(splitResponses(ex.data)[0]?.status, 403, `${who} ${name}: ${ex.data}`);
            const stored = await d.docker(["network", "inspect", name]);
            assert.notEqual(stored.code, 0, `${who}: the daemon stored network ${name}`);
          }
        }
        // What the CLI sends for an ordinary network (an MTU option) still goes through.
        const ok = await as("ci", ["network", "create", "--opt", MTU, "plain"]);
        assert.equal(ok.code, 0, ok.stderr);
        const mtu = await d.docker(["network", "inspect", "plain", "-f", "{{json .Options}}"]);
        assert.match(mtu.stdout, /1400/);
        const addrs = await ip(["-4", "addr", "show", "dev", bridge]);
        assert.match(addrs, /10\.98\.7\.1\/24/, "the host bridge kept its address");
        assert.doesNotMatch(addrs, /10\.98\.8\./, "the daemon put no address on the host bridge");
      } finally {
        await ip(["link", "del", bridge]).catch(() => {});
      }
    }),
);

e2e(
  "commit and import cannot write a dockgate. label into an image",
  (engine) =>
    withGate(engine, async ({ d, port, creds, v, as }) => {
      assert.equal((await as("t1", ["create", "--name", "mine", d.image, "true"])).code, 0);
      const q = (s: string) => encodeURIComponent(s);
      const commit = `${v}/commit?container=mine&repo=`;
      const attempts: [string, string, string][] = [
        // The builder's word processing drops the backslash: the key is dockgate.owner.
        ["escaped key", `${commit}f1&changes=${q("LABEL dock\\gate.owner=t2")}`, ""],
        // A change ending in a backslash continues onto the next one (they are joined by \n).
        ["continued", `${commit}f2&changes=${q("LABEL dock\\")}&changes=${q("gate.owner=t2")}`, ""],
        ["variable", `${commit}f3&changes=${q("LABEL ${X:-dockgate}.owner=t2")}`, ""],
        ["onbuild", `${commit}f4&changes=${q('ONBUILD LABEL "dockgate.owner"=t2')}`, ""],
        // The commit body is a container config: its Labels go into the image.
        ["body", `${commit}f5`, JSON.stringify({ Labels: { "dockgate.owner": "t2" } })],
        ["body, folded key", `${commit}f6`, JSON.stringify({ labels: { "dockgate.owner": "t2" } })],
      ];
      for (const [what, target, body] of attempts) {
        const ex = await tlsExchange(port, await creds("t1"), jsonRequest("POST", target, body));
        assert.equal(splitResponses(ex.data)[0]?.status, 403, `${what}: ${ex.data}`);
      }
      // An import's changes: the same rule.
      const tar = new Uint8Array(1024); // an empty tar archive (two zero blocks)
      const head = `POST ${v}/images/create?fromSrc=-&repo=f7&changes=` +
        `${q("LABEL dock\\gate.owner=t2")} HTTP/1.1\r\nHost: d\r\n` +
        `Content-Type: application/x-tar\r\nContent-Length: ${tar.length}\r\n\r\n`;
      const bytes = new Uint8Array([...new TextEncoder().encode(head), ...tar]);
      const ex = await tlsExchange(port, await creds("t1"), bytes);
      assert.equal(splitResponses(ex.data)[0]?.status, 403, `import: ${ex.data}`);
      const labelled = await d.docker(["images", "-q", "--filter", "label=dockgate.owner"]);
      assert.equal(labelled.stdout.trim(), "", "no image carries a dockgate. label");
      // What the CLI sends for an ordinary commit with a label change still goes through.
      const ok = await as("t1", ["commit", "-c", "LABEL app=web", "mine", "okimg"]);
      assert.equal(ok.code, 0, ok.stderr);
      const labels = await d.docker(["image", "inspect", "okimg", "-f", "{{json .Config.Labels}}"]);
      assert.match(labels.stdout, /"app":"web"/);
    }),
);
