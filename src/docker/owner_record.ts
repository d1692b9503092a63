/**
 * The gate's own record of the containers it created for each owner, on which container
 * ownership rests under `isolate` (with the owner label): a label alone can come from an image
 * (`LABEL` in a Dockerfile, `docker load`, commit and import `changes=`), and dockerd gives it
 * to the containers it creates from that image itself (a build's RUN containers, or ones
 * created on the daemon's socket). A container is an owner's only when the gate saw its create
 * answered for that owner.
 *
 * The file: one JSON line per container, `["<owner key>","<full ID>"]`, appended and
 * fsync'ed before the create's answer reaches the client, mode 0600, owned by the gate's user.
 * The append and the fsync run off the event loop (on a busy disk an fsync takes tens of
 * milliseconds, which every other connection would wait out): adds are queued in order, and
 * those queued while one write is in flight go out together in the next write and fsync.
 * A last line without its newline (a crash during a write) is cut off at load; any other
 * unreadable line, a file others may write, or one owned by another user refuses the load
 * (fail closed: the record says who owns what).
 *
 * @module
 */

import {
  closeSync,
  fstatSync,
  fsync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  statSync,
  write,
} from "node:fs";
import { dirname, join } from "node:path";
import process from "node:process";
import { fsErrorText } from "../util/fs_util.ts";
import type { Logger } from "../observe/logger.ts";
import type { ContainerRecord } from "./isolation.ts";

/** The record's file name inside the state directory. */
export const OWNER_RECORD_FILE = "owners.jsonl";

/** A container's full ID, as dockerd answers a create. */
const FULL_ID = /^[0-9a-f]{64}$/;

/**
 * Write all of `bytes` at the end of the file `fd` (opened for appends) and make it durable;
 * resolves once it is, rejects when it cannot be.
 */
export type AppendDurably = (fd: number, bytes: Uint8Array) => Promise<void>;

/** How the record writes and reports (both injectable for tests). */
export interface OwnerRecordOptions {
  /** The append and fsync. Default: {@linkcode appendDurably} (off the event loop). */
  append?: AppendDurably;
  /** Where a failed write is reported. Default: nowhere (the create's answer still says it). */
  logger?: Logger;
}

/**
 * The default {@linkcode AppendDurably}: `write` (again for what a short write left) and
 * `fsync` on libuv's thread pool, so the event loop runs meanwhile.
 *
 * @example
 * ```ts
 * import { openSync, closeSync, readFileSync } from "node:fs";
 * import { appendDurably } from "./owner_record.ts";
 * const file = Deno.makeTempFileSync();
 * const fd = openSync(file, "a");
 * await appendDurably(fd, new TextEncoder().encode("x\n"));
 * closeSync(fd);
 * if (readFileSync(file, "utf8") !== "x\n") throw new Error();
 * ```
 */
export function appendDurably(fd: number, bytes: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    const from = (done: number) =>
      write(fd, bytes, done, bytes.length - done, null, (err, n) => {
        if (err) return reject(err);
        if (done + n < bytes.length) return from(done + n);
        fsync(fd, (e) => e ? reject(e) : resolve());
      });
    from(0);
  });
}

/** One add waiting for its line to be durable. */
interface Pending {
  owner: string;
  id: string;
  line: Uint8Array;
  done: Promise<void>;
  resolve: () => void;
  reject: (err: Error) => void;
}

/**
 * The record, open for appends. Shared by every connection and kept across reloads.
 *
 * @example
 * ```ts
 * import { OwnerRecord } from "./owner_record.ts";
 * const dir = Deno.makeTempDirSync();
 * const id = "a".repeat(64);
 * const record = OwnerRecord.open(dir);
 * await record.add("team-b", id);
 * record.close();
 * const again = OwnerRecord.open(dir);
 * if (!again.has("team-b", id) || again.has("team-a", id)) throw new Error();
 * again.close();
 * ```
 */
export class OwnerRecord implements ContainerRecord {
  readonly #path: string;
  #fd: number | undefined;
  readonly #owners = new Map<string, string>();
  /** The bytes of the file read so far (complete lines). */
  #offset = 0;
  readonly #append: AppendDurably;
  readonly #logger: Logger | undefined;
  /** Adds not yet durable, by container ID, in order (the queue of the next write). */
  readonly #pending = new Map<string, Pending>();
  /** Adds queued for the next write. */
  #queue: Pending[] = [];
  /** A write is in flight. */
  #writing = false;
  /** `close()` was called: the file closes once the write in flight is done. */
  #closing = false;
  /** Why a write failed: the record takes no more adds (see `#drain`). */
  #broken: Error | undefined;

  private constructor(path: string, fd: number, options: OwnerRecordOptions) {
    this.#path = path;
    this.#fd = fd;
    this.#append = options.append ?? appendDurably;
    this.#logger = options.logger;
  }

