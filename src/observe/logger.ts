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
  let line = `${level.toUpperCase()} ${escapeControls(message)}`;
  for (const [key, value] of Object.entries(fields ?? {})) {
    if (value === undefined) continue;
    const text = String(value);
    line += ` ${key}=${PLAIN_VALUE.test(text) ? text : quoteValue(text)}`;
  }
  return line;
}

/** A value that can stand unquoted: printable ASCII without space, quote or `=`. */
const PLAIN_VALUE = /^[\x21\x23-\x3c\x3e-\x7e]+$/;

/**
 * Characters that must never reach a log line as themselves: C0/C1 controls (a CN with a
 * newline or an ANSI escape would forge or hide lines), Unicode format characters (bidi
 * overrides reorder what an operator reads) and line/paragraph separators.
 */
const UNSAFE_CHARS = /[\p{Cc}\p{Cf}\u2028\u2029]/gu;

function escapeChar(c: string): string {
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;
}

/**
 * Replace every control or format character of `text` by its `\uXXXX` escape, so that text a
 * peer chose (a certificate name, an error message) cannot forge or hide log lines.
 *
 * @example
 * ```ts
 * import { escapeControls } from "./logger.ts";
 * if (escapeControls("a\nb\u202e") !== "a\\u000ab\\u202e") throw new Error(escapeControls("a\nb"));
 * ```
 */
export function escapeControls(text: string): string {
  return text.replace(UNSAFE_CHARS, escapeChar);
}

function quoteValue(text: string): string {
  // JSON.stringify escapes C0 controls, quotes and backslashes; the rest is ours.
  return JSON.stringify(text).replace(UNSAFE_CHARS, escapeChar);
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
export function lineLogger(
  write: (line: string) => void,
  minLevel: LogLevel = "info",
  options: LineLoggerOptions = {},
): Logger {
  const order: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };
  const format = options.format ?? "text";
  return {
    log(level, message, fields) {
      if (order[level] < order[minLevel]) return;
      try {
        const time = new Date().toISOString();
        if (format === "json") return write(formatJsonLogLine(time, level, message, fields));
        const line = formatLogLine(level, message, fields);
        write(`${time} ${options.color ? colorLevel(level, line) : line}`);
      } catch {
        // A broken log sink must never take the gate down.
      }
    },
  };
}

/** Options for {@linkcode lineLogger}. */
export interface LineLoggerOptions {
  /** `text` (`LEVEL message key=value …`, the default) or `json` (one object per line). */
  format?: "text" | "json";
  /** Colour the level (text only; the CLI sets it on a TTY without `NO_COLOR`). Default: false. */
  color?: boolean;
}

const COLORS: Record<LogLevel, string> = {
  debug: "\x1b[2m",
  info: "\x1b[36m",
  warn: "\x1b[33m",
  error: "\x1b[31m",
};

/** The line with its level word coloured (the rest is already escaped: no peer's ANSI). */
function colorLevel(level: LogLevel, line: string): string {
  const word = level.toUpperCase();
  return `${COLORS[level]}${word}\x1b[0m${line.slice(word.length)}`;
}

/**
 * One event as a JSON line (for journald, Loki, `jq`): `time`, `level`, `msg`, then the
 * fields; control and format characters escaped as in text lines.
 *
 * @example
 * ```ts
 * import { formatJsonLogLine } from "./logger.ts";
 * const line = formatJsonLogLine("1970-01-01T00:00:00.000Z", "warn", "refused", { peer: "p", reason: "x\u202e" });
 * const v = JSON.parse(line);
 * if (v.level !== "warn" || v.msg !== "refused" || v.peer !== "p" || line.includes("\u202e")) throw new Error(line);
 * ```
 */
export function formatJsonLogLine(
  time: string,
  level: LogLevel,
  message: string,
  fields?: LogFields,
): string {
  const record: Record<string, unknown> = { time, level, msg: message };
  for (const [k, v] of Object.entries(fields ?? {})) {
    if (v !== undefined && !(k in record)) record[k] = v;
  }
  const json = JSON.stringify(record);
  return /^[\x20-\x7e]*$/.test(json) ? json : escapeControls(json);
}

/** Options for {@linkcode streamSink}. */
export interface StreamSinkOptions {
  /**
   * Drop lines while this many bytes are already queued for the stream (a log reader that
   * stopped reading must not make the gate buffer without bound). Default: 1 MiB.
   */
  maxQueuedBytes?: number;
}

/** The subset of a writable stream {@linkcode streamSink} needs (e.g. `process.stderr`). */
export interface SinkStream {
  /** Queue a chunk. */
  write(chunk: string): unknown;
  /** Bytes queued and not yet written. */
  readonly writableLength?: number;
  /** Register for `error` (EPIPE when the reader is gone) and `drain`. */
  on(event: "error" | "drain", listener: (...args: unknown[]) => void): unknown;
}

/** A line writer for {@linkcode lineLogger} that never throws and never grows unbounded. */
export interface StreamSink {
  /** Write one line (a newline is added). */
  write(line: string): void;
  /** Lines dropped so far (stream gone or too far behind). */
  readonly dropped: number;
  /** False once the stream failed (e.g. EPIPE); every later line is dropped. */
  readonly alive: boolean;
}

/**
 * Write log lines to a stream such that logging can never stop the program: the stream's
 * `error` event (a closed pipe is reported asynchronously, where no try/catch sees it, and
 * would otherwise be an uncaught exception) marks the sink dead and later lines are counted
 * and dropped; while more than `maxQueuedBytes` wait to be written, lines are dropped too,
 * and the next line written says how many were lost.
 *
 * @example
 * ```ts
 * import { streamSink } from "./logger.ts";
 * import { EventEmitter } from "node:events";
 * const written: string[] = [];
 * const stream = Object.assign(new EventEmitter(), {
 *   writableLength: 0,
 *   write: (chunk: string) => written.push(chunk),
 * });
 * const sink = streamSink(stream);
 * sink.write("one");
 * stream.emit("error", Object.assign(new Error("write EPIPE"), { code: "EPIPE" }));
 * sink.write("two");
 * if (written.join("") !== "one\n" || sink.dropped !== 1 || sink.alive) throw new Error();
 * ```
 */
export function streamSink(stream: SinkStream, options: StreamSinkOptions = {}): StreamSink {
  const maxQueued = options.maxQueuedBytes ?? 1024 * 1024;
  let alive = true;
  let dropped = 0;
  let reported = 0;
  stream.on("error", () => {
    alive = false;
  });
  const sink: StreamSink = {
    write(line) {
      if (!alive || (stream.writableLength ?? 0) > maxQueued) {
        dropped++;
        return;
      }
      try {
        if (dropped > reported) {
          stream.write(
            `${new Date().toISOString()} WARN log lines dropped count=${dropped - reported}\n`,
          );
          reported = dropped;
        }
        stream.write(line + "\n");
      } catch {
        // Some runtimes throw synchronously for a closed descriptor.
        alive = false;
        dropped++;
      }
    },
    get dropped() {
      return dropped;
    },
    get alive() {
      return alive;
    },
  };
  return sink;
}
