/**
 * The command line's help, version and completion, through the real CLI and a real bash:
 * every verb's `--help` has an example, and the completion script completes verbs and flags.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { DENO, ROOT, runCli } from "./helpers/gate.ts";
import { keygenOk } from "./helpers/keygen_inproc.ts";
import { VERBS } from "../src/cli/flags.ts";

Deno.test("help: every verb has --help with an example; --version", async () => {
  for (const verb of VERBS.map((v) => v.name)) {
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
complete_line dockgate help in
complete_line dockgate do
complete_line dockgate serve --crl-stale r
complete_line dockgate keygen inter
complete_line dockgate completion z`;
  const out = await new Deno.Command("bash", {
    args: ["-c", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const lines = new TextDecoder().decode(out.stdout).split("\n");
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  assert.deepEqual(lines.slice(0, 8), [
    "serve",
    "--metrics",
    "--revoke-old",
    "inspect",
    "doctor",
    "refuse",
    "intermediate",
    "zsh",
  ]);
  const bad = await runCli(["completion", "tcsh"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^dockgate: "completion" takes one shell: bash, zsh, fish/);
});

/** A shell, if installed: `bash`, `zsh`, `fish`. */
async function shellOk(shell: string): Promise<boolean> {
  try {
    return (await new Deno.Command(shell, { args: ["-c", "true"] }).output()).success;
  } catch {
    return false;
  }
}

for (const shell of ["bash", "zsh", "fish"]) {
  Deno.test(`completion ${shell}: the script passes the shell's own syntax check`, async () => {
    if (!(await shellOk(shell))) return; // not installed here
    const r = await runCli(["completion", shell]);
    assert.equal(r.code, 0, r.stderr);
    const file = await Deno.makeTempFile({ suffix: `.${shell}` });
    try {
      await Deno.writeTextFile(file, r.stdout);
      const check = await new Deno.Command(shell, { args: ["-n", file], stderr: "piped" })
        .output();
      assert.ok(check.success, new TextDecoder().decode(check.stderr));
    } finally {
      await Deno.remove(file);
    }
  });
}

Deno.test("completion fish: fish itself completes verbs, flags and choices", async () => {
  if (!(await shellOk("fish"))) return; // not installed here
  const cli = `${DENO} run -A --quiet ${join(ROOT, "cli.ts")}`;
  const query = (line: string) =>
    `complete -C '${line}' | string replace -r '\\t.*' '' | string join ' '`;
  const script = [
    `${cli} completion fish | source`,
    query("dockgate doc"),
    query("dockgate serve --max-ha"),
    query("dockgate serve --log-level "),
  ].join("; ");
  const out = await new Deno.Command("fish", { args: ["-c", script], stdout: "piped" }).output();
  const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
  assert.deepEqual(lines, [
    "doctor",
    "--max-handshakes --max-handshakes-per-address",
    "debug error info warn",
  ]);
});

Deno.test("completion zsh: zsh loads the script and registers it for dockgate", async () => {
  if (!(await shellOk("zsh"))) return; // not installed here
  const cli = `${DENO} run -A --quiet ${join(ROOT, "cli.ts")}`;
  const script = `autoload -Uz compinit && compinit -u -D; source <(${cli} completion zsh); ` +
    `print -r -- $_comps[dockgate]`;
  const out = await new Deno.Command("zsh", {
    args: ["-c", script],
    env: { HOME: await Deno.makeTempDir() },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(new TextDecoder().decode(out.stdout).trim(), "_dockgate");
});

Deno.test("log colours: the level is coloured on a terminal, never with NO_COLOR or off a terminal", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dg-color-" });
  try {
    const pki = join(dir, "pki");
    await keygenOk(["--dir", pki]);
    // util-linux's script(1) gives the command a real pseudo-terminal. serve's output is read
    // until its start-up is logged whole (the "listening on" line comes last), then it is
    // stopped; `timeout` only bounds a serve that never gets there.
    const serve =
      `echo "pid $$"; exec timeout 30 ${DENO} run -A --quiet ${join(ROOT, "cli.ts")} serve ` +
      `--listen 127.0.0.1:0 --certs ${join(pki, "server")} ` +
      `--target unix://${join(dir, "none.sock")}`;
    const onTty = async (env: Record<string, string>) => {
      const child = new Deno.Command("script", {
        args: ["-qec", serve, "/dev/null"],
        env,
        stdout: "piped",
        stderr: "null",
      }).spawn();
      let text = "";
      const decoder = new TextDecoder();
      for await (const chunk of child.stdout) {
        text += decoder.decode(chunk, { stream: true });
        if (/listening on/.test(text) && /target not answering yet/.test(text)) break;
      }
      // SIGTERM to `timeout` (serve stops, script exits with it), not to script: script
      // answers SIGTERM with a fixed 2 s sleep before it kills the session.
      const pid = text.match(/^pid (\d+)/m);
      if (pid) Deno.kill(Number(pid[1]), "SIGTERM");
      else child.kill("SIGTERM");
      await child.status;
      return text;
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

Deno.test("build:image --help prints its usage (no stack trace); a bad flag is one line, exit 2", async () => {
  const run = async (arg: string) => {
    const out = await new Deno.Command(DENO, {
      args: ["run", "-A", "--quiet", join(ROOT, "scripts", "build_image.ts"), arg],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const d = new TextDecoder();
    return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
  };
  const help = await run("--help");
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /^usage: deno task build:image /);
  const bad = await run("--bogus");
  assert.equal(bad.code, 2);
  assert.equal(bad.stderr.trimEnd().split("\n").length, 1, bad.stderr);
  assert.doesNotMatch(bad.stderr, /^\s+at /m);
});

Deno.test("usage errors through the real CLI: one dockgate: line with the fix, exit 2", async () => {
  const cases: [string[], RegExp][] = [
    [["sevre"], /^dockgate: Unknown command "sevre" \(did you mean serve\?\); the commands are /],
    [["keygen", "--days", "-5"], /^dockgate: Invalid --days "-5": negative; expected a whole/],
    [
      ["serve", "--target", "/var/run/docker.sock"],
      /is written unix:\/\/\/var\/run\/docker\.sock$/,
    ],
    [["help", "servr"], /^dockgate: No help for "servr" \(did you mean serve\?\)/],
  ];
  for (const [argv, re] of cases) {
    const r = await runCli(argv);
    assert.equal(r.code, 2, argv.join(" "));
    assert.equal(r.stderr.trimEnd().split("\n").length, 1, r.stderr);
    assert.match(r.stderr.trimEnd(), re);
  }
});

Deno.test("help: serve's reload claim is the table's live list; connect documents --config", async () => {
  const serve = (await runCli(["serve", "--help"])).stdout.replace(/\s+/g, " ");
  assert.match(
    serve,
    /a changed --config file also applies --allow-cn, --allow-san, --allow-ou, --policy, --log-level at once/,
  );
  assert.doesNotMatch(serve, /restart to change them/);
  for (const verb of ["serve", "connect"]) {
    const text = (await runCli([verb, "--help"])).stdout;
    assert.match(text, /--config FILE/, verb);
    assert.match(text, /--print-config/, verb);
  }
});
