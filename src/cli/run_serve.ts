/**
 * `dockgate serve …`: the first-run PKI, the configuration as one unit, the gate, the
 * reloader, and the signals (SIGHUP reloads; SIGTERM/SIGINT drain, a second one stops).
 *
 * @module
 */

import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { checkTrustedPath } from "../pki/trust_files.ts";
import { clientsDir } from "../pki/layout.ts";
import { type ServeCommand, type Setting } from "./args.ts";
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
import { initPki, pkiExists } from "../pki/keygen.ts";
import { serve } from "../serve.ts";
import { type AuditFile, type AuditSink, lineAuditSink, openAuditFile } from "../observe/audit.ts";
import { fsErrorText } from "../pki/fs_util.ts";
import { PrometheusMetrics } from "../observe/metrics.ts";
import { type Health, startMetricsServer } from "../observe/metrics_server.ts";
import { DaemonClient } from "../docker/daemon_client.ts";
import { OwnerRecordSlot } from "../docker/owner_record.ts";
import type { ApiPolicy } from "../docker/api_policy.ts";
import { RUNTIME } from "../net/runtime.ts";
import { VERSION } from "../version.ts";
import process from "node:process";
import { listenFdFromEnv, systemdNotifier } from "../net/systemd.ts";
import { parseCertificatesPem } from "../pki/pem.ts";
import { CrlFetcher } from "../config/crl_fetch.ts";
import { crlStaleness } from "../access/authorize.ts";

