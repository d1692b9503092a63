/**
 * Reading argv against a verb's flag table (`flags.ts`): `node:util` `parseArgs` underneath,
 * every mistake turned into one {@linkcode UsageError} line that says what is wrong and how to
 * write it instead, and typed readers of the values (durations, sizes, counts, choices,
 * addresses) whose errors name the flag.
 *
 * @module
 */

import { parseArgs as nodeParseArgs } from "node:util";
import { layeredParse, parseConfigText, type SettingSource } from "../config/layered.ts";
import { envName } from "../config/layered.ts";
import { parseDuration } from "../config/duration.ts";
import { type Address, parseAddress } from "../net/address.ts";
import { type FlagSpec, notFromFile, parseOptions, type VerbSpec } from "./flags.ts";

/** A usage mistake: the CLI prints the message as one `dockgate:` line and exits with code 2. */
export class UsageError extends Error {
  /** Create a usage error with a one-line message that says how to fix it. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/**
 * The name nearest `name` (edit distance at most a third of its length, at least 1), for
 * "did you mean".
 *
 * @example
 * ```ts
 * import { closest } from "./flag_values.ts";
 * if (closest("listn", ["listen", "target"]) !== "listen" || closest("zzz", ["listen"])) throw new Error();
 * ```
 */
export function closest(name: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(1, Math.floor(name.length / 3)) + 1;
  for (const c of candidates) {
    const d = editDistance(name, c);
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  return best;
}

/** Edits (insert, delete, replace, swap of neighbours) from `a` to `b`: "sevre" is 1 from "serve". */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
  for (let j = 0; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}

/** Raw values by flag name, as `parseArgs` gives them. */
export type RawValues = Record<string, string | boolean | string[] | undefined>;

/**
 * Parse `args` strictly against `verb`'s table (command line only).
 *
 * @example
 * ```ts
 * import { parseVerbArgs } from "./flag_values.ts";
 * import { verbOf } from "./flags.ts";
 * const { values } = parseVerbArgs(verbOf("inspect")!, ["--json"], true);
 * if (values.json !== true) throw new Error();
 * ```
 */
export function parseVerbArgs(
  verb: VerbSpec,
  args: string[],
  allowPositionals: boolean,
): { values: RawValues; positionals: string[]; given: Set<string> } {
  try {
    const r = nodeParseArgs({
      args,
      options: parseOptions(verb),
      allowPositionals,
      strict: true,
      tokens: true,
    });
    const given = new Set(
      r.tokens.flatMap((t) => t.kind === "option" ? [t.name] : []),
    );
    return { values: r.values as RawValues, positionals: r.positionals, given };
  } catch (err) {
    throw usageOf(err, verb, args);
  }
}

/**
 * Parse `args` against `verb`'s table layered over the environment and the `--config` file
 * (flag > `DOCKGATE_*` > file > default, see `config/layered.ts`); one {@linkcode UsageError}
 * for any mistake in any layer.
 */
export function parseLayeredArgs(
  verb: VerbSpec,
  args: string[],
  env: Record<string, string | undefined>,
  readText: (path: string) => string,
): { values: RawValues; sources: Record<string, SettingSource>; configFile?: string } {
  // The config file is found first: its settings are the lowest layer of the others.
  const i = args.findIndex((a) => a === "--config" || a.startsWith("--config="));
  const configFile = i === -1
    ? env[envName("config")]
    : args[i].startsWith("--config=")
    ? args[i].slice("--config=".length)
    : args[i + 1];
  let file: Record<string, unknown> | undefined;
  if (configFile !== undefined) {
    let text: string;
    try {
      text = readText(configFile);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      throw new UsageError(`Cannot read config "${configFile}": ${code}`);
    }
    file = asUsage(() => parseConfigText(text, configFile, verb.name));
  }
  try {
    const r = layeredParse(args, parseOptions(verb), false, {
      env,
      file,
      fileName: configFile,
      closest,
      cliOnly: notFromFile(verb),
    });
    return { values: r.values, sources: r.sources, configFile };
  } catch (err) {
    if (err instanceof TypeError && /^(Config|Invalid DOCKGATE_)/.test(err.message)) {
      throw new UsageError(err.message);
    }
    throw usageOf(err, verb, args);
  }
}

/** A `parseArgs` error as one line that says how to write it instead. */
function usageOf(err: unknown, verb: VerbSpec, args: string[]): Error {
  const msg = (err as Error).message.split("\n")[0].split(". ")[0].replace(/\.$/, "");
  const see = `see "dockgate ${verb.name} --help"`;
  const unknown = /^Unknown option '(--?[^']+)'/.exec(msg);
  if (unknown) {
    const names = verb.flags.map((f) => f.name);
    const near = closest(unknown[1].replace(/^--?/, "").split("=")[0], names);
    return new UsageError(
      near ? `${msg} (did you mean --${near}?)` : `${msg}: ${verb.name} has no such flag (${see})`,
    );
  }
  const ambiguous = /^Option '--([a-z-]+)' argument is ambiguous/.exec(msg);
  if (ambiguous) {
    // `--days -5`: the value starts with "-"; say what is wrong with it as a value of the flag.
    const name = ambiguous[1];
    const value = args[args.indexOf(`--${name}`) + 1] ?? "";
    const flag = verb.flags.find((f) => f.name === name);
    if (flag) checkValue(flag, value);
    return new UsageError(
      `--${name} "${value}": a value starting with "-" is written --${name}=${value}`,
    );
  }
  const missing = /^Option '--([a-z-]+) <value>' argument missing/.exec(msg);
  if (missing) {
    const flag = verb.flags.find((f) => f.name === missing[1]);
    return new UsageError(`--${missing[1]} needs a value: --${missing[1]} ${flag?.value ?? "X"}`);
  }
  const noArg = /^Option '--([a-z-]+)' does not take an argument/.exec(msg);
  if (noArg) {
    return new UsageError(`--${noArg[1]} is a switch and takes no value: write --${noArg[1]}`);
  }
  const positional = /^Unexpected argument '([^']*)'/.exec(msg);
  if (positional) {
    return new UsageError(
      `"dockgate ${verb.name}" takes no argument "${positional[1]}" (flags start with --; ${see})`,
    );
  }
  return new UsageError(`${msg} (${see})`);
}

