/**
 * What a restricted role's `POST /commit` and import (`POST /images/create?fromSrc=`) may write
 * into an image's config: the `changes` parameters (Dockerfile lines) and the commit's body (a
 * container config). The `dockgate.` labels are the gate's to set, so a label can only be
 * written in a form whose key the gate reads exactly as dockerd will.
 *
 * dockerd joins the `changes` with newlines and runs them through the Dockerfile parser and
 * the builder's word processing (moby `builder/dockerfile`, `BuildFromConfig`): a line ending
 * in `\` continues onto the next change, `\` escapes inside words (`LABEL dock\gate.owner=x`
 * is the key `dockgate.owner`), quotes are removed and `${X:-dockgate}` is expanded. So a
 * change is read as an allow-list, not searched for a spelling: its instruction is one of those
 * commit accepts (`validCommitCommands`), and a `LABEL` (also behind `ONBUILD`) has plain
 * `key=value` pairs only, keys of letters, digits, `.`, `_`, `/`, `-` outside `dockgate.`,
 * values plain or in double quotes without `\`, `$` or quotes inside.
 *
 * @module
 */

import { isJsonObject, type JsonValue } from "./strict_json.ts";

/** The instructions dockerd's commit and import accept (moby v20.10.24 and v26.1.5). */
const COMMIT_INSTRUCTIONS = new Set([
  "cmd",
  "entrypoint",
  "healthcheck",
  "env",
  "expose",
  "label",
  "onbuild",
  "user",
  "volume",
  "workdir",
]);

const WS = /[ \t]+/;
/** One `key=value` of a LABEL and the blanks after it (plain value, or quoted without escapes). */
const PAIR = /([A-Za-z0-9][A-Za-z0-9._\/-]*)=([A-Za-z0-9._\/:@+,=-]*|"[^"\\$]*")(?:[ \t]+|$)/;

/**
 * The violation in one `changes` value, or `undefined`.
 *
 * @example
 * ```ts
 * import { changeProblem } from "./image_changes.ts";
 * for (const ok of ["LABEL app=web", 'LABEL a="b c"', 'CMD ["sh"]', "ENV A=1", "ONBUILD RUN make"]) {
 *   if (changeProblem(ok)) throw new Error(ok);
 * }
 * for (const bad of ["LABEL dock\\gate.owner=x", "LABEL dock\\", "LABEL ${X}.owner=x", "LABEL dockgate.owner=x", "RUN id"]) {
 *   if (!changeProblem(bad)) throw new Error(bad);
 * }
 * ```
 */
export function changeProblem(value: string): string | undefined {
  // dockerd parses a change (and a trigger, at the next build) as Dockerfile text, where a
  // line break starts another line: blank and comment lines before an instruction are skipped.
  // deno-lint-ignore no-control-regex
  if (/[\x00-\x1f\x7f]/.test(value)) return "is not one line of printable text";
  // The parser joins a line ending in the escape character with the next change.
  if (value.endsWith("\\")) return "ends in '\\' (it would continue onto the next change)";
  const words = value.replace(/^[ \t]+/, "").split(WS);
  const instruction = words[0].toLowerCase();
  if (instruction === "") return undefined;
  // A first line `# escape=…` is a parser directive: it changes the escape character.
  if (instruction.startsWith("#")) return "is a comment or parser directive";
  if (!COMMIT_INSTRUCTIONS.has(instruction)) {
    return `${words[0]}: not an instruction commit and import accept`;
  }
  const rest = value.replace(/^[ \t]*[^ \t]+[ \t]*/, "");
  if (instruction === "label") return labelProblem(rest);
  if (instruction === "onbuild" && words[1]?.toLowerCase() === "label") {
    return labelProblem(rest.replace(/^[^ \t]+[ \t]*/, ""));
  }
  return undefined;
}

/** `LABEL`'s arguments as an allow-list: `key=value` pairs the gate reads as the builder does. */
function labelProblem(args: string): string | undefined {
  const rule = "(a LABEL here takes plain key=value pairs, which the gate reads as dockerd does)";
  const pair = new RegExp(PAIR.source, "y");
  let at = 0;
  let pairs = 0;
  while (at < args.length) {
    pair.lastIndex = at;
    const m = pair.exec(args);
    if (!m) return `LABEL ${JSON.stringify(args.slice(at))} is not a plain key=value ${rule}`;
    if (m[1].toLowerCase().startsWith("dockgate.")) {
      return `LABEL ${m[1]}: the dockgate. labels are the gate's to set`;
    }
    pairs++;
    at = pair.lastIndex;
  }
  return pairs === 0 ? `LABEL without key=value pairs ${rule}` : undefined;
}

/** moby's `container.Config`, the commit body: fields spelled as Go's encoder writes them. */
const CONFIG_FIELDS = new Set([
  "Hostname",
  "Domainname",
  "User",
  "AttachStdin",
  "AttachStdout",
  "AttachStderr",
  "ExposedPorts",
  "Tty",
  "OpenStdin",
  "StdinOnce",
  "Env",
  "Cmd",
  "Healthcheck",
  "ArgsEscaped",
  "Image",
  "Volumes",
  "WorkingDir",
  "Entrypoint",
  "NetworkDisabled",
  "MacAddress",
  "OnBuild",
  "Labels",
  "StopSignal",
  "StopTimeout",
  "Shell",
]);

/**
 * The violation in a `POST /commit` body (a container config merged into the image's), or
 * `undefined`. Keys must be spelled exactly (Go would fold `labels` onto `Labels`), `Labels`
 * outside `dockgate.`, and `OnBuild` triggers under {@linkcode changeProblem}'s rule.
 *
 * @example
 * ```ts
 * import { commitBodyProblem } from "./image_changes.ts";
 * if (commitBodyProblem(null) || commitBodyProblem({ Labels: { app: "web" } })) throw new Error();
 * if (!commitBodyProblem({ Labels: { "dockgate.owner": "x" } })) throw new Error();
 * if (!commitBodyProblem({ labels: { app: "web" } })) throw new Error();
 * ```
 */
export function commitBodyProblem(body: JsonValue | undefined): string | undefined {
  if (body === undefined || body === null) return undefined;
  if (!isJsonObject(body)) return "the commit body is not a JSON object";
  for (const [key, value] of Object.entries(body)) {
    if (value === null) continue; // Go's decoder never acts on null
    if (!CONFIG_FIELDS.has(key)) {
      return `${key}: not a container config field spelled as Go writes it`;
    }
  }
  const labels = body["Labels"];
  if (labels !== undefined && labels !== null) {
    if (!isJsonObject(labels)) return "Labels is not an object";
    const own = Object.keys(labels).find((k) => k.toLowerCase().startsWith("dockgate."));
    if (own !== undefined) return `Labels.${own}: the dockgate. labels are the gate's to set`;
  }
  const onBuild = body["OnBuild"];
  if (onBuild !== undefined && onBuild !== null) {
    if (!Array.isArray(onBuild)) return "OnBuild is not a list";
    for (const trigger of onBuild) {
      if (typeof trigger !== "string") return "OnBuild holds a non-string";
      const why = changeProblem(`ONBUILD ${trigger}`);
      if (why) return `OnBuild: ${why}`;
    }
  }
  return undefined;
}
