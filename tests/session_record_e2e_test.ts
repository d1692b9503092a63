/**
 * Session recording end to end: the REAL docker CLI through `dockgate serve --record-sessions`
 * to a private dockerd, the recordings played back with the reference player (`asciinema cat`,
 * Debian's asciinema; scripts/test.sh installs it) and read as asciicast v2.
 *
 * - `docker exec -i` (no terminal: Docker's stream frames, taken apart) of a full role audited
 *   per request and of a no-escape role with `"record": "required"`: the recording replays what
 *   was typed and shown, 0600, its header names who, where and what, start and end.
 * - `docker exec -it` under a pseudo-terminal (python's pty): the raw terminal stream.
 * - `"record": "required"` with a directory that cannot be written: the exec is refused, and
 *   dockerd never started it (no exec_start event, the exec instance never ran); `"record":
 *   true` goes on unrecorded and its audit record says why.
 * - `--record-max-session`: a session's file stays under the cap, its header says truncated.
 */
import assert from "node:assert/strict";
import { readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  availableEngines,
  dockerdUnavailable,
  type DockerResult,
  type Engine,
  startDockerd,
  which,
} from "./helpers/dockerd.ts";
import { freeTempDir, waitFor } from "./helpers/wait.ts";
import { type ServeProcess, startServe, tlsFlags } from "./helpers/gate.ts";
import { runCli } from "./helpers/gate.ts";
import { splitResponses, tlsExchange } from "./helpers/http_raw.ts";
import { bundleCreds } from "./helpers/tls_peers.ts";

const POLICY = {
  roles: {
    admin: { preset: "full", audit: "requests", record: true },
    ci: { preset: "no-escape", record: "required" },
  },
  identities: [{ cn: "alice", role: "admin" }, { cn: "ci", role: "ci" }],
};

type Rec = Record<string, unknown>;

