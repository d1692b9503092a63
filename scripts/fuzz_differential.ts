/**
 * A longer run of tests/differential_test.ts's comparison, by hand: `N` mutated inputs (in
 * batches through one Go oracle process per batch), printing every input the gate accepts
 * and reads differently from Go's net/http. Exits 1 when there was one.
 *
 *   ./node_modules/.bin/deno run -A scripts/fuzz_differential.ts [N=100000] [SEED=random]
 */
import { generatedInputs, mutatedInputs } from "../tests/tools/go_oracle/cases.ts";
import {
  buildOracle,
  compare,
  gateRead,
  goAvailable,
  runOracle,
} from "../tests/tools/go_oracle/differential.ts";

const total = Number(Deno.args[0] ?? 100_000);
const seed = Number(Deno.args[1] ?? Math.floor(Math.random() * 2 ** 31));
const BATCH = 5000;

if (!goAvailable()) {
  console.error("fuzz_differential: no `go` on PATH");
  Deno.exit(2);
}
const dir = await Deno.makeTempDir({ prefix: "dockgate-oracle-" });
let found = 0;
let agreed = 0;
let stricter = 0;
try {
  const bin = await buildOracle(dir);
  for (let done = 0, batch = 0; done < total; done += BATCH, batch++) {
    // Alternate batches: byte mutations of the cases, then structured requests.
    const n = Math.min(BATCH, total - done);
    const inputs = batch % 2 ? generatedInputs(seed + batch, n) : mutatedInputs(seed + batch, n);
    const go = await runOracle(bin, inputs);
    inputs.forEach((bytes, i) => {
      const c = compare(gateRead(bytes), go[i]);
      agreed += c.agreed;
      stricter += c.gateStricter;
      if (c.differences.length) {
        found++;
        console.log(JSON.stringify(bytes.toString("latin1")), c.differences);
      }
    });
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
console.log(
  `seed ${seed}: ${total} inputs, ${agreed} requests read alike, ${stricter} refused by the ` +
    `gate where Go read on, ${found} differences`,
);
if (found) Deno.exit(1);
