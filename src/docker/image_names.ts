/**
 * Image names as a role allowance: re-pointing or removing an image name changes what every
 * other identity runs under that name (`docker tag evil bb:latest`). A restricted role may tag,
 * push and remove only names that match its `allowImageNames` (glob patterns, default none);
 * prune and load (whose tar carries names the gate does not read) need the pattern `*`.
 *
 * Names are compared in their familiar form with a tag or digest, as the docker CLI shows them:
 * `bb` is `bb:latest`, `docker.io/library/bb` is `bb:latest`, `docker.io/ci/app:1` is
 * `ci/app:1`; a registry host stays (`registry.example.com/x:2`).
 *
 * @module
 */

import type { ApiTarget } from "./api_path.ts";

/** Allowed pattern text: what image references are made of, plus `*`. */
const PATTERN = /^[a-z0-9._\/:@*-]+$/;

/**
 * Why `pattern` is not an image name pattern, or `undefined` when it is.
 *
 * @example
 * ```ts
 * import { imagePatternProblem } from "./image_names.ts";
 * if (imagePatternProblem("ci/*") !== undefined) throw new Error();
 * if (imagePatternProblem("CI/*") === undefined) throw new Error();
 * ```
 */
export function imagePatternProblem(pattern: string): string | undefined {
  return PATTERN.test(pattern)
    ? undefined
    : `must be an image name pattern like "ci/*" (lower-case letters, digits, . _ - / : @ and *)`;
}

/**
 * The familiar form of the image reference `ref` (with `tag` when the reference has none):
 * Docker Hub's `docker.io/` and `library/` dropped, `:latest` when neither tag nor digest.
 *
 * @example
 * ```ts
 * import { familiarName } from "./image_names.ts";
 * if (familiarName("docker.io/library/bb") !== "bb:latest") throw new Error();
 * if (familiarName("ci/app", "1") !== "ci/app:1") throw new Error();
 * if (familiarName("localhost:5000/x") !== "localhost:5000/x:latest") throw new Error();
 * ```
 */
export function familiarName(ref: string, tag?: string): string {
  let name = ref;
  const slash = name.indexOf("/");
  const first = slash === -1 ? "" : name.slice(0, slash);
  if (first === "docker.io" || first === "index.docker.io") name = name.slice(slash + 1);
  if (name.startsWith("library/") && name.split("/").length === 2) name = name.slice(8);
  if (name.includes("@")) return name;
  const last = name.slice(name.lastIndexOf("/") + 1);
  if (last.includes(":")) return name;
  return `${name}:${tag || "latest"}`;
}

/** Whether `name` (familiar form) matches one of `patterns` (`*`: any characters). */
function allowed(patterns: readonly string[] | undefined, name: string): boolean {
  return (patterns ?? []).some((p) => {
    const re = p.split("*").map((s) => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*");
    return new RegExp(`^${re}$`).test(name);
  });
}

/** A name the daemon may read as an image ID or ID prefix (`docker rmi 3f2`, `sha256:…`). */
function mayBeId(name: string): boolean {
  return /^(sha256:)?[0-9a-f]+$/.test(name);
}

/** The `{name}` of `/images/{name}/<verb>` or `/images/{name}`. */
function pathName(path: string, verb: string | undefined): string {
  const rest = path.slice("/images/".length);
  return verb ? rest.slice(0, -(verb.length + 1)) : rest;
}

function query(target: ApiTarget, name: string): string | undefined {
  return target.query.find(([k]) => k === name)?.[1];
}

/**
 * Why a request on route `method pattern` writes an image name the role's `allowImageNames`
 * does not allow; `undefined` when it writes none or only allowed ones.
 *
 * @example
 * ```ts
 * import { imageNameProblem } from "./image_names.ts";
 * import { parseApiTarget } from "./api_path.ts";
 * const t = parseApiTarget("/images/evil/tag?repo=bb&tag=latest");
 * if (!imageNameProblem(undefined, "POST", "/images/{name}/tag", t)?.includes("bb:latest")) throw new Error();
 * if (imageNameProblem(["ci/*"], "POST", "/images/{name}/tag", parseApiTarget("/images/x/tag?repo=ci/x"))) throw new Error();
 * ```
 */
export function imageNameProblem(
  patterns: readonly string[] | undefined,
  method: string,
  pattern: string,
  target: ApiTarget,
): string | undefined {
  const refuse = (what: string) =>
    `${what} (image names are the role's allowImageNames, ${
      patterns?.length ? JSON.stringify(patterns) : "none"
    })`;
  const check = (verb: string, name: string) =>
    allowed(patterns, name) ? undefined : refuse(`${verb} ${name}: name not allowed`);
  const route = `${method} ${pattern}`;
  switch (route) {
    case "POST /images/{name}/tag": {
      const repo = query(target, "repo");
      if (!repo) return refuse("tag without repo");
      return check("tag", familiarName(repo, query(target, "tag")));
    }
    case "POST /images/{name}/push":
      return check("push", familiarName(pathName(target.path, "push"), query(target, "tag")));
    case "DELETE /images/{name}": {
      const name = pathName(target.path, undefined);
      // An ID removes every name the image has, whatever they are.
      if (mayBeId(name) && !allowed(patterns, "*")) {
        return refuse(`remove ${name}: may be an image ID (all its names), needs the pattern "*"`);
      }
      return mayBeId(name) ? undefined : check("remove", familiarName(name));
    }
    case "POST /images/prune":
    case "POST /images/load":
      return allowed(patterns, "*")
        ? undefined
        : refuse(`${pattern.slice(8)} changes names the gate cannot see, needs the pattern "*"`);
  }
  return undefined;
}

/**
 * The names a build (`t`), commit (`repo`, `tag`) or pull/import (`images/create`) would
 * write that `patterns` do not allow: each may be written only when no image has it yet (the
 * gate asks the daemon, see `isolation_step.ts`). Familiar form.
 *
 * @example
 * ```ts
 * import { namesToBeNew } from "./image_names.ts";
 * import { parseApiTarget } from "./api_path.ts";
 * const t = parseApiTarget("/build?t=bb&t=ci/app:1");
 * if (namesToBeNew(["ci/*"], "POST", t).join() !== "bb:latest") throw new Error();
 * ```
 */
export function namesToBeNew(
  patterns: readonly string[] | undefined,
  method: string,
  target: ApiTarget,
): string[] {
  if (method !== "POST") return [];
  const all = (k: string) => target.query.filter(([q]) => q === k).map(([, v]) => v);
  const tag = query(target, "tag");
  let names: string[] = [];
  if (target.path === "/build") {
    names = all("t").filter((t) => t !== "").map((t) => familiarName(t));
  } else if (target.path === "/commit" || target.path === "/images/create") {
    const from = query(target, "fromImage");
    const repo = from ? from : query(target, "repo");
    // A digest names no tag (a pull by digest writes none).
    if (repo && !repo.includes("@") && !tag?.startsWith("sha256:")) {
      names = [familiarName(repo, tag)];
    }
  }
  return names.filter((n) => !allowed(patterns, n));
}
