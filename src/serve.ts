/**
 * The server side: a TLS listener that demands a client certificate, decides each
 * connection's identity once after the handshake, and then runs the relay strategy chosen
 * for that identity toward the target (by default the Docker socket).
 *
 * Why `node:tls` and not `Deno.listenTls`: the latter cannot request or verify client
 * certificates (denoland/deno#26825). `node:tls` does on Deno 2.9 and Node, but we still
 * re-check every connection ourselves (see `authorize.ts`) and prove at startup that the
 * runtime refuses unauthenticated clients (see `self_test.ts`).
 *
 * @module
 */

import type net from "node:net";
import tls from "node:tls";
import { type Address, formatAddress } from "./address.ts";
import { authorizePeer, type GateRules } from "./authorize.ts";
import { displayName, type PeerIdentity } from "./identity.ts";
import { type Logger, silentLogger } from "./logger.ts";
import { ConnectionSet, listenOn, peerOf } from "./lifecycle.ts";
import { HeldInput, pauseFlowControl, type RelayHandle } from "./relay.ts";
import { currentRuntime } from "./runtime.ts";
import { rawStrategy, type RelayStrategy } from "./strategy.ts";
import { serverTlsOptions, type TlsMaterial } from "./tls_config.ts";

/** Options for {@linkcode serve}. */
export interface ServeOptions {
  /** TCP address to listen on; port 0 picks a free port. */
  listen: Address;
  /** Where allowed connections are relayed to (unix socket or TCP). */
  target: Address;
  /** Our certificate and key, and the CA bundle clients must chain to. */
  tls: TlsMaterial;
  /** CA certificates, access policy and revocations used for every decision. */
  rules: GateRules;
  /** Where events go. Default: nowhere. */
  logger?: Logger;
  /** Drop peers that have not completed the handshake after this long. Default: 10 000 ms. */
  handshakeTimeoutMs?: number;
  /** Refuse connections beyond this many at once. Default: 1024. */
  maxConnections?: number;
  /** End relayed connections older than this. Default: no limit. */
  maxConnLifetimeMs?: number;
  /** Give up connecting to the target after this long. Default: 10 000 ms. */
  targetConnectTimeoutMs?: number;
  /** Choose the relay for an identity. Default: the raw byte relay for everyone. */
  selectStrategy?: (identity: PeerIdentity) => RelayStrategy;
}

/** New material for {@linkcode ServeHandle.reload}; absent parts stay as they are. */
export interface ReloadUpdate {
  /** New certificate/key/CA for handshakes from now on. */
  tls?: TlsMaterial;
  /** New CA list, policy and revocations for decisions from now on. */
  rules?: GateRules;
}

/** A running gate. */
export interface ServeHandle {
  /** The address actually bound (with the real port when 0 was asked for). */
  address: Address;
  /** Resolves once the listener and every connection are closed. */
  closed: Promise<void>;
  /** Number of open connections (handshaking or relaying). */
  connectionCount(): number;
  /** Apply new TLS material and rules to new connections; open ones keep going. */
  reload(update: ReloadUpdate): void;
  /** Stop accepting, let open relays finish for up to `drainMs`, then close the rest. */
  shutdown(drainMs?: number): Promise<void>;
  /** Stop accepting and close everything now. */
  close(): Promise<void>;
}

/**
 * Start the gate. Resolves once listening; rejects with a one-line error if the address
 * cannot be bound (in use, permission) or the TLS material is unusable.
 *
 * @example
 * ```ts ignore
 * import { serve } from "./serve.ts";
 * const gate = await serve({
 *   listen: { transport: "tcp", host: "127.0.0.1", port: 0 },
 *   target: { transport: "unix", path: "/var/run/docker.sock" },
 *   tls: { certPem, keyPem, caPem },
 *   rules: { caCertificates, policy: { allowAny: true } },
 * });
 * console.log(gate.address);
 * await gate.shutdown(30_000);
 * ```
 */
