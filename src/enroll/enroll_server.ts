/**
 * serve's enrolment port (`--enroll ADDR`): a TLS listener of its own, apart from the Docker
 * API's, whose connections can only do one thing each: redeem a join token for a certificate
 * (`enroll`), or trade a valid client certificate, presented over mTLS, for a fresh one
 * (`renew`). No connection here is ever relayed anywhere: this module has no target.
 *
 * Why a separate port and not ALPN on the API port: the API port's listener never accepts a
 * peer without a client certificate, and the code that relays (serve.ts `Gate`) is not on
 * this path at all. An unauthenticated listener on a root-equivalent service is bounded:
 * connections at once (in all and per address), requests per address per minute, the
 * handshake and the whole exchange each have a deadline, one line of at most 16 KiB is read,
 * and the peer is told a fixed reason, never an internal error's text.
 *
 * The gate presents its own certificate with the root after it, so that a joining client can
 * check the chain against the CA pin of its token before it sends anything (`join.ts`).
 *
 * @module
 */

import type net from "node:net";
import tls from "node:tls";
import { authorizeLeaf, type GateRules } from "../access/authorize.ts";
import { displayName } from "../access/identity.ts";
import type { TcpAddress } from "../net/address.ts";
import { listenOn } from "../net/listen.ts";
import { HandshakeSlots } from "../net/handshakes.ts";
import { peerOf } from "../net/connections.ts";
import {
  MIN_TLS_VERSION,
  SECURE_OPTIONS,
  TLS12_CIPHERS,
  type TlsMaterial,
} from "../net/tls_config.ts";
import { certToPem, parseCertificatesPem } from "../pki/pem.ts";
import { selfIssued } from "../pki/chain.ts";
import { signerOf } from "../pki/verify.ts";
import type { IssuerFiles } from "../ca/issuer_files.ts";
import { checkJoinToken, consumeJoinToken, TokenRefused } from "../ca/tokens.ts";
import { csrPublicKey, CsrRefused, enrolledTtlOf, signEnrolment } from "../ca/csr_sign.ts";
import type { AuditSink } from "../observe/audit.ts";
import type { EnrollMetrics } from "../observe/metrics.ts";
import type { Logger } from "../observe/logger.ts";
import {
  type EnrollAnswer,
  type EnrollRequest,
  EXCHANGE_TIMEOUT_MS,
  lineOf,
  MAX_REQUEST_BYTES,
  parseRequest,
  ProtocolError,
  readLine,
} from "./protocol.ts";
import { parseJoinToken } from "../pki/join_token.ts";
import { AddressRate } from "./address_rate.ts";

/** Options for {@linkcode startEnrollServer}. */
export interface EnrollServerOptions {
  /** Where to listen (TCP). */
  listen: TcpAddress;
  /** The PKI whose `tokens/` are redeemed. */
  pkiDir: string;
  /**
   * The CA that signs (an intermediate the gate holds; the root may stay offline), as its
   * files are now: a rotated or replaced intermediate is used from the next signing on.
   */
  issuer: IssuerFiles;
  /** The gate's TLS material in force (its certificate, key and CA bundle). */
  tls: () => TlsMaterial;
  /** The gate's rules in force: a renewing certificate must pass them as a connection would. */
  rules: () => GateRules;
  /** Where events go. */
  logger: Logger;
  /** The audit trail (a record per enrolment and renewal). Default: none. */
  audit?: AuditSink;
  /** Counts. Default: none. */
  metrics?: EnrollMetrics;
  /** The longest certificate a renewal gets. Default: 7 days. */
  maxRenewTtlMs?: number;
  /** Requests per address per minute. Default: 20. */
  perMinute?: number;
  /** Connections at once. Default: 64. */
  maxConnections?: number;
  /** Connections at once from one address. Default: 4. */
  maxPerAddress?: number;
  /** Deadline of one exchange. Default: {@linkcode EXCHANGE_TIMEOUT_MS}. */
  timeoutMs?: number;
}

/** A running enrolment port. */
export interface EnrollServer {
  /** The bound address. */
  address: TcpAddress;
  /** Present new TLS material (the gate's, after a reload) from the next handshake on. */
  reload(material: TlsMaterial): void;
  /** Stop listening and end every connection. */
  close(): Promise<void>;
}

/**
 * Start the enrolment port.
 *
 * @example
 * ```ts ignore
 * const e = await startEnrollServer({ listen, pkiDir: "pki", issuer, tls: () => material, rules: () => rules, logger });
 * await e.close();
 * ```
 */
