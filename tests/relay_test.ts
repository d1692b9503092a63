import assert from "node:assert/strict";
import net from "node:net";
import { Duplex } from "node:stream";
import { setImmediate } from "node:timers";
import { createHash, randomBytes } from "node:crypto";
import { HeldInput, relay, type RelayHandle } from "../src/net/relay.ts";

/** A relay front (TCP) → back (unix, run by `backHandler`) in a temp dir. */
async function withRelay(
  backHandler: (s: net.Socket) => void,
  fn: (port: number, relays: RelayHandle[]) => Promise<void>,
  options = {},
) {
  const dir = await Deno.makeTempDir({ prefix: "dg-relay-" });
  const path = `${dir}/back.sock`;
  const back = net.createServer({ allowHalfOpen: true }, backHandler);
  await new Promise<void>((r) => back.listen(path, r));
  const relays: RelayHandle[] = [];
  const front = net.createServer({ allowHalfOpen: true }, (client) => {
    const held = new HeldInput(client, 1 << 20);
    const up = net.connect({ path, allowHalfOpen: true });
    up.once("connect", () => relays.push(relay(client, up, options, held)));
  });
  await new Promise<void>((r) => front.listen(0, "127.0.0.1", r));
  try {
    await fn((front.address() as net.AddressInfo).port, relays);
  } finally {
    for (const r of relays) r.abort();
    await new Promise((r) => front.close(r));
    await new Promise((r) => back.close(r));
    await Deno.remove(dir, { recursive: true });
  }
}

function collect(s: net.Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    s.on("data", (d: Buffer) => parts.push(d));
    s.on("end", () => resolve(Buffer.concat(parts)));
    s.on("error", reject);
  });
}

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

Deno.test("relay is byte-exact both ways with half-close", async () => {
  // Back end: answers only after the client's half-close, with a digest and a big payload.
  const reply = randomBytes(8 * 1024 * 1024);
  await withRelay((s) => {
    const h = createHash("sha256");
    s.on("data", (d) => h.update(d));
    s.on("end", () => {
      s.write(h.digest("hex") + "\n");
      s.end(reply);
    });
  }, async (port, relays) => {
    const payload = randomBytes(12 * 1024 * 1024 + 17);
    const c = net.connect({ port, host: "127.0.0.1", allowHalfOpen: true });
    const got = collect(c);
    c.end(payload);
    const out = await got;
    const nl = out.indexOf(10);
    assert.equal(out.subarray(0, nl).toString(), sha(payload));
    assert.equal(sha(out.subarray(nl + 1)), sha(reply));
    const result = await relays[0].done;
    assert.equal(result.bytesIn, payload.length);
    assert.equal(result.bytesOut, out.length);
    assert.equal(result.error, undefined);
  });
});

Deno.test("relay applies backpressure: a slow reader does not make the relay buffer everything", async () => {
  // The back end reads slowly; the relay must pause the client instead of queueing 64 MiB.
  let received = 0;
  await withRelay((s) => {
    s.on("data", (d) => {
      received += d.length;
      s.pause();
      setTimeout(() => s.resume(), 1);
    });
    s.on("end", () => s.end(`got ${received}`));
  }, async (port) => {
    const total = 64 * 1024 * 1024;
    const c = net.connect({ port, host: "127.0.0.1", allowHalfOpen: true });
    const chunk = Buffer.alloc(1 << 20);
    let sent = 0;
    let maxAhead = 0;
    const got = collect(c);
    await new Promise<void>((resolve) => {
      const pump = () => {
        while (sent < total) {
          maxAhead = Math.max(maxAhead, sent - received);
          sent += chunk.length;
          if (!c.write(chunk)) return void c.once("drain", pump);
        }
        c.end();
        resolve();
      };
      c.once("connect", pump);
    });
    assert.equal((await got).toString(), `got ${total}`);
    // Kernel buffers on two sockets plus stream high-water marks: well under the total.
    assert.ok(maxAhead < total / 2, `client ran ${maxAhead} bytes ahead of the reader`);
  });
});

Deno.test("relay: a reset on one side tears down the other and reports the error", async () => {
  let backClosed!: () => void;
  const backGone = new Promise<void>((r) => (backClosed = r));
  await withRelay((s) => {
    // Streams forever until the relay closes it.
    const chunk = Buffer.alloc(64 * 1024);
    const pump = () => {
      while (!s.destroyed && s.write(chunk));
      if (!s.destroyed) s.once("drain", pump);
    };
    s.on("error", () => {});
    s.once("close", () => backClosed());
    pump();
  }, async (port, relays) => {
    const c = net.connect({ port, host: "127.0.0.1", allowHalfOpen: true });
    c.on("error", () => {});
    await new Promise((r) => c.once("data", r));
    c.resetAndDestroy(); // TCP RST toward the relay
    await backGone;
    const result = await relays[0].done;
    assert.ok(result.error, "relay reports why it ended");
    assert.ok(result.bytesOut > 0);
  });
});

