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
 * A last line without its newline (a crash during a write) is cut off at load; any other
 * unreadable line, a file others may write, or one owned by another user refuses the load
 * (fail closed: the record says who owns what).
 *
 * @module
 */

import {
  closeSync,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  statSync,
  writeSync,
} from "node:fs";
import { dirname, join } from "node:path";
import process from "node:process";
import { fsErrorText } from "../util/fs_util.ts";
import type { ContainerRecord } from "./isolation.ts";

/** The record's file name inside the state directory. */
export const OWNER_RECORD_FILE = "owners.jsonl";

/** A container's full ID, as dockerd answers a create. */
const FULL_ID = /^[0-9a-f]{64}$/;

/**
 * The record, open for appends. Shared by every connection and kept across reloads.
 *
 * @example
 * ```ts
 * import { OwnerRecord } from "./owner_record.ts";
 * const dir = Deno.makeTempDirSync();
 * const id = "a".repeat(64);
 * const record = OwnerRecord.open(dir);
 * record.add("team-b", id);
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

  private constructor(path: string, fd: number) {
    this.#path = path;
    this.#fd = fd;
  }

  /**
   * Open (or create) the record in `dir` (created 0700 when missing) and load it. Throws an
   * `Error` naming the file and the fix when it cannot be read, written or trusted.
   */
  static open(dir: string): OwnerRecord {
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
      const record = new OwnerRecord(path, fd);
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
   * Record that the gate created container `id` (a full ID) for `owner`: written and fsync'ed
   * before this returns. Throws when it cannot be (the create's answer then says so).
   */
  add(owner: string, id: string): void {
    if (typeof owner !== "string" || owner === "") throw new TypeError("owner: empty");
    if (!FULL_ID.test(id)) {
      throw new RangeError(`container ID ${JSON.stringify(id)}: not a full ID`);
    }
    if (this.#fd === undefined) throw new Error(`the owner record "${this.#path}" is closed`);
    const known = this.#owners.get(id);
    if (known === owner) return;
    if (known !== undefined) throw new Error(`container ${id} is recorded for another owner`);
    // One write of one line (O_APPEND): concurrent writers' lines never interleave.
    const line = new TextEncoder().encode(JSON.stringify([owner, id]) + "\n");
    try {
      let done = 0;
      while (done < line.length) done += writeSync(this.#fd, line, done);
      fsyncSync(this.#fd);
    } catch (err) {
      throw new Error(`Cannot write the owner record "${this.#path}": ${fsErrorText(err)}`);
    }
    this.#owners.set(id, owner);
  }

  /** Close the file (further adds throw). */
  close(): void {
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
 * slot.add("a", "b".repeat(64));
 * if (!slot.has("a", "b".repeat(64))) throw new Error();
 * slot.close();
 * ```
 */
export class OwnerRecordSlot implements ContainerRecord {
  readonly #dir: string;
  #record: OwnerRecord | undefined;

  /** A slot for the record in `dir` (not opened yet). */
  constructor(dir: string) {
    this.#dir = dir;
  }

  /** Open the record (once; later calls return the same one). Throws as `OwnerRecord.open`. */
  open(): OwnerRecord {
    return this.#record ??= OwnerRecord.open(this.#dir);
  }

  /** Whether the record is open. */
  get isOpen(): boolean {
    return this.#record !== undefined;
  }

  /** As {@linkcode OwnerRecord.has}; false while closed. */
  has(owner: string, id: string): boolean {
    return this.#record?.has(owner, id) ?? false;
  }

  /** As {@linkcode OwnerRecord.add}; throws while closed. */
  add(owner: string, id: string): void {
    if (!this.#record) {
      throw new Error(`the owner record in "${this.#dir}" is not open (see the serve log)`);
    }
    this.#record.add(owner, id);
  }

  /** Close the record. */
  close(): void {
    this.#record?.close();
    this.#record = undefined;
  }
}
