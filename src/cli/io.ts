/**
 * What a command runner may do to the outside world, handed to it by `cli.ts` (the only
 * file that touches the process: it prints, exits and installs signal handlers). Why: the
 * runners stay testable and the library stays silent.
 *
 * @module
 */

import type { Logger, LogLevel } from "../observe/logger.ts";

/** The process, as a runner sees it. */
export interface CliIo {
  /** Write one line to stderr (progress, results, errors). */
  say(line: string): void;
  /** Write one line to stdout (a command's answer, e.g. `policy check`). */
  out(line: string): void;
  /** A logger at `level` writing to stderr, as `format` lines (default text). */
  logger(level: LogLevel, format?: "text" | "json"): Logger;
  /** Call `fn` on each delivery of `signal`. */
  onSignal(signal: "SIGHUP" | "SIGTERM" | "SIGINT", fn: () => void): void;
}

/**
 * Wait for SIGTERM/SIGINT: `stop(true)` (drain) on the first, `stop(false)` (at once) on
 * any later one.
 *
 * @example
 * ```ts
 * import { onStopSignals } from "./io.ts";
 * const handlers: (() => void)[] = [];
 * const calls: boolean[] = [];
 * onStopSignals({ onSignal: (_s, fn) => void handlers.push(fn) }, (drain) => void calls.push(drain));
 * handlers[0]();
 * handlers[1]();
 * if (calls.join() !== "true,false") throw new Error(calls.join());
 * ```
 */
export function onStopSignals(
  io: Pick<CliIo, "onSignal">,
  stop: (drain: boolean) => void,
): void {
  let count = 0;
  const handler = () => stop(++count === 1);
  io.onSignal("SIGTERM", handler);
  io.onSignal("SIGINT", handler);
}
