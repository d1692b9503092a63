/**
 * The gate-wide volume holds (src/docker/volume_holds.ts): who waits for whom; and a
 * no-escape role's volume removes and prunes take them (src/docker/isolation_step.ts).
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { VolumeHolds } from "../src/docker/volume_holds.ts";
import { IsolationStep } from "../src/docker/isolation_step.ts";
import { compileApiPolicy } from "../src/docker/api_policy.ts";
import { parseApiTarget } from "../src/docker/api_path.ts";
import { parseRequestHead } from "../src/docker/http.ts";
import { newExchange } from "../src/docker/relay_exchange.ts";

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

Deno.test("volume holds: a no-escape role's volume remove and prune wait for the creates that checked", async () => {
  const holds = new VolumeHolds();
  const policy = compileApiPolicy({ roles: { ci: { preset: "no-escape" } }, identities: [] }, "t");
  const role = policy.roles.get("ci")!;
  const step = new IsolationStep({
    who: { identity: "ci", owner: "ci" },
    whenIdle: async () => {},
    holds,
  });
  const run = (method: string, path: string) => {
    const target = parseApiTarget(path);
    assert.ok(step.takes(role, method, target), `${method} ${path} takes the step`);
    const head = parseRequestHead(Buffer.from(`${method} ${path} HTTP/1.1\r\nHost: d\r\n\r\n`));
    const exchange = newExchange(method, target.path, "ci", false);
    const decision = { allow: true, rule: "no-escape" };
    const outcome = step.run({ exchange, decision, head, target, role, body: undefined });
    return { exchange, outcome: Promise.resolve(outcome) };
  };
  const checked = await holds.use(["cache"]); // a create checked "cache" as stored
  const remove = run("DELETE", "/v1.41/volumes/cache");
  const prune = run("POST", "/v1.41/volumes/prune");
  const other = run("DELETE", "/v1.41/volumes/other");
  assert.equal(await settled(other.outcome), true, "another name is not held");
  assert.equal(await settled(remove.outcome), false, "the remove waits for the create");
  assert.equal(await settled(prune.outcome), false, "the prune waits too");
  other.exchange.release?.();
  checked();
  const removed = await remove.outcome;
  assert.equal(removed.kind, "forward");
  assert.match(removed.bytes().toString(), /^DELETE \/v1\.41\/volumes\/cache HTTP\/1\.1\r\n/);
  const late = holds.use(["cache"]);
  assert.equal(await settled(late), false, "a create's check waits for the remove's answer");
  remove.exchange.release?.();
  assert.equal((await prune.outcome).kind, "forward", "the prune goes once the remove ended");
  assert.equal(await settled(late), false, "and holds every name until its answer");
  prune.exchange.release?.();
  (await late)();
  assert.ok(holds.idle);
  step.close();
});
