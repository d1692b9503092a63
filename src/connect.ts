/**
 * The client side: a local unix socket (created 0600) or loopback TCP port whose every
 * connection is wrapped in mutual TLS to a dockgate `serve` (or to dockerd `--tlsverify`).
 *
 * @module
 */

import fs from "node:fs";
import net from "node:net";
import tls from "node:tls";
import { DEFAULT_MS } from "./config/defaults.ts";
import { type Address, formatAddress, isLoopbackHost, type TcpAddress } from "./net/address.ts";
import { ConnectionSet, peerOf } from "./net/connections.ts";
import { serverProblem, serverTrust } from "./access/server_check.ts";
import { listenOn } from "./net/listen.ts";
import { type Logger, silentLogger } from "./observe/logger.ts";
import { relay } from "./net/relay.ts";
import { REFUSAL_HEADER } from "./net/refusal_answer.ts";
import { clientTlsOptions, type TlsMaterial } from "./net/tls_config.ts";

/** Options for {@linkcode connect}. */
export interface ConnectOptions {
  /** The dockgate server to reach. */
  server: TcpAddress;
  /** Local address: `unix` path (created 0600) or a loopback TCP address. */
  listen: Address;
  /** Our client certificate and key, and the CA the server must chain to. */
  tls: TlsMaterial;
  /** Name the server certificate must carry. Default: `server.host`. */
  serverName?: string;
  /** Allow a TCP listen address off loopback (anyone who reaches it gets our identity). Default: false. */
  unsafeListen?: boolean;
  /** Give up on a TLS handshake with the server after this long. Default: 10 000 ms. */
  handshakeTimeoutMs?: number;
  /** Where events go. Default: nowhere. */
  logger?: Logger;
}

/** A running client tunnel. */
export interface ConnectHandle {
  /** The local address actually bound. */
  address: Address;
  /** Resolves once the listener and every connection are closed. */
  closed: Promise<void>;
  /** Number of open local connections. */
  connectionCount(): number;
  /**
   * Use new TLS material (a renewed certificate) for connections from now on; open ones go
   * on with the session they have.
   */
  reload(tls: TlsMaterial): void;
  /**
   * Stop accepting, let open connections finish for up to `drainMs` (default 5 000 ms, as
   * `connect --drain-timeout`), then close the rest.
   */
  shutdown(drainMs?: number): Promise<void>;
  /** Stop accepting and close everything now. */
  close(): Promise<void>;
}

/**
 * Start the client tunnel. Rejects with a one-line error for a listen address off loopback
 * (without `unsafeListen`), an address in use, or a path that exists and is not a stale
 * socket.
 *
 * @example
 * ```ts ignore
 * import { connect } from "./connect.ts";
 * const tunnel = await connect({
 *   server: { transport: "tcp", host: "docker-host.example", port: 2376 },
 *   listen: { transport: "unix", path: "/tmp/docker.sock" },
 *   tls: { certPem, keyPem, caPem },
 * });
 * // now: docker -H unix:///tmp/docker.sock ps
 * await tunnel.shutdown(5_000);
 * ```
 */
export async function connect(options: ConnectOptions): Promise<ConnectHandle> {
  const logger = options.logger ?? silentLogger;
  const listen = options.listen;
  refuseUnsafeListen(options);
  const connections = new ConnectionSet();
  // One connection, in order: accept a local client -> dial the server in mTLS -> check the
  // server -> relay -> closed.
  const dial = dialer(options, logger);
  const reload = (material: TlsMaterial) => dial.reload(material);
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (local) => {
    if (!connections.accepting) return void local.destroy();
    connections.addSocket(local);
    local.on("error", () => {});
    dial(local, connections);
  });
  if (listen.transport === "unix") await clearStaleSocket(listen.path);
  // The local socket is created 0600: only its owner may borrow our client certificate.
  await listenOn(server, listen, { unixMode: 0o600, logger });
  return { ...tunnelHandle(server, listen, connections, logger), reload };
}

/** A TCP listen address off loopback lends our certificate to anyone who can reach it. */
function refuseUnsafeListen(options: ConnectOptions): void {
  const listen = options.listen;
  if (listen.transport === "tcp" && !isLoopbackHost(listen.host) && !options.unsafeListen) {
    throw new TypeError(
      `Refusing to listen on "${formatAddress(listen)}": not a loopback address, so anyone who ` +
        `can reach it would use your certificate (pass --unsafe-listen to do it anyway)`,
    );
  }
}

/**
 * For each local client: dial the server in mutual TLS (bounded by the handshake timeout),
 * check it, then relay; every failure closes the local side and says why once.
 */
