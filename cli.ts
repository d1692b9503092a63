#!/usr/bin/env -S deno run -A
/**
 * The `dockgate` command line. This file only dispatches: argv is parsed into a typed
 * command by `src/args.ts`, the work is done by the library, and only this file prints or
 * exits (exit 2 for usage errors, 1 for runtime failures, one line each, no stack trace).
 *
 * @module
 */

import process from "node:process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { type Address, formatAddress } from "./src/net/address.ts";
import {
  type Command,
  type ConnectCommand,
  DEFAULTS,
  parseCommand,
  type ServeCommand,
  UsageError,
} from "./src/cli/args.ts";
import { connect } from "./src/connect.ts";
import { loadCredentials, resolveBundlePaths } from "./src/pki/credentials.ts";
import { connectTarget } from "./src/net/strategy.ts";
import {
  initPki,
  issueClientBundle,
  issueServerBundle,
  type KeygenReport,
  pkiExists,
} from "./src/pki/keygen.ts";
import { lineLogger, type Logger, streamSink } from "./src/observe/logger.ts";
import { type AccessPolicy, describePolicy } from "./src/access/policy.ts";
import { startReloader, warnStaleCrl } from "./src/config/reloader.ts";
import { republishCrl, revokeCertificate } from "./src/pki/revoke.ts";
import { serve } from "./src/serve.ts";
import { loadServeConfig, type ServeConfigSource } from "./src/config/serve_config.ts";
import { VERSION } from "./src/version.ts";
import { DEFAULT_MS } from "./src/config/defaults.ts";

const HELP: Record<string, string> = {
  main: `dockgate ${VERSION}: mutual TLS in front of the Docker API

Usage:
  dockgate keygen [server|client NAME|revoke NAME|SERIAL] [options]   create or extend the PKI
  dockgate serve [options]      TLS listener that demands a client certificate, relays to Docker
  dockgate connect --server HOST:PORT [options]   local socket that wraps connections in mTLS
  dockgate help COMMAND         options of one command

Quickstart (Docker host):  dockgate serve      (creates ./pki on first run)
Client:  docker --tlsverify -H tcp://HOST:2376 --tlscacert pki/clients/default/ca.pem \\
           --tlscert pki/clients/default/cert.pem --tlskey pki/clients/default/key.pem version`,
  keygen:
    `dockgate keygen [--dir DIR] [--key-type T] [--days N] [--ca-days N] [--san NAME|IP]... [--force]
    Create DIR (default ./pki): CA, server bundle, client bundle "default"; keeps what exists.
dockgate keygen server [--dir DIR] [--san NAME|IP]... [--key-type T] [--days N] [--force]
dockgate keygen client NAME [--dir DIR] [--ou OU]... [--key-type T] [--days N] [--force [--revoke-old]]
    --force re-issues; the earlier certificates stay valid unless --revoke-old revokes them.
dockgate keygen revoke NAME|SERIAL [--dir DIR]
    Revoke (by NAME: every unexpired certificate ever issued to NAME) and write
    DIR/ca/crl.pem and DIR/server/crl.pem.
dockgate keygen crl [--dir DIR]
    Publish the CRL again from the PKI's revocation record (e.g. after crl.pem was lost).
  --key-type   p256 (default), p384, rsa2048, rsa3072, rsa4096
  --days       leaf validity in days (default 365); --ca-days CA validity (default 3650)
  --san        extra server names/IPs (defaults: localhost, 127.0.0.1, ::1, host name)`,
  serve: `dockgate serve [options]
  --listen ADDR            TCP address (default ${DEFAULTS.serveListen}; port 0 = any free port)
  --target ADDR            unix:///path or tcp://host:port (default ${DEFAULTS.serveTarget})
  --certs DIR              bundle with ca.pem, cert.pem, key.pem [, crl.pem] (default ./${DEFAULTS.serveCerts};
                           created with the whole PKI on first run when no TLS flag is given)
  --cert F --key F --ca F  individual files (override --certs)
  --crl F                  CRL file (default: crl.pem in --certs when present)
  --allow-cn NAME          allow this client CN (repeatable; * matches one DNS label)
  --allow-san NAME|URI|IP  allow this client SAN (repeatable)
  --allow-ou OU            allow this client OU (repeatable); no allow flag = any cert from the CA
  --handshake-timeout D    drop peers that do not finish the handshake (default ${DEFAULTS.handshakeTimeout})
  --crl-stale warn|refuse  a CRL past its nextUpdate: warn and keep using it (default), or refuse
                           every client until a current one is loaded
  --max-connections N      concurrent authenticated connection cap (default ${DEFAULTS.maxConnections})
  --max-handshakes N       concurrent TLS handshakes; when full the oldest is dropped (default ${DEFAULTS.maxHandshakes})
  --max-handshakes-per-address N   concurrent handshakes from one address (default ${DEFAULTS.maxHandshakesPerAddress})
  --keep-revoked-connections   at a reload, keep open connections of identities now revoked
                           or no longer allowed (default: they are ended)
  --drain-timeout D        on SIGTERM/SIGINT, let open connections finish this long (default ${DEFAULTS.drainTimeout})
  --max-conn-lifetime D    end connections older than this (default: never)
  --insecure-key-perms     accept a key file readable by group or others, and trust files or
                           directories others could write
  --log-level L            debug, info (default), warn, error
  SIGHUP or a change to any of the files reloads them (allow-lists come from flags: restart to
  change them); open connections are kept unless a reload revokes or disallows them.`,
  connect: `dockgate connect --server HOST:PORT [options]
  --listen ADDR            unix:///path (created 0600) or tcp://127.0.0.1:PORT
                           (default $XDG_RUNTIME_DIR/dockgate.sock, else /tmp/dockgate-UID.sock)
  --certs DIR              client bundle (default $DOCKER_CERT_PATH, then ~/.docker)
  --cert F --key F --ca F  individual files (override --certs)
  --server-name NAME       name the server certificate must carry (default: the --server host)
  --unsafe-listen          allow a TCP listen address off loopback
  --drain-timeout D        on SIGTERM/SIGINT, let open connections finish this long (default ${DEFAULTS.connectDrainTimeout})
  --insecure-key-perms     accept a key file readable by group or others
  --log-level L            debug, info (default), warn, error`,
};

