/**
 * The contenders: each one started in the same role (mTLS listener on 127.0.0.1 that
 * demands a client certificate from our CA and relays to one unix socket), with the same
 * certificate files.
 *
 * @module
 */

import { join } from "node:path";
import { findExe, freePort, type Proc, startProc, waitForLog, waitForPort } from "./proc.ts";
import { SOCKET_PROXY_ENV, socketProxyConfig } from "./socket_proxy.ts";

/** Certificate files of one PKI (made by `dockgate keygen`). */
export interface Pki {
  /** `ecdsa-p256` or `rsa-2048`. */
  keyType: string;
  /** Server bundle dir (ca.pem, cert.pem, key.pem). */
  serverDir: string;
  /** Client bundle dir (ca.pem, cert.pem, key.pem). */
  clientDir: string;
  /** Server cert followed by its key (HAProxy's `crt`). */
  serverCombined: string;
}

/** What a contender needs to start. */
export interface StartContext {
  /** A fresh dir for its config and log. */
  dir: string;
  /** Certificates. */
  pki: Pki;
  /** The unix socket to relay to. */
  target: string;
  /** Repository root. */
  root: string;
  /** The Deno binary. */
  deno: string;
  /** How to run dockgate on Node: the command line before `serve …`. */
  nodeDockgate?: string[];
  /** Connection cap that fits the open-files limit (2 descriptors per relayed connection). */
  maxConn: number;
}

/** A running contender. */
export interface Running {
  /** Where clients connect: a TLS port on 127.0.0.1, or a plain unix socket (client tunnel). */
  endpoint: { port: number } | { unix: string };
  /** Pids whose CPU and memory count as the gate's (trees). */
  pids: number[];
  /** The processes, for logs. */
  procs: Proc[];
  /** Stop everything. */
  stop(): Promise<void>;
}

/** One contender. */
export interface Contender {
  /** Short id used on the command line and in JSON. */
  id: string;
  /** Label for tables. */
  label: string;
  /** A third-party peer (counts for "best peer"), as opposed to dockgate itself. */
  peer: boolean;
  /** Why it cannot run here, or undefined. */
  missing(ctx: { nodeDockgate?: string[] }): string | undefined;
  /** Start it; resolves once it accepts connections. */
  start(ctx: StartContext): Promise<Running>;
}

const single = (proc: Proc, port: number): Running => ({
  endpoint: { port },
  pids: [proc.pid],
  procs: [proc],
  stop: () => proc.stop(),
});

function serveArgs(ctx: StartContext, port: number): string[] {
  return [
    "serve",
    "--listen",
    `127.0.0.1:${port}`,
    "--target",
    `unix://${ctx.target}`,
    "--certs",
    ctx.pki.serverDir,
    "--max-connections",
    "30000",
    // Every load generator here is one address (127.0.0.1) opening up to 64 handshakes at
    // once, and the memory workload thousands: the handshake caps guard untrusted networks.
    "--max-handshakes",
    "30000",
    "--max-handshakes-per-address",
    "30000",
    "--drain-timeout",
    "1s",
  ];
}

