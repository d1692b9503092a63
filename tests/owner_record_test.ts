/**
 * The owner record (src/docker/owner_record.ts): a torn last line is cut off (and the next
 * entry survives), other unreadable lines and untrusted files refuse the load, the file is
 * 0600, and concurrent appends from several processes all land, one intact line each. The
 * append and fsync run off the event loop (a slow fsync holds no timer back), in order, and a
 * failed write refuses that add and every later one, and is logged.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type AppendDurably,
  appendDurably,
  OWNER_RECORD_FILE,
  OwnerRecord,
  OwnerRecordSlot,
} from "../src/docker/owner_record.ts";
import { freeTempDir, waitFor } from "./helpers/wait.ts";

const id = (c: string) => c.repeat(64);

Deno.test("owner record: entries survive a reopen, per owner, 0600 in a 0700 directory", async () => {
  const dir = join(await freeTempDir("dgr-"), "state");
  const r = OwnerRecord.open(dir);
  await r.add("team-a", id("a"));
  await r.add("team-b", id("b"));
  await r.add("team-b", id("b")); // again: nothing new
  await assert.rejects(() => r.add("team-a", id("b")), /another owner/);
  assert.throws(() => r.add("team-a", "abc"), RangeError);
  r.close();
  assert.equal((await Deno.stat(join(dir, OWNER_RECORD_FILE))).mode! & 0o777, 0o600);
  assert.equal((await Deno.stat(dir)).mode! & 0o777, 0o700);
  const text = await Deno.readTextFile(join(dir, OWNER_RECORD_FILE));
  assert.equal(text.split("\n").length, 3, text);
  const again = OwnerRecord.open(dir);
  assert.ok(again.has("team-a", id("a")) && again.has("team-b", id("b")));
  assert.ok(!again.has("team-b", id("a")) && !again.has("team-a", id("c")));
  again.close();
});

Deno.test("owner record: a torn last line is cut off, and the next entry is not lost with it", async () => {
  const dir = await freeTempDir("dgr-");
  const file = join(dir, OWNER_RECORD_FILE);
  const whole = JSON.stringify(["team-a", id("a")]) + "\n";
  await Deno.writeTextFile(file, whole + '["team-b","bbbb', { mode: 0o600 });
  const r = OwnerRecord.open(dir);
  assert.ok(r.has("team-a", id("a")));
  assert.ok(!r.has("team-b", id("b")));
  assert.equal(await Deno.readTextFile(file), whole);
  await r.add("team-c", id("c"));
  r.close();
  const again = OwnerRecord.open(dir);
  assert.ok(again.has("team-a", id("a")) && again.has("team-c", id("c")));
  again.close();
});

Deno.test("owner record: unreadable lines and untrusted files refuse the load", async () => {
  const bad = async (text: string, re: RegExp, mode = 0o600, dirMode = 0o700) => {
    const dir = await freeTempDir("dgr-");
    await Deno.chmod(dir, dirMode);
    await Deno.writeTextFile(join(dir, OWNER_RECORD_FILE), text);
    await Deno.chmod(join(dir, OWNER_RECORD_FILE), mode);
    assert.throws(() => OwnerRecord.open(dir), re);
  };
  const a = JSON.stringify(["team-a", id("a")]) + "\n";
  await bad("not json\n" + a, /line 1 is not an entry/);
  await bad(a + JSON.stringify(["team-b", "short"]) + "\n", /line 2 is not an entry/);
  await bad(a + JSON.stringify(["team-b", id("a")]) + "\n", /second owner/);
  await bad(a, /mode 644: chmod 600/, 0o644);
  await bad(a, /mode 777\): chmod 700/, 0o600, 0o777);
  // Not the gate's user (the tests run as root: chown to nobody).
  if (Deno.uid() === 0) {
    const dir = await freeTempDir("dgr-");
    await Deno.writeTextFile(join(dir, OWNER_RECORD_FILE), a, { mode: 0o600 });
    await Deno.chown(join(dir, OWNER_RECORD_FILE), 65534, 65534);
    assert.throws(() => OwnerRecord.open(dir), /belongs to uid 65534/);
  }
  // A directory that cannot be made: the error names the file.
  const file = join(await freeTempDir("dgr-"), "plain");
  await Deno.writeTextFile(file, "");
  assert.throws(() => OwnerRecord.open(join(file, "state")), /Cannot open the owner record/);
});

Deno.test("owner record: concurrent appends from several processes all land, one line each", async () => {
  const dir = await freeTempDir("dgr-");
  OwnerRecord.open(dir).close();
  const module = new URL("../src/docker/owner_record.ts", import.meta.url).href;
  const writers = 4;
  const each = 150;
  const script = (w: number) =>
    `import { OwnerRecord } from ${JSON.stringify(module)};
     const r = OwnerRecord.open(${JSON.stringify(dir)});
     for (let i = 0; i < ${each}; i++) {
       await r.add("owner-${w}", (${w} * 100000 + i).toString(16).padStart(64, "0"));
     }
     r.close();`;
  const runs = Array.from({ length: writers }, (_, w) =>
    new Deno.Command(Deno.execPath(), {
      args: ["eval", script(w)],
      stdout: "null",
      stderr: "piped",
    }).output());
  for (const out of await Promise.all(runs)) {
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  }
  const lines = (await Deno.readTextFile(join(dir, OWNER_RECORD_FILE))).split("\n");
  assert.equal(lines.pop(), "");
  assert.equal(lines.length, writers * each);
  const r = OwnerRecord.open(dir); // every line read back, none torn or joined
  for (let w = 0; w < writers; w++) {
    for (let i = 0; i < each; i++) {
      assert.ok(r.has(`owner-${w}`, (w * 100000 + i).toString(16).padStart(64, "0")));
    }
  }
  r.close();
});

Deno.test("owner record slot: nothing is owned and nothing recorded until it is open", async () => {
  const slot = new OwnerRecordSlot(await freeTempDir("dgr-"));
  assert.ok(!slot.has("a", id("a")));
  await assert.rejects(() => slot.add("a", id("a")), /not open/);
  assert.equal(slot.open(), slot.open());
  await slot.add("a", id("a"));
  assert.ok(slot.isOpen && slot.has("a", id("a")));
  slot.close();
  assert.ok(!slot.has("a", id("a")));
});

Deno.test("owner record: two gates sharing the file see each other's new entries", async () => {
  const dir = await freeTempDir("dgr-");
  const one = OwnerRecord.open(dir);
  const two = OwnerRecord.open(dir);
  await one.add("team-a", id("a"));
  assert.ok(two.has("team-a", id("a")), "read on a miss");
  assert.ok(!two.has("team-b", id("a")));
  // A line still being written is not read until it is whole.
  const file = join(dir, OWNER_RECORD_FILE);
  const line = JSON.stringify(["team-b", id("b")]) + "\n";
  await Deno.writeTextFile(file, line.slice(0, 20), { append: true });
  assert.ok(!two.has("team-b", id("b")));
  await Deno.writeTextFile(file, line.slice(20), { append: true });
  assert.ok(two.has("team-b", id("b")));
  // A line the gate did not write gives nothing, and an ID keeps its first owner.
  await Deno.writeTextFile(file, `junk\n${JSON.stringify(["team-c", id("a")])}\n`, {
    append: true,
  });
  assert.ok(!two.has("team-c", id("a")) && two.has("team-a", id("a")));
  one.close();
  two.close();
});

/** An append whose durability the test releases: each call waits for `finish()`. */
function slowAppend(): { append: AppendDurably; calls: string[]; finish: (err?: Error) => void } {
  const calls: string[] = [];
  const waiting: { resolve: () => void; reject: (e: Error) => void }[] = [];
  const append: AppendDurably = (fd, bytes) => {
    calls.push(new TextDecoder().decode(bytes));
    return new Promise<void>((resolve, reject) => waiting.push({ resolve, reject })).then(() =>
      appendDurably(fd, bytes)
    );
  };
  const finish = (err?: Error) => {
    const w = waiting.shift();
    if (!w) throw new Error("no write is waiting");
    if (err) w.reject(err);
    else w.resolve();
  };
  return { append, calls, finish };
}

