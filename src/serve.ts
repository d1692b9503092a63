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
import { formatAddress } from "./net/address.ts";
import type { Address } from "./net/address.ts";
import { DEFAULT_MS, DEFAULTS } from "./config/defaults.ts";
import {
  admission,
  authorizePeer,
  type GateRules,
  type RefusalKind,
  type Revocations,
  revocationVerdict,
} from "./access/authorize.ts";
import { proveClientAuthEnforced } from "./access/self_test.ts";
import type { RevocationLink } from "./pki/chain.ts";
import { parseCertificatesPem } from "./pki/pem.ts";
import { HandshakeSlots, ThrottledRefusals } from "./net/handshakes.ts";
import type { AccessPolicy } from "./access/policy.ts";
import { type ApiPolicy, relaysRaw, type Role, roleFor } from "./docker/api_policy.ts";
import { apiStrategy } from "./docker/strategy.ts";
import { RequestLimits } from "./docker/request_limits.ts";
import { type ContainerRecord, ownerKey, ownerProblem } from "./docker/isolation.ts";
import type { SessionRecorder } from "./docker/session_record.ts";
import type { AuditSink } from "./observe/audit.ts";
import { displayName, type PeerIdentity } from "./access/identity.ts";
import type { GateMetrics } from "./observe/metrics.ts";
import { type Logger, silentLogger } from "./observe/logger.ts";
import { ConnectionSet, peerOf } from "./net/connections.ts";
import { listenOn } from "./net/listen.ts";
import { HeldInput, type RelayHandle } from "./net/relay.ts";
import { answerRefusal, type RefusalAnswer } from "./net/refusal_answer.ts";
import { refusedChainReason, tlsErrorReason } from "./net/tls_reason.ts";
import { RUNTIME } from "./net/runtime.ts";
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
  /**
   * An already listening socket to accept on (systemd socket activation: fd 3); `listen` then
   * only names it in errors. Default: bind `listen`.
   */
  listenFd?: number;
  /** Where connection counts, refusals, bytes and handshake times are reported. Default: nowhere. */
  metrics?: GateMetrics;
  /** Give up connecting to the target after this long. Default: 10 000 ms. */
  targetConnectTimeoutMs?: number;
  /**
   * Per-identity Docker API rules (see `loadApiPolicyFile`). An identity without a role is
   * refused at the handshake; `full` roles get the raw relay, the others the HTTP-aware
   * relay that decides every request. Default: none (everyone allowed gets the raw relay).
   */
  apiPolicy?: ApiPolicy;
  /** `enforce` refuses what the API policy denies; `audit` forwards it and logs `would_deny`. Default: `enforce`. */
  policyMode?: "enforce" | "audit";
  /** Where the audit records go (a line per restricted request, and per connection). Default: none. */
  audit?: AuditSink;
  /** The largest request body read for inspection (bigger ones get 413). Default: 1 MiB. */
  maxBodyBytes?: number;
  /**
   * The gate's record of the containers it created for each owner (`docker/owner_record.ts`),
   * on which container ownership rests for isolated roles. Default: none (no container is
   * anyone's: isolated roles see none).
   */
  containers?: ContainerRecord;
  /**
   * Where the exec and attach sessions of roles with `record` are written
   * (`docker/session_record.ts`). Default: none (a role with `"record": "required"` then
   * cannot exec or attach).
   */
  recorder?: SessionRecorder;
  /**
   * Choose the relay for an identity, overriding the API policy's choice. For tests of the
   * relays; its types are internal.
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
  /** New API policy for new connections and the next request of open ones; `null` removes it. */
  apiPolicy?: ApiPolicy | null;
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
  const gate = new Gate(options);
  if (options.selfTest ?? true) await proveClientAuthEnforced(options.tls);
  const server = tls.createServer({
    ...serverTlsOptions(options.tls),
    handshakeTimeout: gate.handshakeTimeoutMs,
  });
  // One connection, in order: accept (caps) -> handshake (or its failure) -> admit (the
  // gate's own decision) -> relay -> closed.
  server.on("connection", (raw: net.Socket) => gate.accept(raw));
  server.on("tlsClientError", (err: Error, socket: tls.TLSSocket) => gate.failed(err, socket));
  server.on("secureConnection", (client: tls.TLSSocket) => void gate.admit(client));
  await listenOn(server, options.listen, { logger: gate.logger, fd: options.listenFd });
  return gate.handle(server);
}