async function startDockgate(
  ctx: StartContext,
  cmd: string[],
  what: string,
  extra: string[] = [],
): Promise<Running> {
  const port = freePort();
  const proc = startProc(
    cmd[0],
    [...cmd.slice(1), ...serveArgs(ctx, port), ...extra],
    join(ctx.dir, "log"),
  );
  await waitForLog(proc, /INFO listening on tcp:\/\//, what);
  return single(proc, port);
}

const denoCmd = (ctx: StartContext) => [ctx.deno, "run", "-A", "--quiet", join(ctx.root, "cli.ts")];

/** dockgate serve on Deno. */
export const dockgateDeno: Contender = {
  id: "dockgate-deno",
  label: "dockgate (Deno)",
  peer: false,
  missing: () => undefined,
  start: (ctx) => startDockgate(ctx, denoCmd(ctx), "dockgate serve (Deno)"),
};

/** dockgate serve on Node (the npm build, or a bundle made for the bench). */
export const dockgateNode: Contender = {
  id: "dockgate-node",
  label: "dockgate (Node)",
  peer: false,
  missing: (
    c,
  ) => (c.nodeDockgate ? undefined : "no Node build of dockgate (npm/ missing and esbuild failed)"),
  start: (ctx) => startDockgate(ctx, ctx.nodeDockgate!, "dockgate serve (Node)"),
};

/**
 * The API policy the `-policy` contenders run with: the bench's client ("default") is a
 * no-escape identity, so every request goes through the HTTP-aware relay; its audit trail goes
 * to a file, as an operator would run it.
 */
async function policyArgs(ctx: StartContext, isolate = false): Promise<string[]> {
  const file = join(ctx.dir, "policy.json");
  await Deno.writeTextFile(
    file,
    JSON.stringify({
      roles: {
        // allowImageNames "*": the upload workload is `docker load`'s POST /images/load.
        ci: { preset: "no-escape", allowImageNames: ["*"], ...(isolate ? { isolate: true } : {}) },
      },
      identities: [{ cn: "default", role: "ci" }],
    }),
    { mode: 0o600 },
  );
  const args = ["--policy", file, "--audit-log", join(ctx.dir, "audit.log")];
  if (!isolate) return args;
  // The container the target answers for (bench/tools/target.mjs) is the identity's by the
  // gate's record, as it would be after the gate forwarded its create.
  const state = join(ctx.dir, "state");
  await Deno.mkdir(state, { recursive: true, mode: 0o700 });
  await Deno.writeTextFile(join(state, "owners.jsonl"), `["default","${"b".repeat(64)}"]\n`, {
    mode: 0o600,
  });
  return [...args, "--state-dir", state];
}

/** dockgate serve on Deno, the client a no-escape identity (the policy relay). */
export const dockgateDenoPolicy: Contender = {
  id: "dockgate-deno-policy",
  label: "dockgate no-escape (Deno)",
  peer: false,
  missing: () => undefined,
  start: async (ctx) =>
    startDockgate(ctx, denoCmd(ctx), "dockgate serve --policy (Deno)", await policyArgs(ctx)),
};

/** dockgate serve on Node, the client a no-escape identity (the policy relay). */
export const dockgateNodePolicy: Contender = {
  id: "dockgate-node-policy",
  label: "dockgate no-escape (Node)",
  peer: false,
  missing: (c) => dockgateNode.missing(c),
  start: async (ctx) =>
    startDockgate(ctx, ctx.nodeDockgate!, "dockgate serve --policy (Node)", await policyArgs(ctx)),
};

/**
 * The API policy of the `-full-audit` contenders: the bench's client is a `full` role with
 * `"audit": "requests"` (the HTTP-aware relay, everything allowed, a record per request).
 */
async function fullAuditArgs(ctx: StartContext): Promise<string[]> {
  const file = join(ctx.dir, "policy-full-audit.json");
  await Deno.writeTextFile(
    file,
    JSON.stringify({
      roles: { admin: { preset: "full", audit: "requests" } },
      identities: [{ cn: "default", role: "admin" }],
    }),
    { mode: 0o600 },
  );
  return ["--policy", file, "--audit-log", join(ctx.dir, "audit.log")];
}

/** dockgate serve on Deno, the client a full identity audited per request. */
export const dockgateDenoFullAudit: Contender = {
  id: "dockgate-deno-full-audit",
  label: "dockgate full, request audit (Deno)",
  peer: false,
  missing: () => undefined,
  start: async (ctx) =>
    startDockgate(
      ctx,
      denoCmd(ctx),
      "dockgate serve --policy full audit (Deno)",
      await fullAuditArgs(ctx),
    ),
};

/** dockgate serve on Node, the client a full identity audited per request. */
export const dockgateNodeFullAudit: Contender = {
  id: "dockgate-node-full-audit",
  label: "dockgate full, request audit (Node)",
  peer: false,
  missing: (c) => dockgateNode.missing(c),
  start: async (ctx) =>
    startDockgate(
      ctx,
      ctx.nodeDockgate!,
      "dockgate serve --policy full audit (Node)",
      await fullAuditArgs(ctx),
    ),
};

/** dockgate serve on Deno, the client a no-escape identity isolated per owner. */
export const dockgateDenoIsolated: Contender = {
  id: "dockgate-deno-isolated",
  label: "dockgate isolated (Deno)",
  peer: false,
  missing: () => undefined,
  start: async (ctx) =>
    startDockgate(
      ctx,
      denoCmd(ctx),
      "dockgate serve --policy, isolate (Deno)",
      await policyArgs(ctx, true),
    ),
};

/** dockgate serve on Node, the client a no-escape identity isolated per owner. */
export const dockgateNodeIsolated: Contender = {
  id: "dockgate-node-isolated",
  label: "dockgate isolated (Node)",
  peer: false,
  missing: (c) => dockgateNode.missing(c),
  start: async (ctx) =>
    startDockgate(
      ctx,
      ctx.nodeDockgate!,
      "dockgate serve --policy, isolate (Node)",
      await policyArgs(ctx, true),
    ),
};

/**
 * Client tunnel: `dockgate connect` (Deno) on a unix socket → `dockgate serve` (Deno). Not a
 * peer of the gates; shows what a tunnel adds.
 */
export const tunnelDeno: Contender = {
  id: "tunnel-deno",
  label: "dockgate connect→serve (Deno)",
  peer: false,
  missing: () => undefined,
  async start(ctx) {
    const serve = await startDockgate(ctx, denoCmd(ctx), "dockgate serve (Deno, for the tunnel)");
    const port = (serve.endpoint as { port: number }).port;
    const sock = join(ctx.dir, "tunnel.sock");
    const proc = startProc(ctx.deno, [
      ...denoCmd(ctx).slice(1),
      "connect",
      "--server",
      `127.0.0.1:${port}`,
      "--listen",
      `unix://${sock}`,
      "--certs",
      ctx.pki.clientDir,
      "--drain-timeout",
      "1s",
    ], join(ctx.dir, "connect.log"));
    try {
      await waitForLog(proc, /INFO listening on unix:/, "dockgate connect (Deno)");
    } catch (e) {
      await serve.stop();
      throw e;
    }
    return {
      endpoint: { unix: sock },
      pids: [...serve.pids, proc.pid],
      procs: [...serve.procs, proc],
      stop: async () => {
        await proc.stop();
        await serve.stop();
      },
    };
  },
};

/** socat, one process per connection (`fork`), as commonly documented for Docker. */
export const socat: Contender = {
  id: "socat",
  label: "socat",
  peer: true,
  missing: () => (findExe("socat") ? undefined : "socat not installed"),
  async start(ctx) {
    const port = freePort();
    const d = ctx.pki.serverDir;
    const proc = startProc("socat", [
      `OPENSSL-LISTEN:${port},bind=127.0.0.1,fork,reuseaddr,cert=${d}/cert.pem,key=${d}/key.pem,` +
      `cafile=${d}/ca.pem,verify=1`,
      `UNIX-CONNECT:${ctx.target}`,
    ], join(ctx.dir, "log"));
    await waitForPort(port, proc, "socat");
    return single(proc, port);
  },
};

/** stunnel4 (threads), foreground, verifying the client chain. */
export const stunnel: Contender = {
  id: "stunnel",
  label: "stunnel4",
  peer: true,
  missing: () => (findExe("stunnel4") || findExe("stunnel") ? undefined : "stunnel4 not installed"),
  async start(ctx) {
    const port = freePort();
    const d = ctx.pki.serverDir;
    const conf = join(ctx.dir, "stunnel.conf");
    await Deno.writeTextFile(
      conf,
      [
        "foreground = yes",
        "pid =",
        "[gate]",
        `accept = 127.0.0.1:${port}`,
        `connect = ${ctx.target}`,
        `cert = ${d}/cert.pem`,
        `key = ${d}/key.pem`,
        `CAfile = ${d}/ca.pem`,
        "verifyChain = yes",
        "requireCert = yes",
        "",
      ].join("\n"),
    );
    const proc = startProc(findExe("stunnel4") ?? "stunnel", [conf], join(ctx.dir, "log"));
    await waitForPort(port, proc, "stunnel");
    return single(proc, port);
  },
};

/** HAProxy in TCP mode with `verify required` (default threads: one per CPU). */
export const haproxy: Contender = {
  id: "haproxy",
  label: "HAProxy",
  peer: true,
  missing: () => (findExe("haproxy") ? undefined : "haproxy not installed"),
  async start(ctx) {
    const port = freePort();
    const conf = join(ctx.dir, "haproxy.cfg");
    await Deno.writeTextFile(
      conf,
      [
        "global",
        `  maxconn ${ctx.maxConn}`,
        "  ssl-default-bind-options ssl-min-ver TLSv1.2",
        "defaults",
        "  mode tcp",
        `  maxconn ${ctx.maxConn}`,
        "  timeout connect 10s",
        "  timeout client 1h",
        "  timeout server 1h",
        "frontend gate",
        `  bind 127.0.0.1:${port} ssl crt ${ctx.pki.serverCombined} ca-file ${ctx.pki.serverDir}/ca.pem verify required`,
        "  default_backend target",
        "backend target",
        `  server t unix@${ctx.target}`,
        "",
      ].join("\n"),
    );
    const proc = startProc(findExe("haproxy")!, ["-db", "-f", conf], join(ctx.dir, "log"));
    await waitForPort(port, proc, "haproxy");
    return single(proc, port);
  },
};

/**
 * docker-socket-proxy's rules (Tecnativa) on HAProxy, `mode http`, with mutual TLS on the bind
 * (see socket_proxy.ts): the filtering proxy users pick instead of a policy gate. Measured in
 * workload 6 only, beside dockgate's raw and no-escape relays.
 */
export const socketProxy: Contender = {
  id: "socket-proxy",
  label: "docker-socket-proxy rules (HAProxy)",
  peer: true,
  missing: () => haproxy.missing({}),
  async start(ctx) {
    const port = freePort();
    const conf = join(ctx.dir, "haproxy.cfg");
    await Deno.writeTextFile(
      conf,
      socketProxyConfig({
        port,
        crt: ctx.pki.serverCombined,
        caFile: `${ctx.pki.serverDir}/ca.pem`,
        socket: ctx.target,
        maxConn: ctx.maxConn,
      }),
    );
    const proc = startProc(findExe("haproxy")!, ["-db", "-f", conf], join(ctx.dir, "log"), {
      env: SOCKET_PROXY_ENV,
    });
    await waitForPort(port, proc, "haproxy (docker-socket-proxy rules)");
    return single(proc, port);
  },
};

/** Every contender, in table order. */
export const ALL_CONTENDERS: Contender[] = [
  dockgateDeno,
  dockgateNode,
  dockgateDenoPolicy,
  dockgateNodePolicy,
  dockgateDenoFullAudit,
  dockgateNodeFullAudit,
  dockgateDenoIsolated,
  dockgateNodeIsolated,
  tunnelDeno,
  socat,
  stunnel,
  haproxy,
  socketProxy,
];
