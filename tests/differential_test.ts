/**
 * The gate's request reader against Go's `net/http` (dockerd's parser), byte for byte: every
 * hand-written smuggling case and a bounded, seeded set of mutations go through the gate's
 * own functions (src/docker/http.ts, src/docker/api_path.ts) and through one process of
 * tests/tools/go_oracle (built here, offline). Whenever the gate accepts a request, Go must
 * read it the same way; see tests/tools/go_oracle/differential.ts for the rule.
 * Longer runs: scripts/fuzz_differential.ts.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { caseInputs, mutatedInputs } from "./tools/go_oracle/cases.ts";
import {
  buildOracle,
  compare,
  gateRead,
  goAvailable,
  runOracle,
} from "./tools/go_oracle/differential.ts";

const HAVE_GO = goAvailable();
if (!HAVE_GO) {
  if (Deno.env.get("CI")) throw new Error("differential_test needs Go (/usr/bin/go) under CI");
  console.warn("SKIPPING differential_test: no `go` on PATH (install golang-go)");
}

const SEED = 20261207;
const MUTATIONS = 3000;

Deno.test({
  name: "differential: the gate reads every request it accepts exactly as Go's net/http does",
  ignore: !HAVE_GO,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "dockgate-oracle-" });
    try {
      const bin = await buildOracle(dir);
      const cases = caseInputs();
      const inputs: { name: string; bytes: Buffer }[] = [
        ...cases,
        ...mutatedInputs(SEED, MUTATIONS).map((bytes, i) => ({ name: `mutation ${i}`, bytes })),
      ];
      const go = await runOracle(bin, inputs.map((i) => i.bytes));
      const failures: string[] = [];
      let agreed = 0;
      let stricter = 0;
      inputs.forEach(({ name, bytes }, i) => {
        const c = compare(gateRead(bytes), go[i]);
        agreed += c.agreed;
        stricter += c.gateStricter;
        for (const d of c.differences) {
          failures.push(`${name} ${JSON.stringify(bytes.toString("latin1"))}: ${d}`);
        }
      });
      console.log(
        `differential: ${inputs.length} inputs, ${agreed} requests read alike, ` +
          `${stricter} inputs the gate refused where Go read on`,
      );
      assert.deepEqual(failures, []);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "differential: the oracle reads known cases as Go is known to (and the gate refuses them)",
  ignore: !HAVE_GO,
  fn: async () => {
    // A sanity check of the oracle itself: known cases come out as Go is known to read them.
    const dir = await Deno.makeTempDir({ prefix: "dockgate-oracle-" });
    try {
      const bin = await buildOracle(dir);
      const cases = caseInputs();
      const go = await runOracle(bin, cases.map((c) => c.bytes));
      const byName = Object.fromEntries(cases.map((c, i) => [c.name, go[i]]));
      // Go reads a form body even when ParseForm reports a bad media parameter (dockerd
      // ignores "mime:" errors), and lower-cases U+0130 to "i".
      assert.deepEqual(byName.formBadParam.requests[0].postForm, { networkmode: ["host"] });
      assert.match(byName.formBadParam.requests[0].parseFormErr, /^mime:/);
      assert.deepEqual(byName.formDottedI.requests[0].postForm, { networkmode: ["host"] });
      // Go accepts what the gate refuses: chunk extensions, obs-fold, CL+TE.
      assert.equal(byName.chunkExtension.error, "");
      assert.equal(byName.obsFold.error, "");
      assert.equal(byName.clAndTe.requests[0].transferEncoding?.[0], "chunked");
      for (const name of ["chunkExtension", "obsFold", "clAndTe", "formBadParam"]) {
        const c = cases.find((x) => x.name === name)!;
        const gate = gateRead(c.bytes);
        assert.match(gate.stop + (gate.requests[0]?.contentTypeRefusal ?? ""), /refused/, name);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
