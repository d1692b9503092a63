/**
 * Unit tests of src/docker/session_record.ts: asciicast v2 lines, Docker's stream frames taken
 * apart across chunk boundaries, UTF-8 split across chunks, the per-session and total caps,
 * the final header in the first one's place, discard.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { existsSync, readFileSync, statSync } from "node:fs";
import { SessionRecorder } from "../src/docker/session_record.ts";

const META = {
  identity: "alice",
  serial: "01",
  host: "h",
  kind: "exec" as const,
  container: "c1",
  command: ["sh"],
  tty: false,
};

function frame(stream: number, text: string): Buffer {
  const body = Buffer.from(text);
  const head = Buffer.alloc(8);
  head[0] = stream;
  head.writeUInt32BE(body.length, 4);
  return Buffer.concat([head, body]);
}

function read(path: string) {
  const [header, ...events] = readFileSync(path, "utf8").trim().split("\n").map((l) =>
    JSON.parse(l)
  );
  return { header, events: events as [number, string, string][] };
}

Deno.test("session record: frames taken apart across chunks, times relative, end written", () => {
  const dir = Deno.makeTempDirSync();
  let now = 1_000_000;
  const rec = new SessionRecorder({
    dir,
    maxSessionBytes: 1 << 20,
    maxTotalBytes: 1 << 20,
    now: () => now,
  });
  const s = rec.open(META);
  const stream = Buffer.concat([frame(1, "out-é"), frame(2, "err"), frame(1, "")]);
  // Byte by byte: a frame header and a two-byte character split across chunks.
  for (let i = 0; i < stream.length; i++) {
    now += 10;
    s.output(stream.subarray(i, i + 1));
  }
  s.input(Buffer.from("typed"));
  now += 500;
  s.close();
  const { header, events } = read(s.path);
  assert.equal(header.version, 2);
  assert.equal(header.dockgate.start, new Date(1_000_000).toISOString());
  assert.equal(header.dockgate.end, new Date(now).toISOString());
  assert.equal(header.dockgate.truncated, false);
  assert.equal(events.filter((e) => e[1] === "o").map((e) => e[2]).join(""), "out-éerr");
  assert.deepEqual(events.at(-1)!.slice(1), ["i", "typed"]);
  assert.ok(events.every((e, i) => i === 0 || e[0] >= events[i - 1][0]));
  assert.equal(statSync(s.path).mode & 0o777, 0o600);
});

Deno.test("session record: the session cap and the total cap; discard removes the file", () => {
  const dir = Deno.makeTempDirSync();
  const rec = new SessionRecorder({ dir, maxSessionBytes: 1024, maxTotalBytes: 2500 });
  const s = rec.open({ ...META, tty: true });
  for (let i = 0; i < 100; i++) s.output(Buffer.from("x".repeat(50)));
  s.close();
  assert.ok(statSync(s.path).size <= 1024);
  assert.equal(read(s.path).header.dockgate.truncated, true);
  const gone = rec.open(META);
  gone.discard();
  assert.ok(!existsSync(gone.path));
  // What discarded and capped sessions wrote still counts: the total is reached soon.
  assert.throws(() => {
    for (let i = 0; i < 10; i++) rec.open(META).close();
  }, /total cap/);
  assert.throws(
    () => new SessionRecorder({ dir, maxSessionBytes: 0, maxTotalBytes: 1 }),
    RangeError,
  );
});

Deno.test("session record: a directory that cannot be written throws, naming the file", () => {
  const rec = new SessionRecorder({
    dir: "/nonexistent/dir",
    maxSessionBytes: 1024,
    maxTotalBytes: 4096,
  });
  assert.throws(() => rec.open(META), /cannot create \/nonexistent\/dir\/.*\.cast: /);
});
