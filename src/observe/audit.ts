/**
 * The audit log: one JSON line per request of a restricted identity and one per connection of
 * every identity, to a file (reopened on SIGHUP, for log rotation) or to the stderr sink.
 *
 * Why JSON lines and not the log format: an audit trail is read by machines (SIEM, `jq`),
 * and JSON quoting already keeps a peer's bytes from forging lines (every control character
 * is escaped by `JSON.stringify`; format characters are escaped here too).
 *
 * @module
 */

import { closeSync, openSync, writeSync } from "node:fs";
import { clearTimeout, setTimeout } from "node:timers";
import { escapeControls } from "./logger.ts";

/**
 * What a request asked for or acts in (`docker/attribution.ts`): an exec create's command,
 * user, flags and environment names (never values); a container create's image and command;
 * the exec or container of an exec start or attach.
 */
export interface AuditDetail {
  /** Container create: the image as the client named it. */
  image?: string;
  /** Exec or container create: the command. */
  cmd?: string[];
  /** Container create: the entrypoint. */
  entrypoint?: string[];
  /** Exec create: the user it runs as (absent: the container's). */
  user?: string;
  /** Exec create: whether a terminal was asked for. */
  tty?: boolean;
  /** Exec create: whether it runs privileged. */
  privileged?: boolean;
  /** Exec create: its working directory. */
  working_dir?: string;
  /** Exec create: the names of the environment it sets (the values are never recorded). */
  env_names?: string[];
  /** Exec create and attach: the container, as the client named it. */
  container?: string;
  /** Exec start: the exec's ID. */
  exec_id?: string;
  /** Exec start or attach of a recorded role: the session's recording (`--record-sessions`). */
  recording?: string;
  /** Exec start or attach of a recorded role: why the session was not recorded. */
  recording_error?: string;
}

/** One audit record; `time` is added when it is written. */
export interface AuditRecord extends AuditDetail {
  /** `request` or `connection`; `enroll` and `renew` on serve's `--enroll` port. */
  event: "request" | "connection" | "enroll" | "renew";
  /** The client certificate's common name. */
  identity: string;
  /** Its serial number (hex). */
  serial: string;
  /** The peer address. */
  peer: string;
  /** The role from the API policy (none without a policy). */
  role?: string;
  /** Request: method. */
  method?: string;
  /** Request: the normalised path (no version prefix, no query). */
  path?: string;
  /** Request: `allow`, `deny` or `would_deny` (audit mode). */
  decision?: "allow" | "deny" | "would_deny";
  /** Request: the rule that decided. */
  rule?: string;
  /** Request of an isolated role: the owner decision (`own container 3f2a…`, `owner filter`). */
  owner?: string;
  /** Request: the role's lifted shields that applied (`lifted CVE-2026-41568`). */
  shield?: string;
  /** Request: the HTTP status the client got (101 for a switch to a raw stream). */
  status?: number;
  /** Connection: the relay used (`raw` or `docker-api`). */
  relay?: string;
  /** Bytes from the client. */
  bytes_in: number;
  /** Bytes to the client. */
  bytes_out: number;
  /** Duration in milliseconds. */
  ms: number;
  /** Why a connection ended with an error. */
  error?: string;
  /** Enrolment: the id of the token presented (never its secret). */
  token?: string;
}

/** Where audit records go. Writing never throws and never blocks the gate. */
export interface AuditSink {
  /** Write one record. */
  write(record: AuditRecord): void;
}

/**
 * The JSON line of `record` at `time`: keys in a fixed order, format characters escaped.
 *
 * @example
 * ```ts
 * import { auditLine } from "./audit.ts";
 * const line = auditLine({ event: "connection", identity: "a\u202e", serial: "01", peer: "p", bytes_in: 1, bytes_out: 2, ms: 3 }, new Date(0));
 * if (!line.startsWith('{"time":"1970-01-01T00:00:00.000Z","event":"connection"') || line.includes("\u202e")) throw new Error(line);
 * ```
 */
export function auditLine(record: AuditRecord, time: Date = new Date()): string {
  // The record's JSON with the time put first: the same text as stringifying one object with
  // `time` first, without building that object for every line.
  const body = JSON.stringify(record);
  const json = body === "{}"
    ? `{"time":"${isoTime(time)}"}`
    : `{"time":"${isoTime(time)}",${body.slice(1)}`;
  // JSON.stringify leaves printable ASCII as it is: only other text needs the escape pass.
  return NOT_PRINTABLE_ASCII.test(json) ? escapeControls(json) : json;
}
const NOT_PRINTABLE_ASCII = /[^\x20-\x7e]/;

