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
import { type Address, formatAddress } from "./net/address.ts";
import { DEFAULT_MS, DEFAULTS } from "./config/defaults.ts";
import {
  authorizePeer,
  type GateRules,
  type Revocations,
  revocationVerdict,
} from "./access/authorize.ts";
import { proveClientAuthEnforced } from "./access/self_test.ts";
import { parseCertificatesPem } from "./pki/pki.ts";
import { HandshakeSlots, ThrottledRefusals } from "./net/handshakes.ts";
import { type AccessPolicy, evaluatePolicy } from "./access/policy.ts";
import { displayName, type PeerIdentity } from "./access/identity.ts";
import { type Logger, silentLogger } from "./observe/logger.ts";
import { ConnectionSet, listenOn, peerOf } from "./net/lifecycle.ts";
import { HeldInput, pauseFlowControl, type RelayHandle } from "./net/relay.ts";
import { currentRuntime } from "./net/runtime.ts";
import { rawStrategy, type RelayStrategy } from "./net/strategy.ts";
import { serverTlsOptions, type TlsMaterial } from "./net/tls_config.ts";

/** Options for {@linkcode serve}. */
export interface ServeOptions {
  /** TCP address to listen on; port 0 picks a free port. */
  listen: Address;
  /** Where allowed connections are relayed to (unix socket or TCP). */
  target: Address;
  /** Our certificate and key, and the CA bundle clients must chain to (and are checked against). */
  tls: TlsMaterial;
  /** Who may pass, once the certificate checks succeeded. */
  policy: AccessPolicy;
  /** Revoked certificates (from a CRL, see `loadServeConfig`). Default: none. */
  revocations?: Revocations;
  /**
   * Before listening, prove on loopback that this runtime's TLS refuses a client without a
   * certificate and one from a foreign CA, and reject otherwise (older Deno accepted anyone).
   * Default: `true`; turn it off only where it was proven already for this runtime.
   */
  selfTest?: boolean;
  /** Where events go. Default: nowhere. */
  logger?: Logger;
  /** Drop peers that have not completed the handshake after this long. Default: 10 000 ms. */
  handshakeTimeoutMs?: number;
  /** Refuse connections beyond this many authenticated ones at once. Default: 1024. */
  maxConnections?: number;
  /**
   * TLS handshakes in flight at once; when full, the oldest pending handshake is dropped to
   * make room (a real client finishes in milliseconds). Default: 128.
   */
  maxHandshakes?: number;
  /** TLS handshakes in flight from one source address; more are refused. Default: 16. */
  maxHandshakesPerAddress?: number;
  /**
   * At a reload with new rules, end the open connections whose identity is now revoked or no
   * longer allowed (what an operator revoking a stolen key wants). Default: `true`.
   */
  endRevokedOnReload?: boolean;
  /** End relayed connections older than this. Default: no limit. */
  maxConnLifetimeMs?: number;
  /** Give up connecting to the target after this long. Default: 10 000 ms. */
  targetConnectTimeoutMs?: number;
  /**
   * Choose the relay for an identity. Default: the raw byte relay for everyone. Experimental
   * and internal until the Docker-API strategy exists (its types are not public yet).
   *
   * @ignore
   */
  selectStrategy?: (identity: PeerIdentity) => RelayStrategy;
}

/** New material for {@linkcode ServeHandle.reload}; absent parts stay as they are. */
export interface ReloadUpdate {
  /** New certificate, key and CA bundle for handshakes and decisions from now on. */
  tls?: TlsMaterial;
  /** New policy for decisions from now on. */
  policy?: AccessPolicy;
  /** New revocations for decisions from now on; `null` removes them. */
  revocations?: Revocations | null;
}

/** A running gate. */
export interface ServeHandle {
  /** The address actually bound (with the real port when 0 was asked for). */
  address: Address;
  /** Resolves once the listener and every connection are closed. */
  closed: Promise<void>;
  /** Number of open connections (handshaking or relaying). */
  connectionCount(): number;
  /**
   * Apply new TLS material and rules to new connections. Open ones keep going, except (with
   * `endRevokedOnReload`) those whose identity the new rules revoke or no longer allow.
   */
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
 *   policy: { allowAny: true },
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
  const handshakeTimeoutMs = options.handshakeTimeoutMs ?? DEFAULT_MS.handshakeTimeout;
  const maxConnections = options.maxConnections ?? DEFAULTS.maxConnections;
  const connectTimeoutMs = options.targetConnectTimeoutMs ?? DEFAULT_MS.targetConnectTimeout;
  const selectStrategy = options.selectStrategy ?? defaultSelect;
  if (!(handshakeTimeoutMs > 0)) throw new RangeError("handshakeTimeoutMs must be > 0");
  if (!(maxConnections >= 1)) throw new RangeError("maxConnections must be >= 1");
  const slots = new HandshakeSlots<net.Socket>(
    options.maxHandshakes ?? DEFAULTS.maxHandshakes,
    options.maxHandshakesPerAddress ?? DEFAULTS.maxHandshakesPerAddress,
  );
  const refusals = new ThrottledRefusals(logger);
  if (options.selfTest ?? true) await proveClientAuthEnforced(options.tls);
  // The CA is given once, as PEM: the certificates every decision checks against are derived
  // from the very bundle the TLS layer verifies with, so the two cannot disagree.
  let rules: GateRules = {
    caCertificates: parseCertificatesPem(options.tls.caPem),
    policy: options.policy,
    revocations: options.revocations,
  };
  let established = 0;
  // Raw sockets we refused or evicted ourselves: their TLS error is not a second refusal.
  const refusedHere = new WeakSet<net.Socket>();
  const open = new Map<RelayHandle, { identity: PeerIdentity; peer: string }>();

