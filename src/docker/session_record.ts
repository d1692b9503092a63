/**
 * Session recordings (`serve --record-sessions DIR`): each exec or attach session of a role
 * with `"record"` written as an asciicast v2 file (the format `asciinema play` and
 * `asciinema cat` read), 0600, never over an existing file.
 *
 * The header names who, where and what (`dockgate`: identity, serial, host, container,
 * command, tty, start, and at the end `end`, `truncated`); then one event per chunk: `"o"` for
 * what the session showed, `"i"` for what was typed, each at its time since the start. A
 * stream without a terminal (`Tty: false`) comes in Docker's frames (8 bytes: stream, 0, 0, 0,
 * length big-endian) that are taken apart here: stdout and stderr are both output.
 *
 * Why the header is written first and rewritten at the end: a player needs it first, and a
 * recording must exist before the session starts (a required recording that cannot be
 * written refuses the session). The first header line is padded with spaces so that the final
 * one (with `end`) fits in its place.
 *
 * Caps: a session's file stops growing at `maxSessionBytes`, and all recordings of this gate
 * process together at `maxTotalBytes` (counted from the files this process wrote); what does
 * not fit is left out and the header says `truncated: true`. A new session once the total is
 * reached cannot be recorded (refused when its role requires recording).
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { closeSync, openSync, unlinkSync, writeSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";

/** What a recording's header says about the session. */
export interface SessionMeta {
  /** The identity's name. */
  identity: string;
  /** Its certificate's serial. */
  serial: string;
  /** The gate's host name. */
  host: string;
  /** `exec` or `attach`. */
  kind: "exec" | "attach";
  /** The container's full ID (and name, when known). */
  container: string;
  /** The command the session runs. */
  command: string[];
  /** Whether the stream is a terminal's (raw) or Docker's frames. */
  tty: boolean;
}

/** Where recordings go and how much they may take. */
export interface SessionRecorderOptions {
  /** The directory (must exist). */
  dir: string;
  /** The largest file of one session, in bytes. */
  maxSessionBytes: number;
  /** The most all sessions of this process may write, in bytes. */
  maxTotalBytes: number;
  /** The clock (tests). Default: `Date.now`. */
  now?: () => number;
}

/** One session being recorded. */
export interface SessionRecording {
  /** The file's path. */
  readonly path: string;
  /** Whether something was left out (a cap, a failed write): the recording is incomplete. */
  readonly truncated: boolean;
  /** Bytes the client sent into the session (stdin). */
  input(bytes: Uint8Array): void;
  /** Bytes the session sent to the client (the raw stream, framed unless `tty`). */
  output(bytes: Uint8Array): void;
  /** The session ended: the final header is written and the file closed. */
  close(): void;
  /** Nothing ran (the daemon did not switch to a stream): the file is removed. */
  discard(): void;
}

const HEADER_ROOM = 96;

/**
 * The recorder of one gate: opens a recording per session.
 *
 * @example
 * ```ts
 * import { readFileSync } from "node:fs";
 * import { SessionRecorder } from "./session_record.ts";
 * const dir = Deno.makeTempDirSync();
 * const rec = new SessionRecorder({ dir, maxSessionBytes: 1 << 20, maxTotalBytes: 1 << 20 });
 * const s = rec.open({ identity: "alice", serial: "01", host: "h", kind: "exec", container: "c1", command: ["sh"], tty: true });
 * s.input(new TextEncoder().encode("ls\r"));
 * s.output(new TextEncoder().encode("bin\r\n"));
 * s.close();
 * const [header, typed, shown] = readFileSync(s.path, "utf8").trim().split("\n").map((l) => JSON.parse(l));
 * if (header.version !== 2 || typed[1] !== "i" || shown[2] !== "bin\r\n" || !header.dockgate.end) throw new Error();
 * ```
 */
export class SessionRecorder {
  readonly #options: SessionRecorderOptions;
  #total = 0;
  #seq = 0;

  /** A recorder writing into `options.dir`. */
  constructor(options: SessionRecorderOptions) {
    if (!(options.maxSessionBytes > 0) || !(options.maxTotalBytes > 0)) {
      throw new RangeError("session recording caps must be positive byte counts");
    }
    this.#options = options;
  }

  /** The directory recordings go to. */
  get dir(): string {
    return this.#options.dir;
  }

