/**
 * Starting a listener: TCP or a unix socket created with its final mode (no window in which
 * another local user could connect), with one-line errors (`Cannot listen on "…": address
 * already in use`).
 *
 * @module
 */

import type net from "node:net";
import process from "node:process";
import { type Address, formatAddress } from "./address.ts";
import type { Logger } from "../observe/logger.ts";

/**
 * Turn a listen error into a short cause for `Cannot listen on "x": …`.
 *
 * @example
 * ```ts
 * import { listenErrorText } from "./listen.ts";
 * if (listenErrorText(Object.assign(new Error("x"), { code: "EADDRINUSE" })) !== "address already in use") throw new Error();
 * ```
 */
export function listenErrorText(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case "EADDRINUSE":
      return "address already in use";
    case "EACCES":
      return "permission denied";
    case "EADDRNOTAVAIL":
      return "address not available on this host";
    default:
      return err.message;
  }
}

/** Options for {@linkcode listenOn}. */
export interface ListenOnOptions {
  /** Permissions of a unix socket file, set at creation. Default `0o600`. */
  unixMode?: number;
  /** Where errors of the listener after it started go (`listener error`). Default: nowhere. */
  logger?: Logger;
  /**
   * Listen on this already listening socket instead (systemd socket activation passes fd 3);
   * `address` then only names it in errors. Default: bind `address`.
   */
  fd?: number;
}

/**
 * Start `server` listening on `address`. Rejects with one line,
 * `Cannot listen on "tcp://127.0.0.1:2376": address already in use`, and leaves no error
 * listener of its own behind.
 *
 * A unix socket file gets `unixMode` from its creation (the umask is narrowed while binding):
 * a chmod afterwards would leave a window in which another local user could connect.
 *
 * @example
 * ```ts
 * import net from "node:net";
 * import { listenOn } from "./listen.ts";
 * const a = net.createServer();
 * await listenOn(a, { transport: "tcp", host: "127.0.0.1", port: 0 });
 * const port = (a.address() as net.AddressInfo).port;
 * const b = net.createServer();
 * const err = await listenOn(b, { transport: "tcp", host: "127.0.0.1", port }).catch((e) => e);
 * a.close();
 * if (!/address already in use$/.test(err.message)) throw new Error(err.message);
 * ```
 */
export function listenOn(
  server: net.Server,
  address: Address,
  options: ListenOnOptions = {},
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      reject(new Error(`Cannot listen on "${formatAddress(address)}": ${listenErrorText(err)}`));
    };
    server.once("error", onError);
    const done = () => {
      server.off("error", onError);
      const logger = options.logger;
      if (logger) {
        server.on(
          "error",
          (err: Error) => logger.log("error", "listener error", { reason: err.message }),
        );
      }
      resolve();
    };
    if (options.fd !== undefined) {
      server.listen({ fd: options.fd }, done);
    } else if (address.transport === "unix") {
      const old = process.umask(~(options.unixMode ?? 0o600) & 0o777);
      try {
        server.listen({ path: address.path }, done);
      } finally {
        process.umask(old);
      }
    } else {
      server.listen({ host: address.host, port: address.port }, done);
    }
  });
}