  const server = tls.createServer({
    ...serverTlsOptions(options.tls),
    handshakeTimeout: handshakeTimeoutMs,
  });
  const connections = new ConnectionSet();
  const peers = new WeakMap<net.Socket, string>();

  // Accept: every TCP socket takes a handshake slot first (bounded in all and per address),
  // and none is taken while the authenticated connections are at their cap.
  server.on("connection", (raw: net.Socket) => {
    const peer = peerOf(raw);
    // A peer that resets mid-handshake must not become an unhandled error.
    raw.on("error", () => {});
    if (!connections.accepting) {
      refusedHere.add(raw); // stopping: not a refusal worth a line
      return void raw.destroy();
    }
    const address = raw.remoteAddress ?? "local";
    const refuse = (socket: net.Socket, who: string, reason: string) => {
      refusedHere.add(socket);
      refusals.refuse(address, who, reason);
      socket.destroy();
    };
    if (established >= maxConnections) {
      return refuse(raw, peer, `connection limit reached (${maxConnections})`);
    }
    const slot = slots.admit(raw, address);
    if (!slot.ok) return refuse(raw, peer, slot.reason);
    if (slot.evicted) {
      const old = slot.evicted;
      refusedHere.add(old);
      refusals.refuse(
        old.remoteAddress ?? "local",
        peers.get(old) ?? peerOf(old),
        `handshake slots full (${slots.max}): dropped the oldest pending handshake`,
      );
      old.destroy();
    }
    connections.addSocket(raw);
    raw.once("close", () => slots.release(raw));
    // Remember who this is now: after a failed handshake the TLS socket may no longer know.
    peers.set(raw, peer);
  });

  server.on("tlsClientError", (err: Error, socket: tls.TLSSocket) => {
    const raw = parentOf(socket);
    if (raw) slots.release(raw);
    // Node leaves the socket open after a handshake timeout: close it ourselves.
    socket.destroy();
    if (raw && refusedHere.has(raw)) return; // logged once already, when we refused it
    // Deno's TLSSocket has no remoteAddress before the handshake completes, and a failed
    // one may have lost it: use what was recorded for its TCP socket on arrival.
    const peer = (raw && peers.get(raw)) ?? peerOf(socket);
    // A rejected certificate surfaces as "socket hang up"; the runtime's verdict says why.
    const verdict = socket.authorizationError;
    const reason = verdict ? `certificate not verified: ${String(verdict)}` : tlsErrorReason(err);
    logger.log("warn", "refused", { peer, reason });
  });

  server.on("secureConnection", (client: tls.TLSSocket) => {
    const peer = peerOf(client);
    const raw = parentOf(client);
    if (raw) slots.release(raw);
    established++;
    client.once("close", () => established--);
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
      open.set(handle, { identity, peer });
      const result = await connections.addRelay(handle);
      open.delete(handle);
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
      const next: GateRules = {
        caCertificates: update.tls ? parseCertificatesPem(update.tls.caPem) : rules.caCertificates,
        policy: update.policy ?? rules.policy,
        revocations: update.revocations === undefined
          ? rules.revocations
          : update.revocations ?? undefined,
      };
      if (update.tls) server.setSecureContext({ ...serverTlsOptions(update.tls) });
      rules = next;
      if (options.endRevokedOnReload ?? true) endDisallowed(open, rules, logger);
    },
    shutdown: (drainMs = DEFAULT_MS.drainTimeout) => stop(drainMs),
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

/**
 * End the open connections whose identity `rules` now revoke or no longer allow: the same
 * revocation and policy rules that decide new connections.
 */
function endDisallowed(
  open: Map<RelayHandle, { identity: PeerIdentity; peer: string }>,
  rules: GateRules,
  logger: Logger,
): void {
  for (const [handle, { identity, peer }] of open) {
    const policy = evaluatePolicy(rules.policy, identity);
    const why = revocationVerdict(identity.serial, rules.revocations) ??
      (policy.allow ? undefined : `no longer allowed: ${policy.reason}`);
    if (!why) continue;
    logger.log("warn", "ending connection at reload", {
      peer,
      identity: displayName(identity),
      serial: identity.serial,
      reason: why,
    });
    handle.abort(new Error(`ended at reload: ${why}`));
  }
}

/** The TCP socket under a server-side TLS socket (both runtimes keep it as `_parent`). */
function parentOf(socket: tls.TLSSocket): net.Socket | undefined {
  return (socket as { _parent?: net.Socket })._parent;
}

function tlsErrorReason(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code;
  const msg = err.message.replace(/\s+/g, " ").trim();
  return code && !msg.includes(code) ? `${msg} (${code})` : msg;
}
