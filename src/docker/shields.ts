/**
 * Shields: daemon bugs that restricted roles could reach through routes the presets allow,
 * kept in one table keyed to the daemon's version. A shield is active when the daemon's
 * version is in its range, or when the version is not known (fail closed); an active shield
 * refuses its routes for restricted roles (`full` roles are root anyway).
 *
 * The version comes from the daemon's own `GET /version`, asked when the first restricted
 * connection to a target starts and again at most every minute after (an upgraded or
 * restarted daemon is seen within that).
 *
 * @module
 */

import type { Duplex } from "node:stream";
import { compilePattern } from "./routes.ts";
import { DaemonClient } from "./daemon_client.ts";

/** One row of the table. */
export interface Shield {
  /** The CVE. */
  id: string;
  /** The advisory, for the log and `policy check`. */
  advisory: string;
  /** First affected engine version (`major.minor.patch`). */
  from: string;
  /** Last affected engine version. */
  through: string;
  /** The routes it guards, `METHOD /pattern`. */
  routes: readonly string[];
  /** What the gate refuses while it is active. */
  refuses: string;
}

/** Every shield. A compressed archive upload (CVE-2026-41567) is refused on every version by
 * the plain-tar rule (request_body.ts), so it needs no row here. */
export const SHIELDS: readonly Shield[] = [
  {
    id: "CVE-2026-41568",
    advisory: "docker cp races reach the host (archive read and write)",
    from: "25.0.0",
    through: "29.5.0",
    routes: [
      "GET /containers/{name}/archive",
      "HEAD /containers/{name}/archive",
      "PUT /containers/{name}/archive",
    ],
    refuses: "docker cp in and out of containers",
  },
  {
    id: "CVE-2026-42306",
    advisory: "docker cp race on the archive upload path reaches the host",
    from: "25.0.0",
    through: "29.5.0",
    routes: ["PUT /containers/{name}/archive"],
    refuses: "docker cp into containers",
  },
];

const COMPILED = SHIELDS.map((s) => ({
  shield: s,
  routes: s.routes.map((r) => {
    const [method, pattern] = r.split(" ");
    return { method, regex: compilePattern(pattern) };
  }),
}));

/** `26.1.5+dfsg1` -> `[26, 1, 5]`; undefined when it does not start with a version. */
function triple(version: string): [number, number, number] | undefined {
  const m = /^v?(\d+)\.(\d+)(?:\.(\d+))?/.exec(version);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : undefined;
}

function compare(a: [number, number, number], b: [number, number, number]): number {
  return a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
}

/**
 * The shields active for a daemon of `version` (every one when it is unknown or unreadable).
 *
 * @example
 * ```ts
 * import { activeShields } from "./shields.ts";
 * if (activeShields("20.10.24+dfsg1").length !== 0) throw new Error();
 * if (activeShields("26.1.5+dfsg1").length === 0 || activeShields(undefined).length === 0) throw new Error();
 * ```
 */
export function activeShields(version: string | undefined): Shield[] {
  const v = version === undefined ? undefined : triple(version);
  return SHIELDS.filter((s) =>
    v === undefined || (compare(v, triple(s.from)!) >= 0 && compare(v, triple(s.through)!) <= 0)
  );
}

/**
 * Why `method path` (canonical) is refused by an active shield for a daemon of `version`.
 *
 * @example
 * ```ts
 * import { shieldProblem } from "./shields.ts";
 * if (!shieldProblem("PUT", "/containers/web/archive", "27.0.1")?.includes("CVE-2026-41568")) throw new Error();
 * if (shieldProblem("PUT", "/containers/web/archive", "20.10.24") !== undefined) throw new Error();
 * ```
 */
export function shieldProblem(
  method: string,
  path: string,
  version: string | undefined,
): string | undefined {
  const v = version === undefined ? undefined : triple(version);
  for (const { shield, routes } of COMPILED) {
    if (!routes.some((r) => r.method === method && r.regex.test(path))) continue;
    if (v && (compare(v, triple(shield.from)!) < 0 || compare(v, triple(shield.through)!) > 0)) {
      continue;
    }
    const on = version === undefined ? "a daemon of unknown version" : `Docker ${version}`;
    return `shield ${shield.id} (${shield.advisory}): ${shield.refuses} refused on ${on}`;
  }
  return undefined;
}

/** How long a daemon's version is trusted before it is asked again. */
const VERSION_TTL_MS = 60_000;
/** How long the first ask may take before the version counts as unknown. */
const VERSION_WAIT_MS = 3_000;

/** The daemon's version per target, asked once a minute at most. */
export class DaemonVersion {
  #version: string | undefined;
  #asked = 0;
  #asking: Promise<void> | undefined;
  readonly #connect: () => Promise<Duplex>;

  /** `connect` opens a connection to the daemon. */
  constructor(connect: () => Promise<Duplex>) {
    this.#connect = connect;
  }

  /** The version last read (undefined: not known, every shield is active). */
  get current(): string | undefined {
    return this.#version;
  }

  /**
   * Ask the daemon when the answer is older than a minute; waits (bounded) only when no
   * version was ever read. Never throws: a failure leaves the version unknown.
   */
  async refresh(): Promise<void> {
    if (Date.now() - this.#asked < VERSION_TTL_MS) return;
    this.#asked = Date.now();
    this.#asking ??= this.#ask().finally(() => this.#asking = undefined);
    if (this.#version !== undefined) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.#asking,
      new Promise<void>((r) => timer = setTimeout(r, VERSION_WAIT_MS)),
    ]);
    clearTimeout(timer);
  }

  async #ask(): Promise<void> {
    const client = new DaemonClient(this.#connect);
    try {
      const answer = await client.request("GET", "/version");
      const version = JSON.parse(answer.body.toString()).Version;
      // A daemon that cannot say its version is one of unknown version (every shield on).
      this.#version = answer.status === 200 && typeof version === "string" ? version : undefined;
    } catch {
      this.#version = undefined;
    } finally {
      client.close();
    }
  }
}
