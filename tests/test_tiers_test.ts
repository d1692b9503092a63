import * as assert from "node:assert/strict";
import { existsSync } from "node:fs";
import {
  E2E_FILES,
  mergeJunit,
  shardsOf,
  testFiles,
  TIER_ENV,
  tierFiles,
  tierOf,
} from "../scripts/test_tiers.ts";
import { dockerdUnavailable, startDockerd } from "./helpers/dockerd.ts";

Deno.test("every test file is in exactly one tier, e2e by name or by the list", () => {
  const unit = tierFiles("unit"), e2e = tierFiles("e2e");
  assert.deepEqual([...unit, ...e2e].sort(), testFiles());
  assert.equal(unit.filter((f) => e2e.includes(f)).length, 0);
  assert.ok(e2e.includes("tests/restricted_e2e_test.ts"));
  assert.equal(tierOf("tests/http_test.ts"), "unit");
  assert.throws(() => tierOf("tests/helpers/dockerd.ts"), TypeError);
});

Deno.test("the e2e list names files that exist and are not e2e by name already", () => {
  for (const f of Object.keys(E2E_FILES)) {
    assert.ok(existsSync(f), `${f} is in E2E_FILES but does not exist`);
    assert.ok(!f.endsWith("_e2e_test.ts"), `${f} is e2e by its name, drop it from E2E_FILES`);
  }
});

Deno.test("in the unit tier, starting dockerd fails and names the rule", async () => {
  const before = Deno.env.get(TIER_ENV);
  Deno.env.set(TIER_ENV, "unit");
  try {
    await assert.rejects(() => startDockerd(), /unit tier: name it \*_e2e_test\.ts/);
    assert.throws(() => dockerdUnavailable(), /E2E_FILES in scripts\/test_tiers\.ts/);
  } finally {
    if (before === undefined) Deno.env.delete(TIER_ENV);
    else Deno.env.set(TIER_ENV, before);
  }
});

Deno.test("test tiers: shards share the files out by size, every file once; JUnit merged", () => {
  const sizes: Record<string, number> = { a: 9, b: 5, c: 4, d: 1, e: 1 };
  const shards = shardsOf(Object.keys(sizes), 2, (f) => sizes[f]);
  assert.deepEqual(shards.flat().sort(), ["a", "b", "c", "d", "e"]);
  assert.deepEqual(shards.map((s) => s.reduce((n, f) => n + sizes[f], 0)).sort(), [10, 10]);
  assert.deepEqual(shardsOf(["a"], 3, () => 1), [["a"]], "no empty shard");
  const doc = (name: string) =>
    `<?xml version="1.0"?>\n<testsuites name="deno test" tests="1">\n<testsuite name="${name}">` +
    `<testcase name="t"/></testsuite>\n</testsuites>\n`;
  const merged = mergeJunit([doc("./x.ts"), "", doc("./y.ts")]);
  assert.equal(merged.match(/<testsuites\b/g)?.length, 1);
  assert.match(merged, /name="\.\/x\.ts".*name="\.\/y\.ts"/s);
});