Deno.test("HeldInput replays early bytes and an early EOF", async () => {
  await withRelay((s) => {
    let n = "";
    s.on("data", (d) => (n += d));
    s.on("end", () => s.end(`echo:${n}`));
  }, async (port) => {
    const c = net.connect({ port, host: "127.0.0.1", allowHalfOpen: true });
    const got = collect(c);
    c.end("early bird");
    assert.equal((await got).toString(), "echo:early bird");
  });
});

Deno.test("through serve: a close_notify-only half-close after a large upload survives backpressure", async () => {
  // Regression for Deno 2.9's node:tls, which drops an EOF that arrives while a TLS socket is
  // paused: the Docker CLI ends `docker run -i` stdin exactly this way (close_notify, no FIN).
  const { createCa, issueClient, issueServer } = await import("../src/ca/issue.ts");
  const { serve } = await import("../src/serve.ts");
  const ca = await createCa();
  const srv = await issueServer(ca);
  const cli = await issueClient(ca, "alice");
  const dir = await Deno.makeTempDir({ prefix: "dg-relay-tls-" });
  const path = `${dir}/slow.sock`;
  let received = 0;
  const target = net.createServer({ allowHalfOpen: true }, (s) => {
    const h = createHash("sha256");
    s.on("data", (d) => {
      h.update(d);
      received += d.length;
      s.pause(); // a slow consumer: the gate must hold the client back, not buffer
      setTimeout(() => s.resume(), 1);
    });
    s.on("end", () => s.end(`${received} ${h.digest("hex")}\n`));
  });
  await new Promise<void>((r) => target.listen(path, r));
  const gate = await serve({
    listen: { transport: "tcp", host: "127.0.0.1", port: 0 },
    target: { transport: "unix", path },
    tls: { certPem: srv.certPem, keyPem: srv.keyPem, caPem: ca.certPem },
    policy: { allowAny: true },
  });
  try {
    for (
      const [name, pem] of [["ca.pem", ca.certPem], ["cert.pem", cli.certPem], [
        "key.pem",
        cli.keyPem,
      ]]
    ) {
      await Deno.writeTextFile(`${dir}/${name}`, pem, { mode: 0o600 });
    }
    const payload = randomBytes(24 * 1024 * 1024);
    const child = new Deno.Command("python3", {
      args: [
        new URL("./tools/close_notify_client.py", import.meta.url).pathname,
        "127.0.0.1",
        String((gate.address as { port: number }).port),
        `${dir}/ca.pem`,
        `${dir}/cert.pem`,
        `${dir}/key.pem`,
        "localhost",
      ],
      stdin: "piped",
      stdout: "piped",
    }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(payload);
    await writer.close();
    const timer = setTimeout(() => child.kill(), 60_000);
    const out = await child.output();
    clearTimeout(timer);
    assert.equal(new TextDecoder().decode(out.stdout), `${payload.length} ${sha(payload)}\n`);
  } finally {
    await gate.close();
    await new Promise((r) => target.close(r));
    await Deno.remove(dir, { recursive: true });
  }
});

/** Resolves after the check phase of the current event-loop turn. */
const afterTurn = () => new Promise((r) => setImmediate(r));

/** An in-memory duplex that records how writes reach it (one entry per _write/_writev call). */
function recordingDuplex() {
  const calls: number[][] = [];
  const d = new Duplex({
    allowHalfOpen: true,
    read() {},
    write(chunk: Uint8Array, _enc, cb) {
      calls.push([chunk.byteLength]);
      cb();
    },
    writev(chunks: { chunk: Uint8Array }[], cb) {
      calls.push(chunks.map((c) => c.chunk.byteLength));
      cb();
    },
  });
  return { d, calls };
}

Deno.test("relay gathers bulk chunks of one event-loop turn into one writev, writes small ones at once", async () => {
  const src = recordingDuplex();
  const dst = recordingDuplex();
  const handle = relay(src.d, dst.d);
  await afterTurn(); // the relay's resume() takes effect
  // Four 16 KiB records arriving in one turn (as Node's TLS socket hands them over).
  for (let i = 0; i < 4; i++) src.d.push(new Uint8Array(16 * 1024).fill(i));
  // The relay's flush was queued before this, so it has run when this resolves.
  await afterTurn();
  assert.deepEqual(dst.calls, [[16384, 16384, 16384, 16384]]);
  // A small chunk (an interactive keystroke, a ping) goes out at once, not at the turn's end.
  src.d.push(new Uint8Array(10));
  await Promise.resolve();
  assert.deepEqual(dst.calls, [[16384, 16384, 16384, 16384], [10]]);
  src.d.push(null);
  dst.d.push(null);
  const result = await Promise.race([
    handle.done,
    new Promise<never>((_, rej) => setTimeout(() => rej(new Error("relay did not finish")), 2000)),
  ]);
  assert.equal(result.bytesIn, 4 * 16384 + 10);
  assert.equal(result.error, undefined);
});
