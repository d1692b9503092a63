/**
 * The command line's help, version and completion, through the real CLI and a real bash:
 * every verb's `--help` has an example, and the completion script completes verbs and flags.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { DENO, ROOT, runCli } from "./helpers/gate.ts";

Deno.test("help: every verb has --help with an example; --version", async () => {
  for (const verb of ["keygen", "serve", "connect", "policy", "env", "inspect", "completion"]) {
    const r = await runCli([verb, "--help"]);
    assert.equal(r.code, 0, `${verb}: ${r.stderr}`);
    assert.match(r.stdout, new RegExp(`dockgate ${verb}`), verb);
    assert.match(r.stdout, /Example: .*dockgate /, `${verb} --help has an example`);
  }
  const v = await runCli(["--version"]);
  assert.match(v.stdout, /^dockgate \d+\.\d+\.\d+/);
});

Deno.test("completion bash: bash completes verbs and a verb's flags", async () => {
  const cli = `${DENO} run -A --quiet ${join(ROOT, "cli.ts")}`;
  const script = `source <(${cli} completion bash)
complete_line() { COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); _dockgate; echo "\${COMPREPLY[*]}"; }
complete_line dockgate se
complete_line dockgate serve --metr
complete_line dockgate keygen --revo
complete_line dockgate help in`;
  const out = await new Deno.Command("bash", {
    args: ["-c", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const lines = new TextDecoder().decode(out.stdout).split("\n");
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  assert.deepEqual(lines.slice(0, 4), ["serve", "--metrics", "--revoke-old", "inspect"]);
  const bad = await runCli(["completion", "zsh"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /takes one shell: bash/);
});
