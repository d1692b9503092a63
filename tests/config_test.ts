/**
 * serve's settings from a config file, the environment and flags, through the real CLI:
 * precedence flag > env > file > default as `--print-config` reports it, one clear line for
 * a bad file or variable, and a config file change applied to a running serve (allow-lists,
 * log level) or reported as needing a restart (listen).
 */
import assert from "node:assert/strict";
import http from "node:http";
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { runCli, type ServeProcess, spawnCli } from "./helpers/gate.ts";
import { keygenOk } from "./helpers/keygen_inproc.ts";
import { splitResponses, tlsExchange } from "./helpers/http_raw.ts";
import { freeTempDir, waitFor } from "./helpers/wait.ts";
import { bundleCreds as creds } from "./helpers/tls_peers.ts";

Deno.test("config: flag > env > file > default, as --print-config says; bad layers are one line", async () => {
  const dir = await freeTempDir("dg-cfg-");
  try {
    const file = join(dir, "dockgate.yaml");
    await writeFile(
      file,
      "serve:\n  listen: 127.0.0.1:2400\n  max-connections: 50\n  log-level: warn\n  allow-cn: [a, b]\n",
    );
    const r = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--quiet",
        join(import.meta.dirname!, "..", "cli.ts"),
        "serve",
        "--config",
        file,
        "--print-config",
        "--max-connections",
        "7",
      ],
      env: {
        DOCKGATE_LOG_LEVEL: "debug",
        DOCKGATE_MAX_CONNECTIONS: "9",
        DOCKGATE_ALLOW_OU: "ops,dev",
      },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const out = new TextDecoder().decode(r.stdout);
    assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
    const line = (name: string) => out.split("\n").find((l) => l.startsWith(`${name} = `));
    assert.equal(line("max-connections"), "max-connections = 7  (flag)");
    assert.equal(line("log-level"), "log-level = debug  (env)");
    assert.equal(line("allow-ou"), "allow-ou = ops,dev  (env)");
    assert.equal(line("listen"), "listen = 127.0.0.1:2400  (file)");
    assert.equal(line("allow-cn"), "allow-cn = a,b  (file)");
    assert.match(line("target")!, /^target = unix:\/\/\/var\/run\/docker\.sock {2}\(default\)$/);

    await writeFile(file, "serve:\n  lisen: 127.0.0.1:1\n");
    const typo = await runCli(["serve", "--config", file]);
    assert.equal(typo.code, 2);
    assert.match(
      typo.stderr,
      /^dockgate: Config ".*dockgate\.yaml": unknown setting "lisen" \(did you mean "listen"\?\)$/m,
    );
    await writeFile(file, "serve:\n  listen: a\n  listen: b\n");
    const dup = await runCli(["serve", "--config", file]);
    assert.equal(dup.code, 2);
    assert.match(dup.stderr, /^dockgate: Config ".*": line 3: .*[Uu]nique/m);
    const missing = await runCli(["serve", "--config", join(dir, "none.yaml")]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /Cannot read config ".*none\.yaml": ENOENT/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

Deno.test({
  name: "config: a running serve applies allow-list and log-level changes; listen needs a restart",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const dir = await freeTempDir("dg-cfgr-");
  const target = http.createServer((_q, r) => r.end("OK"));
  let gate: ServeProcess | undefined;
  try {
    const pki = join(dir, "pki");
    await keygenOk(["--dir", pki]);
    for (const n of ["alice", "bob"]) {
      await keygenOk(["client", n, "--dir", pki]);
    }
    const sock = join(dir, "t.sock");
    await new Promise<void>((r) => target.listen(sock, () => r()));
    const file = join(dir, "dockgate.yaml");
    const config = (cns: string[], listen = "127.0.0.1:0") =>
      writeFile(
        file,
        `listen: ${listen}\ntarget: unix://${sock}\ncerts: ${join(pki, "server")}\nallow-cn: [${
          cns.join(", ")
        }]\n`,
      );
    await config(["alice"]);
    const proc = spawnCli(["serve", "--config", file]);
    const port = Number((await proc.waitForLog(/listening on tcp:\/\/127\.0\.0\.1:(\d+)/))[1]);
    gate = Object.assign(proc, { port, host: `tcp://127.0.0.1:${port}` });
    const PING = "GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n";
    const served = async (who: string) =>
      splitResponses((await tlsExchange(port, await creds(pki, who), PING)).data)[0]?.status ===
        200;
    assert.ok(await served("alice"));
    assert.ok(!(await served("bob")), "bob is not on the allow-list yet");
    await config(["alice", "bob"]);
    await gate.waitForLog(/config changed: applying .*settings=allow-cn/);
    await waitFor(() => served("bob"), { timeoutMs: 10_000 });
    await config(["alice", "bob"], "127.0.0.1:2999");
    await gate.waitForLog(/WARN config changed: these settings need a restart .*settings=listen/);
    assert.ok(await served("alice"), "still serving on the old address");
  } finally {
    await gate?.stop();
    target.close();
    await rm(dir, { recursive: true, force: true });
  }
});
