#!/usr/bin/env -S deno run -A
/**
 * The `dockgate` command line. This file only dispatches: argv is parsed into a typed
 * command by `src/cli/args.ts`, one runner per verb (`src/cli/run_*.ts`) does the work
 * through the library, and only this file touches the process: it prints, installs signal
 * handlers and exits (exit 2 for usage errors, 1 for runtime failures, one `dockgate:` line
 * each, no stack trace).
 *
 * @module
 */

import process from "node:process";
import { type Command, parseCommand, UsageError } from "./src/cli/args.ts";
import { HELP } from "./src/cli/help.ts";
import type { CliIo } from "./src/cli/io.ts";
import { runConnect } from "./src/cli/run_connect.ts";
import { runKeygen } from "./src/cli/run_keygen.ts";
import { runServe } from "./src/cli/run_serve.ts";
import { runPolicyCheck } from "./src/cli/run_policy.ts";
import { runPolicyLearn } from "./src/cli/run_policy_learn.ts";
import { runEnv } from "./src/cli/run_env.ts";
import { runUse } from "./src/cli/run_use.ts";
import { runInspect } from "./src/cli/run_inspect.ts";
import { completionScript } from "./src/cli/completion.ts";
import { runDoctor } from "./src/cli/run_doctor.ts";
import { runJoin, runRenew } from "./src/cli/run_join.ts";
import { lineLogger, streamSink } from "./src/observe/logger.ts";
import { VERSION } from "./src/version.ts";

// One sink for stderr, installed before anything is logged: its error listener is what keeps
// a closed stderr (EPIPE, reported asynchronously) from killing the process.
const STDERR = streamSink(process.stderr);

const io: CliIo = {
  say: STDERR.write,
  out: (line) => void process.stdout.write(line + "\n"),
  logger: (level, format = "text") =>
    lineLogger(STDERR.write, level, {
      format,
      // Colour only for a person at a terminal, and never when NO_COLOR is set (no-color.org).
      color: format === "text" && process.stderr.isTTY === true && !process.env.NO_COLOR,
    }),
  onSignal: (signal, fn) => void process.on(signal, fn),
};

function say(text: string) {
  STDERR.write(text);
}

async function main(argv: string[]): Promise<number> {
  let cmd: Command;
  try {
    cmd = parseCommand(argv, process.env);
  } catch (err) {
    if (err instanceof UsageError) {
      // One line: the message says what is wrong and how to write it instead.
      say(`dockgate: ${err.message}`);
      return 2;
    }
    throw err;
  }
  try {
    switch (cmd.kind) {
      case "help":
        // parseCommand only names topics that have help.
        process.stdout.write(HELP[cmd.topic ?? "main"] + "\n");
        return 0;
      case "version":
        process.stdout.write(`dockgate ${VERSION}\n`);
        return 0;
      case "keygen":
        return await runKeygen(cmd, io);
      case "serve":
        return await runServe(cmd, io);
      case "connect":
        return await runConnect(cmd, io);
      case "policy-check":
        return await runPolicyCheck(cmd, io);
      case "policy-learn":
        return await runPolicyLearn(cmd, io);
      case "env":
        return await runEnv(cmd, io);
      case "use":
        return await runUse(cmd, io);
      case "inspect":
        return await runInspect(cmd, io);
      case "doctor":
        return await runDoctor(cmd, io);
      case "completion":
        process.stdout.write(completionScript(cmd.shell));
        return 0;
      case "join":
        return await runJoin(cmd, io);
      case "renew":
        return await runRenew(cmd, io);
    }
  } catch (err) {
    const e = err as Error;
    say(`dockgate: error: ${e.message.split("\n")[0]}`);
    if (process.env.DOCKGATE_DEBUG) say(e.stack ?? "");
    return 1;
  }
}

// `import.meta.main` exists on Deno and Node >= 24.2; on older Node (the npm bin) and in the
// CommonJS bundle of the standalone binary it is undefined, and this file is the entry point.
if ((import.meta as { main?: boolean }).main ?? true) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
