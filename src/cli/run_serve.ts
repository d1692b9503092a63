/**
 * `dockgate serve …`: the first-run PKI, the configuration as one unit, the gate, the
 * reloader, and the signals (SIGHUP reloads; SIGTERM/SIGINT drain, a second one stops).
 *
 * @module
 */

import { existsSync, readFileSync, statSync } from "node:fs";
import { checkConfigFile } from "./config_trust.ts";
import { bundleCrlPath, clientsDir, pkiRootOf, tokensDir } from "../ca/layout.ts";
import { IssuerFiles } from "../ca/issuer_files.ts";
import { type EnrollServer, startEnrollServer } from "../enroll/enroll_server.ts";
import type { ServeCommand } from "./args.ts";
import { formatSetting } from "./print_config.ts";
import { liveSettings } from "./flags.ts";
import { type CliIo, onStopSignals } from "./io.ts";
import type { Logger } from "../observe/logger.ts";
import { DEFAULT_MS, DEFAULTS } from "../config/defaults.ts";
import { type Reloader, startReloader, warnStaleCrl } from "../config/reloader.ts";
import {
  crlsInForce,
  type CrlSource,
  loadServeConfig,
  type ServeConfig,
  type ServeConfigSource,
} from "../config/serve_config.ts";
import { type AccessPolicy, describePolicy } from "../access/policy.ts";
import { formatAddress } from "../net/address.ts";
import { connectTarget } from "../net/strategy.ts";
import { resolveBundlePaths } from "../pki/credentials.ts";
import { initPki } from "../ca/keygen.ts";
import { pkiExists } from "../ca/issuers.ts";
import { serve, type ServeHandle } from "../serve.ts";
import { type AuditFile, type AuditSink, lineAuditSink, openAuditFile } from "../observe/audit.ts";
import { fsErrorText } from "../util/fs_util.ts";
import { PrometheusMetrics } from "../observe/metrics.ts";
import { type Health, startMetricsServer } from "../observe/metrics_server.ts";
import { DaemonClient } from "../docker/daemon_client.ts";
import { RUNTIME } from "../net/runtime.ts";
import { VERSION } from "../version.ts";
import process from "node:process";
import { listenFdFromEnv, systemdNotifier } from "../net/systemd.ts";
import { parseCertificatesPem } from "../pki/pem.ts";
import { CrlFetcher } from "../config/crl_fetch.ts";
import { crlStaleness, type GateRules } from "../access/authorize.ts";
import { OwnerRecordSlot } from "../docker/owner_record.ts";
import { SessionRecorder } from "../docker/session_record.ts";
import type { ApiPolicy } from "../docker/api_policy.ts";

/** What a running serve is made of; the steps of {@linkcode runServe} fill it in. */
interface ServeRun {
  /** The settings in force (a config file reload replaces the live ones). */
  cmd: ServeCommand;
  io: CliIo;
  logger: Logger;
  /** Change the level of `logger` (a config reload may). */
  setLevel(level: ServeCommand["logLevel"]): void;
  /** What the configuration is loaded from (the reloader reads it again). */
  source: ServeConfigSource;
  /** The configuration in force. */
  inForce: ServeConfig;
  fetcher?: CrlFetcher;
  /** Set once the reloader runs: a fetched CRL asks it for a reload. */
  onCrlChange: (url: string) => void;
  metrics?: PrometheusMetrics;
  auditFile?: AuditFile;
  audit?: AuditSink;
  /** The owner record of isolated roles (`--state-dir`), opened when a role is isolated. */
  containers: OwnerRecordSlot;
}

