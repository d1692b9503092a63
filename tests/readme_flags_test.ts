/**
 * The README's flags table is the one the flag tables (`src/cli/flags.ts`) generate, and every
 * README section the help text points to exists.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ROOT } from "./helpers/gate.ts";
import { flagsTable, withFlagsTable } from "../src/cli/readme_table.ts";
import { HELP } from "../src/cli/help.ts";
import { VERBS } from "../src/cli/flags.ts";

const README = await Deno.readTextFile(join(ROOT, "README.md"));

Deno.test("README: the flags table is the generated one (deno task readme:flags writes it)", () => {
  assert.equal(
    withFlagsTable(README),
    README,
    "README.md's table is stale: deno task readme:flags",
  );
  for (const v of VERBS) {
    for (const f of v.flags.filter((f) => f.name !== "help")) {
      assert.ok(flagsTable().includes(`\`--${f.name}`), `${v.name} --${f.name} in the table`);
    }
  }
});

Deno.test("README: every section the help text names exists", () => {
  const headings = new Set(
    README.split("\n").filter((l) => l.startsWith("#")).map((l) => l.replace(/^#+\s*/, "")),
  );
  const named = Object.values(HELP).join("\n").replace(/\s+/g, " ").matchAll(
    /README "([^"]+)"/g,
  );
  let count = 0;
  for (const [, section] of named) {
    count++;
    assert.ok(headings.has(section), `README has no section "${section}"`);
  }
  assert.ok(count > 0, "help names at least one README section");
});