/** Run `fn`; a `TypeError`/`RangeError` (bad input) becomes a {@linkcode UsageError}. */
export function asUsage<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof TypeError || err instanceof RangeError) throw new UsageError(err.message);
    throw err;
  }
}

/** Throw the flag's own error if `text` is not a valid value of it. */
function checkValue(flag: FlagSpec, text: string): void {
  if (flag.type === "count" || flag.type === "days") wholeNumber(flag, text);
  else if (flag.type === "duration") duration(flag, text);
  else if (flag.type === "size") asUsage(() => parseSize(text, `--${flag.name}`));
  else if (flag.type === "choice") choice(flag, text);
}

function wholeNumber(flag: FlagSpec, text: string): number {
  if (!/^\d+$/.test(text) || Number(text) < 1 || !Number.isSafeInteger(Number(text))) {
    const unit = flag.type === "days" ? " of days" : "";
    const why = /^-\d/.test(text) ? "negative" : /^0+$/.test(text) ? "zero" : "not a number";
    throw new UsageError(
      `Invalid --${flag.name} "${text}": ${why}; expected a whole number${unit} of at least 1 ` +
        `(e.g. --${flag.name} ${flag.default ?? 30})`,
    );
  }
  return Number(text);
}

function duration(flag: FlagSpec, text: string): number {
  try {
    return parseDuration(text);
  } catch {
    throw new UsageError(
      `Invalid --${flag.name} "${text}": expected a duration like 500ms, 10s, 5m or 2h (a bare number is seconds)`,
    );
  }
}

function choice(flag: FlagSpec, text: string): string {
  const choices = flag.choices ?? [];
  if (choices.includes(text)) return text;
  const near = closest(text, choices);
  throw new UsageError(
    `Invalid --${flag.name} "${text}": expected ${choices.slice(0, -1).join(", ")} or ${
      choices.at(-1)
    }${near ? ` (did you mean ${near}?)` : ""}`,
  );
}

