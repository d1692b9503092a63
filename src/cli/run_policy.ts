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
import {
  type ApiDecision,
  decideBody,
  decideRequest,
  roleFor,
  routeRequest,
} from "../docker/api_policy.ts";
import { HttpError } from "../docker/http.ts";
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
    let routed;
    try {
      routed = routeRequest(role, cmd.method, cmd.path);
    } catch (err) {
      if (err instanceof HttpError) return { allow: false, rule: `${err.status}: ${err.message}` };
      throw err;
    }
    const bytes = cmd.body === undefined ? undefined : await readBody(cmd.body);
    if (bytes === undefined || !routed.inspection) {
      return routed.decision ??
        decideRequest(role, { method: cmd.method, target: routed.target });
    }
    return decideBody(role, cmd.method, routed.target, bytes);
  }
}

async function readBody(path: string): Promise<Uint8Array> {
  try {
    return await readFile(path);
  } catch (err) {
    throw new Error(`Cannot read request body "${path}": ${fsErrorText(err)}`);
  }
}
