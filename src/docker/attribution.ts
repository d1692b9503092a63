/**
 * What an exec, an attach or a container create asked for, for its audit record: the command,
 * user and flags of an exec create (the names of its environment, never the values), the
 * image and command of a container create, and the exec or container a session runs in.
 *
 * Fields are read as dockerd's Go decoder reads them: a key matches its field in any spelling
 * Go folds onto it (`no_escape.ts` `foldKey`), and of several such keys the last one wins;
 * `Cmd` and `Entrypoint` may be one string (Go's `StrSlice` makes it a list of one).
 *
 * @module
 */

import { isJsonObject, type JsonObject, type JsonValue, parseStrictJson } from "./strict_json.ts";
import { foldKey } from "./no_escape.ts";
import type { Inspection } from "./routes.ts";
import type { AuditDetail } from "../observe/audit.ts";

/** The value dockerd's decoder would take for `field` of `body` (last folded key wins). */
function field(body: JsonObject, name: string): JsonValue | undefined {
  const want = foldKey(name);
  let value: JsonValue | undefined;
  for (const [k, v] of Object.entries(body)) if (foldKey(k) === want) value = v;
  return value;
}

/** A `StrSlice` as dockerd reads it, or `undefined` when absent or not one. */
function strSlice(v: JsonValue | undefined): string[] | undefined {
  if (typeof v === "string") return [v];
  if (Array.isArray(v) && v.every((s) => typeof s === "string")) return v as string[];
  return undefined;
}

function str(v: JsonValue | undefined): string | undefined {
  return typeof v === "string" ? v : undefined;
}

/** The names of `Env` entries (`NAME=value` -> `NAME`): a value never reaches the record. */
function envNames(v: JsonValue | undefined): string[] | undefined {
  if (!Array.isArray(v)) return undefined;
  return v.filter((e): e is string => typeof e === "string").map((e) => e.split("=", 1)[0]);
}

/**
 * The record's detail of an inspected body (`exec` or `create`, parsed strictly); `undefined`
 * for other bodies or a body that is not an object.
 *
 * @example
 * ```ts
 * import { bodyAttribution } from "./attribution.ts";
 * const d = bodyAttribution("exec", { Cmd: ["sh"], Env: ["TOKEN=secret"], tty: true });
 * if (d?.cmd?.[0] !== "sh" || d.env_names?.[0] !== "TOKEN" || d.tty !== true) throw new Error();
 * if (JSON.stringify(d).includes("secret")) throw new Error("a value leaked");
 * ```
 */
export function bodyAttribution(
  inspection: Inspection | undefined,
  body: JsonValue | undefined,
): AuditDetail | undefined {
  if (!isJsonObject(body)) return undefined;
  if (inspection === "exec") {
    return {
      cmd: strSlice(field(body, "Cmd")),
      user: str(field(body, "User")),
      tty: field(body, "Tty") === true,
      privileged: field(body, "Privileged") === true,
      working_dir: str(field(body, "WorkingDir")),
      env_names: envNames(field(body, "Env")) ?? [],
    };
  }
  if (inspection === "create") {
    return {
      image: str(field(body, "Image")),
      cmd: strSlice(field(body, "Cmd")),
      entrypoint: strSlice(field(body, "Entrypoint")),
    };
  }
  return undefined;
}

/**
 * {@linkcode bodyAttribution} of a collected body's bytes; `undefined` when they are not
 * strict JSON (such a body is refused by the decision, which says why).
 *
 * @example
 * ```ts
 * import { bodyBytesAttribution } from "./attribution.ts";
 * const d = bodyBytesAttribution("create", new TextEncoder().encode('{"Image":"bb","Cmd":"top"}'));
 * if (d?.image !== "bb" || d.cmd?.[0] !== "top") throw new Error();
 * ```
 */
export function bodyBytesAttribution(
  inspection: Inspection | undefined,
  bytes: Uint8Array,
): AuditDetail | undefined {
  if (inspection !== "exec" && inspection !== "create") return undefined;
  try {
    return bodyAttribution(inspection, parseStrictJson(bytes));
  } catch {
    return undefined;
  }
}

/**
 * What an exec start's body says of `Tty` (dockerd frames the stream by it: raw with a
 * terminal, Docker's 8-byte frames without); `undefined` when the body is not a JSON object.
 *
 * @example
 * ```ts
 * import { startTty } from "./attribution.ts";
 * if (startTty(new TextEncoder().encode('{"Detach":false,"tty":true}')) !== true) throw new Error();
 * ```
 */
export function startTty(bytes: Uint8Array): boolean | undefined {
  try {
    const body = parseStrictJson(bytes);
    return isJsonObject(body) ? field(body, "Tty") === true : undefined;
  } catch {
    return undefined;
  }
}

const EXEC_CREATE = /^\/containers\/([^/]+)\/exec$/;
const EXEC_START = /^\/exec\/([^/]+)\/start$/;
const ATTACH = /^\/containers\/([^/]+)\/attach(?:\/ws)?$/;

/**
 * The exec or container a request acts in, by its canonical path: exec create and attach name
 * the container (as the client wrote it), exec start its exec ID.
 *
 * @example
 * ```ts
 * import { pathAttribution } from "./attribution.ts";
 * if (pathAttribution("POST", "/exec/ab12/start")?.exec_id !== "ab12") throw new Error();
 * if (pathAttribution("POST", "/containers/web/attach")?.container !== "web") throw new Error();
 * if (pathAttribution("GET", "/containers/json") !== undefined) throw new Error();
 * ```
 */
export function pathAttribution(method: string, path: string): AuditDetail | undefined {
  if (method === "POST") {
    const start = EXEC_START.exec(path);
    if (start) return { exec_id: start[1] };
    const exec = EXEC_CREATE.exec(path);
    if (exec) return { container: exec[1] };
  }
  const attach = (method === "POST" || method === "GET") && ATTACH.exec(path);
  if (attach && (method === "POST") === !path.endsWith("/ws")) return { container: attach[1] };
  return undefined;
}