function ok(what: string, r: DockerResult): DockerResult {
  assert.equal(r.code, 0, `${what}: exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

/** A recording read as asciicast v2: the header and the events, each line checked. */
async function cast(file: string): Promise<{ header: Rec; events: [number, string, string][] }> {
  const lines = (await readFile(file, "utf8")).split("\n").filter((l) => l !== "");
  const header = JSON.parse(lines[0]) as Rec;
  assert.equal(header.version, 2);
  assert.equal(typeof header.width, "number");
  assert.equal(typeof header.height, "number");
  assert.equal(typeof header.timestamp, "number");
  const events = lines.slice(1).map((l) => JSON.parse(l) as [number, string, string]);
  let last = 0;
  for (const [t, code, data] of events) {
    assert.ok(typeof t === "number" && t >= last, `event times in order: ${t} after ${last}`);
    assert.ok(code === "o" || code === "i", `event code ${code}`);
    assert.equal(typeof data, "string");
    last = t;
  }
  return { header, events };
}

const text = (events: [number, string, string][], code: string) =>
  events.filter((e) => e[1] === code).map((e) => e[2]).join("");

/** `asciinema cat FILE` (under `script`: the player opens /dev/tty): what it shows. */
async function asciinemaCat(file: string): Promise<string> {
  const out = await new Deno.Command("script", {
    args: ["-qec", `asciinema cat ${file}`, "/dev/null"],
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  const td = new TextDecoder();
  assert.equal(out.code, 0, `asciinema cat: ${td.decode(out.stderr)}`);
  return td.decode(out.stdout);
}

async function castsIn(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((f) => f.endsWith(".cast")).map((f) => join(dir, f)).sort();
}

/** `docker exec -it` under a pseudo-terminal: types `line`, waits for `expect`, exits. */
const PTY_PY = `
import os, pty, subprocess, sys, time
argv, line, expect = sys.argv[3:], sys.argv[1], sys.argv[2].encode()
master, slave = pty.openpty()
p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
os.close(slave)
seen, deadline, typed = b"", time.time() + 30, False
while time.time() < deadline and expect not in seen:
    if not typed and b"#" in seen:
        os.write(master, line.encode() + b"\\r"); typed = True
    import select
    r, _, _ = select.select([master], [], [], 0.2)
    if r:
        try: seen += os.read(master, 4096)
        except OSError: break
os.write(master, b"exit\\r")
p.wait(timeout=30)
sys.stdout.write("found" if expect in seen else "missing: " + repr(seen))
`;

for (const engine of availableEngines()) {
  Deno.test({
    name: `session recording e2e (Docker ${engine}): exec -i, -it, required, caps`,
    ignore: dockerdUnavailable() || !which("asciinema"),
    sanitizeOps: false,
    sanitizeResources: false,
  }, (t) => recording(engine, t));
}

async function recording(engine: Engine, t: Deno.TestContext): Promise<void> {
  const d = await startDockerd({ engine });
  if (!d) return;
  const work = await freeTempDir("dgr-");
  const gates: ServeProcess[] = [];
  try {
    const pki = join(work, "pki");
    assert.equal((await runCli(["keygen", "--dir", pki])).code, 0);
    for (const n of ["alice", "ci"]) {
      assert.equal((await runCli(["keygen", "client", n, "--dir", pki])).code, 0);
    }
    const policyFile = join(work, "policy.json");
    await writeFile(policyFile, JSON.stringify(POLICY), { mode: 0o600 });
    const gateWith = async (extra: string[]) => {
      const auditLog = join(await freeTempDir("dgr-log-"), "audit.log");
      const gate = await startServe([
        "--target",
        d.host,
        "--certs",
        join(pki, "server"),
        "--policy",
        policyFile,
        "--audit-log",
        auditLog,
        ...extra,
      ]);
      gates.push(gate);
      const as = (who: string, args: string[], stdin?: string) =>
        d.docker([...tlsFlags(join(pki, "clients", who)), ...args], {
          host: gate.host,
          stdin,
          timeoutMs: 60_000,
        });
      const records = async () =>
        (await readFile(auditLog, "utf8").catch(() => "")).split("\n").filter((l) => l)
          .map((l) => JSON.parse(l) as Rec);
      return { gate, as, records };
    };
    ok(
      "keeper",
      await d.docker(["run", "-d", "--name", "keep", "--network", "none", d.image, "sleep", "600"]),
    );
    const keepId = ok("id", await d.docker(["inspect", "-f", "{{.Id}}", "keep"])).stdout.trim();
    const dir = await freeTempDir("dgr-casts-");
    const g = await gateWith(["--record-sessions", dir]);

    await t.step("exec -i of a full role and of a required no-escape role: replayed", async () => {
      for (const who of ["alice", "ci"]) {
        const before = await castsIn(dir);
        const typed = `echo typed-$((6*7))-${who}\necho to-stderr >&2\nexit\n`;
        const r = ok(`${who} exec -i`, await g.as(who, ["exec", "-i", "keep", "sh"], typed));
        assert.equal(r.stdout, `typed-42-${who}\n`);
        const file = await waitFor<string>(async () => {
          const now = (await castsIn(dir)).filter((f) => !before.includes(f));
          return now.length === 1 && now[0];
        }, { what: `${who}'s recording` });
        const { header, events } = await waitFor(async () => {
          const c = await cast(file);
          return (c.header.dockgate as Rec).end !== null && c;
        }, { what: "the recording's end" });
        const meta = header.dockgate as Rec;
        assert.equal(meta.identity, who);
        assert.equal(meta.kind, "exec");
        assert.equal(meta.container, keepId);
        assert.deepEqual(meta.command, ["sh"]);
        assert.equal(meta.tty, false);
        assert.ok(Date.parse(String(meta.start)) <= Date.parse(String(meta.end)));
        assert.equal(text(events, "i"), typed);
        // The frames are taken apart: stdout and stderr, no 8-byte headers.
        assert.equal(
          text(events, "o").split("\n").sort().join("\n"),
          `\nto-stderr\ntyped-42-${who}`,
        );
        assert.equal((await stat(file)).mode & 0o777, 0o600);
        assert.match(await asciinemaCat(file), new RegExp(`typed-42-${who}`));
        const rec = await waitFor(
          async () =>
            (await g.records()).find((r) =>
              r.identity === who && String(r.path).endsWith("/start") && r.recording === file
            ),
          { what: "the exec start record naming the recording" },
        );
        assert.equal(rec.status, 101);
      }
    });

    await t.step("attach: the container's output recorded, demultiplexed", async () => {
      ok(
        "att",
        await d.docker([
          "run",
          "-d",
          "--name",
          "att",
          "--network",
          "none",
          d.image,
          "sh",
          "-c",
          "sleep 1; echo attached-out; echo attached-err >&2",
        ]),
      );
      const before = await castsIn(dir);
      const r = ok("attach", await g.as("ci", ["attach", "--no-stdin", "att"]));
      assert.equal(r.stdout, "attached-out\n");
      const file = await waitFor<string>(async () => {
        const now = (await castsIn(dir)).filter((f) => !before.includes(f));
        return now.length === 1 && ((await cast(now[0])).header.dockgate as Rec).end !== null &&
          now[0];
      }, { what: "the attach recording" });
      const { header, events } = await cast(file);
      const meta = header.dockgate as Rec;
      assert.equal(meta.kind, "attach");
      assert.match(String(meta.container), /^[0-9a-f]{64} \(att\)$/);
      assert.deepEqual(meta.command, [
        "sh",
        "-c",
        "sleep 1; echo attached-out; echo attached-err >&2",
      ]);
      assert.equal(text(events, "o").split("\n").sort().join("\n"), "\nattached-err\nattached-out");
      ok("rm att", await d.docker(["rm", "-f", "att"]));
    });

    await t.step("exec -it under a pseudo-terminal: replayed", async () => {
      const bundle = join(pki, "clients", "alice");
      const before = await castsIn(dir);
      const out = await new Deno.Command("python3", {
        args: [
          "-c",
          PTY_PY,
          "echo pty-$((6*7))",
          "pty-42",
          "docker",
          "-H",
          g.gate.host,
          ...tlsFlags(bundle),
          "exec",
          "-it",
          "keep",
          "sh",
        ],
        stdout: "piped",
        stderr: "piped",
        env: { DOCKER_CONFIG: join(work, "docker-config") },
      }).output();
      assert.equal(
        new TextDecoder().decode(out.stdout),
        "found",
        new TextDecoder().decode(out.stderr),
      );
      const file = await waitFor<string>(async () => {
        const now = (await castsIn(dir)).filter((f) => !before.includes(f));
        return now.length === 1 && ((await cast(now[0])).header.dockgate as Rec).end !== null &&
          now[0];
      }, { what: "the -it recording" });
      const { header, events } = await cast(file);
      assert.equal((header.dockgate as Rec).tty, true);
      assert.match(text(events, "i"), /echo pty-\$\(\(6\*7\)\)\r/);
      assert.match(text(events, "o"), /pty-42/);
      assert.match(await asciinemaCat(file), /pty-42/);
    });

    await t.step("record required and an unwritable directory: the exec never starts", async () => {
      const notDir = join(work, "a-file");
      await writeFile(notDir, "not a directory\n");
      const bad = await gateWith(["--record-sessions", join(notDir, "casts")]);
      const since = String(Math.floor(Date.now() / 1000) - 1);
      const r = await bad.as("ci", [
        "exec",
        "-i",
        "keep",
        "sh",
        "-c",
        "echo ran > /tmp/ran-unrecorded",
      ], "");
      assert.notEqual(r.code, 0, r.stdout);
      // The CLI shows only "received 403"; the gate's answer and rule are in the audit record.
      assert.match(r.stderr, /403/);
      const refused = await waitFor(
        async () =>
          (await bad.records()).find((x) =>
            x.identity === "ci" && String(x.path).endsWith("/start")
          ),
        {
          what: "the refused start's record",
        },
      );
      assert.equal(refused.decision, "deny");
      assert.equal(refused.status, 403);
      assert.match(String(refused.rule), /^record: required: the session cannot be recorded: /);
      // dockerd's own word: the exec instance exists and never ran, no exec_start happened.
      const exec = JSON.parse(
        ok(
          "exec inspect",
          await d.docker(["container", "inspect", "-f", "{{json .ExecIDs}}", "keep"]),
        ).stdout,
      ) as string[];
      assert.ok(exec.includes(String(refused.exec_id)), "the refused exec was created");
      const until = String(Math.floor(Date.now() / 1000) + 1);
      const events = ok(
        "events",
        await d.docker([
          "events",
          "--since",
          since,
          "--until",
          until,
          "--filter",
          "container=keep",
          "--format",
          "{{.Action}}",
        ]),
      ).stdout;
      // The window may hold the end of the step before (its own `sh`): this command's start only.
      assert.doesNotMatch(events, /exec_start: sh -c echo ran/, events);
      assert.match(events, /exec_create/, events);
      const ran = await d.docker(["exec", "keep", "cat", "/tmp/ran-unrecorded"]);
      assert.notEqual(ran.code, 0, "the unrecorded command ran");
      // record: true goes on unrecorded, and the record says why.
      assert.equal(
        ok("alice unrecorded", await bad.as("alice", ["exec", "keep", "echo", "x"])).stdout,
        "x\n",
      );
      const note = await waitFor(
        async () =>
          (await bad.records()).find((x) =>
            x.identity === "alice" && x.recording_error !== undefined
          ),
        {
          what: "alice's recording_error",
        },
      );
      assert.match(String(note.recording_error), /cannot create/);
    });

    await t.step("record required: a websocket attach (not readable) is refused", async () => {
      const ws = "GET /v1.41/containers/keep/attach/ws?stream=1&stdout=1 HTTP/1.1\r\nHost: d\r\n" +
        "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n" +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
      const ex = await tlsExchange(g.gate.port, await bundleCreds(pki, "ci"), ws);
      const [answer] = splitResponses(ex.data);
      assert.equal(answer?.status, 403, ex.data.toString());
      assert.match(ex.data.toString(), /record: required: .*a websocket attach is not recorded/);
    });

    await t.step("a session's recording stops at --record-max-session", async () => {
      const small = await freeTempDir("dgr-small-");
      const capped = await gateWith(["--record-sessions", small, "--record-max-session", "2KiB"]);
      const r = ok(
        "big output",
        await capped.as("alice", ["exec", "keep", "sh", "-c", "yes a | head -c 100000"]),
      );
      assert.equal(r.stdout.length, 100_000);
      const [file] = await waitFor(async () => {
        const f = await castsIn(small);
        return f.length === 1 && ((await cast(f[0])).header.dockgate as Rec).end !== null && f;
      }, { what: "the capped recording" });
      assert.ok((await stat(file)).size <= 2048, `size ${(await stat(file)).size}`);
      const { header } = await cast(file);
      assert.equal((header.dockgate as Rec).truncated, true);
      // record: required: what cannot be recorded is not shown either, the session ends.
      const before = await castsIn(small);
      const cut = await capped.as("ci", ["exec", "keep", "sh", "-c", "yes b | head -c 100000"]);
      assert.ok(
        cut.stdout.length < 4096,
        `a required session went on unrecorded: ${cut.stdout.length} bytes`,
      );
      const [more] = await waitFor(async () => {
        const f = (await castsIn(small)).filter((x) => !before.includes(x));
        return f.length === 1 && f;
      }, { what: "the required session's recording" });
      assert.ok((await stat(more)).size <= 2048, `size ${(await stat(more)).size}`);
      // Each piece is recorded before it is relayed: the client saw no more than the file has.
      assert.ok(text((await cast(more)).events, "o").startsWith(cut.stdout));
    });
  } finally {
    for (const g of gates) await g.stop();
    await d.docker(["rm", "-f", "keep"]);
    await d.stop();
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}
