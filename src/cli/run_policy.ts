/**
 * `dockgate policy check FILE --identity CN METHOD PATH [--body FILE]`: what an API policy
 * decides for one request, for CI checks of a policy. Exit 0 allow, 1 deny.
 *
 * @module
 */

import { readFile } from "node:fs/promises";
import type { PolicyCheckCommand } from "./args.ts";
import type { CliIo } from "./io.ts";
import { loadApiPolicyFile } from "../config/policy_file.ts";
import { type ApiDecision, decideRequest, inspectionFor, roleFor } from "../docker/api_policy.ts";
import { parseApiTarget } from "../docker/api_path.ts";
import { HttpError } from "../docker/http.ts";
import { JsonError, parseStrictJson } from "../docker/strict_json.ts";
import { fsErrorText } from "../pki/fs_util.ts";

/** Decide, print `allow|deny <role>: <rule>` on stdout, and return the exit code. */
export async function runPolicyCheck(cmd: PolicyCheckCommand, io: CliIo): Promise<number> {
  const policy = await loadApiPolicyFile(cmd.file, { insecurePerms: true });
  const identity = {
    commonName: cmd.identity,
    organizationalUnits: cmd.ous,
    dnsNames: cmd.sans.filter((s) => !s.includes(":")),
    uris: cmd.sans.filter((s) => s.includes(":") && /^[a-z][a-z0-9+.-]*:/i.test(s)),
    ips: cmd.sans,
  };
  const role = roleFor(policy, identity);
  const decision = await decide();
  io.out(`${decision.allow ? "allow" : "deny"} ${role?.name ?? "-"}: ${decision.rule}`);
  return decision.allow ? 0 : 1;

  async function decide(): Promise<ApiDecision> {
    if (!role) {
      return { allow: false, rule: "no role for this identity (refused at the handshake)" };
    }
    let target;
    try {
      target = parseApiTarget(cmd.path);
    } catch (err) {
      if (err instanceof HttpError) return { allow: false, rule: `${err.status}: ${err.message}` };
      throw err;
    }
    let body;
    if (cmd.body !== undefined) {
      let bytes: Uint8Array;
      try {
        bytes = await readFile(cmd.body);
      } catch (err) {
        throw new Error(`Cannot read request body "${cmd.body}": ${fsErrorText(err)}`);
      }
      if (inspectionFor(role, cmd.method, target.path) && bytes.length > 0) {
        try {
          body = parseStrictJson(bytes);
        } catch (err) {
          if (err instanceof JsonError) return { allow: false, rule: `body: ${err.message}` };
          throw err;
        }
      }
    }
    return decideRequest(role, {
      method: cmd.method,
      target,
      body,
      hasBody: cmd.body !== undefined,
    });
  }
}