  /**
   * Open (or create) the record in `dir` (created 0700 when missing) and load it. Throws an
   * `Error` naming the file and the fix when it cannot be read, written or trusted.
   */
  static open(dir: string, options: OwnerRecordOptions = {}): OwnerRecord {
    if (typeof dir !== "string" || dir === "") throw new TypeError("state directory: empty");
    const path = join(dir, OWNER_RECORD_FILE);
    let fd: number;
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      fd = openSync(path, "a+", 0o600);
    } catch (err) {
      throw new Error(`Cannot open the owner record "${path}": ${fsErrorText(err)}`);
    }
    try {
      trusted(path, fd);
      const record = new OwnerRecord(path, fd, options);
      record.#load(fd);
      return record;
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  /** Where the record is. */
  get path(): string {
    return this.#path;
  }

  /**
   * Whether `owner`'s create of container `id` is in the record. On a miss, the lines another
   * gate sharing the file appended since are read first.
   */
  has(owner: string, id: string): boolean {
    if (this.#owners.get(id) === owner) return true;
    if (this.#fd !== undefined && !this.#owners.has(id)) this.#refresh(this.#fd);
    return this.#owners.get(id) === owner;
  }

  /**
   * Record that the gate created container `id` (a full ID) for `owner`: resolves once the line
   * is written and fsync'ed (in the order of the adds), rejects when it cannot be (the create's
   * answer then says so). Bad input throws at once (`TypeError`, `RangeError`).
   */
  add(owner: string, id: string): Promise<void> {
    if (typeof owner !== "string" || owner === "") throw new TypeError("owner: empty");
    if (!FULL_ID.test(id)) {
      throw new RangeError(`container ID ${JSON.stringify(id)}: not a full ID`);
    }
    if (this.#fd === undefined || this.#closing) {
      return Promise.reject(new Error(`the owner record "${this.#path}" is closed`));
    }
    if (this.#broken) return Promise.reject(this.#broken);
    const known = this.#owners.get(id) ?? this.#pending.get(id)?.owner;
    if (known !== undefined && known !== owner) {
      return Promise.reject(new Error(`container ${id} is recorded for another owner`));
    }
    if (known === owner) return this.#pending.get(id)?.done ?? Promise.resolve();
    const line = new TextEncoder().encode(JSON.stringify([owner, id]) + "\n");
    let resolve!: () => void, reject!: (err: Error) => void;
    const done = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const entry = { owner, id, line, done, resolve, reject };
    this.#pending.set(id, entry);
    this.#queue.push(entry);
    if (!this.#writing) void this.#drain();
    return done;
  }

  /**
   * Write the queued lines, one write and one fsync per turn (O_APPEND: another process's
   * lines never land inside it), until the queue is empty. A failed write breaks the record
   * for good: the file may now end in a torn line, which the next append would join and make
   * unreadable, so no later add is written (serve's restart cuts the torn line at load).
   */
  async #drain(): Promise<void> {
    this.#writing = true;
    while (this.#queue.length > 0 && this.#fd !== undefined) {
      const batch = this.#queue;
      this.#queue = [];
      const bytes = new Uint8Array(batch.reduce((n, p) => n + p.line.length, 0));
      batch.reduce((at, p) => (bytes.set(p.line, at), at + p.line.length), 0);
      try {
        await this.#append(this.#fd, bytes);
      } catch (err) {
        const failed = new Error(
          `Cannot write the owner record "${this.#path}": ${fsErrorText(err)} (no container ` +
            "create of an isolated role is recorded until serve restarts)",
        );
        this.#broken = failed;
        this.#logger?.log("error", "owner record write failed", {
          file: this.#path,
          error: failed.message,
        });
        for (const p of [...batch, ...this.#queue.splice(0)]) {
          this.#pending.delete(p.id);
          p.reject(failed);
        }
        break;
      }
      for (const p of batch) {
        this.#owners.set(p.id, p.owner);
        this.#pending.delete(p.id);
        p.resolve();
      }
    }
    this.#writing = false;
    if (this.#closing) this.#closeFd();
  }

  /** Close the file once the adds already made are written (further adds are refused). */
  close(): void {
    this.#closing = true;
    if (!this.#writing) this.#closeFd();
  }

  #closeFd(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }

  #load(fd: number): void {
    const bytes = readFileSync(this.#path);
    const end = bytes.lastIndexOf(0x0a) + 1;
    // A torn last line: cut it off, or the next append would join it and be lost too.
    if (end < bytes.length) {
      ftruncateSync(fd, end);
      fsyncSync(fd);
    }
    const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(0, end));
    this.#offset = end;
    text.split("\n").slice(0, -1).forEach((line, i) => {
      const entry = entryOf(line);
      if (!entry) {
        throw new Error(
          `The owner record "${this.#path}" line ${i + 1} is not an entry the gate writes: ` +
            "restore the file from a backup or move it away (the containers it names lose " +
            "their owner)",
        );
      }
      const known = this.#owners.get(entry[1]);
      if (known !== undefined && known !== entry[0]) {
        throw new Error(
          `The owner record "${this.#path}" line ${i + 1} gives ${entry[1]} a second owner`,
        );
      }
      this.#owners.set(entry[1], entry[0]);
    });
  }

  /**
   * Read the complete lines appended since (by another gate sharing the file). What cannot be
   * read there is skipped, and an ID keeps its first owner: skipping only takes ownership away.
   */
  #refresh(fd: number): void {
    try {
      const size = fstatSync(fd).size;
      if (size <= this.#offset) return;
      const bytes = new Uint8Array(size - this.#offset);
      const got = readSync(fd, bytes, 0, bytes.length, this.#offset);
      const end = bytes.subarray(0, got).lastIndexOf(0x0a) + 1;
      if (end === 0) return;
      this.#offset += end;
      for (const line of new TextDecoder().decode(bytes.subarray(0, end)).split("\n")) {
        const entry = entryOf(line);
        if (entry && !this.#owners.has(entry[1])) this.#owners.set(entry[1], entry[0]);
      }
    } catch {
      // Unreadable now: what is known stays, nothing is added.
    }
  }
}

/** A line as the gate writes it, `["<owner>","<full ID>"]`; `undefined` for anything else. */
function entryOf(line: string): [string, string] | undefined {
  let entry: unknown;
  try {
    entry = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (
    !Array.isArray(entry) || entry.length !== 2 || typeof entry[0] !== "string" ||
    entry[0] === "" || typeof entry[1] !== "string" || !FULL_ID.test(entry[1])
  ) {
    return undefined;
  }
  return [entry[0], entry[1]];
}

/** Refuse a record that another user owns or that others may write (they could add owners). */
function trusted(path: string, fd: number): void {
  const st = fstatSync(fd);
  const uid = typeof process.getuid === "function" ? process.getuid() : undefined;
  if (uid !== undefined && st.uid !== uid) {
    throw new Error(
      `The owner record "${path}" belongs to uid ${st.uid}, not the gate's (${uid}): chown it`,
    );
  }
  if ((st.mode & 0o077) !== 0) {
    throw new Error(
      `The owner record "${path}" has mode ${(st.mode & 0o777).toString(8)}: chmod 600 it`,
    );
  }
  const dir = dirname(path);
  const mode = statSync(dir).mode & 0o777;
  if ((mode & 0o022) !== 0) {
    throw new Error(
      `The state directory "${dir}" may be written by others (mode ${
        mode.toString(8)
      }): chmod 700 it`,
    );
  }
}

/**
 * The record of a running gate: opened at start when the API policy has isolated roles (serve
 * refuses to start when it cannot be), or at the first reload that brings one. Until it is
 * open no container is anyone's, and a container create of an isolated role is answered 500.
 *
 * @example
 * ```ts
 * import { OwnerRecordSlot } from "./owner_record.ts";
 * const slot = new OwnerRecordSlot(Deno.makeTempDirSync());
 * if (slot.has("a", "b".repeat(64))) throw new Error();
 * slot.open();
 * await slot.add("a", "b".repeat(64));
 * if (!slot.has("a", "b".repeat(64))) throw new Error();
 * slot.close();
 * ```
 */
export class OwnerRecordSlot implements ContainerRecord {
  readonly #dir: string;
  readonly #options: OwnerRecordOptions;
  #record: OwnerRecord | undefined;

  /** A slot for the record in `dir` (not opened yet), to be opened with `options`. */
  constructor(dir: string, options: OwnerRecordOptions = {}) {
    this.#dir = dir;
    this.#options = options;
  }

  /** Open the record (once; later calls return the same one). Throws as `OwnerRecord.open`. */
  open(): OwnerRecord {
    return this.#record ??= OwnerRecord.open(this.#dir, this.#options);
  }

  /** Whether the record is open. */
  get isOpen(): boolean {
    return this.#record !== undefined;
  }

  /** As {@linkcode OwnerRecord.has}; false while closed. */
  has(owner: string, id: string): boolean {
    return this.#record?.has(owner, id) ?? false;
  }

  /** As {@linkcode OwnerRecord.add}; rejects while closed. */
  add(owner: string, id: string): Promise<void> {
    if (!this.#record) {
      return Promise.reject(
        new Error(`the owner record in "${this.#dir}" is not open (see the serve log)`),
      );
    }
    return this.#record.add(owner, id);
  }

  /** Close the record. */
  close(): void {
    this.#record?.close();
    this.#record = undefined;
  }
}
