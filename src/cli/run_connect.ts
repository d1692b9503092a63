/**
 * `dockgate connect …`: the client bundle, the local tunnel, and the signals.
 *
 * @module
 */

import type { ConnectCommand } from "./args.ts";
import { type CliIo, onStopSignals } from "./io.ts";
import { checkConfigFile } from "./config_trust.ts";
import { formatSetting } from "./print_config.ts";
import { connect } from "../connect.ts";
import { type Address, formatAddress } from "../net/address.ts";
import { loadCredentials, resolveBundlePaths } from "../pki/credentials.ts";

/** `dockgate connect …`: the client tunnel until a signal stops it. */
export async function runConnect(cmd: ConnectCommand, io: CliIo): Promise<number> {
  if (cmd.printConfig) {
    for (const s of cmd.settings) io.out(formatSetting(s));
    return 0;
  }
  await checkConfigFile(cmd);
  const logger = io.logger(cmd.logLevel, cmd.logFormat);
  const creds = await loadCredentials(resolveBundlePaths(cmd.source), {
    role: "client",
    insecureKeyPerms: cmd.insecureKeyPerms,
  });
  const tunnel = await connect({
    server: cmd.server,
    listen: cmd.listen,
    tls: { certPem: creds.certPem, keyPem: creds.keyPem, caPem: creds.caPem },
    serverName: cmd.serverName,
    unsafeListen: cmd.unsafeListen,
    logger,
  });
  const hint = (a: Address) =>
    a.transport === "unix"
      ? `docker -H ${formatAddress(a)} version`
      : `curl http://${formatAddress(a).slice(6)}/_ping`;
  logger.log("info", `listening on ${formatAddress(tunnel.address)}`, {
    server: formatAddress(cmd.server),
  });
  logger.log("info", `try: ${hint(tunnel.address)}`);
  onStopSignals(io, (drain) => void (drain ? tunnel.shutdown(cmd.drainTimeoutMs) : tunnel.close()));
  await tunnel.closed;
  logger.log("info", "stopped");
  return 0;
}
