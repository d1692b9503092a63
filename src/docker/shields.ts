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

/** An engine version as numbers, compared part by part. */
type Triple = readonly [number, number, number];

/** `26.1.5+dfsg1` -> `[26, 1, 5]`; undefined when it does not start with a version. */
function triple(version: string): Triple | undefined {
  const m = /^v?(\d+)\.(\d+)(?:\.(\d+))?/.exec(version);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : undefined;
}

function compare(a: Triple, b: Triple): number {
  return a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
}

/** The table compiled once: each row's routes as patterns and its range as numbers. */
const COMPILED = SHIELDS.map((shield) => ({
  shield,
  from: triple(shield.from)!,
  through: triple(shield.through)!,
  routes: shield.routes.map((r) => {
    const [method, pattern] = r.split(" ");
    return { method, regex: compilePattern(pattern) };
  }),
}));

/** The daemon's version string last parsed: the same string comes with every request. */
let lastVersion: { text: string; parsed: Triple | undefined } | undefined;

/** `version` parsed (once per distinct string); undefined when unknown or unreadable. */
function parsedVersion(version: string | undefined): Triple | undefined {
  if (version === undefined) return undefined;
  if (lastVersion?.text !== version) lastVersion = { text: version, parsed: triple(version) };
  return lastVersion.parsed;
}

/** Whether a compiled row covers a daemon of parsed version `v` (undefined: unknown, yes). */
function covers(row: (typeof COMPILED)[number], v: Triple | undefined): boolean {
  return v === undefined || (compare(v, row.from) >= 0 && compare(v, row.through) <= 0);
}

/** The ids of every shield, for the policy loader's check of `liftShields`. */
export const SHIELD_IDS: readonly string[] = SHIELDS.map((s) => s.id);

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
  const v = parsedVersion(version);
  return COMPILED.filter((row) => covers(row, v)).map((row) => row.shield);
}

/**
 * One line saying what a shield does, the same for `policy check` and `doctor`.
 *
 * @example
 * ```ts
 * import { shieldLine, SHIELDS } from "./shields.ts";
 * if (!shieldLine(SHIELDS[0]).startsWith("shield CVE-2026-41568: refused on Docker 25.0.0 to 29.5.0")) throw new Error();
 * ```
 */
export function shieldLine(shield: Shield): string {
  return `shield ${shield.id}: refused on Docker ${shield.from} to ${shield.through} ` +
    `(${shield.refuses}; ${shield.advisory})`;
}

/** The shields that guard `method path` (canonical) on a daemon of `version`, in table order. */
function guarding(method: string, path: string, version: string | undefined) {
  const v = parsedVersion(version);
  return COMPILED.filter((row) =>
    row.routes.some((r) => r.method === method && r.regex.test(path)) && covers(row, v)
  );
}

/**
 * The shields that guard `method path` (canonical) on some daemon version, for `policy check`
 * (which knows no daemon).
 *
 * @example
 * ```ts
 * import { shieldsGuarding } from "./shields.ts";
 * if (shieldsGuarding("PUT", "/containers/web/archive").length !== 2) throw new Error();
 * if (shieldsGuarding("GET", "/containers/web/json").length !== 0) throw new Error();
 * ```
 */
export function shieldsGuarding(method: string, path: string): Shield[] {
  return guarding(method, path, undefined).map((r) => r.shield);
}

/**
 * Why `method path` (canonical) is refused by an active shield for a daemon of `version`;
 * the shields in `lifted` (a role's `liftShields`) do not refuse.
 *
 * @example
 * ```ts
 * import { shieldProblem } from "./shields.ts";
 * if (!shieldProblem("PUT", "/containers/web/archive", "27.0.1")?.includes("CVE-2026-41568")) throw new Error();
 * if (shieldProblem("PUT", "/containers/web/archive", "20.10.24") !== undefined) throw new Error();
 * if (!shieldProblem("PUT", "/containers/web/archive", "27.0.1", ["CVE-2026-41568"])?.includes("CVE-2026-42306")) throw new Error();
 * ```
 */
export function shieldProblem(
  method: string,
  path: string,
  version: string | undefined,
  lifted: readonly string[] = [],
): string | undefined {
  const row = guarding(method, path, version).find((r) => !lifted.includes(r.shield.id));
  if (!row) return undefined;
  const { shield } = row;
  const on = version === undefined ? "a daemon of unknown version" : `Docker ${version}`;
  return `shield ${shield.id} (${shield.advisory}): ${shield.refuses} refused on ${on}`;
}

/**
 * The shields of `lifted` that would have refused `method path` on a daemon of `version`,
 * for the audit record (`lifted CVE-2026-41568`); undefined when none applies.
 *
 * @example
 * ```ts
 * import { liftedShields } from "./shields.ts";
 * if (liftedShields("GET", "/containers/web/archive", "26.1.5", ["CVE-2026-41568"]) !== "lifted CVE-2026-41568") throw new Error();
 * if (liftedShields("GET", "/containers/web/archive", "20.10.24", ["CVE-2026-41568"]) !== undefined) throw new Error();
 * ```
 */
export function liftedShields(
  method: string,
  path: string,
  version: string | undefined,
  lifted: readonly string[],
): string | undefined {
  if (lifted.length === 0) return undefined;
  const ids = guarding(method, path, version).map((r) => r.shield.id)
    .filter((id) => lifted.includes(id));
  return ids.length ? `lifted ${ids.join(", ")}` : undefined;
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
