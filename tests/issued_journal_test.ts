/**
 * The issued-certificate record as an append-only journal (`issued.jsonl`,
 * src/ca/record_journal.ts): appenders in two processes at once lose nothing, a torn last
 * line left by a crash is skipped by readers and repaired by the next append (with a message)
 * without dropping a record before it, a damaged line elsewhere is refused by name, and a
 * PKI's older `issued.json` is still read.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { appendFile, readFile, writeFile } from "node:fs/promises";
import { pathToFileURL } from "node:url";
import { DENO, ROOT } from "./helpers/gate.ts";
import { freeTempDir } from "./helpers/wait.ts";
import { type IssuedEntry, readIssued, recordIssued } from "../src/ca/records.ts";

function entry(serial: string, name = "c"): IssuedEntry {
  return {
    serial,
    name,
    role: "client",
    notAfter: "2030-01-01T00:00:00.000Z",
    fingerprint: "00".repeat(32),
    issuedAt: new Date().toISOString(),
  };
}

Deno.test("issued journal: two processes appending at once lose no entry", async () => {
  const dir = await freeTempDir("dg-jrn-");
  try {
    const records = pathToFileURL(join(ROOT, "src", "ca", "records.ts")).href;
    const script = join(dir, "append.ts");
    await writeFile(
      script,
      `import { recordIssued } from ${JSON.stringify(records)};\n` +
        `const [dir, who, at] = Deno.args;\n` +
        // Both start appending at the same moment, whenever each process came up.
        `while (Date.now() < Number(at)) await new Promise((r) => setTimeout(r, 1));\n` +
        `for (let i = 0; i < 200; i++) {\n` +
        `  await recordIssued(dir, [{ serial: who + i.toString(16).padStart(4, "0"), name: who,\n` +
        `    role: "client", notAfter: "2030-01-01T00:00:00.000Z", fingerprint: "", ` +
        `issuedAt: new Date().toISOString() }]);\n}\n`,
    );
    const at = String(Date.now() + 3000);
    const run = (who: string) =>
      new Deno.Command(DENO, {
        args: ["run", "-A", "--quiet", "--config", join(ROOT, "deno.json"), script, dir, who, at],
      }).output();
    const [a, b] = await Promise.all([run("aa"), run("bb")]);
    assert.equal(a.code, 0, new TextDecoder().decode(a.stderr));
    assert.equal(b.code, 0, new TextDecoder().decode(b.stderr));
    const serials = new Set((await readIssued(dir)).map((e) => e.serial));
    assert.equal(serials.size, 400, "an appender's entries were lost");
    // Every line whole: one JSON record per line, nothing interleaved.
    const lines = (await readFile(join(dir, "issued.jsonl"), "utf8")).split("\n");
    assert.equal(lines.pop(), "");
    assert.equal(lines.length, 400);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("issued journal: a torn last line is skipped, then cut off by the next append, with a message", async () => {
  const dir = await freeTempDir("dg-jrn-");
  try {
    assert.equal(await recordIssued(dir, [entry("01"), entry("02")]), undefined);
    const file = join(dir, "issued.jsonl");
    // What a crash in the middle of the third write leaves.
    await appendFile(file, JSON.stringify(entry("03")).slice(0, 40));
    assert.deepEqual((await readIssued(dir)).map((e) => e.serial), ["01", "02"]);
    const message = await recordIssued(dir, [entry("04")]);
    assert.match(message ?? "", /issued\.jsonl": a torn last line of 40 bytes .* cut off/);
    assert.match(message ?? "", /every record before it is kept/);
    assert.deepEqual((await readIssued(dir)).map((e) => e.serial), ["01", "02", "04"]);
    assert.ok((await readFile(file, "utf8")).endsWith("}\n"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("issued journal: a whole last record without its line end is kept and completed", async () => {
  const dir = await freeTempDir("dg-jrn-");
  try {
    await recordIssued(dir, [entry("01")]);
    await appendFile(join(dir, "issued.jsonl"), JSON.stringify(entry("02")));
    assert.deepEqual((await readIssued(dir)).map((e) => e.serial), ["01", "02"]);
    assert.match(await recordIssued(dir, [entry("03")]) ?? "", /the line end was added/);
    assert.deepEqual((await readIssued(dir)).map((e) => e.serial), ["01", "02", "03"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("issued journal: a damaged line before the last is refused, naming file and line", async () => {
  const dir = await freeTempDir("dg-jrn-");
  try {
    await recordIssued(dir, [entry("01")]);
    await appendFile(join(dir, "issued.jsonl"), "{not json\n");
    await recordIssued(dir, [entry("03")]);
    await assert.rejects(
      () => readIssued(dir),
      /Cannot read issued-certificate record ".*issued\.jsonl": line 2 is not a record/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("issued journal: an older PKI's issued.json is read before the journal", async () => {
  const dir = await freeTempDir("dg-jrn-");
  try {
    await writeFile(join(dir, "issued.json"), JSON.stringify([entry("0a"), entry("0b")]));
    await recordIssued(dir, [entry("0c")]);
    assert.deepEqual((await readIssued(dir)).map((e) => e.serial), ["0a", "0b", "0c"]);
    // issued.json is not rewritten any more.
    assert.equal(JSON.parse(await readFile(join(dir, "issued.json"), "utf8")).length, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("issued journal: appends at once in one process go out grouped, none lost", async () => {
  const dir = await freeTempDir("dg-jrn-");
  try {
    const serials = Array.from({ length: 50 }, (_, i) => i.toString(16).padStart(2, "0"));
    await Promise.all(serials.map((s) => recordIssued(dir, [entry(s)])));
    assert.deepEqual((await readIssued(dir)).map((e) => e.serial).sort(), serials);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
