/**
 * Checks the real-Docker harness itself: a private dockerd answers the real docker CLI on its
 * raw socket, the busybox image works, and stdin streams through `docker run -i` intact; and
 * each engine (20.10, 26) is the one asked for: its API version, a container run, and the
 * content type 26 gives logs.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { Buffer } from "node:buffer";
import {
  availableEngines,
  dockerdUnavailable,
  type Engine,
  makeBigImage,
  startDockerd,
} from "./helpers/dockerd.ts";
import { splitResponses } from "./helpers/http_raw.ts";
import { waitFor } from "./helpers/wait.ts";

Deno.test({
  name: "dockerd harness: real docker CLI on the raw socket",
  ignore: dockerdUnavailable(),
}, async (t) => {
  const t0 = performance.now();
  const d = await startDockerd();
  if (!d) {
    console.error("SKIP: dockerd harness test skipped (see SKIP line above)");
    return;
  }
  console.error(`dockerd ready + image imported in ${Math.round(performance.now() - t0)} ms`);
  try {
    await t.step("version talks to dockerd 20.10 (API negotiated down)", async () => {
      const r = await d.docker(["version", "--format", "{{.Server.APIVersion}}"]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout.trim(), /^1\.\d+$/);
    });

    await t.step("images lists bb:latest", async () => {
      const r = await d.docker(["images", "--format", "{{.Repository}}:{{.Tag}}"]);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(r.stdout.split("\n").includes(d.image), r.stdout);
    });

    await t.step("run --rm echo hi", async () => {
      const r = await d.docker(["run", "--rm", "--network", "none", d.image, "echo", "hi"]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, "hi\n");
    });

    await t.step("run -i streams 1 MiB of stdin through cat and md5sum", async () => {
      const data = new Uint8Array(1 << 20);
      for (let off = 0; off < data.length; off += 65536) {
        crypto.getRandomValues(data.subarray(off, off + 65536));
      }
      const want = createHash("md5").update(data).digest("hex");

      const echoed = await d.docker(["run", "--rm", "-i", "--network", "none", d.image, "cat"], {
        stdin: data,
      });
      assert.equal(echoed.code, 0, echoed.stderr);
      assert.equal(echoed.stdoutBytes.length, data.length);
      assert.equal(createHash("md5").update(echoed.stdoutBytes).digest("hex"), want);

      const summed = await d.docker(
        ["run", "--rm", "-i", "--network", "none", d.image, "md5sum"],
        { stdin: data },
      );
      assert.equal(summed.code, 0, summed.stderr);
      assert.equal(summed.stdout.split(/\s+/)[0], want);
    });

    await t.step("exit codes propagate", async () => {
      const r = await d.docker(["run", "--rm", "--network", "none", d.image, "sh", "-c", "exit 7"]);
      assert.equal(r.code, 7);
    });

    await t.step("makeBigImage: random layer survives save/load", async () => {
      const md5 = await makeBigImage(d, 4, "big:test");
      const saved = await d.docker(["save", "big:test"]);
      assert.equal(saved.code, 0, saved.stderr);
      assert.ok(saved.stdoutBytes.length > 4 << 20);
      assert.equal((await d.docker(["rmi", "big:test"])).code, 0);
      const loaded = await d.docker(["load"], { stdin: saved.stdoutBytes });
      assert.equal(loaded.code, 0, loaded.stderr);
      const r = await d.docker([
        "run",
        "--rm",
        "--network",
        "none",
        "big:test",
        "md5sum",
        "/data/random.bin",
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.split(/\s+/)[0], md5);
    });

    await t.step("detached container shows up in ps (waitFor)", async () => {
      const run = await d.docker(["run", "-d", "--network", "none", d.image, "sleep", "300"]);
      assert.equal(run.code, 0, run.stderr);
      const id = run.stdout.trim();
      await waitFor(async () => {
        const ps = await d.docker(["ps", "-q", "--no-trunc"]);
        return ps.stdout.includes(id);
      }, { what: "container in docker ps" });
      // left running on purpose: stop() must clean it up quickly
    });
  } finally {
    const s0 = performance.now();
    await d.stop();
    console.error(`dockerd stopped in ${Math.round(performance.now() - s0)} ms`);
  }
  assert.equal(await Deno.stat(d.tmp).then(() => true, () => false), false, "temp dir removed");
});

/** The API version each engine's daemon reports (its maximum). */
const API_VERSION: Record<Engine, string> = { "20.10": "1.41", "26": "1.45" };

/** One raw HTTP/1.0 request on the daemon's unix socket; every byte until dockerd closes. */
async function unixExchange(socket: string, request: string): Promise<Buffer> {
  const conn = await Deno.connect({ transport: "unix", path: socket });
  try {
    await conn.write(new TextEncoder().encode(request));
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(65536);
    for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) {
      chunks.push(buf.slice(0, n));
    }
    return Buffer.concat(chunks);
  } finally {
    conn.close();
  }
}

for (const engine of availableEngines()) {
  Deno.test({
    name: `dockerd harness: engine ${engine} (API ${API_VERSION[engine]}, run, logs content type)`,
    ignore: dockerdUnavailable(),
  }, async (t) => {
    const t0 = performance.now();
    const d = await startDockerd({ engine });
    if (!d) return;
    console.error(
      `dockerd ${engine} ready + image imported in ${Math.round(performance.now() - t0)} ms`,
    );
    try {
      assert.equal(d.engine, engine);
      await t.step(`version reports API ${API_VERSION[engine]}`, async () => {
        const r = await d.docker(["version", "--format", "{{.Server.APIVersion}}"]);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout.trim(), API_VERSION[engine]);
      });

      await t.step("run --rm --network none echo hi", async () => {
        const r = await d.docker(["run", "--rm", "--network", "none", d.image, "echo", "hi"]);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout, "hi\n");
      });

      await t.step("GET /containers/{id}/logs content type", async () => {
        const c = await d.docker(["run", "-d", "--network", "none", d.image, "echo", "hi"]);
        assert.equal(c.code, 0, c.stderr);
        const id = c.stdout.trim();
        const w = await d.docker(["wait", id]);
        assert.equal(w.stdout.trim(), "0", w.stderr);
        const raw = await unixExchange(
          d.socket,
          `GET /containers/${id}/logs?stdout=1 HTTP/1.0\r\nHost: docker\r\n\r\n`,
        );
        const [res] = splitResponses(raw);
        assert.equal(res?.status, 200, raw.toString("latin1"));
        const type = res.headers["content-type"];
        if (engine === "26") {
          assert.equal(type, "application/vnd.docker.multiplexed-stream");
        } else {
          // 20.10 names no stream type for logs (what the 26 check tells it apart from).
          assert.notEqual(type, "application/vnd.docker.multiplexed-stream");
        }
        // Either way the body is the multiplexed frame: stdout (1), length 3, "hi\n".
        assert.deepEqual([...raw.subarray(raw.indexOf("\r\n\r\n") + 4)].slice(0, 8), [
          1,
          0,
          0,
          0,
          0,
          0,
          0,
          3,
        ]);
      });
    } finally {
      await d.stop();
    }
    assert.equal(await Deno.stat(d.tmp).then(() => true, () => false), false, "temp dir removed");
  });
}