/** `dockgate serve …`: load the configuration, start the gate, reload and stop on signals. */
export async function runServe(cmd: ServeCommand, io: CliIo): Promise<number> {
  if (cmd.printConfig) {
    for (const s of cmd.settings) io.out(formatSetting(s));
    return 0;
  }
  await checkConfigFile(cmd);
  const run = levelledRun(cmd, io);
  await firstRunPki(run);
  await loadFirstConfig(run);
  // Container ownership of isolated roles rests on this record: no record, no start.
  if (hasIsolatedRole(run.inForce.apiPolicy)) openOwnerRecord(run);
  openAudit(run);
  await checkTarget(run);
  run.metrics = cmd.metrics
    ? new PrometheusMetrics({ version: VERSION, runtime: RUNTIME.name })
    : undefined;
  if (run.metrics) recordExpiries(run.metrics, run.inForce);
  const listenFd = listenFdFromEnv();
  const notifier = systemdNotifier(undefined, (m) => run.logger.log("warn", m));
  const gate = await startGate(run, listenFd);
  const enroll = await startEnroll(run, gate);
  const metricsServer = await startMetrics(run, gate);
  logStartup(run, gate);
  const daily = setInterval(() => warnExpiring(run.logger, run.inForce), 86_400_000);
  (daily as { unref?: () => void }).unref?.();
  const reloader = startReloading(run, gate, enroll);
  const configWatch = watchConfigFile(run, reloader);
  handleSignals(run, gate, reloader, notifier);
  // Said only now that every signal has its handler: whoever waits for this line (a test, a
  // supervisor) may send SIGHUP or SIGTERM at once, and an unhandled SIGHUP would kill us.
  run.logger.log("info", `listening on ${formatAddress(gate.address)}`, {
    target: formatAddress(cmd.target),
    ...(listenFd === undefined ? {} : { from: `systemd (fd ${listenFd})` }),
  });
  await notifier.send("READY=1", `STATUS=listening on ${formatAddress(gate.address)}`);
  await gate.closed;
  await enroll?.close();
  clearInterval(daily);
  configWatch?.stop();
  notifier.close();
  await metricsServer?.close();
  await run.auditFile?.close();
  run.containers.close();
  run.logger.log("info", "stopped");
  return 0;
}

/** The run's logger: the level can change at a config reload, so the base lets all through. */
function levelledRun(cmd: ServeCommand, io: CliIo): ServeRun {
  const base = io.logger("debug", cmd.logFormat);
  let level = cmd.logLevel;
  const logger: Logger = {
    log: (l, message, fields) => {
      if (LEVELS[l] >= LEVELS[level]) base.log(l, message, fields);
    },
  };
  return {
    cmd,
    io,
    logger,
    setLevel: (l) => void (level = l),
    source: undefined as unknown as ServeConfigSource, // set by loadFirstConfig
    inForce: undefined as unknown as ServeConfig, // set by loadFirstConfig
    onCrlChange: () => {},
    containers: new OwnerRecordSlot(cmd.stateDir, { logger }),
  };
}

/** With no TLS flag and no bundle yet: create the PKI, as `dockgate keygen` would. */
async function firstRunPki({ cmd, logger }: ServeRun): Promise<void> {
  if (!cmd.defaultCerts || existsSync(cmd.source.certs!)) return;
  const dir = DEFAULTS.pkiDir;
  if (!(await pkiExists(dir))) {
    logger.log("info", `no certificates yet: creating a PKI in ./${dir} (as "dockgate keygen")`);
  }
  const report = await initPki({ dir });
  for (const f of report.created) logger.log("info", "created", { file: f });
}

