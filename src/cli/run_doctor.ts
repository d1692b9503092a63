/**
 * `dockgate doctor`: one pass/fail line per check, with the fix, and exit 0 only when all
 * pass. Files (`report/doctor.ts`): a PKI or a bundle. Network: the target answers `/_ping`, the
 * listen port is free, and a full mTLS round trip to a running serve.
 *
 * @module
 */

import net from "node:net";
import tls from "node:tls";
import { readFile } from "node:fs/promises";
import { hostname } from "node:os";
import type { DoctorCommand } from "./args.ts";
import type { CliIo } from "./io.ts";
import { checkBundle, checkPki, type CheckResult } from "../report/doctor.ts";
import { DaemonClient } from "../docker/daemon_client.ts";
import { connectTarget } from "../net/strategy.ts";
import { formatAddress, type TcpAddress } from "../net/address.ts";
import { parseCertificatePem } from "../pki/pem.ts";
import { parsePeerCertificate } from "../access/identity.ts";
import { bundlePaths } from "../ca/layout.ts";
import { EKU_SERVER_AUTH } from "../pki/usage.ts";

/** Run every check the command asks for; print them; 0 when all passed. */
export async function runDoctor(cmd: DoctorCommand, io: CliIo): Promise<number> {
  const results: CheckResult[] = [];
  const hosts = cmd.server ? [cmd.server.host] : ["localhost", hostname()];
  if (cmd.pki) results.push(...await checkPki(cmd.pki, hosts));
  if (cmd.certs) {
    const role = await bundleRole(cmd.certs);
    results.push(
      ...await checkBundle(cmd.certs, {
        role,
        label: `bundle ${cmd.certs}`,
        reissue: role === "server"
          ? "dockgate keygen server --force"
          : "dockgate keygen client NAME --force",
        hosts: role === "server" ? hosts : undefined,
      }),
    );
  }
  if (cmd.target) results.push(await targetCheck(cmd));
  if (cmd.listen) results.push(await portCheck(cmd.listen));
  if (cmd.server) results.push(await roundTrip(cmd));
  for (const r of results) {
    const detail = r.detail ? ` (${r.detail})` : "";
    io.out(
      `${r.ok ? "PASS" : "FAIL"} ${r.what}${detail}${r.ok || !r.fix ? "" : ` -> fix: ${r.fix}`}`,
    );
  }
  const failed = results.filter((r) => !r.ok).length;
  io.say(
    failed ? `${failed} of ${results.length} checks failed` : `all ${results.length} checks passed`,
  );
  return failed ? 1 : 0;
}

/** A bundle's role by its certificate's usage. */
async function bundleRole(dir: string): Promise<"server" | "client"> {
  try {
    const cert = parseCertificatePem(await readFile(bundlePaths(dir).cert, "utf8"));
    const { identity } = parsePeerCertificate(new Uint8Array(cert.rawData));
    return identity.extKeyUsages?.includes(EKU_SERVER_AUTH) ? "server" : "client";
  } catch {
    return "client";
  }
}

async function targetCheck(cmd: DoctorCommand): Promise<CheckResult> {
  const target = cmd.target!;
  const what = `target ${formatAddress(target)} answers /_ping`;
  const client = new DaemonClient(() => connectTarget(target, 3000));
  try {
    const answer = await client.request("GET", "/_ping");
    if (answer.status !== 200) {
      return {
        ok: false,
        what,
        detail: `status ${answer.status}`,
        fix: "is this a Docker daemon?",
      };
    }
    const api = answer.headers["api-version"];
    return { ok: true, what, detail: api ? `API ${api}` : "no Api-Version header" };
  } catch (err) {
    return {
      ok: false,
      what,
      detail: (err as Error).message,
      fix: target.transport === "unix"
        ? `start dockerd (systemctl start docker) or pass --target`
        : "check the address and that dockerd listens there",
    };
  } finally {
    client.close();
  }
}

async function portCheck(listen: TcpAddress): Promise<CheckResult> {
  const what = `port ${formatAddress(listen)} is free to listen on`;
  const server = net.createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(listen.port, listen.host, () => resolve());
    });
    return { ok: true, what };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return {
      ok: false,
      what,
      detail: code === "EADDRINUSE" ? "in use" : code ?? String(err),
      fix: code === "EADDRINUSE"
        ? "stop what listens there (a serve already running?) or pick another --listen"
        : "pick another --listen",
    };
  } finally {
    server.close();
  }
}

/** A full mTLS round trip to a running serve with a client bundle: handshake, `/_ping`. */
async function roundTrip(cmd: DoctorCommand): Promise<CheckResult> {
  const server = cmd.server!;
  const bundle = cmd.clientBundle!;
  const what = `mTLS round trip to ${server.host}:${server.port} with ${bundle}`;
  let files: { ca: string; cert: string; key: string };
  try {
    const paths = bundlePaths(bundle);
    files = {
      ca: await readFile(paths.ca, "utf8"),
      cert: await readFile(paths.cert, "utf8"),
      key: await readFile(paths.key, "utf8"),
    };
  } catch (err) {
    return { ok: false, what, detail: (err as Error).message, fix: "pass --client-certs DIR" };
  }
  const me = parsePeerCertificate(new Uint8Array(parseCertificatePem(files.cert).rawData)).identity;
  try {
    const reply = await new Promise<string>((resolve, reject) => {
      const s = tls.connect({
        host: server.host,
        port: server.port,
        servername: net.isIP(server.host) ? undefined : server.host,
        ca: files.ca,
        cert: files.cert,
        key: files.key,
      });
      let data = "";
      const timer = setTimeout(() => (s.destroy(), reject(new Error("no answer in 10 s"))), 10_000);
      s.once(
        "secureConnect",
        () => s.write("GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"),
      );
      s.on("data", (d: Buffer) => (data += d.toString("latin1")));
      s.once("error", (e) => (clearTimeout(timer), reject(e)));
      s.once("close", () => {
        clearTimeout(timer);
        data
          ? resolve(data)
          : reject(new Error("the gate closed the connection without an answer"));
      });
    });
    const status = /^HTTP\/1\.[01] (\d{3})/.exec(reply)?.[1];
    const api = /\r\napi-version: *([^\r]+)/i.exec(reply)?.[1];
    if (status !== "200") {
      return {
        ok: false,
        what,
        detail: `answered ${status ?? "not HTTP"}`,
        fix: "see the serve log for this identity",
      };
    }
    return {
      ok: true,
      what,
      detail: `admitted as ${me.commonName ?? me.subject} (serial ${me.serial}), /_ping OK${
        api ? `, API ${api}` : ""
      }`,
    };
  } catch (err) {
    return {
      ok: false,
      what,
      detail: (err as Error).message,
      fix: "the serve log says why it refused (revoked, not on an allow-list, wrong CA)",
    };
  }
}
