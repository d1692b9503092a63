/**
 * The commit body's `OnBuild` triggers (src/docker/image_changes.ts): dockerd parses each
 * trigger as a Dockerfile of its own at the next build, where blank and comment lines are
 * skipped, so a trigger with a line break before its instruction is that instruction; it must
 * be refused as the `changes` parameter's line break is.
 */
import assert from "node:assert/strict";
import { changeProblem, commitBodyProblem } from "../src/docker/image_changes.ts";

Deno.test("image changes: an OnBuild trigger is one line (a LABEL after a line break is seen)", () => {
  for (
    const trigger of [
      "\nLABEL dockgate.owner=t2",
      "# note\nLABEL dockgate.owner=t2",
      "CMD x\r\nLABEL dockgate.owner=t2",
    ]
  ) {
    assert.ok(commitBodyProblem({ OnBuild: [trigger] }), JSON.stringify(trigger));
    assert.ok(changeProblem(`ONBUILD ${trigger}`), JSON.stringify(trigger));
  }
  assert.equal(commitBodyProblem({ OnBuild: ["RUN make", "LABEL app=web"] }), undefined);
});
