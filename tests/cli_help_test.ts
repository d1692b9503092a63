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

Deno.test("log colours: the level is coloured on a terminal, never with NO_COLOR or off a terminal", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dg-color-" });
  try {
    const pki = join(dir, "pki");
    assert.equal((await runCli(["keygen", "--dir", pki])).code, 0);
    // util-linux's script(1) gives the command a real pseudo-terminal.
    const serve =
      `timeout 4 ${DENO} run -A --quiet ${join(ROOT, "cli.ts")} serve --listen 127.0.0.1:0 ` +
      `--certs ${join(pki, "server")} --target unix://${join(dir, "none.sock")}`;
    const onTty = async (env: Record<string, string>) => {
      const out = await new Deno.Command("script", {
        args: ["-qec", serve, "/dev/null"],
        env,
        stdout: "piped",
        stderr: "piped",
      }).output();
      return new TextDecoder().decode(out.stdout);
    };
    const ESC = "\x1b[";
    const colored = await onTty({});
    assert.ok(colored.includes(`${ESC}33mWARN${ESC}0m target not answering yet`), colored);
    assert.ok(colored.includes(`${ESC}36mINFO${ESC}0m listening on`), colored);
    const plain = await onTty({ NO_COLOR: "1" });
    assert.match(plain, /WARN target not answering yet/);
    assert.ok(!plain.includes(ESC), plain);
    const piped = await runCli(["serve", "--print-config"]); // not a terminal: nothing to colour
    assert.ok(!(piped.stdout + piped.stderr).includes(ESC));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
