/**
 * The API policy file (`serve --policy FILE`, `dockgate policy check FILE`): JSON or YAML,
 * validated at load with an error naming the exact rule and field.
 *
 * Why one parser for both: YAML 1.2 reads JSON as it is, and its reader refuses duplicate
 * keys, which `JSON.parse` would silently resolve (a policy read two ways is no policy).
 *
 * @module
 */

import { parseDocument } from "yaml";
import { type ApiPolicy, compileApiPolicy } from "../docker/api_policy.ts";
import { readText } from "../util/fs_util.ts";
import { checkTrustedPath } from "../pki/trust_files.ts";

/** Options for {@linkcode loadApiPolicyFile}. */
export interface PolicyFileOptions {
  /** Accept a policy file others could write (as `--insecure-key-perms`). Default: false. */
  insecurePerms?: boolean;
}

/**
 * Parse policy text (JSON or YAML) read from `source` and compile it. Throws a `TypeError`
 * with one line: `Policy "p.yaml": line 3: …` or `Policy "p.yaml": roles.ci.preset: …`.
 *
 * @example
 * ```ts
 * import { parseApiPolicyText } from "./policy_file.ts";
 * const p = parseApiPolicyText('roles: {m: {preset: read-only}}\nidentities: [{cn: grafana, role: m}]\n', "inline");
 * if (p.identities[0].role !== "m") throw new Error();
 * ```
 */
export function parseApiPolicyText(text: string, source: string): ApiPolicy {
  const doc = parseDocument(text, { uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    const line = e.linePos?.[0]?.line;
    const what = e.message.split("\n")[0].replace(/ at line \d+, column \d+:?$/, "");
    throw new TypeError(`Policy "${source}": ${line ? `line ${line}` : "parse"}: ${what}`);
  }
  return compileApiPolicy(doc.toJS(), source);
}

/**
 * Read and compile the policy file at `path`. The file and the directories above it must be
 * trusted like the CA bundle (whoever can write it can grant themselves `full`).
 *
 * @example
 * ```ts ignore
 * const policy = await loadApiPolicyFile("/etc/dockgate/policy.yaml");
 * ```
 */
export async function loadApiPolicyFile(
  path: string,
  options: PolicyFileOptions = {},
): Promise<ApiPolicy> {
  if (!options.insecurePerms) await checkTrustedPath(path, "policy file");
  const text = await readText(path, "policy file");
  return parseApiPolicyText(text, path);
}