export async function serve(options: ServeOptions): Promise<ServeHandle> {
  if (options.listen.transport !== "tcp") {
    throw new TypeError(
      `Cannot listen on "${formatAddress(options.listen)}": serve listens on TCP only`,
    );
  }
  const logger = options.logger ?? silentLogger;
  const handshakeTimeoutMs = options.handshakeTimeoutMs ?? 10_000;
  const maxConnections = options.maxConnections ?? 1024;
  const connectTimeoutMs = options.targetConnectTimeoutMs ?? 10_000;
  const selectStrategy = options.selectStrategy ?? defaultSelect;
  if (!(handshakeTimeoutMs > 0)) throw new RangeError("handshakeTimeoutMs must be > 0");
  if (!(maxConnections >= 1)) throw new RangeError("maxConnections must be >= 1");
  let rules = options.rules;

  const server = tls.createServer({
    ...serverTlsOptions(options.tls),
    handshakeTimeout: handshakeTimeoutMs,
  });
  const connections = new ConnectionSet();
  const peers = new WeakMap<net.Socket, string>();

  // Counting raw TCP connections (not TLS sessions) bounds handshakes in flight too.
  server.on("connection", (raw: net.Socket) => {
    if (!connections.accepting || connections.size >= maxConnections) {
      if (connections.accepting) {
        logger.log("warn", "refused", {
          peer: peerOf(raw),
          reason: `connection limit reached (${maxConnections})`,
        });
      }
      raw.destroy();
      return;
    }
    connections.addSocket(raw);
    // Remember who this is now: after a failed handshake the TLS socket may no longer know.
    peers.set(raw, peerOf(raw));
    // A peer that resets mid-handshake must not become an unhandled error.
    raw.on("error", () => {});
  });

  server.on("tlsClientError", (err: Error, socket: tls.TLSSocket) => {
    // Deno's TLSSocket has no remoteAddress before the handshake completes, and a failed
    // one may have lost it: use what was recorded for its TCP socket on arrival.
    const raw = (socket as { _parent?: net.Socket })._parent;
    const peer = (raw && peers.get(raw)) ?? peerOf(socket);
    // A rejected certificate surfaces as "socket hang up"; the runtime's verdict says why.
    const verdict = socket.authorizationError;
    const reason = verdict ? `certificate not verified: ${String(verdict)}` : tlsErrorReason(err);
    logger.log("warn", "refused", { peer, reason });
    // Node leaves the socket open after a handshake timeout: close it ourselves.
    socket.destroy();
  });

  server.on("secureConnection", (client: tls.TLSSocket) => {
    const peer = peerOf(client);
    client.on("error", () => {}); // reported through the relay result
    // Nothing is forwarded until the decision is made; what arrives meanwhile is held.
    const held = new HeldInput(client, PREAUTH_HOLD_BYTES, flowControlFor(client));
    const since = Date.now();
    authorizePeer(client, rules).then(async (decision) => {
      if (!decision.allow) {
        logger.log("warn", "refused", {
          peer,
          identity: decision.identity ? displayName(decision.identity) : undefined,
          serial: decision.identity?.serial,
          reason: decision.reason,
        });
        client.destroy();
        return;
      }
      if (!connections.accepting || client.destroyed) {
        client.destroy();
        return;
      }
      const identity = decision.identity;
      const strategy = selectStrategy(identity);
      const who = displayName(identity);
      let handle: RelayHandle;
      try {
        handle = await strategy.start({
          client,
          identity,
          target: options.target,
          connectTimeoutMs,
          held,
        });
      } catch (err) {
        logger.log("error", "target unavailable", {
          peer,
          identity: who,
          reason: (err as Error).message,
        });
        client.destroy();
        return;
      }
      logger.log("info", "accepted", {
        peer,
        identity: who,
        serial: identity.serial,
        why: decision.reason,
        relay: strategy.name,
      });
      let lifetime: ReturnType<typeof setTimeout> | undefined;
      if (options.maxConnLifetimeMs) {
        lifetime = setTimeout(
          () => handle.abort(new Error("maximum connection lifetime reached")),
          options.maxConnLifetimeMs,
        );
      }
      const result = await connections.addRelay(handle);
      if (lifetime) clearTimeout(lifetime);
      logger.log("info", "closed", {
        peer,
        identity: who,
        bytes_in: result.bytesIn,
        bytes_out: result.bytesOut,
        ms: Date.now() - since,
        error: result.error?.message,
      });
    }).catch((err) => {
      logger.log("error", "connection failed", { peer, reason: (err as Error).message });
      client.destroy();
    });
  });

  await listenOn(server, options.listen, { logger });

  const bound = server.address() as net.AddressInfo;
  const address: Address = { transport: "tcp", host: bound.address, port: bound.port };

  let resolveClosed!: () => void;
  const closed = new Promise<void>((r) => (resolveClosed = r));
  const stop = (drainMs: number) =>
    connections.stop(server, drainMs, logger).then(() => resolveClosed());

  return {
    address,
    closed,
    connectionCount: () => connections.size,
    reload(update) {
      if (update.tls) {
        server.setSecureContext({ ...serverTlsOptions(update.tls) });
      }
      if (update.rules) rules = update.rules;
    },
    shutdown: (drainMs = 30_000) => stop(drainMs),
    close: () => stop(0),
  };
}

/** Input held per connection while its decision and target connection are pending. */
const PREAUTH_HOLD_BYTES = 64 * 1024;

function defaultSelect(): RelayStrategy {
  return DEFAULT_STRATEGY;
}
const RUNTIME = currentRuntime();
const DEFAULT_STRATEGY = rawStrategy(RUNTIME.relay);
const flowControlFor = RUNTIME.relay.flowControl ?? pauseFlowControl;

function tlsErrorReason(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code;
  const msg = err.message.replace(/\s+/g, " ").trim();
  return code && !msg.includes(code) ? `${msg} (${code})` : msg;
}
