/**
 * The `--config` file of serve and connect is trusted like the CA bundle, the CRL and the
 * policy file: whoever can write it chooses the gate's allow-lists and policy (applied live)
 * or the client's server and certificates. One check for both verbs.
 *
 * @module
 */

import { checkTrustedPath } from "../pki/trust_files.ts";
import type { Setting } from "./args.ts";

/**
 * Refuse a `--config` file (or a directory above it) that others could write. The file
 * cannot waive its own check: only `--insecure-key-perms` given as a flag or in the
 * environment does.
 */
export async function checkConfigFile(
  cmd: { configFile?: string; settings: Setting[] },
): Promise<void> {
  if (!cmd.configFile) return;
  const waiver = cmd.settings.find((s) => s.name === "insecure-key-perms");
  if (waiver?.value === true && waiver.source !== "file") return;
  await checkTrustedPath(cmd.configFile, "config file");
}
