/**
 * Prints the closing `N passed, N failed, N skipped` line of `scripts/test.sh` from the JUnit
 * XML that `deno test --junit-path` wrote, and exits 1 if anything failed.
 *
 * Usage: `deno run -A scripts/junit_summary.ts NAME STATUS JUNIT LOG [NAME STATUS JUNIT LOG ...]`
 * — one group per `deno test` run: a label, its exit status, its JUnit file and its console log.
 *
 * What is counted: TOP-LEVEL tests only (`Deno.test` calls and doc-test blocks), the same units
 * as Deno's own `N passed | N failed` headline. Deno flattens `t.step`s into extra testcases
 * named `parent > step`; those are recognised by that prefix and reported on a separate
 * "steps:" line, not in the closing line (a failing step already fails its parent).
 * A testcase with `<failure>`/`<error>` is failed, one with `<skipped>` is skipped (ignored).
 *
 * JUnit misses some failures, so each run also adds:
 * - one failure per `FILE (uncaught error)` entry in its console log (a module that threw at
 *   load time or an error escaping all tests: Deno reports it as a failed test, JUnit omits it);
 * - one failure when the run exited non-zero (or wrote no JUnit) yet nothing above failed
 *   (type-check errors, crashes), so the closing line never says 0 failed for a failed run.
 *
 * @module
 */

interface Case {
  suite: string;
  name: string;
  status: "passed" | "failed" | "skipped";
}

function unescapeXml(s: string): string {
  return s.replace(/&(lt|gt|quot|apos|amp|#\d+|#x[0-9a-fA-F]+);/g, (_, e: string) => {
    switch (e) {
      case "lt":
        return "<";
      case "gt":
        return ">";
      case "quot":
        return '"';
      case "apos":
        return "'";
      case "amp":
        return "&";
      default:
        return String.fromCodePoint(
          e.startsWith("#x") ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10),
        );
    }
  });
}

function attr(tag: string, name: string): string {
  const m = tag.match(new RegExp(`\\s${name}="([^"]*)"`));
  return m ? unescapeXml(m[1]) : "";
}

/** All testcases of a JUnit document, in order. */
export function parseJunit(xml: string): Case[] {
  const cases: Case[] = [];
  const suiteRe = /<testsuite\b([^>]*?)(?:\/>|>([\s\S]*?)<\/testsuite>)/g;
  for (const s of xml.matchAll(suiteRe)) {
    const suite = attr(s[1], "name");
    const body = s[2] ?? "";
    const caseRe = /<testcase\b([^>]*?)(?:\/>|>([\s\S]*?)<\/testcase>)/g;
    for (const c of body.matchAll(caseRe)) {
      const inner = c[2] ?? "";
      const status = /<(failure|error)\b/.test(inner)
        ? "failed"
        : /<skipped\b/.test(inner)
        ? "skipped"
        : "passed";
      cases.push({ suite, name: attr(c[1], "name"), status });
    }
  }
  return cases;
}

/** Splits cases into top-level tests and steps (`parent > step`, parent in the same suite). */
export function splitSteps(cases: Case[]): { tests: Case[]; steps: Case[] } {
  const tests: Case[] = [];
  const steps: Case[] = [];
  const names = new Map<string, Set<string>>();
  for (const c of cases) {
    if (!names.has(c.suite)) names.set(c.suite, new Set());
    names.get(c.suite)!.add(c.name);
  }
  for (const c of cases) {
    const suiteNames = names.get(c.suite)!;
    let isStep = false;
    // Is some proper prefix ending before a " > " the name of another testcase in this suite?
    let i = c.name.indexOf(" > ");
    while (i !== -1) {
      if (suiteNames.has(c.name.slice(0, i))) {
        isStep = true;
        break;
      }
      i = c.name.indexOf(" > ", i + 1);
    }
    (isStep ? steps : tests).push(c);
  }
  return { tests, steps };
}

// deno-lint-ignore no-control-regex
const ANSI = /\x1b\[[0-9;]*[A-Za-z]/g;

/** `FILE (uncaught error)` entries from the FAILURES section of a Deno console log. */
export function uncaughtErrors(log: string): string[] {
  const text = log.replace(ANSI, "");
  const at = text.lastIndexOf(" FAILURES ");
  if (at === -1) return [];
  const found = new Set<string>();
  for (const line of text.slice(at).split("\n")) {
    const m = line.trim().match(/^(.+) \(uncaught error\)$/);
    if (m) found.add(m[1]);
  }
  return [...found];
}

function count(cases: Case[], status: Case["status"]): number {
  return cases.filter((c) => c.status === status).length;
}

async function readOr(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch {
    return undefined;
  }
}

async function main(args: string[]): Promise<number> {
  if (args.length === 0 || args.length % 4 !== 0) {
    console.error("usage: junit_summary.ts NAME STATUS JUNIT LOG [NAME STATUS JUNIT LOG ...]");
    return 2;
  }
  let passed = 0, failed = 0, skipped = 0;
  let stepsPassed = 0, stepsFailed = 0, stepsSkipped = 0;
  const failures: string[] = [];
  for (let i = 0; i < args.length; i += 4) {
    const [name, statusText, junitPath, logPath] = args.slice(i, i + 4);
    const status = Number(statusText);
    const xml = await readOr(junitPath);
    const { tests, steps } = splitSteps(xml === undefined ? [] : parseJunit(xml));
    let runFailed = count(tests, "failed");
    passed += count(tests, "passed");
    skipped += count(tests, "skipped");
    stepsPassed += count(steps, "passed");
    stepsFailed += count(steps, "failed");
    stepsSkipped += count(steps, "skipped");
    for (const c of tests) if (c.status === "failed") failures.push(`${c.suite}: ${c.name}`);
    for (const c of steps) if (c.status === "failed") failures.push(`${c.suite}: ${c.name}`);
    for (const file of uncaughtErrors((await readOr(logPath)) ?? "")) {
      runFailed++;
      failures.push(`${file}: uncaught error (module load or escaped error)`);
    }
    if ((status !== 0 || xml === undefined) && runFailed === 0) {
      runFailed++;
      const what = xml === undefined
        ? `exited ${status} and wrote no JUnit`
        : `exited ${status} with no failing testcase`;
      failures.push(`${name}: deno test ${what} (type-check or load error? see output above)`);
    }
    failed += runFailed;
  }
  if (failures.length) {
    console.log("\nFailed:");
    for (const f of failures) console.log(`  - ${f}`);
  }
  // Worded differently from the closing line on purpose, so nothing mistakes it for the total.
  console.log(
    `\n(t.step results, not counted below: ${stepsPassed} ok, ${stepsFailed} failing, ` +
      `${stepsSkipped} ignored)`,
  );
  console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
  const anyStatus = args.some((_, i) => i % 4 === 1 && Number(args[i]) !== 0);
  return failed > 0 || anyStatus ? 1 : 0;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
