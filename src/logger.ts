/**
 * Structured, caller-supplied logging. The library never prints: it reports through a
 * {@linkcode Logger} that the caller passes in (the CLI passes one that writes to stderr).
 *
 * @module
 */

/** Severity of a log event. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** Extra key/value context attached to a log event (peer address, identity, reason, …). */
export type LogFields = Record<string, string | number | boolean | undefined>;

/**
 * Where the library reports what happens. Every method must not throw.
 *
 * @example Collect events in memory
 * ```ts
 * import type { Logger } from "./logger.ts";
 * const events: string[] = [];
 * const logger: Logger = { log: (level, msg) => events.push(`${level} ${msg}`) };
 * logger.log("info", "hello");
 * if (events[0] !== "info hello") throw new Error("unexpected");
 * ```
 */
export interface Logger {
  /** Record one event. */
  log(level: LogLevel, message: string, fields?: LogFields): void;
}

/**
 * A logger that drops everything; the default when no logger is given.
 *
 * @example
 * ```ts
 * import { silentLogger } from "./logger.ts";
 * silentLogger.log("error", "nobody hears this");
 * ```
 */
export const silentLogger: Logger = { log() {} };

/**
 * Format one event as a single line: `LEVEL message key=value …`. Values with spaces or
 * quotes are JSON-quoted so a line stays machine-splittable.
 *
 * @example
 * ```ts
 * import { formatLogLine } from "./logger.ts";
 * const line = formatLogLine("warn", "refused", { peer: "127.0.0.1:5000", reason: "no certificate" });
 * if (line !== 'WARN refused peer=127.0.0.1:5000 reason="no certificate"') throw new Error(line);
 * ```
 */
export function formatLogLine(level: LogLevel, message: string, fields?: LogFields): string {
  let line = `${level.toUpperCase()} ${message}`;
  for (const [key, value] of Object.entries(fields ?? {})) {
    if (value === undefined) continue;
    const text = String(value);
    line += ` ${key}=${/^[^\s"=]+$/.test(text) ? text : JSON.stringify(text)}`;
  }
  return line;
}

/**
 * A logger that writes {@linkcode formatLogLine} lines, prefixed with an ISO timestamp, to a
 * sink (the CLI passes a stderr writer). Events below `minLevel` are dropped.
 *
 * @example
 * ```ts
 * import { lineLogger } from "./logger.ts";
 * const lines: string[] = [];
 * const logger = lineLogger((l) => lines.push(l), "info");
 * logger.log("debug", "dropped");
 * logger.log("info", "kept");
 * if (lines.length !== 1 || !lines[0].endsWith("INFO kept")) throw new Error("unexpected");
 * ```
 */
export function lineLogger(write: (line: string) => void, minLevel: LogLevel = "info"): Logger {
  const order: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };
  return {
    log(level, message, fields) {
      if (order[level] < order[minLevel]) return;
      try {
        write(`${new Date().toISOString()} ${formatLogLine(level, message, fields)}`);
      } catch {
        // A broken log sink must never take the gate down.
      }
    },
  };
}
