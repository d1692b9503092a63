/**
 * The help text of every command (`dockgate help [TOPIC]`, `dockgate VERB --help`), made from
 * the flag tables of `flags.ts`: usage, one line per flag with its default (and environment
 * variable), serve's live-reload list, then the verb's notes and examples.
 *
 * @example
 * ```ts
 * import { HELP } from "./help.ts";
 * if (!HELP.serve.includes("--max-handshakes") || !HELP.connect.includes("--config")) throw new Error();
 * ```
 *
 * @module
 */

import { VERSION } from "../version.ts";
import {
  defaultText,
  flagsFor,
  type FlagSpec,
  liveSettings,
  VERBS,
  type VerbSpec,
} from "./flags.ts";

const WIDTH = 100;
const FLAG_COLUMN = 27;

/** `text` wrapped to `WIDTH` after `first`; later lines are indented by `indent` spaces. */
function wrap(text: string, first: string, indent: number): string[] {
  const lines: string[] = [];
  let line = first;
  for (const word of text.split(/\s+/).filter((w) => w !== "")) {
    const open = line === "" || line.endsWith(" ");
    if (!open && line.length + 1 + word.length > WIDTH) {
      lines.push(line);
      line = " ".repeat(indent) + word;
    } else line = open ? line + word : `${line} ${word}`;
  }
  lines.push(line);
  return lines;
}

/** `--name VALUE` (with `...` when repeatable). */
export function flagUsage(f: FlagSpec): string {
  return `--${f.name}${f.value ? ` ${f.value}` : ""}`;
}

function flagLine(f: FlagSpec): string[] {
  const dflt = defaultText(f);
  const extras = [
    f.choices && f.type === "choice" ? f.choices.join(", ") : undefined,
    f.multiple ? "repeatable" : undefined,
    dflt !== undefined ? `default ${dflt}` : undefined,
  ].filter((x) => x !== undefined);
  const head = `  ${flagUsage(f)}`;
  const text = `${f.help}${extras.length ? ` (${extras.join("; ")})` : ""}`;
  if (head.length < FLAG_COLUMN - 1) return wrap(text, head.padEnd(FLAG_COLUMN), FLAG_COLUMN);
  return [head, ...wrap(text, " ".repeat(FLAG_COLUMN), FLAG_COLUMN)];
}

function usageLines(verb: VerbSpec): string[] {
  if (!verb.actions) return [`dockgate ${verb.name}${verb.synopsis ? ` ${verb.synopsis}` : ""}`];
  return verb.actions.flatMap((a) => {
    const words = [`dockgate ${verb.name}`];
    if (a.name !== "init") words.push(a.name);
    if (a.args) words.push(a.args);
    const flags = flagsFor(verb, a.name).filter((f) => f.name !== "help")
      .map((f) => `[${flagUsage(f)}]${f.multiple ? "..." : ""}`);
    return [...wrap([...words, ...flags].join(" "), "", 4), ...wrap(a.about, "    ", 4)];
  });
}

function verbHelp(verb: VerbSpec): string {
  const flags = verb.flags.filter((f) => f.name !== "help");
  const lines = usageLines(verb);
  if (flags.length) {
    lines.push(
      ...(verb.layered
        ? wrap(
          "Options (each also from DOCKGATE_NAME, as DOCKGATE_LOG_LEVEL, or a --config file; " +
            "flag > variable > file > default):",
          "",
          2,
        )
        : ["Options:"]),
    );
    for (const f of flags) lines.push(...flagLine(f));
    if (flags.some((f) => f.type === "duration")) {
      lines.push("  D is a duration: 500ms, 10s, 5m, 2h (a bare number is seconds)");
    }
  }
  if (verb.name === "serve") lines.push(...wrap(reloadNote(), "", 0));
  if (verb.notes) lines.push(...verb.notes.split("\n"));
  for (const e of verb.examples) lines.push(`    Example: ${e}`);
  return lines.filter((l) => l !== "").join("\n");
}

/** What a running serve reloads, from the table's live column. */
function reloadNote(): string {
  const live = [...liveSettings()].map((n) => `--${n}`).join(", ");
  return `SIGHUP, or a change to any certificate, key, CA, CRL or policy file, reloads them; a ` +
    `changed --config file also applies ${live} at once (a warning names the settings that ` +
    `need a restart). Open connections are kept unless a reload revokes or disallows them.`;
}

function mainHelp(): string {
  const lines = [`dockgate ${VERSION}: mutual TLS in front of the Docker API`, "", "Usage:"];
  for (const v of VERBS) {
    const cmd = `  dockgate ${v.name}${v.synopsis ? ` ${v.synopsis}` : ""}`;
    lines.push(cmd);
    lines.push(...wrap(v.summary, "        ", 8));
  }
  lines.push(
    "",
    "Quickstart (Docker host):  dockgate serve      (creates ./pki on first run)",
    "Client:  docker --tlsverify -H tcp://HOST:2376 --tlscacert pki/clients/default/ca.pem \\",
    "           --tlscert pki/clients/default/cert.pem --tlskey pki/clients/default/key.pem version",
  );
  return lines.join("\n");
}

/** Help text by topic: `main` and every verb. */
export const HELP: Record<string, string> = Object.fromEntries([
  ["main", mainHelp()],
  ...VERBS.map((v) => [v.name, verbHelp(v)]),
]);