export async function startEnrollServer(options: EnrollServerOptions): Promise<EnrollServer> {
  const timeoutMs = options.timeoutMs ?? EXCHANGE_TIMEOUT_MS;
  const server = tls.createServer({
    ...enrollTlsOptions(options.tls()),
    handshakeTimeout: timeoutMs,
  });
  const slots = new HandshakeSlots<net.Socket>(
    options.maxConnections ?? 64,
    options.maxPerAddress ?? 4,
  );
  const sockets = new Set<net.Socket>();
  const rate = new AddressRate(options.perMinute ?? 20, 60_000);
  const exchange = new Exchanges(options);
  server.on("connection", (raw: net.Socket) => {
    raw.on("error", () => {});
    const address = raw.remoteAddress ?? "local";
    const slot = slots.admit(raw, address);
    if (!slot.ok) return void raw.destroy();
    slot.evicted?.destroy(); // full: the oldest pending connection makes room
    sockets.add(raw);
    // The whole life of a connection here is bounded, handshake included.
    const deadline = setTimeout(() => raw.destroy(), timeoutMs + 1000);
    raw.once("close", () => {
      clearTimeout(deadline);
      slots.release(raw);
      sockets.delete(raw);
    });
  });
  server.on("tlsClientError", (_err: Error, socket: tls.TLSSocket) => socket.destroy());
  server.on("secureConnection", (socket: tls.TLSSocket) => {
    socket.on("error", () => {});
    const address = socket.remoteAddress ?? "local";
    if (!rate.take(address)) {
      options.metrics?.enrolment("enroll", "refused");
      return void answer(socket, { ok: false, error: "too many requests from this address" });
    }
    void exchange.run(socket, timeoutMs);
  });
  await listenOn(server, options.listen, { logger: options.logger });
  const bound = server.address() as net.AddressInfo;
  return {
    address: { transport: "tcp", host: bound.address, port: bound.port },
    reload: (material) => server.setSecureContext(enrollTlsOptions(material)),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}

/**
 * The TLS options of the enrolment port: the gate's certificate with the CA bundle's roots
 * after it (what a joining client pins), a client certificate asked for but not required
 * (renewals present one; `authorizeLeaf` decides), the API port's protocol settings.
 */
function enrollTlsOptions(material: TlsMaterial) {
  const roots = parseCertificatesPem(material.caPem).filter(selfIssued).map(certToPem);
  return {
    cert: [material.certPem.trim(), ...roots.map((r) => r.trim())].join("\n") + "\n",
    key: material.keyPem,
    ca: [material.caPem],
    requestCert: true,
    rejectUnauthorized: false,
    minVersion: MIN_TLS_VERSION,
    ciphers: TLS12_CIPHERS,
    honorCipherOrder: true,
    secureOptions: SECURE_OPTIONS,
  };
}

/** Write the one answer and close. */
function answer(socket: tls.TLSSocket, message: EnrollAnswer): void {
  socket.end(lineOf(message));
}

/** What one exchange came to, for the log, the audit and the metrics. */
interface Outcome {
  kind: "enroll" | "renew";
  identity: string;
  serial: string;
  token?: string;
  reason: string;
  answer: EnrollAnswer;
}

/**
 * The exchanges of one enrolment port. Signings run side by side: a token is used up by an
 * atomic rename (one of two redeemers wins), and the records of signings at once are appended
 * together (`record_journal.ts`, one write and one sync each group), each answered only once
 * its record is synced.
 */
class Exchanges {
  constructor(readonly options: EnrollServerOptions) {}

  /** Read one request, decide, answer, record. */
  async run(socket: tls.TLSSocket, timeoutMs: number): Promise<void> {
    const since = Date.now();
    const peer = peerOf(socket);
    let outcome: Outcome;
    let kind: Outcome["kind"] = "enroll";
    try {
      const request = parseRequest(await readLine(socket, MAX_REQUEST_BYTES, timeoutMs));
      kind = request.op;
      outcome = request.op === "enroll"
        ? await this.#enroll(request)
        : await this.#renew(socket, request);
    } catch (err) {
      if (err instanceof ProtocolError && err.received === 0) {
        // Not an enrolment: the peer left without a byte (a client that refused our chain).
        this.options.logger.log("info", "enrolment connection ended without a request", { peer });
        return void socket.destroy();
      }
      outcome = { ...this.#failure(err), kind };
    }
    answer(socket, outcome.answer);
    this.#record(outcome, peer, Date.now() - since);
  }

  async #enroll(request: Extract<EnrollRequest, { op: "enroll" }>): Promise<Outcome> {
    const { pkiDir, issuer } = this.options;
    let id: string | undefined;
    try {
      id = parseJoinToken(request.token).id;
    } catch {
      // checkJoinToken says it.
    }
    try {
      const record = await checkJoinToken(pkiDir, request.token);
      // The CSR is checked before the token is used up: a bad CSR does not burn a token.
      const key = csrPublicKey(request.csr);
      const { issuer: signer } = await issuer.current();
      await consumeJoinToken(pkiDir, record);
      const signed = await signEnrolment(signer, key, {
        name: record.name,
        organizationalUnits: record.role === undefined ? [] : [record.role],
        ttlMs: record.certTtlMs,
      });
      this.#repaired(signed.repaired);
      return {
        kind: "enroll",
        identity: record.name,
        serial: signed.serial,
        token: id,
        reason: `token ${id} redeemed`,
        answer: { ok: true, cert: signed.certPem, ca: rootPemOf(this.options.tls()) },
      };
    } catch (err) {
      return { ...this.#failure(err), kind: "enroll", token: id };
    }
  }

  async #renew(
    socket: tls.TLSSocket,
    request: Extract<EnrollRequest, { op: "renew" }>,
  ): Promise<Outcome> {
    // The same decision a connection to the API port gets: chain, usage, dates, CRL, policy;
    // and the leaf it was taken on, parsed once for everything below.
    const { decision, certificate: leaf } = await authorizeLeaf(socket, this.options.rules());
    if (!decision.allow) {
      const who = decision.identity ? displayName(decision.identity) : "-";
      return refusal(
        "renew",
        who,
        decision.identity?.serial ?? "",
        `renewal refused: ${decision.reason}`,
      );
    }
    const identity = decision.identity;
    const name = identity.commonName;
    if (!name || !leaf) {
      // (An allowed decision always carries its leaf; fail closed all the same.)
      return refusal("renew", displayName(identity), identity.serial, "renewal refused: no CN");
    }
    // One look at the issuer's files for the check and the signing: the same issuer for both.
    // The check is the full one (name bytes, then the signature with the issuer's key), done
    // once: when the decision above verified the leaf against a bundle certificate of the
    // same DER as the issuer's, `signerOf` knows it already.
    const { cert: issuerCert, issuer } = await this.options.issuer.current();
    if (!(await signerOf(leaf, [issuerCert]))) {
      return refusal(
        "renew",
        displayName(identity),
        identity.serial,
        "renewal refused: only certificates this gate enrolled renew here",
      );
    }
    const key = csrPublicKey(request.csr);
    const ttlMs = Math.min(enrolledTtlOf(leaf), this.options.maxRenewTtlMs ?? 7 * 86_400_000);
    const signed = await signEnrolment(issuer, key, {
      name,
      organizationalUnits: [...identity.organizationalUnits],
      ttlMs,
    });
    this.#repaired(signed.repaired);
    return {
      kind: "renew",
      identity: displayName(identity),
      serial: signed.serial,
      reason: `renewed serial ${identity.serial}`,
      answer: { ok: true, cert: signed.certPem, ca: rootPemOf(this.options.tls()) },
    };
  }

  /** Say that a record was repaired before a signing was recorded (a crash had torn it). */
  #repaired(message: string | undefined): void {
    if (message) this.options.logger.log("warn", "issued record repaired", { reason: message });
  }

  /** A failure as the peer hears it: our own refusals say why, anything else says nothing. */
  #failure(err: unknown): Outcome {
    const known = err instanceof TokenRefused || err instanceof CsrRefused ||
      err instanceof ProtocolError;
    const reason = (err as Error)?.message ?? String(err);
    if (!known) this.options.logger.log("error", "enrolment failed", { reason });
    return refusal(
      "enroll",
      "-",
      "",
      reason,
      known ? reason : "internal error (see the gate's log)",
    );
  }

  #record(outcome: Outcome, peer: string, ms: number): void {
    const ok = outcome.answer.ok;
    this.options.metrics?.enrolment(outcome.kind, ok ? "ok" : "refused");
    this.options.logger.log(
      ok ? "info" : "warn",
      ok ? outcome.kind === "enroll" ? "enrolled" : "renewed" : "enrolment refused",
      {
        peer,
        kind: outcome.kind,
        identity: outcome.identity,
        serial: outcome.serial || undefined,
        token: outcome.token,
        reason: outcome.reason,
      },
    );
    this.options.audit?.write({
      event: outcome.kind,
      identity: outcome.identity,
      serial: outcome.serial,
      peer,
      decision: ok ? "allow" : "deny",
      rule: outcome.reason,
      ...(outcome.token ? { token: outcome.token } : {}),
      bytes_in: 0,
      bytes_out: 0,
      ms,
    });
  }
}

function refusal(
  kind: "enroll" | "renew",
  identity: string,
  serial: string,
  reason: string,
  told: string = reason,
): Outcome {
  return { kind, identity, serial, reason, answer: { ok: false, error: told } };
}

/** The last bundle {@linkcode rootPemOf} read, and its roots (a reload brings another). */
let lastRoots: { caPem: string; roots: string } | undefined;

/** The roots of the CA bundle in force, PEM: the client's `ca.pem`. */
function rootPemOf(material: TlsMaterial): string {
  // Parsed once per bundle, not per answer: the same text has the same roots.
  if (lastRoots?.caPem !== material.caPem) {
    const roots = parseCertificatesPem(material.caPem).filter(selfIssued).map(certToPem).join("");
    lastRoots = { caPem: material.caPem, roots };
  }
  return lastRoots.roots;
}
