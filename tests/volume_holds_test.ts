/** The gate-wide volume holds (src/docker/volume_holds.ts): who waits for whom. */
import assert from "node:assert/strict";
import { VolumeHolds } from "../src/docker/volume_holds.ts";

/** Whether `p` settled after the pending microtasks and one macrotask. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(() => (done = true), () => (done = true));
  await new Promise((r) => setTimeout(r, 0));
  return done;
}

Deno.test("volume holds: a remove waits for the uses of its name only", async () => {
  const holds = new VolumeHolds();
  const a = await holds.use(["a"]);
  const a2 = await holds.use(["a"]);
  const removeA = holds.remove(["a"]);
  const removeB = holds.remove(["b"]);
  assert.equal(await settled(removeB), true, "another name is not held");
  (await removeB)();
  a();
  assert.equal(await settled(removeA), false, "one use of a is left");
  a2();
  const release = await removeA;
  const late = holds.use(["a"]);
  assert.equal(await settled(late), false, "a use during the remove waits");
  release();
  const end = await late;
  assert.equal(holds.idle, false, "it took its hold once the remove ended");
  end();
  assert.equal(holds.idle, true);
});

Deno.test("volume holds: a prune waits for every hold, and holds every name", async () => {
  const holds = new VolumeHolds();
  const use = await holds.use(["x"]);
  const prune = holds.remove("all");
  assert.equal(await settled(prune), false);
  use();
  const end = await prune;
  const late = holds.use(["y"]);
  assert.equal(await settled(late), false, "a use waits for the prune");
  end();
  (await late)();
  assert.equal(holds.idle, true);
});

Deno.test("volume holds: a wait that times out is refused and leaves no hold", async () => {
  const holds = new VolumeHolds();
  const use = await holds.use(["v"]);
  await assert.rejects(holds.remove(["v"], 20), /held by a request in flight/);
  use();
  assert.equal(holds.idle, true, "the timed-out remove took nothing when the use ended");
  use(); // idempotent
  assert.equal(holds.idle, true);
});
