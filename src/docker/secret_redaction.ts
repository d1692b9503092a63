/**
 * Reads that keep secrets: a read-only role sees the names of environment variables in
 * inspect and list answers, not their values (`PASSWORD=<redacted by dockgate>`), and a secret's
 * or config's `Spec.Data` as the marker (base64, so the CLI still decodes it), unless the role
 * says `allowSecrets`. Monitoring gets the daemon's state without every container's passwords.
 *
 * The answer is read whole (the answer reader's cap) and strictly; only the values' bytes are
 * replaced (`strict_json.ts` `JsonDocument`), every other byte stays as the daemon sent it. An
 * answer that is not strict JSON is not passed on ({@linkcode RedactionError}: the reader
 * answers 502 in its place).
 *
 * What is redacted, on the routes of {@linkcode SECRET_ROUTES} only: every `Env` array in the
 * answer, at any depth (container `Config.Env`, image `Config.Env` and `ContainerConfig.Env`,
 * a service's or task's `ContainerSpec.Env` and `PluginSpec.Env`, a plugin's `Settings.Env` and
 * the `Value` of its `Config.Env` entries), `Data` in any `Spec` object (secrets, configs), and
 * an image history's `CreatedBy` (below).
 * Command lines (`Cmd`, `Args`, `Entrypoint`, exec `ProcessConfig`) are not: they are shown by
 * `docker ps` and `top` too, and are no place for a secret. An image's history is: each step's
 * `CreatedBy` is the Dockerfile line that made it, and `ENV PASSWORD=…` (or a `RUN` with the
 * build args before it, `|1 TOKEN=… /bin/sh -c …`) holds the value `Config.Env` redacts; the
 * whole line is replaced, rather than a guess at which of its words are values; so is an image
 * inspect's `ContainerConfig.Cmd` (the build container's command, that same line for the last
 * step, on API versions before 1.45). So are the
 * values of drivers' option maps, where credentials are written: a log driver's
 * (`HostConfig.LogConfig.Config`, `--log-opt splunk-token=…`; a service's `LogDriver.Options`),
 * a volume's (`Options`, `--opt o=password=…` of a CIFS volume, in volume inspect and lists and
 * `system df`; a mount's `DriverConfig.Options`), an endpoint's `DriverOpts`, and in the swarm's
 * spec (`GET /swarm`, and `docker info`'s `Swarm.Cluster.Spec`) an external CA's `Options` and the
 * task defaults' `LogDriver.Options`; their keys stay.
 *
 * The swarm's join tokens (`GET /swarm` `JoinTokens`, and a `SigningCAKey` should one be
 * there) are redacted for every restricted role, `no-escape` too, whatever `allowSecrets`
 * says: a manager token lets the client's own machine join as a manager, and a manager runs
 * services with any mount on this host (the unlock key's route is refused as an escape).
 *
 * @module
 */

import { Buffer } from "node:buffer";
import type { Role } from "./api_policy.ts";
import { matchRoutes } from "./routes.ts";
import { isJsonObject, JsonDocument, type JsonValue } from "./strict_json.ts";

/** What stands in place of a secret value. */
export const REDACTED = "<redacted by dockgate>";

/** The routes whose answers carry environment values or secret data (`routes.ts` patterns). */
export const SECRET_ROUTES: readonly string[] = [
  "GET /containers/{name}/json",
  "GET /images/{name}/json",
  "GET /images/{name}/history",
  "GET /services",
  "GET /services/{id}",
  "GET /tasks",
  "GET /tasks/{id}",
  "GET /secrets",
  "GET /secrets/{id}",
  "GET /configs",
  "GET /configs/{id}",
  "GET /plugins",
  "GET /plugins/{name}/json",
  "GET /volumes",
  "GET /volumes/{name}",
  "GET /system/df",
  // The swarm's spec: an external CA's `Options` (a signer's credentials) and the task defaults'
  // `LogDriver.Options`, under `Swarm.Cluster.Spec`.
  "GET /info",
];

/** An answer that could not be read to redact it (it is not passed on). */
export class RedactionError extends Error {}

/**
 * Whether the answer to `method path` (the canonical path, `api_path.ts`) is redacted for
 * `role`: a read-only role without `allowSecrets`, on {@linkcode SECRET_ROUTES}.
 *
 * @example
 * ```ts
 * import { compileApiPolicy } from "./api_policy.ts";
 * import { redactsSecrets } from "./secret_redaction.ts";
 * const p = compileApiPolicy({ roles: { m: { preset: "read-only" } }, identities: [] }, "x");
 * if (!redactsSecrets(p.roles.get("m")!, "GET", "/containers/db/json")) throw new Error();
 * if (redactsSecrets(p.roles.get("m")!, "GET", "/containers/json")) throw new Error();
 * ```
 */
export function redactsSecrets(role: Role, method: string, path: string): boolean {
  if (role.preset === "full") return false;
  const routes = matchRoutes(method, path).map((r) => `${r.method} ${r.pattern}`);
  // A manager join token makes a machine of the client's a swarm manager, which runs what it
  // likes on this host: as the unlock key, it is for full roles only (allowSecrets or not).
  if (routes.includes(SWARM_ROUTE)) return true;
  if (role.preset !== "read-only" || role.spec.allowSecrets === true) return false;
  return routes.some((r) => SECRET_ROUTES.includes(r));
}

