/**
 * `dockgate policy learn AUDIT_LOG [--identity CN]... [--against FILE]`: the smallest policy
 * that allows every request the identities made (`docker/policy_learn.ts`), printed as JSON
 * for `--policy`; with `--against`, how it differs from that policy file. Exit 0, or 1 when the
 * log holds no request of the identities.
 *
 * @module
 */

import { readFile } from "node:fs/promises";
import type { PolicyLearnCommand } from "./args.ts";
import type { CliIo } from "./io.ts";
import { loadApiPolicyFile } from "../config/policy_file.ts";
import {
  learnedWarnings,
  learnPolicy,
  policyDifference,
  readAuditRequests,
} from "../docker/policy_learn.ts";
import { fsErrorText } from "../util/fs_util.ts";

/** Learn, print the policy (or the difference), and return the exit code. */
export async function runPolicyLearn(cmd: PolicyLearnCommand, io: CliIo): Promise<number> {
  let text: string;
  try {
    text = await readFile(cmd.log, "utf8");
  } catch (err) {
    throw new Error(`Cannot read audit log "${cmd.log}": ${fsErrorText(err)}`);
  }
  const { byIdentity, skipped, refused, unlearnable } = readAuditRequests(text, cmd.identities);
  if (skipped > 0) io.say(`dockgate: ${skipped} line(s) of ${cmd.log} are no request record`);
  if (refused > 0) {
    io.say(`dockgate: ${refused} refused request(s) of ${cmd.log} not learned (never forwarded)`);
  }
  for (const request of unlearnable) {
    io.say(
      `dockgate: not learned: ${request} (no route knows it and an allow entry, a pattern, ` +
        "cannot name it exactly)",
    );
  }
  const missing = cmd.identities.filter((i) => !byIdentity.has(i));
  if (missing.length > 0) io.say(`dockgate: no request of ${missing.join(", ")} in ${cmd.log}`);
  if (byIdentity.size === 0) return 1;
  if (cmd.against !== undefined) {
    const current = await loadApiPolicyFile(cmd.against, { insecurePerms: true });
    for (const line of policyDifference(current, byIdentity)) io.out(line);
    return 0;
  }
  const learned = learnPolicy(byIdentity);
  io.out(JSON.stringify(learned, null, 2));
  for (const line of learnedWarnings(learned)) io.say(`dockgate: ${line}`);
  io.say(
    "dockgate: request bodies are not in the audit log: no body allowance (allowBindMounts, " +
      "allowCapabilities, …) is learned",
  );
  return 0;
}