/** `time.toISOString()`, kept for the last millisecond (a busy gate writes many lines in one). */
function isoTime(time: Date): string {
  const ms = time.getTime();
  if (ms !== lastIso.ms) lastIso = { ms, text: time.toISOString() };
  return lastIso.text;
}
let lastIso = { ms: NaN, text: "" };

/**
 * An audit sink on a line writer (e.g. the CLI's stderr sink).
 *
 * @example
 * ```ts
 * import { lineAuditSink } from "./audit.ts";
 * const lines: string[] = [];
 * lineAuditSink((l) => lines.push(l)).write({ event: "connection", identity: "a", serial: "1", peer: "p", bytes_in: 0, bytes_out: 0, ms: 0 });
 * if (JSON.parse(lines[0]).identity !== "a") throw new Error();
 * ```
 */
export function lineAuditSink(write: (line: string) => void): AuditSink {
  return {
    write(record) {
      try {
        write(auditLine(record));
      } catch {
        // An audit writer that fails must not stop the gate (the stderr sink counts drops).
      }
    },
  };
}

/** An audit log file that can be reopened (after rotation) and closed. */
export interface AuditFile extends AuditSink {
  /** Close the current file and open the path again (SIGHUP, after `logrotate` moved it). */
  reopen(): void;
  /** Close the file. */
  close(): Promise<void>;
}

/** How long an audit line waits for others to be written with (milliseconds). */
export const AUDIT_FLUSH_MS = 2;

/**
 * Append audit records to `path` (created 0600, opened for appending). The lines given within
 * {@linkcode AUDIT_FLUSH_MS} of the first one not yet written are written together with one
 * `write` (and at once on `reopen` and `close`). Why synchronous writes: an asynchronous file
 * stream hands every write to the thread pool, and on a keep-alive connection that is one
 * thread wake-up per request (measured: ~40 µs of added latency per request on Node); one
 * append to the page cache costs a few microseconds. Why not one write per event-loop turn: a
 * keep-alive client's requests come one per turn, so that was one `write(2)` per request
 * (~5 µs of the gate's CPU each on Node, more than building the line). Lines that cannot be
 * written are counted, and the next line written says how many were lost.
 * A record is turned into its line when the turn's lines are written, not when it is given
 * (its time is taken then): the JSON work then follows the answer the record is about instead
 * of delaying it (records are fresh objects, never changed after `write`).
 *
 * @example
 * ```ts
 * import { openAuditFile } from "./audit.ts";
 * const dir = Deno.makeTempDirSync();
 * const audit = openAuditFile(`${dir}/audit.log`);
 * audit.write({ event: "connection", identity: "a", serial: "1", peer: "p", bytes_in: 0, bytes_out: 0, ms: 0 });
 * await audit.close();
 * if (!Deno.readTextFileSync(`${dir}/audit.log`).includes('"identity":"a"')) throw new Error();
 * ```
 */
export function openAuditFile(path: string): AuditFile {
  let fd: number | undefined = openSync(path, "a", 0o600);
  let records: AuditRecord[] = [];
  let times: number[] = [];
  let dropped = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const flush = () => {
    // Cleared when flushed early (reopen, close): no timer outlives a closed file.
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    if (records.length === 0) return;
    let text = "";
    for (let i = 0; i < records.length; i++) {
      text += auditLine(records[i], new Date(times[i])) + "\n";
    }
    const count = records.length;
    records = [];
    times = [];
    if (dropped > 0) {
      text = auditLine({
        event: "connection",
        identity: "-",
        serial: "-",
        peer: "-",
        bytes_in: 0,
        bytes_out: 0,
        ms: 0,
        error: `${dropped} audit line(s) lost`,
      }) + "\n" + text;
    }
    try {
      if (fd === undefined) throw new Error("closed");
      writeSync(fd, text);
      dropped = 0;
    } catch {
      dropped += count;
    }
  };
  return {
    write(record) {
      records.push(record);
      times.push(Date.now());
      timer ??= setTimeout(flush, AUDIT_FLUSH_MS);
    },
    reopen() {
      flush();
      const old = fd;
      try {
        fd = openSync(path, "a", 0o600);
      } catch {
        fd = undefined; // counted as lost until a reopen works
      }
      if (old !== undefined) closeSync(old);
    },
    close() {
      flush();
      if (fd !== undefined) closeSync(fd);
      fd = undefined;
      return Promise.resolve();
    },
  };
}
