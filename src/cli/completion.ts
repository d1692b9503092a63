/**
 * `dockgate completion bash|zsh|fish`: completion scripts made from the flag tables
 * (`flags.ts`), so completion offers exactly the verbs, actions, flags and choices the parser
 * takes.
 *
 * @module
 */

import { type FlagSpec, SHELLS, VERBS, type VerbSpec } from "./flags.ts";

/** The verbs completion offers. */
export const VERB_NAMES: readonly string[] = VERBS.map((v) => v.name);

/** The `--flags` of a verb, sorted. */
export function flagsOf(verb: string): string[] {
  const v = VERBS.find((x) => x.name === verb);
  return (v?.flags ?? []).map((f) => `--${f.name}`).sort();
}

/** The words a verb's first positional argument completes to (none: files or nothing). */
function positionalWords(v: VerbSpec): string[] | undefined {
  if (v.positional === "actions") return (v.actions ?? []).map((a) => a.name);
  if (v.positional === "verbs") return [...VERB_NAMES];
  if (v.positional === "shells") return [...SHELLS];
  return undefined;
}

/** Flags that take a value (the next word is that value, not a flag or a verb). */
function valued(v: VerbSpec): FlagSpec[] {
  return v.flags.filter((f) => f.type !== "bool");
}

/**
 * The bash script: `source <(dockgate completion bash)`.
 *
 * @example
 * ```ts
 * import { bashCompletion } from "./completion.ts";
 * const s = bashCompletion();
 * if (!s.includes("complete -F _dockgate dockgate") || !s.includes("--listen")) throw new Error();
 * ```
 */
export function bashCompletion(): string {
  const cases = VERBS.map((v) => {
    const values = valued(v).map((f) => {
      const words = f.choices ? `compgen -W "${f.choices.join(" ")}" -- "$cur"` : compgenFor(f);
      return `      --${f.name}) COMPREPLY=( $(${words}) ); return ;;`;
    });
    const words = positionalWords(v);
    return [
      `    ${v.name})`,
      `      flags="${flagsOf(v.name).join(" ")}"`,
      words ? `      words="${words.join(" ")}"` : `      words=""`,
      ...(values.length ? [`      case "$prev" in`, ...values, `      esac`] : []),
      `      ;;`,
    ].join("\n");
  }).join("\n");
  return `# bash completion for dockgate: source <(dockgate completion bash)
_dockgate() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="\${COMP_WORDS[COMP_CWORD-1]}"
  local verb="\${COMP_WORDS[1]}" flags="" words=""
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=( $(compgen -W "${VERB_NAMES.join(" ")} --help --version" -- "$cur") )
    return
  fi
  case "$verb" in
${cases}
  esac
  if [[ "$cur" == -* ]]; then
    COMPREPLY=( $(compgen -W "$flags" -- "$cur") )
  elif [ -n "$words" ] && [ "$COMP_CWORD" -eq 2 ]; then
    COMPREPLY=( $(compgen -W "$words" -- "$cur") )
  else
    COMPREPLY=( $(compgen -f -- "$cur") )
  fi
}
complete -F _dockgate dockgate
`;
}

function compgenFor(f: FlagSpec): string {
  return f.type === "path" ? `compgen -f -- "$cur"` : `compgen -W "" -- "$cur"`;
}

/** Text safe inside a zsh `_arguments` spec's single-quoted `[description]`. */
function zshText(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/'/g, "'\\''").replace(/([[\]:])/g, "\\$1");
}

/**
 * The zsh script: `source <(dockgate completion zsh)` (after `compinit`).
 *
 * @example
 * ```ts
 * import { zshCompletion } from "./completion.ts";
 * if (!zshCompletion().includes("compdef _dockgate dockgate")) throw new Error();
 * ```
 */
export function zshCompletion(): string {
  const verbs = VERBS.map((v) => `'${v.name}:${zshText(v.summary)}'`).join(" ");
  const cases = VERBS.map((v) => {
    const specs = v.flags.map((f) => {
      const star = f.multiple ? "*" : "";
      const desc = zshText(f.help.split(/[;(]/)[0].trim());
      if (f.type === "bool") return `'${star}--${f.name}[${desc}]'`;
      const action = f.choices ? `(${f.choices.join(" ")})` : f.type === "path" ? "_files" : " ";
      return `'${star}--${f.name}=[${desc}]:${zshText(f.value ?? "value")}:${action}'`;
    });
    const words = positionalWords(v);
    const rest = words ? `'1:argument:(${words.join(" ")})' '*:file:_files'` : `'*:file:_files'`;
    return `    ${v.name}) _arguments -S ${[...specs, rest].join(" \\\n      ")} ;;`;
  }).join("\n");
  return `#compdef dockgate
# zsh completion for dockgate: source <(dockgate completion zsh)
_dockgate() {
  if (( CURRENT == 2 )); then
    local -a verbs
    verbs=(${verbs})
    _describe command verbs
    return
  fi
  local verb=$words[2]
  shift words
  (( CURRENT-- ))
  case $verb in
${cases}
  esac
}
compdef _dockgate dockgate
`;
}

/** Text safe inside a fish single-quoted string. */
function fishText(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/'/g, "\\'");
}

/**
 * The fish script: `dockgate completion fish > ~/.config/fish/completions/dockgate.fish`.
 *
 * @example
 * ```ts
 * import { fishCompletion } from "./completion.ts";
 * if (!fishCompletion().includes("complete -c dockgate")) throw new Error();
 * ```
 */
export function fishCompletion(): string {
  const lines = [
    "# fish completion for dockgate: dockgate completion fish > " +
    "~/.config/fish/completions/dockgate.fish",
    "complete -c dockgate -f",
  ];
  for (const v of VERBS) {
    lines.push(
      `complete -c dockgate -n __fish_use_subcommand -a ${v.name} -d '${fishText(v.summary)}'`,
    );
    const when = `-n '__fish_seen_subcommand_from ${v.name}'`;
    const words = positionalWords(v);
    if (words) lines.push(`complete -c dockgate ${when} -a '${words.join(" ")}'`);
    if (v.positional === "files") lines.push(`complete -c dockgate ${when} -F`);
    for (const f of v.flags) {
      const desc = fishText(f.help.split(/[;(]/)[0].trim());
      const value = f.type === "bool"
        ? ""
        : f.choices
        ? ` -x -a '${f.choices.join(" ")}'`
        : f.type === "path"
        ? " -r -F"
        : " -x";
      const short = f.short ? ` -s ${f.short}` : "";
      lines.push(`complete -c dockgate ${when} -l ${f.name}${short}${value} -d '${desc}'`);
    }
  }
  return lines.join("\n") + "\n";
}

/** The script for `shell`. */
export function completionScript(shell: (typeof SHELLS)[number]): string {
  return shell === "bash" ? bashCompletion() : shell === "zsh" ? zshCompletion() : fishCompletion();
}