/**
 * A byte size: `1048576`, `512KiB`, `1MiB` (also `K`/`KB`/`M`/`MB`, all binary).
 *
 * @example
 * ```ts
 * import { parseSize } from "./flag_values.ts";
 * if (parseSize("1MiB", "--max-body") !== 1048576 || parseSize("512k", "--max-body") !== 524288) throw new Error();
 * ```
 */
export function parseSize(text: string, flag: string): number {
  const m = /^([0-9]+)\s*(|b|k|kb|kib|m|mb|mib)$/i.exec(text.trim());
  const n = m ? Number(m[1]) * ({ k: 1024, m: 1024 * 1024 }[m[2][0]?.toLowerCase()] ?? 1) : NaN;
  if (!(n >= 1) || !Number.isSafeInteger(n)) {
    throw new RangeError(`Invalid ${flag} "${text}": expected a size like 1048576, 512KiB or 1MiB`);
  }
  return n;
}

/**
 * Typed reads of one verb's parsed values; each error names the flag and the fix.
 *
 * @example
 * ```ts
 * import { FlagValues } from "./flag_values.ts";
 * import { verbOf } from "./flags.ts";
 * const v = new FlagValues(verbOf("serve")!, { "drain-timeout": "2s" });
 * if (v.ms("drain-timeout") !== 2000) throw new Error();
 * ```
 */
export class FlagValues {
  readonly #verb: VerbSpec;
  /** The raw values. */
  readonly raw: RawValues;

  /** Read `raw`, the parsed values of `verb`. */
  constructor(verb: VerbSpec, raw: RawValues) {
    this.#verb = verb;
    this.raw = raw;
  }

  #flag(name: string): FlagSpec {
    const f = this.#verb.flags.find((f) => f.name === name);
    if (!f) throw new TypeError(`${this.#verb.name} has no flag --${name} in its table`);
    return f;
  }

  /** A string value, if given (or defaulted). */
  str(name: string): string | undefined {
    this.#flag(name);
    return this.raw[name] as string | undefined;
  }

  /** A repeatable value (empty when not given). */
  list(name: string): string[] {
    this.#flag(name);
    return (this.raw[name] as string[] | undefined) ?? [];
  }

  /** A switch. */
  bool(name: string): boolean {
    this.#flag(name);
    return this.raw[name] === true;
  }

  /** A duration in milliseconds, if given (or defaulted). */
  ms(name: string): number | undefined {
    const text = this.str(name);
    return text === undefined ? undefined : duration(this.#flag(name), text);
  }

  /** A whole number of at least 1 (`count`, `days`), if given (or defaulted). */
  int(name: string): number | undefined {
    const text = this.str(name);
    return text === undefined ? undefined : wholeNumber(this.#flag(name), text);
  }

  /** A byte size, if given (or defaulted). */
  size(name: string): number | undefined {
    const text = this.str(name);
    return text === undefined ? undefined : asUsage(() => parseSize(text, `--${name}`));
  }

  /** One of the flag's choices. */
  choice<T extends string>(name: string): T {
    return choice(this.#flag(name), this.str(name) ?? "") as T;
  }

  /** An address; a socket path written without `unix://` is told how to write it. */
  address(name: string, defaultPort?: number): Address | undefined {
    const text = this.str(name);
    return text === undefined ? undefined : flagAddress(name, text, defaultPort);
  }
}

/**
 * `--NAME TEXT` as an address, with one error line naming the flag.
 *
 * @example
 * ```ts
 * import { flagAddress } from "./flag_values.ts";
 * try { flagAddress("target", "/var/run/docker.sock"); throw new Error("accepted"); }
 * catch (err) { if (!/unix:\/\/\/var\/run\/docker\.sock/.test((err as Error).message)) throw err; }
 * ```
 */
export function flagAddress(name: string, text: string, defaultPort?: number): Address {
  if (text.startsWith("/") || text.startsWith("./") || text.startsWith("~")) {
    throw new UsageError(
      `Invalid --${name} "${text}": that is a path; a unix socket is written unix://${text}`,
    );
  }
  try {
    return parseAddress(text, { defaultPort });
  } catch (err) {
    const why = (err as Error).message.replace(/^Invalid address "[^"]*": /, "");
    throw new UsageError(`Invalid --${name} "${text}": ${why}`);
  }
}