/** The CRL sources (files, fetched URLs, the bundle's crl.pem), then the first load. */
async function loadFirstConfig(run: ServeRun): Promise<void> {
  const { cmd, logger } = run;
  const paths = resolveBundlePaths(cmd.source);
  const explicitCrl = cmd.crl.length > 0 || cmd.crlUrls.length > 0;
  // The CA bundle in force, for the CRL fetcher's signature check (updated at each reload).
  const bundle = () =>
    parseCertificatesPem(run.inForce ? run.inForce.tls.caPem : readFileSync(paths.ca, "utf8"));
  run.fetcher = cmd.crlUrls.length > 0
    ? new CrlFetcher({
      urls: cmd.crlUrls,
      cacheDir: cmd.crlCache!,
      refreshMs: cmd.crlRefreshMs,
      cas: bundle,
      logger,
      onChange: (url) => run.onCrlChange(url),
      onResult: (r) => run.metrics?.crlFetch(r),
    })
    : undefined;
  const crls: CrlSource[] = [
    ...cmd.crl.map((path) => ({ path })),
    ...(run.fetcher?.paths() ?? []).map((path) => ({ path })),
  ];
  if (!explicitCrl && cmd.source.certs) {
    crls.push({ path: bundleCrlPath(cmd.source.certs), optional: true });
  }
  run.source = {
    paths,
    crls,
    // The PKI that made this bundle (keygen's layout): its records say whether anything was
    // revoked, by the root or by any intermediate.
    pkiBundleDir: !explicitCrl ? cmd.source.certs : undefined,
    crlStale: cmd.crlStale,
    policy: accessPolicyOf(cmd),
    apiPolicyPath: cmd.policy,
    insecureKeyPerms: cmd.insecureKeyPerms,
  };
  await run.fetcher?.start();
  run.inForce = await loadServeConfig(run.source);
}

/** The audit trail: `--audit-log`, else stderr when there is a policy. */
function openAudit(run: ServeRun): void {
  run.auditFile = run.cmd.auditLog ? openAuditLog(run.cmd.auditLog) : undefined;
  run.audit = run.auditFile ??
    (run.cmd.policy || run.cmd.enroll ? lineAuditSink(run.io.say) : undefined);
}

/**
 * Say at once if the target is not there, rather than on the first client; without
 * --require-target the gate starts anyway (dockerd restarting, or started after us).
 */
async function checkTarget({ cmd, logger }: ServeRun): Promise<void> {
  try {
    (await connectTarget(cmd.target, DEFAULT_MS.targetStartupCheck)).destroy();
  } catch (err) {
    if (cmd.requireTarget) throw err;
    logger.log("warn", "target not answering yet: relaying as soon as it answers", {
      target: formatAddress(cmd.target),
      reason: (err as Error).message,
    });
  }
}

function startGate(run: ServeRun, listenFd: number | undefined): Promise<ServeHandle> {
  const { cmd, inForce: config } = run;
  return serve({
    listen: cmd.listen,
    listenFd,
    target: cmd.target,
    tls: config.tls,
    policy: config.policy,
    revocations: config.revocations,
    logger: run.logger,
    handshakeTimeoutMs: cmd.handshakeTimeoutMs,
    maxConnections: cmd.maxConnections,
    maxHandshakes: cmd.maxHandshakes,
    maxHandshakesPerAddress: cmd.maxHandshakesPerAddress,
    endRevokedOnReload: !cmd.keepRevokedConnections,
    maxConnLifetimeMs: cmd.maxConnLifetimeMs,
    apiPolicy: config.apiPolicy,
    policyMode: cmd.policyMode,
    audit: run.audit,
    maxBodyBytes: cmd.maxBodyBytes,
    containers: run.containers,
    recorder: cmd.recordSessions === undefined ? undefined : new SessionRecorder({
      dir: cmd.recordSessions,
      maxSessionBytes: cmd.recordMaxSessionBytes,
      maxTotalBytes: cmd.recordMaxTotalBytes,
    }),
    metrics: run.metrics,
  });
}

/**
 * The enrolment port (`--enroll`), beside the gate and apart from it: it signs with
 * `--enroll-issuer` and judges renewals by the rules in force (the gate is closed if it
 * cannot start).
 */
async function startEnroll(run: ServeRun, gate: ServeHandle): Promise<EnrollServer | undefined> {
  const enroll = run.cmd.enroll;
  if (!enroll) return undefined;
  try {
    const pkiDir = pkiRootOf(run.cmd.source.certs!);
    const issuer = new IssuerFiles(pkiDir, enroll.issuer);
    await issuer.current(); // refuse to start with an issuer that cannot sign
    const server = await startEnrollServer({
      listen: enroll.listen,
      pkiDir,
      issuer,
      tls: () => run.inForce.tls,
      rules: () => rulesOf(run.inForce),
      logger: run.logger,
      audit: run.audit,
      metrics: run.metrics,
    });
    run.logger.log("info", `enrolment port on ${formatAddress(server.address)}`, {
      issuer: enroll.issuer,
      tokens: tokensDir(pkiDir),
    });
    return server;
  } catch (err) {
    await gate.close();
    throw err;
  }
}

