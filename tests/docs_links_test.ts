/**
 * Every relative link in the docs resolves: README.md, CONTRIBUTING.md, CHANGELOG.md,
 * ARCHITECTURE.md and docs/*.md. A link's file must exist, and a `#anchor` must name a heading
 * of the file it points to, slugged as GitHub and GitLab slug them (lower case, punctuation
 * dropped, spaces as `-`, a repeated heading gets `-1`, `-2`). So a doc that moves, or a heading
 * that is renamed, fails here instead of leaving a dead link; and a link to a doc nobody wrote
 * yet cannot be merged.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join, relative, resolve } from "node:path";
import { ROOT } from "./helpers/gate.ts";
import { freeTempDir } from "./helpers/wait.ts";

/** The markdown files whose links are checked, relative to `root`. */
function docFiles(root: string): string[] {
  const top = ["README.md", "CONTRIBUTING.md", "CHANGELOG.md", "ARCHITECTURE.md"];
  const docs = existsSync(join(root, "docs"))
    ? readdirSync(join(root, "docs")).filter((f) => f.endsWith(".md")).map((f) => `docs/${f}`)
    : [];
  return [...top.filter((f) => existsSync(join(root, f))), ...docs.sort()];
}

/** `text` with fenced code blocks blanked (line numbers kept) and inline code spans removed. */
function prose(text: string): string[] {
  let fence: string | undefined;
  return text.split("\n").map((line) => {
    const m = /^\s*(```+|~~~+)/.exec(line);
    if (fence !== undefined) {
      if (m && m[1][0] === fence[0] && m[1].length >= fence.length) fence = undefined;
      return "";
    }
    if (m) {
      fence = m[1];
      return "";
    }
    return line.replace(/(`+)[^`]*?\1/g, "");
  });
}

/** GitHub's anchor for a heading's text. */
function slug(heading: string): string {
  return heading
    .replace(/`/g, "")
    .replace(/\[([^\]]*)\]\([^)]*\)/g, "$1")
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, "")
    .replace(/\s/g, "-");
}

/** The anchors of a markdown file's headings (outside code blocks). */
function anchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  let fenced = false;
  for (const line of text.split("\n")) {
    if (/^\s*(```|~~~)/.test(line)) fenced = !fenced;
    const m = fenced ? null : /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!m) continue;
    const base = slug(m[1]);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/** Every dead relative link of the doc files under `root`, as `file:line: target: why`. */
function deadLinks(root: string): string[] {
  const dead: string[] = [];
  for (const file of docFiles(root)) {
    const lines = prose(readFileSync(join(root, file), "utf8"));
    lines.forEach((line, i) => {
      for (const [, target] of line.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
        if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto: …
        const [path, anchor] = target.split("#", 2) as [string, string | undefined];
        const to = path === "" ? join(root, file) : resolve(dirname(join(root, file)), path);
        const where = `${file}:${i + 1}: ${target}`;
        if (relative(root, to).startsWith("..")) dead.push(`${where}: outside the repository`);
        else if (!existsSync(to)) dead.push(`${where}: no such file`);
        else if (anchor !== undefined && to.endsWith(".md")) {
          if (!anchors(readFileSync(to, "utf8")).has(anchor)) {
            dead.push(`${where}: no heading with that anchor`);
          }
        }
      }
    });
  }
  return dead;
}

Deno.test("docs: every relative link and anchor resolves", () => {
  const files = docFiles(ROOT);
  assert.ok(files.includes("README.md") && files.length > 3, `checked ${files}`);
  const dead = deadLinks(ROOT);
  assert.deepEqual(dead, [], `dead links:\n${dead.join("\n")}`);
});

Deno.test("docs link check: finds a missing file, a missing anchor, and ignores code", async () => {
  const root = await freeTempDir();
  await mkdir(join(root, "docs"));
  await writeFile(
    join(root, "README.md"),
    [
      "# Top",
      "## Why not `dockerd --tlsverify`?",
      "## Repeated",
      "## Repeated",
      "[ok](docs/a.md#a-heading-with-code) [ok](#why-not-dockerd---tlsverify) [ok](#repeated-1)",
      "[gone](docs/missing.md) [web](https://example.com/x.md) `[code](nowhere.md)`",
      "```sh",
      "[fenced](nowhere.md)",
      "```",
      "[bad anchor](docs/a.md#nope)",
    ].join("\n"),
  );
  await writeFile(join(root, "docs/a.md"), "# A heading with `code`\n[up](../README.md#top)\n");
  assert.deepEqual(deadLinks(root), [
    "README.md:6: docs/missing.md: no such file",
    "README.md:10: docs/a.md#nope: no heading with that anchor",
  ]);
});