Deno.test("owner record: a slow fsync does not block the event loop; adds stay in order", async () => {
  const dir = await freeTempDir("dgr-");
  const slow = slowAppend();
  const r = OwnerRecord.open(dir, { append: slow.append });
  let settled = "";
  const first = r.add("team-a", id("a")).then(() => void (settled += "a"));
  // While the first write is pending: a timer fires, and later adds queue behind it.
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.equal(settled, "", "the add resolved before its write was durable");
  assert.ok(!r.has("team-a", id("a")), "owned before it was durable");
  const second = r.add("team-b", id("b")).then(() => void (settled += "b"));
  const third = r.add("team-c", id("c")).then(() => void (settled += "c"));
  const again = r.add("team-b", id("b")); // pending: the same write, no second line
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.equal(slow.calls.length, 1, "the second write waits for the first");
  slow.finish();
  await first;
  assert.ok(r.has("team-a", id("a")));
  await waitFor(() => slow.calls.length === 2, { what: "the second write" });
  // The adds queued meanwhile go out together: one write, one fsync, in order.
  assert.equal(
    slow.calls[1],
    JSON.stringify(["team-b", id("b")]) + "\n" +
      JSON.stringify(["team-c", id("c")]) + "\n",
  );
  slow.finish();
  await Promise.all([second, third, again]);
  assert.equal(settled, "abc");
  r.close();
  const lines = (await Deno.readTextFile(join(dir, OWNER_RECORD_FILE))).trim().split("\n");
  assert.deepEqual(lines.map((l) => JSON.parse(l)[0]), ["team-a", "team-b", "team-c"]);
});

Deno.test("owner record: a failed write refuses its add and every later one, and is logged", async () => {
  const dir = await freeTempDir("dgr-");
  const slow = slowAppend();
  const logged: string[] = [];
  const logger = { log: (_l: string, message: string) => void logged.push(message) };
  const r = OwnerRecord.open(dir, { append: slow.append, logger });
  const first = r.add("team-a", id("a"));
  const queued = r.add("team-b", id("b"));
  slow.finish(Object.assign(new Error("no space"), { code: "ENOSPC" }));
  await assert.rejects(first, /Cannot write the owner record/);
  await assert.rejects(queued, /Cannot write the owner record/);
  await assert.rejects(r.add("team-c", id("c")), /until serve restarts/);
  assert.ok(!r.has("team-a", id("a")) && !r.has("team-b", id("b")));
  assert.deepEqual(logged, ["owner record write failed"]);
  assert.equal(slow.calls.length, 1, "nothing written after the failure");
  r.close();
});

Deno.test("owner record: close waits for the write in flight, then refuses adds", async () => {
  const dir = await freeTempDir("dgr-");
  const slow = slowAppend();
  const r = OwnerRecord.open(dir, { append: slow.append });
  const pending = r.add("team-a", id("a"));
  r.close();
  await assert.rejects(r.add("team-b", id("b")), /closed/);
  slow.finish();
  await pending;
  const again = OwnerRecord.open(dir);
  assert.ok(again.has("team-a", id("a")) && !again.has("team-b", id("b")));
  again.close();
});