/** `dockgate serve …`: load the configuration, start the gate, reload and stop on signals. */
export async function runServe(cmd: ServeCommand, io: CliIo): Promise<number> {
  if (cmd.printConfig) {
    for (const s of cmd.settings) io.out(formatSetting(s));
    return 0;
  }
  await checkConfigFile(cmd);
  // The level can change at a config reload: the base logger lets everything through.
  const base = io.logger("debug", cmd.logFormat);
  let level = cmd.logLevel;
  const logger: Logger = {
    log: (l, message, fields) => {
      if (LEVELS[l] >= LEVELS[level]) base.log(l, message, fields);
    },
  };
  if (cmd.defaultCerts && !existsSync(cmd.source.certs!)) {
    const dir = DEFAULTS.pkiDir;
    if (!(await pkiExists(dir))) {
      logger.log("info", `no certificates yet: creating a PKI in ./${dir} (as "dockgate keygen")`);
    }
    const report = await initPki({ dir });
    for (const f of report.created) logger.log("info", "created", { file: f });
  }
  const paths = resolveBundlePaths(cmd.source);
  const policy = accessPolicyOf(cmd);
  const explicitCrl = cmd.crl.length > 0 || cmd.crlUrls.length > 0;
  // The CA bundle in force, for the CRL fetcher's signature check (updated at each reload).
  let bundle = () => parseCertificatesPem(readFileSync(paths.ca, "utf8"));
  let onCrlChange = (_url: string): void => {};
  // What exists only later (the metrics), for the fetcher's callbacks.
  const late: { metrics?: PrometheusMetrics } = {};
  const fetcher = cmd.crlUrls.length > 0
    ? new CrlFetcher({
      urls: cmd.crlUrls,
      cacheDir: cmd.crlCache!,
      refreshMs: cmd.crlRefreshMs,
      cas: () => bundle(),
      logger,
      onChange: (url) => onCrlChange(url),
      onResult: (r) => late.metrics?.crlFetch(r),
    })
    : undefined;
  const crls: CrlSource[] = [
    ...cmd.crl.map((path) => ({ path })),
    ...(fetcher?.paths() ?? []).map((path) => ({ path })),
  ];
  if (!explicitCrl && cmd.source.certs) {
    crls.push({ path: join(cmd.source.certs, "crl.pem"), optional: true });
  }
  const source: ServeConfigSource = {
    paths,
    crls,
    // The PKI that made this bundle (keygen's layout): its records say whether anything was
    // revoked, by the root or by any intermediate.
    pkiBundleDir: !explicitCrl ? cmd.source.certs : undefined,
    crlStale: cmd.crlStale,
    policy,
    apiPolicyPath: cmd.policy,
    insecureKeyPerms: cmd.insecureKeyPerms,
  };
  await fetcher?.start();
  const config = await loadServeConfig(source);
  bundle = () => parseCertificatesPem(inForce.tls.caPem);
  // Container ownership of isolated roles rests on this record: no record, no start.
  const containers = new OwnerRecordSlot(cmd.stateDir);
  if (hasIsolatedRole(config.apiPolicy)) openOwnerRecord(containers, logger);
  const auditFile = cmd.auditLog ? openAudit(cmd.auditLog) : undefined;
  // With a policy, the audit trail goes to stderr unless a file is given.
  const audit: AuditSink | undefined = auditFile ??
    (cmd.policy ? lineAuditSink(io.say) : undefined);
  // Say at once if the target is not there, rather than on the first client; without
  // --require-target the gate starts anyway (dockerd restarting, or started after us).
  try {
    (await connectTarget(cmd.target, DEFAULT_MS.targetStartupCheck)).destroy();
  } catch (err) {
    if (cmd.requireTarget) throw err;
    logger.log("warn", "target not answering yet: relaying as soon as it answers", {
      target: formatAddress(cmd.target),
      reason: (err as Error).message,
    });
  }
  let inForce = config;
  const metrics = cmd.metrics
    ? new PrometheusMetrics({ version: VERSION, runtime: RUNTIME.name })
    : undefined;
  late.metrics = metrics;
  if (metrics) recordExpiries(metrics, config);

  const listenFd = listenFdFromEnv();
  const notifier = systemdNotifier(undefined, (m) => logger.log("warn", m));
  const gate = await serve({
    listen: cmd.listen,
    listenFd,
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
    apiPolicy: config.apiPolicy,
    policyMode: cmd.policyMode,
    audit,
    maxBodyBytes: cmd.maxBodyBytes,
    containers,
    metrics,
  });
  const metricsServer = metrics && cmd.metrics
    ? await startMetricsServer({
      address: cmd.metrics,
      metrics,
      health: () => health(cmd, metrics),
    }).catch(async (err) => {
      await gate.close();
      throw err;
    })
    : undefined;
  if (metricsServer) {
    logger.log("info", `metrics on http://${formatHostPort(metricsServer.address)}/metrics`, {
      healthz: `http://${formatHostPort(metricsServer.address)}/healthz`,
    });
  }
  logger.log("info", `policy: ${describePolicy(policy)}`, {
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
  inForce = config;
  warnExpiring(logger, inForce);
  const daily = setInterval(() => warnExpiring(logger, inForce), 86_400_000);
  (daily as { unref?: () => void }).unref?.();
  const reloader: Reloader = startReloader({
    source,
    config,
    gate,
    logger,
    onReload: (c) => {
      inForce = c;
      if (hasIsolatedRole(c.apiPolicy) && !containers.isOpen) {
        try {
          openOwnerRecord(containers, logger);
        } catch (err) {
          logger.log("error", "isolated roles own no container until serve restarts", {
            reason: (err as Error).message,
          });
        }
      }
      metrics?.reload(true);
      if (metrics) recordExpiries(metrics, c);
    },
    onReloadFailed: () => metrics?.reload(false),
  });
  onCrlChange = (url) => void reloader.reload(`CRL fetched from ${url}`);
  const configWatch = cmd.configFile && cmd.reparse
    ? watchConfig(cmd.configFile, async () => {
      let next: ServeCommand;
      try {
        await checkConfigFile(cmd); // a change someone else could have made is not applied
        next = cmd.reparse!();
      } catch (err) {
        return logger.log("error", "config reload failed, keeping the settings in force", {
          file: cmd.configFile,
          reason: (err as Error).message,
        });
      }
      const changed = next.settings.filter((s) =>
        JSON.stringify(s.value) !==
          JSON.stringify(cmd.settings.find((o) => o.name === s.name)?.value)
      ).map((s) => s.name);
      if (changed.length === 0) return;
      const live = changed.filter((n) => LIVE_SETTINGS.has(n));
      const later = changed.filter((n) => !LIVE_SETTINGS.has(n));
      if (later.length) {
        logger.log("warn", "config changed: these settings need a restart", {
          file: cmd.configFile,
          settings: later.join(","),
        });
      }
      if (live.length === 0) return;
      level = next.logLevel;
      source.policy = accessPolicyOf(next);
      source.apiPolicyPath = next.policy;
      cmd = { ...cmd, ...next, reparse: cmd.reparse, settings: next.settings };
      logger.log("info", "config changed: applying", {
        file: cmd.configFile,
        settings: live.join(","),
      });
      void reloader.reload("config file");
    })
    : undefined;
  io.onSignal("SIGHUP", () => {
    auditFile?.reopen(); // after logrotate moved it
    void notifier.send("RELOADING=1", `MONOTONIC_USEC=${monotonicMicros()}`)
      .then(() => reloader.reload("SIGHUP"))
      .then((ok) => notifier.send("READY=1", `STATUS=${ok ? "reloaded" : "reload failed"}`));
  });
  onStopSignals(io, (drain) => {
    void notifier.send("STOPPING=1");
    logger.log(
      "info",
      drain ? `stopping: draining for up to ${cmd.drainTimeoutMs} ms` : "stopping now",
    );
    reloader.stop();
    fetcher?.stop();
    void (drain ? gate.shutdown(cmd.drainTimeoutMs) : gate.close());
  });
  // Said only now that every signal has its handler: whoever waits for this line (a test, a
  // supervisor) may send SIGHUP or SIGTERM at once, and an unhandled SIGHUP would kill us.
  logger.log("info", `listening on ${formatAddress(gate.address)}`, {
    target: formatAddress(cmd.target),
    ...(listenFd === undefined ? {} : { from: `systemd (fd ${listenFd})` }),
  });
  await notifier.send("READY=1", `STATUS=listening on ${formatAddress(gate.address)}`);
  await gate.closed;
  clearInterval(daily);
  configWatch?.stop();
  notifier.close();
  await metricsServer?.close();
  await auditFile?.close();
  containers.close();
  logger.log("info", "stopped");
  return 0;
}

const LEVELS: Record<string, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** Settings a config file change applies without a restart. */
const LIVE_SETTINGS = new Set(["allow-cn", "allow-san", "allow-ou", "policy", "log-level"]);

/** The allow-lists of a command. */
function accessPolicyOf(cmd: ServeCommand): AccessPolicy {
  return cmd.allowCn.length + cmd.allowSan.length + cmd.allowOu.length === 0
    ? { allowAny: true }
    : { allowCn: cmd.allowCn, allowSan: cmd.allowSan, allowOu: cmd.allowOu };
}

/** `name = value  (source)`. */
function formatSetting(s: Setting): string {
  const value = s.value === undefined
    ? "(unset)"
    : Array.isArray(s.value)
    ? s.value.join(",")
    : String(s.value);
  return `${s.name} = ${value}  (${s.source})`;
}

/** Poll `file` once a second; `changed` when its size or mtime changes. */
/**
 * The `--config` file is trusted like the CA bundle, the CRL and the policy file (its
 * allow-lists and policy apply live: whoever can write it can let themselves in). The file
 * cannot waive its own check: only `--insecure-key-perms` given as a flag or in the
 * environment does.
 */
async function checkConfigFile(cmd: ServeCommand): Promise<void> {
  if (!cmd.configFile) return;
  const waiver = cmd.settings.find((s) => s.name === "insecure-key-perms");
  if (waiver?.value === true && waiver.source !== "file") return;
  await checkTrustedPath(cmd.configFile, "config file");
}

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

/** Whether `policy` has a role with `isolate`. */
function hasIsolatedRole(policy: ApiPolicy | undefined): boolean {
  return [...policy?.roles.values() ?? []].some((r) => r.isolate);
}

/** Open the owner record (throws: serve refuses to start) and say where it is. */
function openOwnerRecord(slot: OwnerRecordSlot, logger: Logger): void {
  const record = slot.open();
  logger.log("info", "owner record of isolated roles", { file: record.path });
}

/** Open the audit log, with one clear line if it cannot be written. */
function openAudit(path: string): AuditFile {
  try {
    return openAuditFile(path);
  } catch (err) {
    throw new Error(`Cannot open audit log "${path}": ${fsErrorText(err)}`);
  }
}
