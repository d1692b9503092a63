/**
 * An in-process gate with an API policy in front of a recording HTTP target: a `node:http`
 * server on a unix socket (llhttp, a parser that is not ours) that records every request it
 * parses and answers it; `POST /containers/{id}/attach` with `Upgrade: tcp` switches to a
 * raw echo, as dockerd does. Real TLS, real sockets.
 */

import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import http from "node:http";
import type net from "node:net";
import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { initPki, issueClientBundle } from "../../src/ca/keygen.ts";
import { pkiLayout } from "../../src/ca/layout.ts";
import { resolveBundlePaths } from "../../src/pki/credentials.ts";
import { loadServeConfig } from "../../src/config/serve_config.ts";
import { serve, type ServeHandle } from "../../src/serve.ts";
import { type ApiPolicy, compileApiPolicy } from "../../src/docker/api_policy.ts";
import type { AuditRecord } from "../../src/observe/audit.ts";
import type { Creds } from "./tls_peers.ts";
import { freeTempDir } from "./wait.ts";

/** The engine version the recording target claims (no shield is active for it). */
export const TARGET_VERSION = "20.10.24";

/**
 * The full ID the recording target gives the container `name` (the gate's container check
 * rewrites requests to it): the SHA-256 of the name.
 */
export function fakeContainerId(name: string): string {
  return createHash("sha256").update(name).digest("hex");
}

/**
 * The gate's own questions (its `DaemonClient` says `User-Agent: dockgate`), answered as a
 * daemon would for a container made as a no-escape role makes them, and not recorded: a
 * container's or exec instance's inspect, and `/info`. An exec instance `x` is in container `x`.
 */
function gateQuestion(req: http.IncomingMessage): { status: number; body: string } | undefined {
  if (req.method !== "GET" || req.headers["user-agent"] !== "dockgate") return undefined;
  const path = req.url!.split("?")[0];
  if (path === "/info") return { status: 200, body: JSON.stringify({ CgroupVersion: "2" }) };
  const m = /^\/(containers|exec)\/([^/]+)\/json$/.exec(path);
  if (!m) return undefined;
  const name = decodeURIComponent(m[2]);
  const id = fakeContainerId(name);
  const body = m[1] === "exec"
    ? { ID: name, ContainerID: name, Running: false }
    : { Id: id, Name: `/${name}`, Config: { Image: "bb" }, HostConfig: { NetworkMode: "none" } };
  return { status: 200, body: JSON.stringify(body) };
}

/** A request as the recording target parsed it. */
export interface Recorded {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** An upgrade request that was not switched: its body was not handed to the target's code. */
  bodyUnseen?: boolean;
}

/** The fixture. */
export interface ApiGate {
  gate: ServeHandle;
  port: number;
  policy: ApiPolicy;
  recorded: Recorded[];
  audit: AuditRecord[];
  /** Raw upgraded streams the target saw, per connection: what the client sent after 101. */
  upgraded: Buffer[];
  creds(name: string): Promise<Creds>;
}

/**
 * The test policy: `ro` read-only, `ci` no-escape (binds under /srv/ci, every image name),
 * `iso` no-escape isolated per owner, `root` full.
 */
export const TEST_POLICY = {
  roles: {
    ro: { preset: "read-only" },
    // Every image name: the relay tests use `POST /images/load` as a bulk upload route.
    ci: { preset: "no-escape", allowBindMounts: ["/srv/ci"], allowImageNames: ["*"] },
    iso: { preset: "no-escape", isolate: true },
    root: { preset: "full" },
  },
  identities: [
    { cn: "ro", role: "ro" },
    { cn: "ci", role: "ci" },
    { cn: "iso", role: "iso" },
    { cn: "root", role: "root" },
  ],
};