/** The rules of each configuration, made once: a renewal asks for them every time. */
const rulesMade = new WeakMap<ServeConfig, GateRules>();

/** The rules of a configuration, as a connection's decision reads them. */
function rulesOf(config: ServeConfig): GateRules {
  let rules = rulesMade.get(config);
  if (!rules) rulesMade.set(config, rules = newRules(config));
  return rules;
}

function newRules(config: ServeConfig): GateRules {
  return {
    caCertificates: parseCertificatesPem(config.tls.caPem),
    policy: config.policy,
    revocations: config.revocations,
    apiPolicy: config.apiPolicy,
  };
}

/** `/metrics` and `/healthz` on `--metrics`, if given (the gate is closed if that fails). */
async function startMetrics(run: ServeRun, gate: ServeHandle) {
  const metrics = run.metrics;
  if (!metrics || !run.cmd.metrics) return undefined;
  const server = await startMetricsServer({
    address: run.cmd.metrics,
    metrics,
    health: () => health(run.cmd, metrics),
  }).catch(async (err) => {
    await gate.close();
    throw err;
  });
  run.logger.log("info", `metrics on http://${formatHostPort(server.address)}/metrics`, {
    healthz: `http://${formatHostPort(server.address)}/healthz`,
  });
  return server;
}

/** What the gate runs with: allow-lists, CRLs, the client hint, the API policy, expiries. */
function logStartup({ cmd, logger, inForce: config, source }: ServeRun, gate: ServeHandle): void {
  logger.log("info", `policy: ${describePolicy(source.policy)}`, {
    crl: config.revokedCount === undefined ? "none" : `${config.revokedCount} revoked`,
    crl_cas: config.crlIssuers,
  });
  if (cmd.defaultCerts) {
    const host = gate.address.transport === "tcp" && gate.address.host !== "0.0.0.0" &&
        gate.address.host !== "::"
      ? formatAddress(gate.address)
      : `tcp://localhost:${(gate.address as { port: number }).port}`;
    logger.log(
      "info",
      `clients connect with: DOCKER_HOST=${host} DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=${
        clientsDir(DEFAULTS.pkiDir, "default")
      } docker version`,
    );
  }
  if (config.apiPolicy) {
    const roles = [...config.apiPolicy.roles.values()].map((r) => `${r.name}=${r.preset}`);
    logger.log("info", `API policy: ${roles.join(", ")}`, {
      file: cmd.policy,
      mode: cmd.policyMode,
      identities: config.apiPolicy.identities.length,
      audit: cmd.auditLog ?? "stderr",
    });
  }
  warnStaleCrl(logger, config);
  // At start and daily: a certificate or CRL that runs out within 30 days is worth a line.
  warnExpiring(logger, config);
}

/** Whether `policy` has a role with `isolate`. */
function hasIsolatedRole(policy: ApiPolicy | undefined): boolean {
  return [...policy?.roles.values() ?? []].some((r) => r.isolate);
}

/** Open the owner record (throws: serve refuses to start) and say where it is. */
function openOwnerRecord(run: ServeRun): void {
  const record = run.containers.open();
  run.logger.log("info", "owner record of isolated roles", { file: record.path });
}

