/**
 * dockgate puts mutual TLS in front of the Docker API: {@linkcode serve} is a TLS listener
 * that demands a client certificate signed by your CA and relays allowed connections to the
 * Docker socket; {@linkcode connect} is the client's local socket that wraps every
 * connection in TLS with the client's certificate. The keygen functions create the CA and
 * the server and client bundles (PEM files, the layout `docker --tlsverify` expects).
 *
 * The same API runs on Deno and on Node.js >= 20 (the npm package `dockgate`); the
 * `dockgate` command line is a thin layer over it.
 *
 * @example Gate a TCP service with an in-memory PKI and reach it through a client tunnel
 * ```ts
 * import { once } from "node:events";
 * import { connect as tcpConnect, createServer, type AddressInfo } from "node:net";
 * import {
 *   connect,
 *   createCa,
 *   issueClient,
 *   issueServer,
 *   parseAddress,
 *   serve,
 * } from "./mod.ts";
 *
 * // Stands in for the Docker socket: a TCP service that echoes what it receives.
 * const echo = createServer((socket) => socket.pipe(socket)).listen(0, "127.0.0.1");
 * await once(echo, "listening");
 *
 * const ca = await createCa();
 * const server = await issueServer(ca, { sans: ["localhost"] });
 * const alice = await issueClient(ca, "alice");
 *
 * const gate = await serve({
 *   listen: parseAddress("tcp://127.0.0.1:0"),
 *   target: { transport: "tcp", host: "127.0.0.1", port: (echo.address() as AddressInfo).port },
 *   tls: { ...server, caPem: ca.certPem },
 *   policy: { allowCn: ["alice"] },
 * });
 * if (gate.address.transport !== "tcp") throw new Error("serve listens on TCP");
 * const tunnel = await connect({
 *   server: gate.address,
 *   serverName: "localhost",
 *   listen: parseAddress("tcp://127.0.0.1:0"),
 *   tls: { ...alice, caPem: ca.certPem },
 * });
 * if (tunnel.address.transport !== "tcp") throw new Error("asked for TCP");
 *
 * // Plain TCP in, mutual TLS between tunnel and gate, plain TCP out to the service.
 * const socket = tcpConnect(tunnel.address.port, "127.0.0.1");
 * socket.end("hello through the gate");
 * let reply = "";
 * for await (const chunk of socket) reply += chunk;
 * if (reply !== "hello through the gate") throw new Error(`unexpected reply ${reply}`);
 *
 * await tunnel.close();
 * await gate.close();
 * await new Promise((resolve) => echo.close(resolve));
 * ```
 *
 * @module
 */

export {
  type Address,
  formatAddress,
  parseAddress,
  type ParseAddressOptions,
  type TcpAddress,
  type UnixAddress,
} from "./src/net/address.ts";
export type { RevocationList, Revocations } from "./src/access/authorize.ts";
export { connect, type ConnectHandle, type ConnectOptions } from "./src/connect.ts";
export {
  type BundlePathOptions,
  type CredentialPaths,
  CredentialsError,
  loadCredentials,
  type LoadCredentialsOptions,
  resolveBundlePaths,
  type TlsCredentials,
} from "./src/pki/credentials.ts";
export type { PeerIdentity } from "./src/access/identity.ts";
export { AlreadyExistsError, type KeygenReport } from "./src/ca/files.ts";
export type { BundlePaths } from "./src/ca/layout.ts";
export {
  initPki,
  type InitPkiOptions,
  issueClientBundle,
  type IssueClientBundleOptions,
  issueServerBundle,
  type IssueServerBundleOptions,
  type KeygenCommonOptions,
} from "./src/ca/keygen.ts";
export {
  lineLogger,
  type LineLoggerOptions,
  type LogFields,
  type Logger,
  type LogLevel,
  silentLogger,
} from "./src/observe/logger.ts";
export {
  type EnrollMetrics,
  type GateMetrics,
  PrometheusMetrics,
  type RefusalMetricKind,
} from "./src/observe/metrics.ts";
export {
  type Health,
  type MetricsServer,
  type MetricsServerOptions,
  startMetricsServer,
} from "./src/observe/metrics_server.ts";
export {
  type ClientExtKeyUsage,
  createCa,
  type CreateCaOptions,
  issueClient,
  type IssueClientOptions,
  issueServer,
  type IssueServerOptions,
  type KeyType,
  type PemPair,
  type ValidityOptions,
} from "./src/ca/issue.ts";
export { type AccessPolicy, evaluatePolicy, type PolicyDecision } from "./src/access/policy.ts";
export type { RelayHandle, RelayResult } from "./src/net/relay.ts";
export {
  type ApiDecision,
  type ApiPolicy,
  type ApiPolicySpec,
  type ApiRequest,
  type AuditLevel,
  compileApiPolicy,
  decideRequest,
  type IdentitySpec,
  type Operation,
  type OwnerKind,
  type Preset,
  type Role,
  roleFor,
  type RoleSpec,
} from "./src/docker/api_policy.ts";
export type { RateSpec } from "./src/docker/limit_spec.ts";
export type { EscapeAllowances } from "./src/docker/no_escape.ts";
export type { NetworkAllowances } from "./src/docker/network_options.ts";
export { type ApiTarget, parseApiTarget } from "./src/docker/api_path.ts";
export { HttpError } from "./src/docker/http.ts";
export type { ContainerRecord } from "./src/docker/isolation.ts";
export { OwnerRecord } from "./src/docker/owner_record.ts";
export {
  type SessionMeta,
  SessionRecorder,
  type SessionRecorderOptions,
  type SessionRecording,
} from "./src/docker/session_record.ts";
export {
  JsonError,
  type JsonObject,
  type JsonValue,
  parseStrictJson,
} from "./src/docker/strict_json.ts";
export {
  loadApiPolicyFile,
  parseApiPolicyText,
  type PolicyFileOptions,
} from "./src/config/policy_file.ts";
export {
  type AuditDetail,
  type AuditFile,
  type AuditRecord,
  type AuditSink,
  lineAuditSink,
  openAuditFile,
} from "./src/observe/audit.ts";
export { revokeCertificate, type RevokeReport } from "./src/ca/revoke.ts";
export { type ReloadUpdate, serve, type ServeHandle, type ServeOptions } from "./src/serve.ts";
export {
  type CrlSource,
  loadServeConfig,
  type ServeConfig,
  type ServeConfigSource,
} from "./src/config/serve_config.ts";
export { type Reloader, type ReloaderOptions, startReloader } from "./src/config/reloader.ts";
export type { TlsMaterial } from "./src/net/tls_config.ts";
export { VERSION } from "./src/version.ts";
