/**
 * Reload on demand and on file change: re-read serve's configuration as a whole and apply it
 * to new connections; a configuration that fails to load is kept out and the old one stays.
 *
 * Why polling and not `fs.watch`: certificate rotation tools replace files by rename, which
 * inotify watches on the old inode miss, and a poll of a handful of `stat`s per second costs
 * nothing.
 *
 * @module
 */

import { stat } from "node:fs/promises";
import type { Logger } from "../observe/logger.ts";
import type { ServeHandle } from "../serve.ts";
import {
  crlsInForce,
  loadServeConfig,
  type ServeConfig,
  type ServeConfigSource,
} from "./serve_config.ts";
import { crlStaleness } from "../access/authorize.ts";

/** Options for {@linkcode startReloader}. */
export interface ReloaderOptions {
  /** What to load. */
  source: ServeConfigSource;
  /** The configuration in force (its files are watched; the next load is checked against it). */
  config: ServeConfig;
  /** Where to apply it. */
  gate: Pick<ServeHandle, "reload">;
  /** Where events go. */
  logger: Logger;
  /** How often to check files for changes, in ms; 0 disables watching. Default: 1000. */
  pollMs?: number;
  /** Called after each successful reload. */
  onReload?: (config: ServeConfig) => void;
  /** Called after each failed reload (the previous configuration stays). */
  onReloadFailed?: (err: Error) => void;
  /**
   * How often to repeat the warning about a CRL outside its validity window, in ms; 0
   * disables it. Default: 3 600 000 (hourly).
   */
  crlWarningEveryMs?: number;
}

/** A running reloader. */
export interface Reloader {
  /** Reload now (e.g. on SIGHUP). Resolves to whether the new configuration was applied. */
  reload(why: string): Promise<boolean>;
  /** Stop watching files. */
  stop(): void;
}

/**
 * Start watching the configuration files and return a handle to reload on demand.
 *
 * @example
 * ```ts ignore
 * const reloader = startReloader({ source, config, gate, logger });
 * process.on("SIGHUP", () => reloader.reload("SIGHUP"));
 * ```
 */
export function startReloader(options: ReloaderOptions): Reloader {
  const { logger } = options;
  let current = options.config;
  let files = current.files;
  let signature: Promise<string> = fileSignature(files);
  let running: Promise<boolean> | undefined;
  let again = false;

  const reloadOnce = async (why: string): Promise<boolean> => {
    try {
      const config = await loadServeConfig(options.source, current);
      options.gate.reload({
        tls: config.tls,
        policy: config.policy,
        revocations: config.revocations ?? null,
        apiPolicy: config.apiPolicy ?? null,
      });
      current = config;
      files = config.files;
      signature = fileSignature(files);
      logger.log("info", "reloaded", { why, revoked: config.revokedCount });
      warnStaleCrl(logger, config);
      options.onReload?.(config);
      return true;
    } catch (err) {
      // Keep the configuration in force: a broken file must never open or close the gate.
      signature = fileSignature(files);
      logger.log("error", "reload failed, keeping the previous configuration", {
        why,
        reason: (err as Error).message,
      });
      options.onReloadFailed?.(err as Error);
      return false;
    }
  };

  const reload = (why: string): Promise<boolean> => {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      let ok = await reloadOnce(why);
      while (again) {
        again = false;
        ok = await reloadOnce(why);
      }
      running = undefined;
      return ok;
    })();
    return running;
  };

  const pollMs = options.pollMs ?? 1000;
  let seen: string | undefined;
  const timer = pollMs > 0
    ? everyUnref(pollMs, async () => {
      if (running) return;
      const [applied, now] = [await signature, await fileSignature(files)];
      // Reload only once the files have stopped changing for one interval: a rotation
      // writes the key and the certificate one after the other, and the pair in between
      // does not match (the reload would fail, harmlessly but noisily).
      if (applied !== now && now === seen) await reload("files changed");
      seen = now;
    })
    : undefined;
  const warnEvery = options.crlWarningEveryMs ?? 3_600_000;
  const warnTimer = warnEvery > 0
    ? everyUnref(warnEvery, () => void warnStaleCrl(logger, current))
    : undefined;
  return {
    reload,
    stop: () => {
      if (timer) clearInterval(timer);
      if (warnTimer) clearInterval(warnTimer);
    },
  };
}

/**
 * Run `fn` every `ms` without keeping the process alive, skipping a tick while the last run
 * has not finished (a slow `stat` must not pile up checks).
 */
function everyUnref(ms: number, fn: () => void | Promise<void>): ReturnType<typeof setInterval> {
  let busy = false;
  const timer = setInterval(async () => {
    if (busy) return;
    busy = true;
    try {
      await fn();
    } finally {
      busy = false;
    }
  }, ms);
  (timer as { unref?: () => void }).unref?.();
  return timer;
}

/**
 * Log a loud warning for each CRL in force outside its validity window (checked now, not
 * at load: a CRL goes stale while the gate runs). Returns whether it warned.
 *
 * @example
 * ```ts ignore
 * const config = await loadServeConfig(source);
 * warnStaleCrl(logger, config); // "WARN CRL is stale: still enforcing it crl=… reason=…"
 * ```
 */
export function warnStaleCrl(logger: Logger, config: ServeConfig): boolean {
  let warned = false;
  const refusing = config.revocations?.stale === "refuse";
  for (const crl of crlsInForce(config)) {
    const why = crlStaleness(crl);
    if (!why) continue;
    logger.log(
      "warn",
      refusing
        ? "CRL is stale: refusing the certificates it covers"
        : "CRL is stale: still enforcing it",
      {
        crl: crl.path,
        issuer: crl.signer.subject,
        reason: why,
        fix: "publish a fresh CRL (dockgate keygen crl)",
      },
    );
    warned = true;
  }
  return warned;
}

async function fileSignature(files: string[]): Promise<string> {
  const parts = await Promise.all(files.map(async (f) => {
    try {
      const s = await stat(f);
      return `${f}:${s.ino}:${s.size}:${s.mtimeMs}:${s.mode}`;
    } catch (err) {
      return `${f}:${(err as NodeJS.ErrnoException).code ?? "error"}`;
    }
  }));
  return parts.join("|");
}
