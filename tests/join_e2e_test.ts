/**
 * Enrolment with the real Docker CLI and a private dockerd: a machine that joined with a
 * token runs `docker --tlsverify … ps` through the gate, and `dockgate renew --daemon` keeps
 * it working past the end of its first certificate (a lifetime of seconds).
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { dockerdUnavailable, startDockerd } from "./helpers/dockerd.ts";
import { freeTempDir, waitFor } from "./helpers/wait.ts";
import { runCli, spawnCli, startConnect, startServe, tlsFlags } from "./helpers/gate.ts";
import { parseCertificatesPem } from "../src/pki/pem.ts";

Deno.test({
  name: "join, docker ps through the gate, and renew --daemon past the first certificate's end",
  ignore: dockerdUnavailable(),
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const d = await startDockerd();
  if (!d) return console.error("SKIP: join e2e test skipped (see SKIP line above)");
  const pki = await freeTempDir("dg-pki-");
  const client = await freeTempDir("dg-client-");
  let serve: Awaited<ReturnType<typeof startServe>> | undefined;
  let renew: ReturnType<typeof spawnCli> | undefined;
  try {
    assert.equal((await runCli(["keygen", "--dir", pki])).code, 0);
    assert.equal((await runCli(["keygen", "intermediate", "enroll", "--dir", pki])).code, 0);
    serve = await startServe([
      "--certs",
      join(pki, "server"),
      "--target",
      d.host,
      "--enroll",
      "127.0.0.1:0",
      "--enroll-issuer",
      "enroll",
      "--metrics",
      "127.0.0.1:0",
    ]);
    const port = Number(
      (await serve.waitForLog(/enrolment port on tcp:\/\/127\.0\.0\.1:(\d+)/))[1],
    );
    const metricsUrl = (await serve.waitForLog(/metrics on (http:\S+)/))[1];
    const token = (await runCli(["keygen", "token", "runner", "--dir", pki, "--cert-ttl", "30s"]))
      .stdout.trim();
    const joined = await runCli(["join", `127.0.0.1:${port}`, token, "--dir", client]);
    assert.equal(joined.code, 0, joined.stderr);
    const ps = () => d.docker([...tlsFlags(client), "ps", "-q"], { host: serve!.host });
    const first = await ps();
    assert.equal(first.code, 0, first.stderr);
    assert.match(serve.log(), /accepted .*identity=runner/);
    const [cert] = parseCertificatesPem(await readFile(join(client, "cert.pem"), "utf8"));
    renew = spawnCli(["renew", "--dir", client, "--daemon", "--exec", `touch ${client}/renewed`]);
    await renew.waitForLog(/renewed/, 40_000);
    // Past the first certificate's end, the CLI still gets through on the renewed one.
    await waitFor(() => Date.now() > cert.notAfter.getTime() + 1000, {
      timeoutMs: 60_000,
      what: "the first certificate's end",
    });
    const later = await ps();
    assert.equal(later.code, 0, `after the first certificate's end: ${later.stderr}`);
    const [now] = parseCertificatesPem(await readFile(join(client, "cert.pem"), "utf8"));
    assert.ok(now.notAfter > cert.notAfter);
    await Deno.stat(join(client, "renewed")); // --exec ran
    const metrics = await (await fetch(`${metricsUrl}`)).text();
    assert.match(metrics, /dockgate_enrolments_total\{kind="enroll",result="ok"\} 1/);
    assert.match(metrics, /dockgate_enrolments_total\{kind="renew",result="ok"\} [1-9]/);
  } finally {
    await renew?.stop();
    await serve?.stop();
    await d.stop();
    await Deno.remove(pki, { recursive: true });
    await Deno.remove(client, { recursive: true });
  }
});

Deno.test({
  name:
    "connect --renew: a docker run -i stream stays open across renewals, new ones use the new certificate",
  ignore: dockerdUnavailable(),
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const d = await startDockerd();
  if (!d) return console.error("SKIP: join e2e test skipped (see SKIP line above)");
  const pki = await freeTempDir("dg-pki-");
  const client = await freeTempDir("dg-client-");
  let serve: Awaited<ReturnType<typeof startServe>> | undefined;
  let tunnel: Awaited<ReturnType<typeof startConnect>> | undefined;
  let cat: Deno.ChildProcess | undefined;
  try {
    assert.equal((await runCli(["keygen", "--dir", pki])).code, 0);
    assert.equal((await runCli(["keygen", "intermediate", "enroll", "--dir", pki])).code, 0);
    serve = await startServe([
      "--certs",
      join(pki, "server"),
      "--target",
      d.host,
      "--enroll",
      "127.0.0.1:0",
      "--enroll-issuer",
      "enroll",
    ]);
    const port = Number(
      (await serve.waitForLog(/enrolment port on tcp:\/\/127\.0\.0\.1:(\d+)/))[1],
    );
    const token = (await runCli(["keygen", "token", "streamer", "--dir", pki, "--cert-ttl", "30s"]))
      .stdout.trim();
    assert.equal((await runCli(["join", `127.0.0.1:${port}`, token, "--dir", client])).code, 0);
    const [cert] = parseCertificatesPem(await readFile(join(client, "cert.pem"), "utf8"));
    const sock = join(client, "docker.sock");
    tunnel = await startConnect([
      "--server",
      `127.0.0.1:${serve.port}`,
      "--server-name",
      "localhost",
      "--certs",
      client,
      "--listen",
      `unix://${sock}`,
      "--renew",
    ]);
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(Deno.env.toObject())) {
      if (!k.startsWith("DOCKER_")) env[k] = v;
    }
    env.DOCKER_CONFIG = join(d.tmp, "cli");
    cat = new Deno.Command("docker", {
      args: ["-H", `unix://${sock}`, "run", "-i", "--rm", "--network", "none", d.image, "cat"],
      env,
      clearEnv: true,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const writer = cat.stdin.getWriter();
    const reader = cat.stdout.getReader();
    let seen = "";
    const echo = async (word: string) => {
      await writer.write(new TextEncoder().encode(word + "\n"));
      while (!seen.includes(word)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`the stream ended before "${word}" came back`);
        seen += new TextDecoder().decode(value);
      }
    };
    await echo("before");
    await tunnel.waitForLog(/renewed/, 40_000);
    await waitFor(() => Date.now() > cert.notAfter.getTime() + 1000, {
      timeoutMs: 60_000,
      what: "the first certificate's end",
    });
    await echo("after"); // the open stream went on past the first certificate's end
    const ps = await d.docker(["ps", "-q"], { host: `unix://${sock}` });
    assert.equal(ps.code, 0, `a new connection after the first certificate's end: ${ps.stderr}`);
    await writer.close();
    assert.equal((await cat.status).code, 0);
    cat = undefined;
  } finally {
    try {
      cat?.kill();
    } catch {
      // Already gone.
    }
    await tunnel?.stop();
    await serve?.stop();
    await d.stop();
    await Deno.remove(pki, { recursive: true });
    await Deno.remove(client, { recursive: true });
  }
});
