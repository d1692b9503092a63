/**
 * `dockgate connect …`: the client bundle, the local tunnel, and the signals.
 *
 * @module
 */

import type { ConnectCommand } from "./args.ts";
import { type CliIo, onStopSignals } from "./io.ts";
import { checkConfigFile } from "./config_trust.ts";
import { formatSetting } from "./print_config.ts";
import { connect, type ConnectHandle } from "../connect.ts";
import type { Logger } from "../observe/logger.ts";
import { renewLoop } from "./run_join.ts";
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
  let endRenewal!: () => void;
  const stopped = new Promise<void>((resolve) => (endRenewal = resolve));
  onStopSignals(io, (drain) => {
    endRenewal();
    void (drain ? tunnel.shutdown(cmd.drainTimeoutMs) : tunnel.close());
  });
  const renewing = cmd.renew ? renewInProcess(cmd, tunnel, stopped, logger) : undefined;
  await tunnel.closed;
  endRenewal();
  await renewing;
  logger.log("info", "stopped");
  return 0;
}

/**
 * `connect --renew`: renew the enrolled bundle at 2/3 of each lifetime and hand the new
 * certificate to the tunnel (new connections use it; open streams go on). A renewal that
 * cannot happen before the certificate ends stops the tunnel, with the reason.
 */
async function renewInProcess(
  cmd: ConnectCommand,
  tunnel: ConnectHandle,
  stopped: Promise<void>,
  logger: Logger,
): Promise<void> {
  try {
    await renewLoop({
      dir: cmd.source.certs!,
      stopped,
      log: logger,
      onRenewed: async () => {
        const creds = await loadCredentials(resolveBundlePaths(cmd.source), {
          role: "client",
          insecureKeyPerms: cmd.insecureKeyPerms,
        });
        tunnel.reload({ certPem: creds.certPem, keyPem: creds.keyPem, caPem: creds.caPem });
      },
    });
  } catch (err) {
    logger.log("error", "renewal stopped", { reason: (err as Error).message });
    await tunnel.close();
  }
}