// One sink for stderr, installed before anything is logged: its error listener is what keeps
// a closed stderr (EPIPE, reported asynchronously) from killing the process.
const STDERR = streamSink(process.stderr);

function stderrLogger(level: ServeCommand["logLevel"]): Logger {
  return lineLogger(STDERR.write, level);
}

function say(text: string) {
  STDERR.write(text);
}

function reportKeygen(report: KeygenReport) {
  for (const f of report.created) say(`created ${f}`);
  for (const f of report.kept) say(`kept    ${f} (exists; use --force to replace)`);
  for (const n of report.notes ?? []) say(`note: ${n}`);
}

async function runKeygen(cmd: Extract<Command, { kind: "keygen" }>): Promise<number> {
  switch (cmd.action) {
    case "init":
      reportKeygen(
        await initPki({
          dir: cmd.dir,
          keyType: cmd.keyType,
          days: cmd.days,
          caDays: cmd.caDays,
          sans: cmd.sans,
          force: cmd.force,
        }),
      );
      say(
        `client bundle for the Docker CLI: DOCKER_CERT_PATH=${join(cmd.dir, "clients", "default")}`,
      );
      return 0;
    case "server":
      reportKeygen(
        await issueServerBundle({
          dir: cmd.dir,
          keyType: cmd.keyType,
          days: cmd.days,
          sans: cmd.sans,
          force: cmd.force,
        }),
      );
      return 0;
    case "client":
      reportKeygen(
        await issueClientBundle(cmd.name, {
          dir: cmd.dir,
          keyType: cmd.keyType,
          days: cmd.days,
          organizationalUnits: cmd.ous,
          force: cmd.force,
          revokeOld: cmd.revokeOld,
        }),
      );
      say(
        `use it with: DOCKER_CERT_PATH=${join(cmd.dir, "clients", cmd.name)} DOCKER_TLS_VERIFY=1`,
      );
      return 0;
    case "revoke": {
      const r = await revokeCertificate(cmd.dir, cmd.subject);
      const already = r.serials.filter((s) => !r.newlyRevokedSerials.includes(s));
      const whose = r.name ? ` of client ${r.name}` : "";
      if (r.newlyRevokedSerials.length) {
        say(
          `revoked ${r.newlyRevokedSerials.length} certificate(s)${whose}: serial ${
            r.newlyRevokedSerials.join(", ")
          }`,
        );
      }
      if (already.length) say(`already revoked${whose}: serial ${already.join(", ")}`);
      say(`${r.total} revoked in all; CRL number ${r.crlNumber}`);
      for (const f of r.written) say(`wrote   ${f}`);
      return 0;
    }
    case "crl": {
      const r = await republishCrl(cmd.dir);
      say(`published CRL number ${r.number} listing ${r.total} revoked certificate(s)`);
      for (const f of r.written) say(`wrote   ${f}`);
      return 0;
    }
  }
}

/** Wait for SIGTERM/SIGINT: drain once, and stop at once on a second signal. */
function onStopSignals(stop: (drain: boolean) => void) {
  let count = 0;
  const handler = () => stop(++count === 1);
  process.on("SIGTERM", handler);
  process.on("SIGINT", handler);
}

