/**
 * Settings from four places, in this order of precedence: a command-line flag, an
 * environment variable (`DOCKGATE_` + the flag's name in capitals, `-` as `_`:
 * `DOCKGATE_LISTEN`, `DOCKGATE_ALLOW_CN=a,b`), a config file (`--config FILE`, JSON or YAML,
 * the flags' own names, flat or under a `serve:`/`connect:` section), then the default. Each
 * value remembers where it came from, for `--print-config`.
 *
 * @module
 */

import { parseArgs, type ParseArgsConfig } from "node:util";
import { parseDocument } from "yaml";

/** Where a setting's value came from. */
export type SettingSource = "flag" | "env" | "file" | "default";

type Options = NonNullable<ParseArgsConfig["options"]>;

/** The result of {@linkcode layeredParse}. */
export interface LayeredValues {
  /** Values by option name, as `node:util` `parseArgs` gives them. */
  values: Record<string, string | boolean | string[] | undefined>;
  /** Positional arguments (command line only). */
  positionals: string[];
  /** Where each option's value came from. */
  sources: Record<string, SettingSource>;
}

/** Settings that only make sense on the command line (unless the caller names its own). */
const CLI_ONLY: ReadonlySet<string> = new Set(["help", "config", "print-config"]);

/** The environment variable of option `name`. */
export function envName(name: string): string {
  return `DOCKGATE_${name.toUpperCase().replaceAll("-", "_")}`;
}

/**
 * Read a config file's text (JSON or YAML; duplicate keys refused) into settings by flag name:
 * the section `verb` if the file has one, else the top level.
 *
 * @example
 * ```ts
 * import { parseConfigText } from "./layered.ts";
 * const s = parseConfigText("serve:\n  listen: 127.0.0.1:2376\n  allow-cn: [a, b]\n", "c.yaml", "serve");
 * if (s.listen !== "127.0.0.1:2376" || (s["allow-cn"] as string[])[1] !== "b") throw new Error();
 * ```
 */
export function parseConfigText(
  text: string,
  source: string,
  verb: string,
): Record<string, unknown> {
  const doc = parseDocument(text, { uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    const line = e.linePos?.[0]?.line;
    throw new TypeError(
      `Config "${source}": ${line ? `line ${line}: ` : ""}${e.message.split("\n")[0]}`,
    );
  }
  const value = doc.toJS() ?? {};
  if (typeof value !== "object" || Array.isArray(value)) {
    throw new TypeError(`Config "${source}": must be a mapping of settings (flag names)`);
  }
  const section = (value as Record<string, unknown>)[verb];
  if (section !== undefined) {
    if (typeof section !== "object" || section === null || Array.isArray(section)) {
      throw new TypeError(`Config "${source}": ${verb}: must be a mapping of settings`);
    }
    return section as Record<string, unknown>;
  }
  const others = ["serve", "connect"].filter((v) => v !== verb && v in value);
  if (others.length) {
    // A file with sections for other verbs only has nothing for this one.
    return {};
  }
  return value as Record<string, unknown>;
}

/**
 * Parse `args` with `options` (strictly, as `node:util` does), then fill every option the
 * command line did not set from `env`, then from `file`, then the default.
 * Throws `TypeError` naming the variable or file key at fault; `closest` suggests a name for
 * an unknown file key.
 */
export function layeredParse(
  args: string[],
  options: Options,
  allowPositionals: boolean,
  layers: {
    env?: Record<string, string | undefined>;
    file?: Record<string, unknown>;
    fileName?: string;
    closest?: (name: string, candidates: string[]) => string | undefined;
    /** Options never read from `env` or `file` (default: help, config, print-config). */
    cliOnly?: ReadonlySet<string>;
  } = {},
): LayeredValues {
  const cliOnly = layers.cliOnly ?? CLI_ONLY;
  const parsed = parseArgs({ args, options, allowPositionals, strict: true, tokens: true });
  const given = new Set(
    (parsed.tokens ?? []).filter((t) => t.kind === "option").map((t) =>
      (t as { name: string }).name
    ),
  );
  const values = { ...parsed.values } as LayeredValues["values"];
  const sources: Record<string, SettingSource> = {};
  const file = layers.file ?? {};
  for (const key of Object.keys(file)) {
    if (!(key in options) || cliOnly.has(key)) {
      const near = layers.closest?.(key, Object.keys(options).filter((k) => !cliOnly.has(k)));
      throw new TypeError(
        `Config "${layers.fileName}": unknown setting "${key}"${
          near ? ` (did you mean "${near}"?)` : ""
        }`,
      );
    }
  }
  for (const [name, opt] of Object.entries(options)) {
    if (given.has(name)) {
      sources[name] = "flag";
      continue;
    }
    if (cliOnly.has(name)) continue;
    const fromEnv = layers.env?.[envName(name)];
    if (fromEnv !== undefined) {
      values[name] = fromText(fromEnv, opt, envName(name));
      sources[name] = "env";
    } else if (name in file) {
      values[name] = fromFile(file[name], opt, `Config "${layers.fileName}": ${name}`);
      sources[name] = "file";
    } else sources[name] = "default";
  }
  return { values, positionals: parsed.positionals, sources };
}

function fromText(text: string, opt: Options[string], where: string): string | boolean | string[] {
  if (opt.type === "boolean") {
    if (/^(1|true|yes|on)$/i.test(text)) return true;
    if (/^(0|false|no|off|)$/i.test(text)) return false;
    throw new TypeError(`Invalid ${where}="${text}": expected true or false`);
  }
  if (opt.multiple) return text.split(",").map((s) => s.trim()).filter((s) => s !== "");
  return text;
}

function fromFile(
  value: unknown,
  opt: Options[string],
  where: string,
): string | boolean | string[] {
  if (opt.type === "boolean") {
    if (typeof value !== "boolean") throw new TypeError(`${where}: must be true or false`);
    return value;
  }
  const one = (v: unknown): string => {
    if (typeof v === "string") return v;
    if (typeof v === "number" && Number.isFinite(v)) return String(v);
    throw new TypeError(`${where}: must be a string`);
  };
  if (opt.multiple) return Array.isArray(value) ? value.map(one) : [one(value)];
  return one(value);
}
