import net from "node:net";
/**
 * Waiting in tests: readiness by polling with backoff (never a fixed sleep), and short temp
 * directories (unix socket paths must stay under 108 bytes).
 */

/** Options for {@linkcode waitFor}. */
export interface WaitForOptions {
  /** Total bound. Default 10 000 ms. */
  timeoutMs?: number;
  /** What is awaited, for the timeout message. */
  what?: string;
}

/** Creates a fresh temp dir under /tmp (short paths, for unix sockets). */
export function freeTempDir(prefix = "dg-"): Promise<string> {
  return Deno.makeTempDir({ dir: "/tmp", prefix });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Polls `fn` with exponential backoff (10 ms doubling to 500 ms) until it returns something
 * other than `undefined`/`false`, and returns that. Exceptions from `fn` count as "not yet".
 * Throws after `timeoutMs` (default 10 s), quoting the last exception if any.
 */
export async function waitFor<T>(
  fn: () => Promise<T | undefined | false> | T | undefined | false,
  opts: WaitForOptions = {},
): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const deadline = Date.now() + timeoutMs;
  let delay = 10;
  let lastErr: unknown;
  while (true) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v as T;
    } catch (e) {
      lastErr = e;
    }
    const left = deadline - Date.now();
    if (left <= 0) {
      const why = lastErr === undefined ? "" : `; last error: ${String(lastErr)}`;
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${opts.what ?? "condition"}${why}`,
      );
    }
    await sleep(Math.min(delay, left));
    delay = Math.min(delay * 2, 500);
  }
}

/** A loopback TCP port nobody listens on now. */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}
