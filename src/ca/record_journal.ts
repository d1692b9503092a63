/**
 * An append-only record of JSON lines (`issued.jsonl`): each append is one `write` of whole
 * lines to the end of the file, synced before it returns, under the record's lock (see
 * `util/file_lock.ts`; the lock is what makes the repair below safe against another
 * appender). Appending costs the same whatever the record holds, where rewriting a JSON list
 * costs its whole size every time (a fleet renewing daily adds thousands of entries a day).
 *
 * Appends in one process are grouped (group commit): while one is being written and synced,
 * the next callers' lines are queued and then go out together in one write and one sync; each
 * caller's promise settles only once its own lines are synced (or rejects with the batch).
 *
 * A crash can leave one thing behind: a last line without its newline (a write that never
 * completed, so never acknowledged: the gate answers a certificate only after the sync).
 * Readers skip such a tail, and every earlier line stays; the next append repairs it (the
 * newline added when the tail is a whole record, the tail cut off otherwise) and says so. A
 * malformed line anywhere else is not a crash's doing: it is refused, naming the file and line.
 *
 * @module
 */

import { open, readFile } from "node:fs/promises";
import { dirname } from "node:path";
import { withFileLock } from "../util/file_lock.ts";
import { syncDirectory } from "./files.ts";

/** The longest line a record holds (an entry is a few hundred bytes). */
export const MAX_LINE_BYTES = 64 * 1024;

/** How one line is checked: `true` for a record of the journal. */
export type LineCheck = (value: unknown) => boolean;

/** Options of {@linkcode appendLines}. */
export interface AppendOptions {
  /** The lock file's base path (`PATH.lock`). Default: the journal's path. */
  lockPath?: string;
  /** What a line must be (to tell a whole torn line from a cut one). */
  check: LineCheck;
  /** What the record is, for messages. */
  what: string;
}

/**
 * Append `values` as JSON lines to `path` (created 0600), synced; returns a message when a
 * torn last line had to be repaired first, else `undefined`.
 *
 * @example
 * ```ts
 * import { appendLines, readLines } from "./record_journal.ts";
 * const dir = await Deno.makeTempDir();
 * const check = (v: unknown) => typeof (v as { serial?: unknown })?.serial === "string";
 * await appendLines(`${dir}/r.jsonl`, [{ serial: "01" }, { serial: "02" }], { check, what: "record" });
 * const back = await readLines(`${dir}/r.jsonl`, { check, what: "record" });
 * if (back.length !== 2) throw new Error();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export function appendLines(
  path: string,
  values: unknown[],
  options: AppendOptions,
): Promise<string | undefined> {
  if (values.length === 0) return Promise.resolve(undefined);
  let batch = queued.get(path);
  if (!batch) {
    const next: Batch = { values: [], done: Promise.resolve(undefined) };
    const before = flushing.get(path) ?? Promise.resolve();
    next.done = before.catch(() => {}).then(() => {
      // From here on, callers start the next batch: this one's lines are fixed.
      queued.delete(path);
      return appendNow(path, next.values, options);
    });
    const settled = next.done.catch(() => {});
    flushing.set(path, settled);
    void settled.then(() => flushing.get(path) === settled && flushing.delete(path));
    queued.set(path, next);
    batch = next;
  }
  batch.values.push(...values);
  return batch.done;
}

/** Lines waiting for the write in progress, by journal. */
interface Batch {
  values: unknown[];
  done: Promise<string | undefined>;
}
const queued = new Map<string, Batch>();
const flushing = new Map<string, Promise<unknown>>();

/** One write of `values` and one sync, under the lock. */
async function appendNow(
  path: string,
  values: unknown[],
  options: AppendOptions,
): Promise<string | undefined> {
  const text = values.map((v) => JSON.stringify(v) + "\n").join("");
  return await withFileLock(options.lockPath ?? path, async () => {
    const handle = await open(path, "a+", 0o600);
    let repaired: string | undefined;
    let empty = false;
    try {
      const size = (await handle.stat()).size;
      empty = size === 0;
      repaired = await repairTail(handle, size, path, options);
      await handle.write(text);
      await handle.sync();
    } finally {
      await handle.close();
    }
    // A new file is only durable once its directory entry is (an empty one may be new).
    if (empty) await syncDirectory(dirname(path));
    return repaired;
  });
}

type Handle = Awaited<ReturnType<typeof open>>;

/** End the file with a newline: complete a whole torn record, cut a partial one off. */
async function repairTail(
  handle: Handle,
  size: number,
  path: string,
  options: AppendOptions,
): Promise<string | undefined> {
  if (size === 0) return undefined;
  const span = Math.min(size, MAX_LINE_BYTES + 1);
  const tail = new Uint8Array(span);
  await handle.read(tail, 0, span, size - span);
  if (tail[span - 1] === 0x0a) return undefined;
  const nl = tail.lastIndexOf(0x0a);
  if (nl < 0 && size > MAX_LINE_BYTES) {
    throw new Error(
      `Cannot append to ${options.what} "${path}": its last ${MAX_LINE_BYTES} bytes hold no ` +
        `line end (not a record of this format; restore it from a backup)`,
    );
  }
  const torn = tail.subarray(nl + 1);
  if (parsesAs(new TextDecoder().decode(torn), options.check)) {
    await handle.write("\n");
    return `${options.what} "${path}": its last record had lost its line end (a write ` +
      `interrupted by a crash); the line end was added`;
  }
  await handle.truncate(size - torn.length);
  return `${options.what} "${path}": a torn last line of ${torn.length} bytes (a write ` +
    `interrupted by a crash, never acknowledged) was cut off; every record before it is kept`;
}

/**
 * The records of `path` in order, `[]` when it does not exist. A torn last line (no newline)
 * is skipped unless it is a whole record; any other malformed line throws an `Error` naming
 * the file and the line.
 */
export async function readLines<T>(
  path: string,
  options: Omit<AppendOptions, "lockPath">,
): Promise<T[]> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw new Error(`Cannot read ${options.what} "${path}": ${(err as Error).message}`);
  }
  const lines = text.split("\n");
  const torn = lines.pop()!; // "" when the file ends with a newline
  const out: T[] = [];
  lines.forEach((line, i) => {
    const value = parseLine(line);
    if (value === undefined || !options.check(value)) {
      throw new Error(
        `Cannot read ${options.what} "${path}": line ${i + 1} is not a record (a damaged ` +
          `file; restore it from a backup)`,
      );
    }
    out.push(value as T);
  });
  if (torn !== "" && parsesAs(torn, options.check)) out.push(JSON.parse(torn) as T);
  return out;
}

function parseLine(line: string): unknown {
  try {
    return JSON.parse(line);
  } catch {
    return undefined;
  }
}

function parsesAs(line: string, check: LineCheck): boolean {
  const value = parseLine(line);
  return value !== undefined && check(value);
}
