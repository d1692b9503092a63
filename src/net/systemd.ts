/**
 * systemd's two protocols, without libsystemd or a native addon:
 *
 * - Socket activation (`sd_listen_fds`): when `LISTEN_PID` is this process and `LISTEN_FDS`
 *   is at least 1, file descriptor 3 is a listening socket systemd opened for us (port 2376
 *   before we start, or after a restart with connections waiting in its backlog).
 * - Readiness (`sd_notify`): `READY=1`, `RELOADING=1`, `STOPPING=1` as datagrams to the unix
 *   socket named by `NOTIFY_SOCKET`. On Deno with `--unstable-net` (this project's deno.json
 *   turns it on) they are sent from a datagram socket of our own; otherwise (Node has no unix
 *   datagram sockets, abstract socket names) through `systemd-notify --pid=OUR_PID`, which the
 *   unit must allow with `NotifyAccess=all` (contrib/dockgate.service does).
 *
 * @module
 */

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";

/** The first socket systemd passes (`SD_LISTEN_FDS_START`). */
export const LISTEN_FDS_START = 3;

/**
 * The file descriptor systemd passed as our listener, or `undefined` when we were not socket
 * activated. The variables are removed once read (as `sd_listen_fds(1)` does), so children
 * do not think the socket is theirs.
 *
 * @example
 * ```ts
 * import { listenFdFromEnv } from "./systemd.ts";
 * const env: Record<string, string | undefined> = { LISTEN_PID: "42", LISTEN_FDS: "1" };
 * if (listenFdFromEnv(env, 42) !== 3 || env.LISTEN_FDS !== undefined) throw new Error();
 * if (listenFdFromEnv({ LISTEN_PID: "41", LISTEN_FDS: "1" }, 42) !== undefined) throw new Error();
 * ```
 */
export function listenFdFromEnv(
  env: Record<string, string | undefined> = process.env,
  pid: number = process.pid,
): number | undefined {
  const fds = Number(env.LISTEN_FDS);
  const forUs = env.LISTEN_PID !== undefined && Number(env.LISTEN_PID) === pid;
  if (env.LISTEN_FDS !== undefined || env.LISTEN_PID !== undefined) {
    delete env.LISTEN_FDS;
    delete env.LISTEN_PID;
    delete env.LISTEN_FDNAMES;
  }
  if (!forUs || !Number.isInteger(fds) || fds < 1) return undefined;
  if (fds > 1) {
    throw new RangeError(`systemd passed ${fds} sockets (LISTEN_FDS): dockgate serve takes one`);
  }
  return LISTEN_FDS_START;
}

/** A notifier: `send` never throws (the service manager is told what it can be told). */
export interface Notifier {
  /** Send `state` lines (`READY=1`, `STATUS=…`) to the service manager, if there is one. */
  send(...state: string[]): Promise<void>;
  /** Release the socket. */
  close(): void;
}

interface DenoDatagram {
  send(data: Uint8Array, addr: { transport: "unixpacket"; path: string }): Promise<number>;
  close(): void;
}

/**
 * The notifier for `NOTIFY_SOCKET` (none: every `send` is a no-op).
 *
 * @example
 * ```ts
 * import { systemdNotifier } from "./systemd.ts";
 * const n = systemdNotifier({});
 * await n.send("READY=1"); // no NOTIFY_SOCKET: nothing to do
 * n.close();
 * ```
 */
export function systemdNotifier(
  env: Record<string, string | undefined> = process.env,
  onError: (message: string) => void = () => {},
): Notifier {
  const target = env.NOTIFY_SOCKET;
  if (!target) return { send: () => Promise.resolve(), close() {} };
  const deno = (globalThis as {
    Deno?: { listenDatagram?: (o: { transport: "unixpacket"; path: string }) => DenoDatagram };
  }).Deno;
  if (deno?.listenDatagram && target.startsWith("/")) {
    // Our own datagram socket, bound in a private directory (Deno sends only from a bound one).
    const dir = mkdtempSync(join(tmpdir(), "dockgate-notify-"));
    let socket: DenoDatagram | undefined;
    try {
      socket = deno.listenDatagram({ transport: "unixpacket", path: join(dir, "s") });
    } catch (err) {
      onError(`cannot open a notify socket: ${(err as Error).message}`);
    }
    return {
      async send(...state) {
        try {
          const data = new TextEncoder().encode(state.join("\n") + "\n");
          await socket?.send(data, { transport: "unixpacket", path: target });
        } catch (err) {
          onError(`cannot notify ${target}: ${(err as Error).message}`);
        }
      },
      close() {
        socket?.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  return {
    send: (...state) =>
      new Promise<void>((resolve) => {
        const child = spawn("systemd-notify", [`--pid=${process.pid}`, ...state], {
          stdio: "ignore",
          env: { ...process.env, NOTIFY_SOCKET: target },
        });
        child.once("error", (err) => {
          onError(`cannot run systemd-notify: ${err.message}`);
          resolve();
        });
        child.once("exit", (code) => {
          if (code !== 0) onError(`systemd-notify ${state.join(" ")} exited ${code}`);
          resolve();
        });
      }),
    close() {},
  };
}