/** The reloader (SIGHUP, file polling, fetched CRLs). */
function startReloading(run: ServeRun, gate: ServeHandle, enroll?: EnrollServer): Reloader {
  const reloader = startReloader({
    source: run.source,
    config: run.inForce,
    gate,
    logger: run.logger,
    onReload: (c) => {
      run.inForce = c;
      enroll?.reload(c.tls);
      if (hasIsolatedRole(c.apiPolicy) && !run.containers.isOpen) {
        try {
          openOwnerRecord(run);
        } catch (err) {
          run.logger.log("error", "isolated roles own no container until serve restarts", {
            reason: (err as Error).message,
          });
        }
      }
      run.metrics?.reload(true);
      if (run.metrics) recordExpiries(run.metrics, c);
    },
    onReloadFailed: () => run.metrics?.reload(false),
  });
  run.onCrlChange = (url) => void reloader.reload(`CRL fetched from ${url}`);
  return reloader;
}

/** A changed `--config` file: the live settings applied, the others named as needing a restart. */
function watchConfigFile(run: ServeRun, reloader: Reloader): { stop(): void } | undefined {
  const { configFile, reparse } = run.cmd;
  if (!configFile || !reparse) return undefined;
  const { logger } = run;
  return watchConfig(configFile, async () => {
    let next: ServeCommand;
    try {
      await checkConfigFile(run.cmd); // a change someone else could have made is not applied
      next = reparse();
    } catch (err) {
      return logger.log("error", "config reload failed, keeping the settings in force", {
        file: configFile,
        reason: (err as Error).message,
      });
    }
    const changed = next.settings.filter((s) =>
      JSON.stringify(s.value) !==
        JSON.stringify(run.cmd.settings.find((o) => o.name === s.name)?.value)
    ).map((s) => s.name);
    const live = changed.filter((n) => LIVE_SETTINGS.has(n));
    const later = changed.filter((n) => !LIVE_SETTINGS.has(n));
    if (later.length) {
      logger.log("warn", "config changed: these settings need a restart", {
        file: configFile,
        settings: later.join(","),
      });
    }
    if (live.length === 0) return;
    run.setLevel(next.logLevel);
    run.source.policy = accessPolicyOf(next);
    run.source.apiPolicyPath = next.policy;
    run.cmd = { ...run.cmd, ...next, reparse, settings: next.settings };
    logger.log("info", "config changed: applying", { file: configFile, settings: live.join(",") });
    void reloader.reload("config file");
  });
}

/** SIGHUP reloads (and reopens the audit log); SIGTERM/SIGINT drain, a second one stops. */
function handleSignals(
  run: ServeRun,
  gate: ServeHandle,
  reloader: Reloader,
  notifier: ReturnType<typeof systemdNotifier>,
): void {
  run.io.onSignal("SIGHUP", () => {
    run.auditFile?.reopen(); // after logrotate moved it
    void notifier.send("RELOADING=1", `MONOTONIC_USEC=${monotonicMicros()}`)
      .then(() => reloader.reload("SIGHUP"))
      .then((ok) => notifier.send("READY=1", `STATUS=${ok ? "reloaded" : "reload failed"}`));
  });
  onStopSignals(run.io, (drain) => {
    void notifier.send("STOPPING=1");
    run.logger.log(
      "info",
      drain ? `stopping: draining for up to ${run.cmd.drainTimeoutMs} ms` : "stopping now",
    );
    reloader.stop();
    run.fetcher?.stop();
    void (drain ? gate.shutdown(run.cmd.drainTimeoutMs) : gate.close());
  });
}

