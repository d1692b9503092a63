#!/usr/bin/env -S deno run -A
/**
 * Writes the flags table of docs/flags.md (`FLAGS_DOC`) from the flag tables
 * (`src/cli/flags.ts`): `deno task readme:flags` (or `--check`: exit 1 when the file differs).
 * The task keeps its name from when the table was in README.md.
 *
 * @module
 */

import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import process from "node:process";
import { FLAGS_DOC, TABLE_START, withFlagsTable } from "../src/cli/readme_table.ts";

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), "..");
const DOC = join(ROOT, FLAGS_DOC);

const args = process.argv.slice(2);
if (args.some((a) => a !== "--check")) {
  console.error("usage: deno task readme:flags [--check]");
  process.exit(2);
}
// A branch made before the docs split regenerates the table in README.md: after a merge that
// brings it back, say where it lives now instead of keeping two copies.
if (readFileSync(join(ROOT, "README.md"), "utf8").includes(TABLE_START)) {
  console.error(`readme:flags: README.md still has a flags table: the table lives in ${FLAGS_DOC}`);
  process.exit(1);
}
const text = readFileSync(DOC, "utf8");
const next = withFlagsTable(text);
if (args.includes("--check")) {
  if (next !== text) {
    console.error(`readme:flags: ${FLAGS_DOC}'s flags table is stale: run deno task readme:flags`);
    process.exit(1);
  }
} else if (next !== text) {
  writeFileSync(DOC, next);
  console.error(`readme:flags: ${FLAGS_DOC} updated`);
}