  /**
   * Open a recording of the session `meta` describes: the file created (0600, exclusive) and
   * its header written. Throws an `Error` saying why when it cannot be.
   */
  open(meta: SessionMeta): SessionRecording {
    const o = this.#options;
    if (this.#total >= o.maxTotalBytes) {
      throw new Error(`the recordings' total cap (${o.maxTotalBytes} bytes) is reached`);
    }
    const now = o.now ?? Date.now;
    const start = now();
    const stamp = new Date(start).toISOString().replace(/[:.]/g, "-");
    const safe = meta.identity.replace(/[^A-Za-z0-9_.-]/g, "_").slice(0, 64);
    const path = join(o.dir, `${stamp}-${safe}-${meta.kind}-${process.pid}-${++this.#seq}.cast`);
    let fd: number;
    try {
      fd = openSync(path, "wx", 0o600);
    } catch (err) {
      throw new Error(`cannot create ${path}: ${(err as Error).message}`);
    }
    try {
      return new Recording(fd, path, meta, start, now, this, o.maxSessionBytes);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  /** Take `n` bytes from the total; false when they do not fit. */
  take(n: number): boolean {
    if (this.#total + n > this.#options.maxTotalBytes) return false;
    this.#total += n;
    return true;
  }
}

/** Docker's stream frames taken apart: the payloads, in order, across chunk boundaries. */
class Demux {
  #held = Buffer.alloc(0);
  #left = 0;

  feed(bytes: Uint8Array, emit: (payload: Uint8Array) => void): void {
    let buf = this.#held.length ? Buffer.concat([this.#held, bytes]) : Buffer.from(bytes);
    this.#held = Buffer.alloc(0);
    while (buf.length > 0) {
      if (this.#left > 0) {
        const n = Math.min(this.#left, buf.length);
        emit(buf.subarray(0, n));
        this.#left -= n;
        buf = buf.subarray(n);
        continue;
      }
      if (buf.length < 8) {
        this.#held = Buffer.from(buf);
        return;
      }
      this.#left = buf.readUInt32BE(4);
      buf = buf.subarray(8);
    }
  }
}

class Recording implements SessionRecording {
  readonly path: string;
  readonly #fd: number;
  readonly #meta: SessionMeta;
  readonly #start: number;
  readonly #now: () => number;
  readonly #recorder: SessionRecorder;
  readonly #max: number;
  readonly #headerLength: number;
  readonly #demux: Demux | undefined;
  readonly #decoders = { i: new TextDecoder(), o: new TextDecoder() };
  #size = 0;
  #truncated = false;
  #closed = false;

  constructor(
    fd: number,
    path: string,
    meta: SessionMeta,
    start: number,
    now: () => number,
    recorder: SessionRecorder,
    max: number,
  ) {
    this.#fd = fd;
    this.path = path;
    this.#meta = meta;
    this.#start = start;
    this.#now = now;
    this.#recorder = recorder;
    this.#max = max;
    this.#demux = meta.tty ? undefined : new Demux();
    const header = Buffer.from(this.#header(undefined));
    this.#headerLength = header.length + HEADER_ROOM;
    const line = Buffer.concat([header, Buffer.alloc(HEADER_ROOM, " "), Buffer.from("\n")]);
    if (!recorder.take(line.length)) throw new Error("the recordings' total cap is reached");
    writeSync(fd, line);
    this.#size = line.length;
  }

  get truncated(): boolean {
    return this.#truncated;
  }

  #header(end: number | undefined): string {
    const m = this.#meta;
    const title = `${m.identity}: ${m.kind} ${m.command.join(" ")} in ${m.container}`;
    return JSON.stringify({
      version: 2,
      width: 80,
      height: 24,
      timestamp: Math.floor(this.#start / 1000),
      title,
      dockgate: {
        identity: m.identity,
        serial: m.serial,
        host: m.host,
        kind: m.kind,
        container: m.container,
        command: m.command,
        tty: m.tty,
        start: new Date(this.#start).toISOString(),
        end: end === undefined ? null : new Date(end).toISOString(),
        truncated: this.#truncated,
      },
    });
  }

  input(bytes: Uint8Array): void {
    this.#event("i", bytes);
  }

  output(bytes: Uint8Array): void {
    if (this.#demux) this.#demux.feed(bytes, (p) => this.#event("o", p));
    else this.#event("o", bytes);
  }

  #event(code: "i" | "o", bytes: Uint8Array): void {
    if (this.#closed || this.#truncated || bytes.length === 0) return;
    const text = this.#decoders[code].decode(bytes, { stream: true });
    if (text === "") return;
    const t = Math.max(0, (this.#now() - this.#start) / 1000);
    const line = Buffer.from(`${JSON.stringify([Number(t.toFixed(6)), code, text])}\n`);
    if (this.#size + line.length > this.#max || !this.#recorder.take(line.length)) {
      this.#truncated = true;
      return;
    }
    try {
      writeSync(this.#fd, line);
      this.#size += line.length;
    } catch {
      this.#truncated = true; // a full disk ends the recording, not the session
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      const header = Buffer.from(this.#header(this.#now()));
      if (header.length <= this.#headerLength) {
        const padded = Buffer.concat([
          header,
          Buffer.alloc(this.#headerLength - header.length, " "),
        ]);
        writeSync(this.#fd, padded, 0, padded.length, 0);
      }
    } catch {
      // The recording keeps its first header (end: null): it was cut off.
    } finally {
      closeSync(this.#fd);
    }
  }

  discard(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeSync(this.#fd);
    try {
      unlinkSync(this.path);
    } catch {
      // Gone already.
    }
  }
}
