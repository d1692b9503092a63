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
import { caseInputs, generatedInputs, mutatedInputs } from "./tools/go_oracle/cases.ts";
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
const GENERATED = 3000;

Deno.test({
  name: "differential: the gate reads every request it accepts exactly as Go's net/http does",
  ignore: !HAVE_GO,
  fn: async (t) => {
    const dir = await Deno.makeTempDir({ prefix: "dockgate-oracle-" });
    try {
      const bin = await buildOracle(dir);
      await t.step("hand-written cases and seeded mutations agree", async () => {
        const inputs: { name: string; bytes: Buffer }[] = [
          ...caseInputs(),
          ...mutatedInputs(SEED, MUTATIONS).map((bytes, i) => ({ name: `mutation ${i}`, bytes })),
          ...generatedInputs(SEED, GENERATED).map((bytes, i) => ({
            name: `generated ${i}`,
            bytes,
          })),
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
      });
      await t.step(
        "the oracle reads known cases as Go is known to (the gate refuses them)",
        async () => {
          // A check of the oracle itself.
          const cases = caseInputs();
          const go = await runOracle(bin, cases.map((c) => c.bytes));
          const byName = Object.fromEntries(cases.map((c, i) => [c.name, go[i]]));
          // Go reads a form body even when ParseForm reports a bad media parameter (dockerd
          // ignores "mime:" errors), and lower-cases U+0130 to "i".
          assert.deepEqual(byName.formBadParam.requests[0].postForm, { networkmode: ["host"] });
          assert.match(byName.formBadParam.requests[0].parseFormErr, /^mime:/);
          assert.deepEqual(byName.formDottedI.requests[0].postForm, { networkmode: ["host"] });
          assert.ok(byName.multipart.requests[0].multipartReadBody > 0);
          assert.equal(byName.multipart.requests[0].formReadBody, 0);
          // Go accepts what the gate refuses: chunk extensions, obs-fold, CL+TE.
          assert.equal(byName.chunkExtension.error, "");
          assert.equal(byName.obsFold.error, "");
          assert.equal(byName.clAndTe.requests[0].transferEncoding?.[0], "chunked");
          // And the comparison is not vacuous: these the gate reads (all pipelined requests).
          const accepted: Record<string, number> = {
            plainGet: 1,
            postJson: 1,
            pipelined: 3,
            pipelinedChunked: 2,
            http10KeepAlive: 2,
            chunkUpperHex: 1,
            chunkLeadingZeros: 1,
            plusAndSpace: 1,
            encodedLetters: 1,
            clLeadingZeros: 1,
            connectionList: 1,
          };
          for (const [name, count] of Object.entries(accepted)) {
            const c = cases.find((x) => x.name === name)!;
            assert.equal(gateRead(c.bytes).requests.length, count, name);
            assert.equal(byName[name].requests.length, count, name);
          }
          for (const name of ["chunkExtension", "obsFold", "clAndTe", "formBadParam"]) {
            const c = cases.find((x) => x.name === name)!;
            const gate = gateRead(c.bytes);
            assert.match(gate.stop + (gate.requests[0]?.contentTypeRefusal ?? ""), /refused/, name);
          }
        },
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