/** One gate's state, and the steps of a connection through it, in the order they happen. */
class Gate {
  readonly logger: Logger;
  readonly handshakeTimeoutMs: number;
  readonly #options: ServeOptions;
  readonly #maxConnections: number;
  readonly #connectTimeoutMs: number;
  readonly #selectStrategy?: (identity: PeerIdentity) => RelayStrategy;
  readonly #slots: HandshakeSlots<net.Socket>;
  readonly #refusals: ThrottledRefusals;
  readonly #connections = new ConnectionSet();
  /** Each TCP socket's peer as recorded on arrival (a failed TLS socket may have lost it). */
  readonly #peers = new WeakMap<net.Socket, string>();
  /** When each TCP socket arrived (for the handshake duration). */
  readonly #arrived = new WeakMap<net.Socket, number>();
  /** Each TCP socket's reader of the certificates its client presented (where the runtime needs it). */
  readonly #presented = new WeakMap<net.Socket, () => Uint8Array[]>();
  /** Raw sockets refused or evicted here: their TLS error is not a second refusal line. */
  readonly #refusedHere = new WeakSet<net.Socket>();
  /** Relays running, with whom, for the re-check at reload. */
  readonly #open = new Map<RelayHandle, OpenRelay>();
  #established = 0;
  #rules: GateRules;
  /** The per-identity request limits of the roles (`rate`, `maxInFlight`), gate-wide. */
  readonly #limits: RequestLimits;

