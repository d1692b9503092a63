/**
 * `dockgate keygen …` run inside the test process, for the tests whose subject is not keygen
 * itself but what a PKI made by it does (a gate's refusals, enrolment, revocation). The
 * command line goes through the CLI's own parser and runner (`parseCommand`, `runKeygen`), so
 * the files are the ones `deno run cli.ts keygen …` writes; what is saved is a Deno process
 * loading the whole module graph per call (about 0.35 s of CPU each, 120 such calls were a
 * third of the unit tier's CPU). A test of keygen's own command line (its exit codes, its
 * one-line errors, stdout against stderr) uses `runCli` from ./gate.ts instead.
 *
 * @module
 */

import { parseCommand, UsageError } from "../../src/cli/args.ts";
import { runKeygen } from "../../src/cli/run_keygen.ts";
import type { CliIo } from "../../src/cli/io.ts";
import { lineLogger } from "../../src/observe/logger.ts";

/** What a keygen run printed, in {@linkcode runCli}'s shape (`code` as cli.ts would exit). */
export interface KeygenRun {
  /** 0, 1 (a runtime failure) or 2 (a usage error), as cli.ts exits. */
  code: number;
  /** The lines for stdout (a token). */
  stdout: string;
  /** The lines for stderr (what was created, errors). */
  stderr: string;
}

/**
 * `dockgate keygen ARGS…` in this process (`args` without the word `keygen`).
 *
 * @example
 * ```ts
 * import { keygenInProcess } from "./keygen_inproc.ts";
 * const dir = await Deno.makeTempDir();
 * const r = await keygenInProcess(["--dir", dir]);
 * if (r.code !== 0 || !r.stderr.includes("created")) throw new Error(r.stderr);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function keygenInProcess(args: string[]): Promise<KeygenRun> {
  let stdout = "";
  let stderr = "";
  const say = (line: string) => void (stderr += line + "\n");
  const io: CliIo = {
    say,
    out: (line) => void (stdout += line + "\n"),
    logger: (level, format = "text") => lineLogger(say, level, { format }),
    onSignal: () => {
      throw new TypeError("keygen installs no signal handler");
    },
  };
  let code: number;
  try {
    const cmd = parseCommand(["keygen", ...args], {});
    if (cmd.kind !== "keygen") throw new TypeError(`not a keygen command: ${args.join(" ")}`);
    code = await runKeygen(cmd, io);
  } catch (err) {
    // cli.ts's two failure lines and exit codes.
    if (err instanceof UsageError) {
      say(`dockgate: ${err.message}`);
      code = 2;
    } else {
      say(`dockgate: error: ${(err as Error).message.split("\n")[0]}`);
      code = 1;
    }
  }
  return { code, stdout, stderr };
}

/**
 * {@linkcode keygenInProcess} that must succeed: throws with keygen's output otherwise.
 * Returns stdout trimmed (a token, for `keygen token`).
 *
 * @example
 * ```ts
 * import { keygenOk } from "./keygen_inproc.ts";
 * import { parseJoinToken } from "../../src/pki/join_token.ts";
 * const dir = await Deno.makeTempDir();
 * await keygenOk(["--dir", dir]);
 * parseJoinToken(await keygenOk(["token", "ci-1", "--dir", dir])); // throws unless a token
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function keygenOk(args: string[]): Promise<string> {
  const r = await keygenInProcess(args);
  if (r.code !== 0) throw new Error(`keygen ${args.join(" ")}: exit ${r.code}: ${r.stderr}`);
  return r.stdout.trim();
}
