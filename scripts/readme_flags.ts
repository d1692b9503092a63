#!/usr/bin/env -S deno run -A
/**
 * Writes the README's flags table from the flag tables (`src/cli/flags.ts`):
 * `deno task readme:flags` (or `--check`: exit 1 when README.md differs).
 *
 * @module
 */

import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import process from "node:process";
import { withFlagsTable } from "../src/cli/readme_table.ts";

const README = join(resolve(dirname(new URL(import.meta.url).pathname), ".."), "README.md");

const args = process.argv.slice(2);
if (args.some((a) => a !== "--check")) {
  console.error("usage: deno task readme:flags [--check]");
  process.exit(2);
}
const text = readFileSync(README, "utf8");
const next = withFlagsTable(text);
if (args.includes("--check")) {
  if (next !== text) {
    console.error("readme:flags: README.md's flags table is stale: run deno task readme:flags");
    process.exit(1);
  }
} else if (next !== text) {
  writeFileSync(README, next);
  console.error("readme:flags: README.md updated");
}