/** The swarm's inspect, whose join tokens every restricted role gets redacted. */
const SWARM_ROUTE = "GET /swarm";

/**
 * `body` (an answer of {@linkcode SECRET_ROUTES}) with every secret value replaced by the
 * marker; throws {@linkcode RedactionError} when it is not strict JSON.
 *
 * @example
 * ```ts
 * import { redactSecrets } from "./secret_redaction.ts";
 * const body = new TextEncoder().encode('{"Config":{"Env":["PASSWORD=hunter2","HOME"]}}');
 * const out = new TextDecoder().decode(redactSecrets(body));
 * if (out !== '{"Config":{"Env":["PASSWORD=<redacted by dockgate>","HOME"]}}') throw new Error(out);
 * const step = new TextEncoder().encode('{"ContainerConfig":{"Cmd":["#(nop) ","ENV PW=x"]}}');
 * const stepOut = new TextDecoder().decode(redactSecrets(step));
 * if (stepOut.includes("PW=x") || !stepOut.includes("<redacted")) throw new Error(stepOut);
 * const both = new TextEncoder().encode('{"ContainerConfig":{"Env":["PW=y"],"Cmd":["sh"]}}');
 * if (new TextDecoder().decode(redactSecrets(both)).includes("PW=y")) throw new Error();
 * ```
 */
export function redactSecrets(body: Uint8Array): Uint8Array {
  let doc: JsonDocument;
  try {
    doc = new JsonDocument(body);
  } catch (err) {
    throw new RedactionError(
      `the daemon's answer is not JSON to redact: ${(err as Error).message}`,
    );
  }
  walk(doc, doc.value);
  return doc.edited ? Buffer.from(doc.result()) : body;
}

/** Redact in `node` and everything under it (an object's member `skip` left as it is). */
function walk(doc: JsonDocument, node: JsonValue, skip?: string): void {
  if (Array.isArray(node)) {
    for (const item of node) walk(doc, item);
    return;
  }
  if (!isJsonObject(node)) return;
  for (const [key, value] of Object.entries(node)) {
    if (key === skip) continue;
    if (key === "Env" && Array.isArray(value)) redactEnv(doc, value);
    else if (key === "JoinTokens" && isJsonObject(value)) {
      for (const [k, v] of Object.entries(value)) {
        if (typeof v === "string") doc.replaceValue(value, k, JSON.stringify(REDACTED));
      }
    } else if ((key === "Options" || key === "DriverOpts") && isJsonObject(value)) {
      redactValues(doc, value);
    } else if (key === "LogConfig" && isJsonObject(value) && isJsonObject(value.Config)) {
      redactValues(doc, value.Config);
      walk(doc, omit(value, "Config"));
    } else if (key === "ContainerConfig" && isJsonObject(value) && Array.isArray(value.Cmd)) {
      // The build container's command: the Dockerfile step that made the image's last layer
      // (`#(nop) ENV PASSWORD=…`, `|1 TOKEN=… /bin/sh -c …`), as a history's CreatedBy.
      doc.replaceValue(value, "Cmd", JSON.stringify([REDACTED]));
      walk(doc, value, "Cmd");
    } else if (key === "CreatedBy" && typeof value === "string" && value !== "") {
      doc.replaceValue(node, key, JSON.stringify(REDACTED));
    } else if (key === "SigningCAKey" && typeof value === "string" && value !== "") {
      doc.replaceValue(node, key, REDACTED_BYTES);
    } else if (key === "Spec" && isJsonObject(value) && typeof value.Data === "string") {
      doc.replaceValue(value, "Data", REDACTED_BYTES);
      walk(doc, omit(value, "Data"));
    } else walk(doc, value);
  }
}

/** The marker as a Go `[]byte` field's JSON (base64), so clients still decode the field. */
const REDACTED_BYTES = JSON.stringify(Buffer.from(REDACTED).toString("base64"));

/** `NAME=value` -> `NAME=<marker>`; a plugin's `{Name, Value}` gets the marker as its value. */
function redactEnv(doc: JsonDocument, env: JsonValue[]): void {
  env.forEach((item, i) => {
    if (typeof item === "string") {
      const eq = item.indexOf("=");
      // A bare NAME (no value: taken from the client's environment) has nothing to hide.
      if (eq !== -1) doc.replaceItem(env, i, JSON.stringify(`${item.slice(0, eq)}=${REDACTED}`));
    } else if (isJsonObject(item)) {
      if (item.Value !== undefined && item.Value !== null) {
        doc.replaceValue(item, "Value", JSON.stringify(REDACTED));
      }
    } else if (item !== null) {
      // Not a shape the daemon sends: the marker in its place, rather than a guess.
      doc.replaceItem(env, i, JSON.stringify(REDACTED));
    }
  });
}

/** Every string value of a driver's option map (`KEY: value`) -> the marker; the keys stay. */
function redactValues(doc: JsonDocument, options: { [key: string]: JsonValue }): void {
  for (const [k, v] of Object.entries(options)) {
    if (typeof v === "string") doc.replaceValue(options, k, JSON.stringify(REDACTED));
  }
}

/** The object's other members, walked as they are (the spans stay the document's). */
function omit(object: { [key: string]: JsonValue }, key: string): JsonValue[] {
  return Object.entries(object).filter(([k]) => k !== key).map(([, v]) => v);
}
