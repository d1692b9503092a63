/**
 * Issue 20, the end of a connection: a request that says it is the last one (`Connection:
 * close` in HTTP/1.1, or HTTP/1.0 without `keep-alive`) is the last one the gate reads. After
 * answering it, the daemon's answer or the gate's own refusal (403 of the rules, 404 of the
 * isolation step), the gate closes the client connection, and a request pipelined behind it is
 * never forwarded: the daemon shows no container from it. Raw TLS bytes through `dockgate
 * serve` (the client keeps its side open) to a real dockerd, on every engine the harness has.
 */
import assert from "node:assert/strict";
import {
  availableEngines,
  type Dockerd,
  dockerdUnavailable,
  type Engine,
  startDockerd,
} from "./helpers/dockerd.ts";
import { freeTempDir } from "./helpers/wait.ts";
import { type ServeProcess, startPolicyGate } from "./helpers/gate.ts";
import { jsonRequest, splitResponses, tlsExchange } from "./helpers/http_raw.ts";
import { bundleCreds, type Creds } from "./helpers/tls_peers.ts";

const POLICY = {
  roles: {
    ci: { preset: "no-escape" },
    tenant: { preset: "no-escape", isolate: true },
  },
  identities: [{ cn: "ci", role: "ci" }, { cn: "t1", role: "tenant" }],
};

for (const engine of availableEngines()) {
  Deno.test({
    name: `restricted e2e (Docker ${engine}): the last request closes the connection`,
    ignore: dockerdUnavailable(),
    sanitizeOps: false,
    sanitizeResources: false,
  }, (t) => lastRequest(t, engine));
}

/** Whether the daemon has a container named `name`. */
async function has(d: Dockerd, name: string): Promise<boolean> {
  return (await d.docker(["inspect", "--type", "container", name])).code === 0;
}

async function lastRequest(t: Deno.TestContext, engine: Engine): Promise<void> {
  const d = await startDockerd({ engine });
  if (!d) return;
  const work = await freeTempDir("dgk-");
  let gate: ServeProcess | undefined;
  try {
    const g = await startPolicyGate(d.host, work, POLICY, ["ci", "t1"]);
    gate = g.gate;
    await gate.waitForLog(/API policy: /);
    const port = gate.port;
    const creds: Record<string, Creds> = {
      ci: await bundleCreds(g.pki, "ci"),
      t1: await bundleCreds(g.pki, "t1"),
    };
    const v = `/v${(await d.docker(["version", "-f", "{{.Server.APIVersion}}"])).stdout.trim()}`;
    const create = (name: string) =>
      jsonRequest(
        "POST",
        `${v}/containers/create?name=${name}`,
        JSON.stringify({ Image: d.image }),
      );
    const privileged = JSON.stringify({ Image: d.image, HostConfig: { Privileged: true } });
    const cases: { name: string; who: string; first: string; status: number }[] = [
      {
        name: "forwarded, Connection: close",
        who: "ci",
        first: `GET ${v}/_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n`,
        status: 200,
      },
      {
        name: "refused (403), Connection: close",
        who: "ci",
        first: jsonRequest("POST", `${v}/containers/create`, privileged, "Connection: close\r\n"),
        status: 403,
      },
      {
        name: "refused (403), Connection: keep-alive, close",
        who: "ci",
        first: jsonRequest(
          "POST",
          `${v}/containers/create`,
          privileged,
          "Connection: keep-alive, close\r\n",
        ),
        status: 403,
      },
      {
        name: "HTTP/1.0, forwarded",
        who: "ci",
        first: `GET ${v}/_ping HTTP/1.0\r\n\r\n`,
        status: 200,
      },
      {
        name: "HTTP/1.0, refused (403)",
        who: "ci",
        first: `POST ${v}/containers/create HTTP/1.0\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${privileged.length}\r\n\r\n${privileged}`,
        status: 403,
      },
      {
        name: "isolated, the owner check's 404, Connection: close",
        who: "t1",
        first: `GET ${v}/containers/nothere/json HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n`,
        status: 404,
      },
    ];
    let n = 0;
    for (const c of cases) {
      await t.step(c.name, async () => {
        const after = `after${++n}`;
        const ex = await tlsExchange(port, creds[c.who], c.first + create(after), {
          keepOpen: true,
          timeoutMs: 8_000,
        });
        assert.equal(ex.timedOut, false, `the gate kept the connection open: ${ex.data}`);
        const answers = splitResponses(ex.data);
        assert.equal(answers.length, 1, `one answer only: ${ex.data}`);
        assert.equal(answers[0].status, c.status, answers[0].body);
        if (c.status !== 200) assert.equal(answers[0].headers["connection"], "close");
        assert.equal(await has(d, after), false, `the pipelined create of ${after} was forwarded`);
      });
    }
  } finally {
    await gate?.stop();
    await d.stop();
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}