async function runServe(cmd: ServeCommand): Promise<number> {
  const logger = stderrLogger(cmd.logLevel);
  if (cmd.defaultCerts && !existsSync(cmd.source.certs!)) {
    const dir = DEFAULTS.pkiDir;
    if (!(await pkiExists(dir))) {
      logger.log("info", `no certificates yet: creating a PKI in ./${dir} (as "dockgate keygen")`);
    }
    const report = await initPki({ dir });
    for (const f of report.created) logger.log("info", "created", { file: f });
  }
  const paths = resolveBundlePaths(cmd.source);
  const policy: AccessPolicy = cmd.allowCn.length + cmd.allowSan.length + cmd.allowOu.length === 0
    ? { allowAny: true }
    : { allowCn: cmd.allowCn, allowSan: cmd.allowSan, allowOu: cmd.allowOu };
  const source: ServeConfigSource = {
    paths,
    crlPath: cmd.crl ?? (cmd.source.certs ? join(cmd.source.certs, "crl.pem") : undefined),
    crlOptional: cmd.crl === undefined,
    // The PKI that made this bundle (keygen's layout): it says whether anything was revoked.
    revocationRecord: cmd.crl === undefined && cmd.source.certs
      ? join(cmd.source.certs, "..", "ca", "revoked.json")
      : undefined,
    crlStale: cmd.crlStale,
    policy,
    insecureKeyPerms: cmd.insecureKeyPerms,
  };
  const config = await loadServeConfig(source);
  // Say at once if the target is not there, rather than on the first client.
  (await connectTarget(cmd.target, DEFAULT_MS.targetStartupCheck)).destroy();

  const gate = await serve({
    listen: cmd.listen,
    target: cmd.target,
    tls: config.tls,
    policy: config.policy,
    revocations: config.revocations,
    logger,
    handshakeTimeoutMs: cmd.handshakeTimeoutMs,
    maxConnections: cmd.maxConnections,
    maxHandshakes: cmd.maxHandshakes,
    maxHandshakesPerAddress: cmd.maxHandshakesPerAddress,
    endRevokedOnReload: !cmd.keepRevokedConnections,
    maxConnLifetimeMs: cmd.maxConnLifetimeMs,
  });
  logger.log("info", `listening on ${formatAddress(gate.address)}`, {
    target: formatAddress(cmd.target),
  });
  logger.log("info", `policy: ${describePolicy(policy)}`, {
    crl: config.revokedCount === undefined ? "none" : `${config.revokedCount} revoked`,
  });
  if (cmd.defaultCerts) {
    const host = gate.address.transport === "tcp" && gate.address.host !== "0.0.0.0" &&
        gate.address.host !== "::"
      ? formatAddress(gate.address)
      : `tcp://localhost:${(gate.address as { port: number }).port}`;
    logger.log(
      "info",
      `clients connect with: DOCKER_HOST=${host} DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=${
        join(DEFAULTS.pkiDir, "clients", "default")
      } docker version`,
    );
  }
  warnStaleCrl(logger, config);
  const reloader = startReloader({ source, config, gate, logger });
  process.on("SIGHUP", () => void reloader.reload("SIGHUP"));
  onStopSignals((drain) => {
    logger.log(
      "info",
      drain ? `stopping: draining for up to ${cmd.drainTimeoutMs} ms` : "stopping now",
    );
    reloader.stop();
    void (drain ? gate.shutdown(cmd.drainTimeoutMs) : gate.close());
  });
  await gate.closed;
  logger.log("info", "stopped");
  return 0;
}

async function runConnect(cmd: ConnectCommand): Promise<number> {
  const logger = stderrLogger(cmd.logLevel);
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
  onStopSignals((drain) => void (drain ? tunnel.shutdown(cmd.drainTimeoutMs) : tunnel.close()));
  await tunnel.closed;
  logger.log("info", "stopped");
  return 0;
}

async function main(argv: string[]): Promise<number> {
  let cmd: Command;
  try {
    cmd = parseCommand(argv, process.env);
  } catch (err) {
    if (err instanceof UsageError) {
      say(`dockgate: ${err.message}`);
      say(`Run "dockgate help" for usage.`);
      return 2;
    }
    throw err;
  }
  try {
    switch (cmd.kind) {
      case "help": {
        const text = HELP[cmd.topic ?? "main"];
        if (!text) {
          say(`dockgate: no help for "${cmd.topic}" (try keygen, serve or connect)`);
          return 2;
        }
        process.stdout.write(text + "\n");
        return 0;
      }
      case "version":
        process.stdout.write(`dockgate ${VERSION}\n`);
        return 0;
      case "keygen":
        return await runKeygen(cmd);
      case "serve":
        return await runServe(cmd);
      case "connect":
        return await runConnect(cmd);
    }
  } catch (err) {
    const e = err as Error;
    say(`dockgate: error: ${e.message.split("\n")[0]}`);
    if (process.env.DOCKGATE_DEBUG) say(e.stack ?? "");
    return 1;
  }
}

// `import.meta.main` exists on Deno and Node >= 24.2; on older Node (the npm bin) and in the
// CommonJS bundle of the standalone binary it is undefined, and this file is the entry point.
if ((import.meta as { main?: boolean }).main ?? true) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
