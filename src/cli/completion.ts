/**
 * `dockgate completion bash`: a bash completion script. The verbs and each verb's flags are
 * read from the help texts (`help.ts`), so completion offers exactly what help documents.
 *
 * @module
 */

import { HELP } from "./help.ts";

/** The verbs completion offers. */
export const VERBS = [
  "keygen",
  "serve",
  "connect",
  "policy",
  "env",
  "inspect",
  "completion",
  "help",
  "version",
];

/** The `--flags` a verb's help text names, sorted. */
export function flagsOf(verb: string): string[] {
  return [...new Set((HELP[verb] ?? "").match(/--[a-z][a-z-]*/g) ?? [])].sort();
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
  const cases = VERBS.filter((v) => HELP[v]).map((v) =>
    `    ${v}) flags="${flagsOf(v).join(" ")}" ;;`
  ).join("\n");
  return `# bash completion for dockgate: source <(dockgate completion bash)
_dockgate() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" verb="\${COMP_WORDS[1]}" flags=""
  if [ "\$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=( \$(compgen -W "${VERBS.join(" ")} --help --version" -- "\$cur") )
    return
  fi
  case "\$verb" in
${cases}
    help) COMPREPLY=( \$(compgen -W "${
    VERBS.filter((v) => HELP[v]).join(" ")
  }" -- "\$cur") ); return ;;
    completion) COMPREPLY=( \$(compgen -W "bash" -- "\$cur") ); return ;;
  esac
  if [[ "\$cur" == -* ]]; then
    COMPREPLY=( \$(compgen -W "\$flags --help" -- "\$cur") )
  else
    COMPREPLY=( \$(compgen -f -- "\$cur") )
  fi
}
complete -F _dockgate dockgate
`;
}
