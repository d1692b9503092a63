/**
 * `POST /auth` (`docker login`): dockerd logs in to the registry its body names, so the body's
 * `serveraddress` is a host dockerd connects to, like a pull's registry, and gets the same
 * rule (`route_params.ts` `publicHost`): a public DNS name unless the role allows private
 * addresses. Without it a restricted role made dockerd connect to services on the host's
 * 127.0.0.1 and read their status from the answer
 * (`login attempt to http://127.0.0.1:5999/v2/ failed with status: 404 Not Found`).
 *
 * The body is moby's `AuthConfig` (`api/types/registry`), read as Go reads it: keys fold onto
 * the fields case-insensitively, a second spelling of one field is refused, unknown fields too.
 * dockerd takes the host as Go's `url.Parse` does after prefixing `https://` when neither
 * `https://` nor `http://` starts the address (moby v20.10.24 and v26.1.5 `registry/service.go`
 * `Auth`); the gate accepts only addresses whose host it reads the same way: no user info, no
 * query or fragment.
 *
 * @module
 */

import { isJsonObject, type JsonValue } from "./strict_json.ts";
import { goStructReader } from "./no_escape.ts";
import { type ParamContext, publicHost } from "./route_params.ts";

const FIELDS = [
  "username",
  "password",
  "auth",
  "email",
  "serveraddress",
  "identitytoken",
  "registrytoken",
];

/** Go's reading of the body's keys (every field folds: none is read by name elsewhere). */
const readAuthConfig = goStructReader(FIELDS);

/** `[http(s)://]host[:port][/path]`, the forms the CLI and docker-py send. */
const ADDRESS = /^(?:https?:\/\/)?([A-Za-z0-9.-]+(?::[0-9]{1,5})?)(?:\/[A-Za-z0-9._~\/-]*)?$/;

/**
 * The violation in a `POST /auth` body, or `undefined`; the registry's host is added to
 * `ctx.hosts` for the relay to resolve.
 *
 * @example
 * ```ts
 * import { authBodyProblem } from "./auth_body.ts";
 * const hosts: string[] = [];
 * if (authBodyProblem({ username: "u", serveraddress: "https://index.docker.io/v1/" }, { hosts })) throw new Error();
 * if (hosts[0] !== "index.docker.io") throw new Error();
 * if (!authBodyProblem({ serveraddress: "127.0.0.1:5000" }, {})) throw new Error();
 * if (!authBodyProblem({ serveraddress: "x.example.com", ServerAddress: "localhost" }, {})) throw new Error();
 * ```
 */
export function authBodyProblem(body: JsonValue, ctx: ParamContext): string | undefined {
  if (!isJsonObject(body)) return "body is not a JSON object";
  const members = readAuthConfig(body, "");
  if (typeof members === "string") return members;
  let address: JsonValue = "";
  for (const { field, value, where } of members) {
    if (value !== null && typeof value !== "string") return `${where} is not a string`;
    if (field === "serveraddress") address = value ?? "";
  }
  if (address === "") return undefined; // Docker Hub's index
  const m = ADDRESS.exec(address as string);
  if (!m) return `serveraddress ${JSON.stringify(address)} is not [https://]host[:port][/path]`;
  const why = publicHost(m[1].toLowerCase(), ctx);
  return why ? `serveraddress ${why}` : undefined;
}
