/**
 * CRLs fetched over HTTP(S) (`serve --crl-url`): how one revocation at the CA reaches every
 * gate of a fleet within the refresh interval.
 *
 * Each URL is fetched at start and then every `refreshMs` (sooner when the CRL's
 * `nextUpdate` comes first), with `If-None-Match`/`If-Modified-Since` from the last answer.
 * A fetched CRL is checked before it is kept: every CRL in it parses, is signed by a CA of
 * the bundle, and is not older than the copy kept before it (a replayed old CRL over plain
 * HTTP would un-revoke). The last good copy lives on disk in the cache directory, and it is
 * what serve loads (one CRL source per URL), so a gate restarted while the CA's server is
 * down still enforces the revocations it knew. A failed fetch keeps the last good copy and
 * says so in the log; with no copy at all, start fails (fail closed).
 *
 * @module
 */

import { createHash } from "node:crypto";
import process from "node:process";
import { chmod, mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { crlRollback, type LoadedCrl, verifiedCrls } from "../pki/crl.ts";
import { pathExists } from "../util/fs_util.ts";
import type { x509 } from "../pki/x509.ts";
import type { Logger } from "../observe/logger.ts";

/** Options for {@linkcode CrlFetcher}. */
export interface CrlFetcherOptions {
  /** The CRL URLs (http or https). */
  urls: readonly string[];
  /** Where the last good copy of each is kept (created 0700 when missing). */
  cacheDir: string;
  /** How often each URL is fetched again, in ms. */
  refreshMs: number;
  /** The CA bundle in force: a fetched CRL must be signed by one of these. */
  cas: () => readonly x509.X509Certificate[];
  /** Where events go. */
  logger: Logger;
  /** Called after a new copy was kept (serve reloads). Default: nothing. */
  onChange?: (url: string) => void;
  /** Told of every fetch's outcome (metrics). Default: nothing. */
  onResult?: (result: "updated" | "not_modified" | "failed") => void;
  /** Give up a fetch after this long, in ms. Default: 30 000. */
  timeoutMs?: number;
  /** The largest CRL accepted, in bytes. Default: 64 MiB. */
  maxBytes?: number;
  /** After a failed fetch, try again after at most this long, in ms. Default: 300 000. */
  retryMs?: number;
}

/** What is remembered of the last good answer, beside the copy. */
interface CacheMeta {
  url: string;
  etag?: string;
  lastModified?: string;
  fetchedAt: string;
}

/**
 * The file the last good copy of `url` is kept in: named by a hash of the URL, so any URL
 * maps to one plain file name.
 *
 * @example
 * ```ts
 * import { crlCachePath } from "./crl_fetch.ts";
 * const p = crlCachePath("/var/lib/dockgate", "http://ca.example/crl.pem");
 * if (!p.startsWith("/var/lib/dockgate/") || !p.endsWith(".crl")) throw new Error(p);
 * ```
 */
export function crlCachePath(cacheDir: string, url: string): string {
  return join(cacheDir, `${createHash("sha256").update(url).digest("hex").slice(0, 24)}.crl`);
}

/**
 * Fetches the `--crl-url` CRLs on a schedule and keeps the last good copies.
 *
 * @example
 * ```ts ignore
 * const fetcher = new CrlFetcher({ urls, cacheDir, refreshMs: 3_600_000, cas, logger });
 * await fetcher.start(); // every URL fetched or its last good copy on disk, else it rejects
 * const sources = fetcher.paths(); // CRL files for loadServeConfig
 * fetcher.stop();
 * ```
 */
export class CrlFetcher {
  readonly #o: CrlFetcherOptions;
  readonly #timers = new Map<string, ReturnType<typeof setTimeout>>();
  /** The earliest nextUpdate of each kept copy, once known. */
  readonly #due = new Map<string, Date | undefined>();
  #stopped = false;

  /** A fetcher; nothing happens before {@linkcode CrlFetcher.start}. */
  constructor(options: CrlFetcherOptions) {
    if (options.urls.length === 0) throw new RangeError("CrlFetcher needs at least one URL");
    if (!(options.refreshMs > 0)) throw new RangeError("refreshMs must be positive");
    this.#o = options;
  }

  /** The cache file of each URL, in the order given. */
  paths(): string[] {
    return this.#o.urls.map((u) => crlCachePath(this.#o.cacheDir, u));
  }

  /**
   * Fetch every URL once; each that fails must have a last good copy on disk, else this
   * rejects naming it. Then the refreshes are scheduled.
   */
  async start(): Promise<void> {
    await mkdir(this.#o.cacheDir, { recursive: true, mode: 0o700 });
    for (const url of this.#o.urls) {
      const outcome = await this.#fetchOnce(url);
      if (outcome.failed && !(await pathExists(crlCachePath(this.#o.cacheDir, url)))) {
        throw new Error(
          `Cannot fetch CRL "${url}": ${outcome.failed}, and there is no last good copy in ` +
            `"${this.#o.cacheDir}"`,
        );
      }
      this.#schedule(url, outcome);
    }
  }

  /** Stop the refreshes. */
  stop(): void {
    this.#stopped = true;
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
  }

  /** Fetch `url` now (a refresh), and schedule the next one. */
  async refresh(url: string): Promise<void> {
    const outcome = await this.#fetchOnce(url);
    this.#schedule(url, outcome);
  }

  #schedule(url: string, outcome: Outcome): void {
    if (this.#stopped) return;
    const o = this.#o;
    let delay = outcome.failed ? Math.min(o.refreshMs, o.retryMs ?? 300_000) : o.refreshMs;
    const due = outcome.nextUpdate ? outcome.nextUpdate.getTime() - Date.now() : Infinity;
    // The CA promised a new CRL at nextUpdate: fetch it then (a second late, for clock skew).
    if (due > 0 && due + 1000 < delay) delay = due + 1000;
    clearTimeout(this.#timers.get(url));
    const timer = setTimeout(() => void this.refresh(url), delay);
    (timer as { unref?: () => void }).unref?.();
    this.#timers.set(url, timer);
  }

  /** One fetch: a new good copy kept, not modified, or why it failed (the copy stays). */
  async #fetchOnce(url: string): Promise<Outcome> {
    const o = this.#o;
    const path = crlCachePath(o.cacheDir, url);
    const meta = await readMeta(`${path}.json`);
    const haveCopy = await pathExists(path);
    const headers: Record<string, string> = {};
    if (haveCopy && meta?.url === url) {
      if (meta.etag) headers["if-none-match"] = meta.etag;
      if (meta.lastModified) headers["if-modified-since"] = meta.lastModified;
    }
    try {
      const res = await fetch(url, {
        headers,
        signal: AbortSignal.timeout(o.timeoutMs ?? 30_000),
      });
      if (res.status === 304 && haveCopy) {
        await res.body?.cancel();
        o.logger.log("debug", "CRL not modified", { url });
        o.onResult?.("not_modified");
        return { nextUpdate: await this.#nextUpdateOf(path) };
      }
      if (res.status !== 200) {
        await res.body?.cancel();
        throw new Error(`HTTP ${res.status}`);
      }
      const data = await readCapped(res, o.maxBytes ?? 64 * 1024 * 1024);
      const crls = await this.#check(data, path);
      await writeAtomically(path, data);
      await writeAtomically(
        `${path}.json`,
        new TextEncoder().encode(JSON.stringify(
          {
            url,
            etag: res.headers.get("etag") ?? undefined,
            lastModified: res.headers.get("last-modified") ?? undefined,
            fetchedAt: new Date().toISOString(),
          } satisfies CacheMeta,
        )),
      );
      const revoked = crls.reduce((n, c) => n + c.serials.size, 0);
      o.logger.log("info", "CRL fetched", { url, crls: crls.length, revoked });
      o.onResult?.("updated");
      o.onChange?.(url);
      this.#due.set(path, earliest(crls));
      return { nextUpdate: this.#due.get(path) };
    } catch (err) {
      const why = (err as Error).name === "TimeoutError" ? "timed out" : (err as Error).message;
      o.logger.log("warn", "CRL fetch failed: keeping the last good copy", {
        url,
        reason: why,
        copy: haveCopy ? path : "none",
      });
      o.onResult?.("failed");
      return { failed: why, nextUpdate: haveCopy ? await this.#nextUpdateOf(path) : undefined };
    }
  }

  /**
   * Every CRL in `data` signed by a CA of the bundle, and none older than the one of the
   * same CA in the copy kept so far.
   */
  async #check(data: Uint8Array, path: string): Promise<LoadedCrl[]> {
    const cas = this.#o.cas();
    const fresh = await verifiedCrls(data, cas, path);
    const kept = await pathExists(path)
      ? await verifiedCrls(new Uint8Array(await readFile(path)), cas, path).catch(() => [])
      : [];
    for (const crl of fresh) {
      for (const old of kept) {
        const rollback = crlRollback(old, crl);
        if (rollback) throw new Error(`fetched ${rollback.replace(/^CRL "[^"]*" /, "CRL ")}`);
      }
    }
    return fresh;
  }

  /**
   * The kept copy's earliest nextUpdate: read from the file once (a restart), then known from
   * the fetches themselves, so a 304 does not re-read and re-verify a CRL of megabytes.
   */
  async #nextUpdateOf(path: string): Promise<Date | undefined> {
    if (this.#due.has(path)) return this.#due.get(path);
    let due: Date | undefined;
    try {
      due = earliest(
        await verifiedCrls(new Uint8Array(await readFile(path)), this.#o.cas(), path),
      );
    } catch {
      return undefined;
    }
    this.#due.set(path, due);
    return due;
  }
}

interface Outcome {
  failed?: string;
  nextUpdate?: Date;
}

function earliest(crls: LoadedCrl[]): Date | undefined {
  const dates = crls.map((c) => c.nextUpdate).filter((d): d is Date => d !== undefined);
  return dates.length ? new Date(Math.min(...dates.map((d) => d.getTime()))) : undefined;
}

async function readMeta(path: string): Promise<CacheMeta | undefined> {
  try {
    return JSON.parse(await readFile(path, "utf8")) as CacheMeta;
  } catch {
    return undefined;
  }
}

/** The body, refusing one over `max` bytes before it is all in memory. */
async function readCapped(res: Response, max: number): Promise<Uint8Array> {
  const declared = Number(res.headers.get("content-length") ?? "0");
  if (declared > max) throw new Error(`the CRL is larger than ${max} bytes`);
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of res.body ?? []) {
    size += chunk.length;
    if (size > max) throw new Error(`the CRL is larger than ${max} bytes`);
    chunks.push(chunk);
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** Write `path` through a temporary file and a rename: a reader sees the old or the new copy. */
async function writeAtomically(path: string, data: Uint8Array): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, data, { mode: 0o644 });
  await chmod(tmp, 0o644);
  await rename(tmp, path);
}