/** Run `fn` with a gate (policy {@linkcode TEST_POLICY}) and a recording target. */
export async function withApiGate(
  fn: (f: ApiGate) => Promise<void>,
  options: {
    mode?: "enforce" | "audit";
    maxBodyBytes?: number;
    /** The engine version the target claims; `null`: it cannot say. Default 20.10.24. */
    targetVersion?: string | null;
    /**
     * Answer the gate's own inspects (see `gateQuestion`). Default: true; false: they are
     * recorded and answered like any request (`{"ok":true,…}`: no ID).
     */
    gateQuestions?: boolean;
    /** The API policy. Default: {@linkcode TEST_POLICY}. */
    policy?: unknown;
  } = {},
): Promise<void> {
  const dir = await freeTempDir("dg-api-");
  const recorded: Recorded[] = [];
  const upgraded: Buffer[] = [];
  const sockets = new Set<net.Socket>();
  const target = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      // The gate's own version question (for its shields, see shields.ts): answered as a
      // 20.10 daemon does, and not recorded (it is not a client's request).
      if (req.method === "GET" && req.url === "/version") {
        const version = options.targetVersion === undefined
          ? TARGET_VERSION
          : options.targetVersion;
        const v = JSON.stringify({ Version: version, ApiVersion: "1.41" });
        res.writeHead(version === null ? 500 : 200, {
          "content-type": "application/json",
          "content-length": v.length,
        });
        return res.end(v);
      }
      const own = options.gateQuestions === false ? undefined : gateQuestion(req);
      if (own) {
        res.writeHead(own.status, {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(own.body),
        });
        return res.end(own.body);
      }
      recorded.push({
        method: req.method!,
        url: req.url!,
        headers: req.headers,
        body: Buffer.concat(chunks),
      });
      if (/\/attach$/.test(req.url!.split("?")[0])) {
        res.writeHead(404, { "content-type": "application/json" });
        return res.end('{"message":"no such container"}');
      }
      const body = JSON.stringify({ ok: true, url: req.url });
      res.writeHead(200, { "content-type": "application/json", "content-length": body.length });
      res.end(body);
    });
  });
  // dockerd's hijack: 101, then a raw echo with half-close.
  target.on("upgrade", (req, socket: net.Socket, head: Buffer) => {
    socket.on("error", () => {});
    if (!/\/attach$/.test(req.url!.split("?")[0])) {
      // Like dockerd, only attach switches; any other request is answered as usual. Its body
      // is not handed over here (Deno's node:http keeps it), so it is recorded as unseen.
      recorded.push({
        method: req.method!,
        url: req.url!,
        headers: req.headers,
        body: Buffer.alloc(0),
        bodyUnseen: true,
      });
      socket.end("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
      return;
    }
    recorded.push({
      method: req.method!,
      url: req.url!,
      headers: req.headers,
      body: Buffer.alloc(0),
    });
    const seen: Buffer[] = [head];
    const index = upgraded.push(Buffer.alloc(0)) - 1;
    socket.write(
      "HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n" +
        "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n",
    );
    socket.write("stream-start\n");
    // A container that never reads its stdin: nothing is read from the stream.
    if (req.url!.includes("hold=1") || req.url!.includes(fakeContainerId("hold=1"))) {
      return void socket.pause();
    }
    if (head.length) socket.write(head);
    socket.on("data", (d: Buffer) => {
      seen.push(d);
      socket.write(d);
    });
    socket.on("end", () => {
      upgraded[index] = Buffer.concat(seen);
      socket.end("stream-end\n");
    });
    socket.on("error", () => {});
  });
  target.on("connection", (s: net.Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  const sock = join(dir, "target.sock");
  await new Promise<void>((r) => target.listen(sock, () => r()));
  let gate: ServeHandle | undefined;
  try {
    await initPki({ dir: join(dir, "pki") });
    const config = await loadServeConfig({
      paths: resolveBundlePaths({ certs: pkiLayout(join(dir, "pki")).server.dir }),
      policy: { allowAny: true },
    });
    const policy = compileApiPolicy(options.policy ?? TEST_POLICY, "test");
    const audit: AuditRecord[] = [];
    gate = await serve({
      listen: { transport: "tcp", host: "127.0.0.1", port: 0 },
      target: { transport: "unix", path: sock },
      tls: config.tls,
      policy: config.policy,
      apiPolicy: policy,
      policyMode: options.mode,
      maxBodyBytes: options.maxBodyBytes,
      audit: { write: (r) => void audit.push(r) },
      selfTest: false,
    });
    const caPem = config.tls.caPem;
    const port = (gate.address as { port: number }).port;
    await fn({
      gate,
      port,
      policy,
      recorded,
      audit,
      upgraded,
      async creds(name) {
        const bundle = join(dir, "pki", "clients", name);
        await issueClientBundle(name, { dir: join(dir, "pki") }).catch(() => {});
        return {
          ca: caPem,
          cert: await readFile(join(bundle, "cert.pem"), "utf8"),
          key: await readFile(join(bundle, "key.pem"), "utf8"),
        };
      },
    });
  } finally {
    await gate?.close();
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => target.close(() => r()));
    await rm(dir, { recursive: true, force: true });
  }
}