const LEVELS: Record<string, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** Settings a config file change applies without a restart (the flag table's live column). */
const LIVE_SETTINGS = liveSettings();

/** The allow-lists of a command. */
function accessPolicyOf(cmd: ServeCommand): AccessPolicy {
  return cmd.allowCn.length + cmd.allowSan.length + cmd.allowOu.length === 0
    ? { allowAny: true }
    : { allowCn: cmd.allowCn, allowSan: cmd.allowSan, allowOu: cmd.allowOu };
}

/** Poll `file` once a second; `changed` when its size or mtime changes. */
function watchConfig(file: string, changed: () => void): { stop(): void } {
  const signature = () => {
    try {
      const st = statSync(file);
      return `${st.size}:${st.mtimeMs}`;
    } catch {
      return "missing";
    }
  };
  let last = signature();
  const timer = setInterval(() => {
    const now = signature();
    if (now !== last) {
      last = now;
      changed();
    }
  }, 1000);
  (timer as { unref?: () => void }).unref?.();
  return { stop: () => clearInterval(timer) };
}

/** Days before an end date from which serve warns. */
const EXPIRY_WARNING_DAYS = 30;

/** Warn about the server certificate, the CA and the CRL if any runs out within 30 days. */
function warnExpiring(logger: Logger, config: ServeConfig, now = new Date()): void {
  const dates: [string, Date | undefined, string][] = [];
  try {
    dates.push([
      "server certificate",
      parseCertificatesPem(config.tls.certPem)[0]?.notAfter,
      "dockgate keygen server --force",
    ]);
    for (const ca of parseCertificatesPem(config.tls.caPem)) {
      dates.push([
        `CA certificate (${ca.subject})`,
        ca.notAfter,
        "issue a new CA and roll it out beside the old one",
      ]);
    }
  } catch {
    // Checked when loaded.
  }
  for (const crl of crlsInForce(config)) {
    dates.push([
      `CRL of ${crl.signer.subject} (its nextUpdate)`,
      crl.nextUpdate,
      "publish a fresh CRL (dockgate keygen crl)",
    ]);
  }
  for (const [what, when, fix] of dates) {
    if (!when) continue;
    const days = Math.floor((when.getTime() - now.getTime()) / 86_400_000);
    if (days < EXPIRY_WARNING_DAYS) {
      logger.log("warn", `${what} ${days < 0 ? "has expired" : "expires soon"}`, {
        not_after: when.toISOString(),
        days,
        fix,
      });
    }
  }
}

/** CLOCK_MONOTONIC in microseconds (what `RELOADING=1` is stamped with). */
function monotonicMicros(): string {
  return String(process.hrtime.bigint() / 1000n);
}

/** The server certificate's, the CA's (the earliest) and the CRL's dates, as gauges. */
function recordExpiries(metrics: PrometheusMetrics, config: ServeConfig): void {
  try {
    metrics.expiry("server", parseCertificatesPem(config.tls.certPem)[0]?.notAfter);
    const cas = parseCertificatesPem(config.tls.caPem).map((c) => c.notAfter.getTime());
    metrics.expiry("ca", cas.length ? new Date(Math.min(...cas)) : undefined);
  } catch {
    // The files were checked when loaded; a gauge is never a reason to stop.
  }
  const due = crlsInForce(config).map((c) => c.nextUpdate?.getTime() ?? Infinity);
  const first = Math.min(...due);
  metrics.expiry("crl", Number.isFinite(first) ? new Date(first) : undefined);
  metrics.crlStale(() => crlsInForce(config).filter((c) => crlStaleness(c)).length);
}

/** `/healthz`: the last reload applied, and the target answering `/_ping` (a Docker daemon). */
async function health(cmd: ServeCommand, metrics: PrometheusMetrics): Promise<Health> {
  if (!metrics.lastReloadOk) return { ok: false, reason: "the last reload failed" };
  const client = new DaemonClient(() => connectTarget(cmd.target, 2000));
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const answer = await Promise.race([
      client.request("GET", "/_ping"),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("no answer in 2 s")), 2000);
      }),
    ]);
    if (answer.status !== 200) {
      return { ok: false, reason: `target answered /_ping with ${answer.status}` };
    }
    return { ok: true };
  } catch (err) {
    return { ok: false, reason: `target ${formatAddress(cmd.target)}: ${(err as Error).message}` };
  } finally {
    clearTimeout(timer);
    client.close();
  }
}

function formatHostPort(a: { host: string; port: number }): string {
  return a.host.includes(":") ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/** Open the audit log, with one clear line if it cannot be written. */
function openAuditLog(path: string): AuditFile {
  try {
    return openAuditFile(path);
  } catch (err) {
    throw new Error(`Cannot open audit log "${path}": ${fsErrorText(err)}`);
  }
}