function dialer(options: ConnectOptions, logger: Logger) {
  const serverName = options.serverName ?? options.server.host;
  const handshakeTimeoutMs = options.handshakeTimeoutMs ?? DEFAULT_MS.handshakeTimeout;
  let tlsOptions = clientTlsOptions(options.tls, serverName);
  // Parsed once per material (a bad CA bundle fails connect() at start, not per client).
  let trust = serverTrust(options.tls.caPem);
  const dial = (local: net.Socket, connections: ConnectionSet) => {
    const since = Date.now();
    const remote = tls.connect({
      ...tlsOptions,
      host: options.server.host,
      port: options.server.port,
    });
    connections.addSocket(remote);
    const timer = setTimeout(() => {
      remote.destroy(new Error(`TLS handshake timed out after ${handshakeTimeoutMs} ms`));
    }, handshakeTimeoutMs);
    let relayed = false;
    remote.once("error", (err: Error) => {
      clearTimeout(timer);
      if (!remote.authorized && !relayed) {
        logger.log("error", "cannot reach server", {
          server: formatAddress(options.server),
          reason: err.message,
        });
      }
      local.destroy();
    });
    remote.once("secureConnect", () => {
      clearTimeout(timer);
      // rejectUnauthorized already enforced this; check again rather than assume.
      if (remote.authorized !== true) {
        logger.log("error", "server refused", { reason: String(remote.authorizationError) });
        remote.destroy();
        local.destroy();
        return;
      }
      // Our own chain and usage check before a byte of the local client goes out.
      serverProblem(remote, trust).then((problem) => {
        if (problem !== undefined) {
          logger.log("error", "server refused", { reason: problem });
          remote.destroy();
          local.destroy();
          return;
        }
        relayed = true;
        startRelay(local, remote, connections, logger, since);
      });
    });
  };
  return Object.assign(dial, {
    reload: (material: TlsMaterial) => {
      tlsOptions = clientTlsOptions(material, serverName);
      trust = serverTrust(material.caPem);
    },
  });
}

/** Relay a checked server connection for one local client, and log how it ended. */
function startRelay(
  local: net.Socket,
  remote: tls.TLSSocket,
  connections: ConnectionSet,
  logger: Logger,
  since: number,
): void {
  local.resume();
  const relaying = relay(local, remote);
  // After relay() took the socket over (same tick): this listener sees, never takes.
  remote.once("data", (first: Uint8Array) => {
    const reason = refusalReason(first);
    if (reason !== undefined) {
      logger.log("warn", "refused by the gate", { peer: peerOf(local), reason });
    }
  });
  connections.addRelay(relaying).then((result) => {
    logger.log("debug", "closed", {
      peer: peerOf(local),
      bytes_in: result.bytesIn,
      bytes_out: result.bytesOut,
      ms: Date.now() - since,
      error: result.error?.message,
    });
  });
}

/**
 * The reason in a gate's refusal answer (see `net/refusal_answer.ts`), when `first` (the
 * first bytes the gate sent on a connection) is one.
 *
 * @example
 * ```ts
 * import { refusalReason } from "./connect.ts";
 * const answer = "HTTP/1.1 403 Forbidden\r\nDockgate-Refused: revoked\r\n\r\n";
 * if (refusalReason(new TextEncoder().encode(answer)) !== "revoked") throw new Error();
 * if (refusalReason(new TextEncoder().encode("HTTP/1.1 200 OK\r\n\r\n")) !== undefined) throw new Error();
 * ```
 */
export function refusalReason(first: Uint8Array): string | undefined {
  const head = Buffer.from(first.subarray(0, 4096)).toString("latin1");
  if (!/^HTTP\/1\.[01] [45]\d\d /.test(head)) return undefined;
  const end = head.indexOf("\r\n\r\n");
  const lines = (end < 0 ? head : head.slice(0, end)).split("\r\n");
  const prefix = `${REFUSAL_HEADER.toLowerCase()}:`;
  const line = lines.find((l) => l.toLowerCase().startsWith(prefix));
  return line?.slice(prefix.length).trim();
}

/** The handle `connect` returns; stopping removes the unix socket file. */
function tunnelHandle(
  server: net.Server,
  listen: Address,
  connections: ConnectionSet,
  logger: Logger,
): Omit<ConnectHandle, "reload"> {
  let address: Address = listen;
  if (listen.transport === "unix") {
    fs.chmodSync(listen.path, 0o600);
  } else {
    const bound = server.address() as net.AddressInfo;
    address = { transport: "tcp", host: bound.address, port: bound.port };
  }
  let resolveClosed!: () => void;
  const closed = new Promise<void>((r) => (resolveClosed = r));
  const stop = (drainMs: number) =>
    connections.stop(server, drainMs, logger).then(() => {
      if (listen.transport === "unix") {
        try {
          fs.unlinkSync(listen.path);
        } catch {
          // Already gone.
        }
      }
      resolveClosed();
    });
  return {
    address,
    closed,
    connectionCount: () => connections.size,
    shutdown: (drainMs = DEFAULT_MS.connectDrainTimeout) => stop(drainMs),
    close: () => stop(0),
  };
}

/**
 * Remove a unix socket file left behind by a process that died, but never a live socket
 * (someone answers) nor a file that is not a socket.
 */
async function clearStaleSocket(path: string): Promise<void> {
  let stat: fs.Stats;
  try {
    stat = fs.lstatSync(path);
  } catch {
    return; // Nothing there.
  }
  if (!stat.isSocket()) {
    throw new Error(`Cannot listen on "unix://${path}": the path exists and is not a socket`);
  }
  const live = await new Promise<boolean>((resolve) => {
    const probe = net.connect({ path });
    probe.once("connect", () => {
      probe.destroy();
      resolve(true);
    });
    probe.once("error", () => resolve(false));
  });
  if (live) throw new Error(`Cannot listen on "unix://${path}": address already in use`);
  fs.unlinkSync(path);
}
