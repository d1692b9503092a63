/**
 * The docs' flags table (docs/flags.md) is the one the flag tables (`src/cli/flags.ts`)
 * generate, README.md has no second copy, and every docs section the help text points to
 * exists.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ROOT } from "./helpers/gate.ts";
import { FLAGS_DOC, flagsTable, TABLE_START, withFlagsTable } from "../src/cli/readme_table.ts";
import { HELP } from "../src/cli/help.ts";
import { VERBS } from "../src/cli/flags.ts";

const read = (file: string) => Deno.readTextFile(join(ROOT, file));

Deno.test("docs/flags.md: the flags table is the generated one (deno task readme:flags)", async () => {
  const doc = await read(FLAGS_DOC);
  assert.equal(withFlagsTable(doc), doc, `${FLAGS_DOC}'s table is stale: deno task readme:flags`);
  for (const v of VERBS) {
    for (const f of v.flags.filter((f) => f.name !== "help")) {
      assert.ok(flagsTable().includes(`\`--${f.name}`), `${v.name} --${f.name} in the table`);
    }
  }
});

Deno.test("README.md has no flags table of its own (it lives in docs/flags.md)", async () => {
  assert.ok(!(await read("README.md")).includes(TABLE_START), "README.md has the table again");
});

/** The headings of a markdown file, outside fenced code blocks. */
function headings(text: string): Set<string> {
  const found = new Set<string>();
  let fenced = false;
  for (const line of text.split("\n")) {
    if (/^\s*(```|~~~)/.test(line)) fenced = !fenced;
    else if (!fenced && /^#{1,6}\s/.test(line)) found.add(line.replace(/^#+\s*/, "").trim());
  }
  return found;
}

Deno.test('help: every docs section it names exists (README "X" or docs/FILE.md "X")', async () => {
  const named = Object.values(HELP).join("\n").replace(/\s+/g, " ").matchAll(
    /\b(README|docs\/[\w-]+\.md) "([^"]+)"/g,
  );
  let count = 0;
  for (const [, file, section] of named) {
    count++;
    const path = file === "README" ? "README.md" : file;
    const text = await read(path).catch(() => "");
    assert.ok(text, `help names ${path}, which does not exist`);
    assert.ok(
      [...headings(text)].some((h) => h === section || h.startsWith(`${section}:`)),
      `${path} has no section "${section}"`,
    );
  }
  assert.ok(count > 0, "help names at least one docs section");
});
