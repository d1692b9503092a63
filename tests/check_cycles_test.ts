import assert from "node:assert/strict";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { findCycles } from "../scripts/check_cycles.ts";
import { freeTempDir } from "./helpers/wait.ts";

const SCRIPT = new URL("../scripts/check_cycles.ts", import.meta.url).pathname;

async function checkCycles(args: string[]): Promise<{ code: number; out: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", SCRIPT, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: r.code, out: text(r.stdout) + text(r.stderr) };
}

Deno.test("findCycles: one shortest chain per tangle, none for a tree", () => {
  assert.deepEqual(findCycles(new Map([["a", ["b"]], ["b", ["c"]], ["c", []]])), []);
  const cycles = findCycles(
    new Map([
      ["a", ["b"]],
      ["b", ["c", "a"]],
      ["c", ["a"]],
      ["d", ["d"]],
      ["e", ["a"]],
    ]),
  );
  assert.deepEqual(cycles, [["a", "b", "a"], ["d", "d"]]);
});

Deno.test("check_cycles.ts fails on a cycle of real modules and names its files", async () => {
  const dir = await freeTempDir("dg-cycles-");
  try {
    await mkdir(join(dir, "src"));
    // A type-only import closes the loop: it counts (see the script's doc).
    await writeFile(join(dir, "src", "a.ts"), 'import { b } from "./b.ts";\nexport const a = b;\n');
    await writeFile(
      join(dir, "src", "b.ts"),
      'import type { C } from "./c.ts";\nexport const b: C = 1;\n',
    );
    await writeFile(
      join(dir, "src", "c.ts"),
      'import type { a } from "./a.ts";\nexport type C = typeof a extends 1 ? 1 : 1;\n',
    );
    await writeFile(join(dir, "main.ts"), 'import { a } from "./src/a.ts";\nconsole.log(a);\n');
    const bad = await checkCycles(["--dir", dir, "main.ts"]);
    assert.equal(bad.code, 1, bad.out);
    assert.match(bad.out, /import cycle: src\/a\.ts -> src\/b\.ts -> src\/c\.ts -> src\/a\.ts/);

    await writeFile(join(dir, "src", "c.ts"), "export type C = 1;\n");
    const good = await checkCycles(["--dir", dir, "main.ts"]);
    assert.equal(good.code, 0, good.out);
    assert.match(good.out, /no import cycle in 4 modules/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