  constructor(options: ServeOptions) {
    if (options.listen.transport !== "tcp") {
      throw new TypeError(
        `Cannot listen on "${formatAddress(options.listen)}": serve listens on TCP only`,
      );
    }
    this.#options = options;
    this.logger = options.logger ?? silentLogger;
    this.handshakeTimeoutMs = options.handshakeTimeoutMs ?? DEFAULT_MS.handshakeTimeout;
    this.#maxConnections = options.maxConnections ?? DEFAULTS.maxConnections;
    this.#connectTimeoutMs = options.targetConnectTimeoutMs ?? DEFAULT_MS.targetConnectTimeout;
    this.#selectStrategy = options.selectStrategy;
    if (!(this.handshakeTimeoutMs > 0)) throw new RangeError("handshakeTimeoutMs must be > 0");
    if (!(this.#maxConnections >= 1)) throw new RangeError("maxConnections must be >= 1");
    this.#slots = new HandshakeSlots<net.Socket>(
      options.maxHandshakes ?? DEFAULTS.maxHandshakes,
      options.maxHandshakesPerAddress ?? DEFAULTS.maxHandshakesPerAddress,
    );
    this.#refusals = new ThrottledRefusals(this.logger);
    this.#limits = new RequestLimits({ metrics: options.metrics, logger: this.logger });
    this.#rules = rulesFrom(options.tls, options.policy, options.revocations, options.apiPolicy);
  }

  /**
   * 1. Accept: every TCP socket takes a handshake slot first (bounded in all and per
   * address), and none is taken while the authenticated connections are at their cap.
   */
  accept(raw: net.Socket): void {
    const peer = peerOf(raw);
    // A peer that resets mid-handshake must not become an unhandled error.
    raw.on("error", () => {});
    if (!this.#connections.accepting) {
      this.#refusedHere.add(raw); // stopping: not a refusal worth a line
      return void raw.destroy();
    }
    if (this.#established >= this.#maxConnections) {
      return this.#refuse(raw, peer, `connection limit reached (${this.#maxConnections})`);
    }
    const slot = this.#slots.admit(raw, addressOf(raw));
    if (!slot.ok) return this.#refuse(raw, peer, slot.reason);
    if (slot.evicted) {
      const old = slot.evicted;
      this.#refuse(
        old,
        this.#peers.get(old) ?? peerOf(old),
        `handshake slots full (${this.#slots.max}): dropped the oldest pending handshake`,
      );
    }
    this.#connections.addSocket(raw);
    raw.once("close", () => this.#slots.release(raw));
    this.#peers.set(raw, peer);
    if (this.#options.metrics) this.#arrived.set(raw, performance.now());
    const presented = RUNTIME.presentedCertificates?.(raw);
    if (presented) this.#presented.set(raw, presented);
  }

  /** 2a. The handshake failed (the runtime refused the certificate, garbage, timeout). */
  failed(err: Error, socket: tls.TLSSocket): void {
    const raw = parentOf(socket);
    if (raw) this.#slots.release(raw);
    // Node leaves the socket open after a handshake timeout: close it ourselves.
    socket.destroy();
    if (raw && this.#refusedHere.has(raw)) return; // logged once already, when refused
    // Deno's TLSSocket has no remoteAddress before the handshake completes, and a failed
    // one may have lost it: use what was recorded for its TCP socket on arrival.
    const peer = (raw && this.#peers.get(raw)) ?? peerOf(socket);
    this.#options.metrics?.refused("tls");
    // A rejected certificate surfaces as "socket hang up"; the runtime's verdict says why.
    const verdict = socket.authorizationError;
    if (!verdict) return this.logger.log("warn", "refused", { peer, reason: tlsErrorReason(err) });
    const presented = (raw && this.#presented.get(raw)?.()) ?? [];
    void refusedChainReason(String(verdict), presented, this.#rules.caCertificates)
      .then((reason) => this.logger.log("warn", "refused", { peer, reason }));
  }

  /**
   * 2b. The handshake succeeded: 3. admit (the gate's own decision, before a byte is
   * forwarded), 4. relay with the strategy chosen for the identity, 5. log the close.
   */
  async admit(client: tls.TLSSocket): Promise<void> {
    const raw = parentOf(client);
    // The address recorded on arrival (1.): asking the socket again is a getpeername(2).
    const peer = (raw && this.#peers.get(raw)) ?? peerOf(client);
    if (raw) this.#slots.release(raw);
    const metrics = this.#options.metrics;
    const arrived = raw && this.#arrived.get(raw);
    if (metrics && arrived) metrics.handshake((performance.now() - arrived) / 1000);
    this.#established++;
    client.once("close", () => this.#established--);
    client.on("error", () => {}); // reported through the relay result
    // Nothing is forwarded until the decision is made; what arrives meanwhile is held.
    const held = new HeldInput(client, PREAUTH_HOLD_BYTES);
    const since = Date.now();
    try {
      const decision = await authorizePeer(client, this.#rules);
      if (!decision.allow) {
        this.logger.log("warn", "refused", {
          peer,
          identity: decision.identity ? displayName(decision.identity) : undefined,
          serial: decision.identity?.serial,
          reason: decision.reason,
        });
        metrics?.refused(decision.kind ?? "certificate");
        return void await answerRefusal(client, held, refusalFor(decision));
      }
      if (!this.#connections.accepting || client.destroyed) return void client.destroy();
      const started = await this.#startRelay(
        client,
        decision.identity,
        decision.reason,
        held,
        peer,
      );
      if (!started) return;
      const who = displayName(decision.identity);
      metrics?.opened(who);
      const result = await this.#relayUntilDone(started.handle, {
        identity: decision.identity,
        links: decision.links ?? [{ serial: decision.identity.serial, issuer: "" }],
        peer,
        relay: started.relay,
      });
      metrics?.closed(who, result.bytesIn, result.bytesOut, result.error !== undefined);
      this.logger.log("info", "closed", {
        peer,
        identity: who,
        bytes_in: result.bytesIn,
        bytes_out: result.bytesOut,
        ms: Date.now() - since,
        error: result.error?.message,
      });
      this.#options.audit?.write({
        event: "connection",
        identity: who,
        serial: decision.identity.serial,
        peer,
        role: started.role,
        relay: started.relay,
        bytes_in: result.bytesIn,
        bytes_out: result.bytesOut,
        ms: Date.now() - since,
        error: result.error?.message,
      });
    } catch (err) {
      this.logger.log("error", "connection failed", { peer, reason: (err as Error).message });
      client.destroy();
    }
  }

  /** 4. Connect to the target with the identity's strategy; `undefined` when it failed. */
  async #startRelay(
    client: tls.TLSSocket,
    identity: PeerIdentity,
    why: string,
    held: HeldInput,
    peer: string,
  ): Promise<{ handle: RelayHandle; relay: string; role?: string } | undefined> {
    const policy = this.#rules.apiPolicy;
    const role = policy && roleFor(policy, identity);
    const strategy = this.#strategyFor(identity, peer, policy, role);
    const who = displayName(identity);
    let handle: RelayHandle;
    try {
      handle = await strategy.start({
        client,
        identity,
        target: this.#options.target,
        connectTimeoutMs: this.#connectTimeoutMs,
        held,
      });
    } catch (err) {
      this.logger.log("error", "target unavailable", {
        peer,
        identity: who,
        reason: (err as Error).message,
      });
      this.#options.metrics?.refused("target");
      void answerRefusal(client, held, {
        status: 502,
        message: "the Docker daemon is not answering (see the gate's log)",
      });
      return undefined;
    }
    this.logger.log("info", "accepted", {
      peer,
      identity: who,
      serial: identity.serial,
      why,
      relay: strategy.name,
    });
    return { handle, relay: strategy.name, role: role?.name };
  }

  /**
   * The relay for an identity: without an API policy (or for a `full` role audited per
   * connection, `relaysRaw`) the raw byte relay; for a restricted role, or a `full` one with
   * `"audit": "requests"`, the HTTP-aware one, which reads the role in force for every
   * request (a reload applies to the next request of an open connection).
   */
  #strategyFor(
    identity: PeerIdentity,
    peer: string,
    policy: ApiPolicy | undefined,
    role: Role | undefined,
  ): RelayStrategy {
    if (this.#selectStrategy) return this.#selectStrategy(identity);
    // A reload between admission and here may have taken the role away: never the raw relay.
    if (policy && !role) throw new Error("no role for this identity in the API policy");
    if (!role || relaysRaw(role)) return DEFAULT_STRATEGY;
    const owner = ownerKey(identity, role.owner);
    if (owner === undefined) throw new Error(ownerProblem(identity, role.owner));
    // The role in force for each request: looked up again only when a reload changed the policy.
    let seen: ApiPolicy | undefined = policy;
    let current: Role | undefined = role;
    return apiStrategy({
      role: () => {
        const now = this.#rules.apiPolicy;
        if (now !== seen) {
          seen = now;
          current = now && roleFor(now, identity);
        }
        return current;
      },
      mode: this.#options.policyMode ?? "enforce",
      who: {
        identity: displayName(identity),
        serial: identity.serial,
        peer,
        // The kind is the role's at connection time; a reload that changes it applies to new
        // connections.
        owner,
      },
      audit: this.#options.audit,
      maxBodyBytes: this.#options.maxBodyBytes,
      resolveSymlinks: this.#options.target.transport === "unix",
      containers: this.#options.containers,
      limits: this.#limits,
      recorder: this.#options.recorder,
    });
  }

  /** The relay's life: bounded by `maxConnLifetimeMs`, re-checked at every reload. */
  async #relayUntilDone(handle: RelayHandle, open: OpenRelay) {
    const lifetimeMs = this.#options.maxConnLifetimeMs;
    const lifetime = lifetimeMs
      ? setTimeout(() => handle.abort(new Error("maximum connection lifetime reached")), lifetimeMs)
      : undefined;
    this.#open.set(handle, open);
    try {
      return await this.#connections.addRelay(handle);
    } finally {
      this.#open.delete(handle);
      if (lifetime) clearTimeout(lifetime);
    }
  }

  #refuse(socket: net.Socket, peer: string, reason: string): void {
    this.#options.metrics?.refused("limit");
    this.#refusedHere.add(socket);
    this.#refusals.refuse(addressOf(socket), peer, reason);
    socket.destroy();
  }

  /** The handle `serve` returns, for `server` listening. */
  handle(server: tls.Server): ServeHandle {
    const bound = server.address() as net.AddressInfo;
    let resolveClosed!: () => void;
    const closed = new Promise<void>((r) => (resolveClosed = r));
    const stop = (drainMs: number) =>
      this.#connections.stop(server, drainMs, this.logger).then(() => resolveClosed());
    return {
      address: { transport: "tcp", host: bound.address, port: bound.port },
      closed,
      connectionCount: () => this.#connections.size,
      reload: (update) => {
        const rules = this.#rules;
        const next = rulesFrom(
          update.tls,
          update.policy ?? rules.policy,
          update.revocations === undefined ? rules.revocations : update.revocations ?? undefined,
          update.apiPolicy === undefined ? rules.apiPolicy : update.apiPolicy ?? undefined,
          rules,
        );
        if (update.tls) server.setSecureContext({ ...serverTlsOptions(update.tls) });
        this.#rules = next;
        if (this.#options.endRevokedOnReload ?? true) {
          endDisallowed(this.#open, next, this.logger);
        }
      },
      shutdown: (drainMs = DEFAULT_MS.drainTimeout) => stop(drainMs),
      close: () => stop(0),
    };
  }
}

/**
 * The rules every decision uses. The CA is given once, as PEM: the certificates decisions
 * check against are parsed from the very bundle the TLS layer verifies with, so the two
 * cannot disagree. Without `tls`, `previous`'s CA certificates are kept.
 */
function rulesFrom(
  tls: TlsMaterial | undefined,
  policy: AccessPolicy,
  revocations: Revocations | undefined,
  apiPolicy: ApiPolicy | undefined,
  previous?: GateRules,
): GateRules {
  const caCertificates = tls ? parseCertificatesPem(tls.caPem) : previous!.caCertificates;
  return { caCertificates, policy, revocations, apiPolicy };
}

/** An open relay, for the re-check at reload. */
interface OpenRelay {
  identity: PeerIdentity;
  /** Its verified path, as revocation sees it (leaf and intermediates with their issuers). */
  links: readonly RevocationLink[];
  peer: string;
  /** `raw` or `docker-api`. */
  relay: string;
}

/** The source address a socket's per-address handshake cap and refusal throttle key on. */
function addressOf(socket: net.Socket): string {
  return socket.remoteAddress ?? "local";
}

/** Input held per connection while its decision and target connection are pending. */
const PREAUTH_HOLD_BYTES = 64 * 1024;

// The raw relay sends a switching head apart from the stream after it, as dockerd's TLS does.
const DEFAULT_STRATEGY = rawStrategy({ splitSwitchingHead: true });

/**
 * End the open connections whose identity `rules` now revoke or no longer allow: the same
 * revocation and admission rules that decide new connections. A raw relay whose identity's
 * role is no longer `full` ends too: a raw byte stream cannot be restricted midway.
 */
function endDisallowed(
  open: Map<RelayHandle, OpenRelay>,
  rules: GateRules,
  logger: Logger,
): void {
  for (const [handle, { identity, links, peer, relay }] of open) {
    const admitted = admission(identity, rules);
    const role = admitted.role;
    const why = revocationVerdict(links, rules.revocations) ??
      (admitted.allow ? undefined : `no longer allowed: ${admitted.reason}`) ??
      (relay === "raw" && role && !relaysRaw(role)
        ? role.preset === "full"
          ? `role ${role.name} now audits requests: a raw relay cannot record them`
          : `role ${role.name} is now ${role.preset}: a raw relay cannot be restricted`
        : undefined);
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

/**
 * What a refused peer is told: the reason for its own certificate or identity, but never the
 * text of an internal error (that stays in the gate's log).
 */
function refusalFor(
  decision: { reason: string; kind?: RefusalKind; identity?: PeerIdentity },
): RefusalAnswer {
  if (decision.reason.startsWith("internal check failed")) {
    return { status: 403, message: "the gate could not check this certificate" };
  }
  if (decision.kind === "not_allowed" && decision.identity) {
    const who = displayName(decision.identity);
    return { status: 403, message: `${who} is not allowed on this gate: ${decision.reason}` };
  }
  return { status: 403, message: decision.reason };
}
