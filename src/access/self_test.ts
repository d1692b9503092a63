/**
 * Fail closed: before serve accepts anyone, prove on loopback that this runtime's
 * `node:tls` really refuses a client without a certificate and a client whose certificate
 * comes from a foreign CA. Older Deno releases accepted anyone; we never assume.
 *
 * @module
 */

import type net from "node:net";
import tls from "node:tls";
import { createCa, issueClient } from "../ca/issue.ts";
import { RUNTIME } from "../net/runtime.ts";
import { serverTlsOptions, type TlsMaterial } from "../net/tls_config.ts";

/** Thrown when the runtime lets an unauthenticated client through. Serve must not start. */
export class RuntimeTrustError extends Error {
  /** Create the error. */
  constructor(message: string) {
    super(message);
    this.name = "RuntimeTrustError";
  }
}

/** "Deno 2.9.5" or "Node.js v20.20.2", for the refusal messages. */
function runtimeDescription(): string {
  return RUNTIME.description;
}

/**
 * Run the two probes against a throwaway loopback server using exactly the server TLS
 * options serve uses. Resolves if both were refused; rejects with
 * {@linkcode RuntimeTrustError} otherwise (including when a probe cannot be completed).
 *
 * @example
 * ```ts ignore
 * import { proveClientAuthEnforced } from "./self_test.ts";
 * await proveClientAuthEnforced({ certPem, keyPem, caPem });
 * ```
 */
export async function proveClientAuthEnforced(
  material: TlsMaterial,
  timeoutMs = 5000,
): Promise<void> {
  const foreignCa = await createCa({ commonName: "dockgate self-test foreign CA", days: 1 });
  const foreign = await issueClient(foreignCa, "self-test-intruder", { days: 1 });
  const server = tls.createServer(serverTlsOptions(material));
  let admitted = 0;
  server.on("secureConnection", (s: tls.TLSSocket) => {
    // Anything reaching here was let through by the runtime's own verification.
    if (s.authorized) admitted++;
    s.end("admitted");
  });
  server.on("tlsClientError", (_e: Error, s: tls.TLSSocket) => s.destroy());
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as net.AddressInfo).port;
  try {
    const probes: [string, tls.ConnectionOptions][] = [
      ["a client without a certificate", {}],
      ["a client with a certificate from a foreign CA", {
        cert: foreign.certPem,
        key: foreign.keyPem,
      }],
    ];
    for (const [what, extra] of probes) {
      const got = await probe(port, extra, timeoutMs);
      if (got === "timeout") {
        throw new RuntimeTrustError(
          `${runtimeDescription()}: could not confirm that ${what} is refused (probe timed out); refusing to serve`,
        );
      }
      if (got === "admitted" || admitted > 0) {
        throw new RuntimeTrustError(
          `${runtimeDescription()} accepted ${what}: its node:tls does not enforce client certificates; ` +
            `refusing to serve (use Deno >= 2.8.1 or Node.js >= 20)`,
        );
      }
    }
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
  }
}

function probe(port: number, extra: tls.ConnectionOptions, timeoutMs: number) {
  return new Promise<"admitted" | "refused" | "timeout">((resolve) => {
    let data = "";
    const socket = tls.connect({
      host: "127.0.0.1",
      port,
      // The probe only tests the server; it does not care who the server is.
      rejectUnauthorized: false,
      ...extra,
    });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve("timeout");
    }, timeoutMs);
    socket.on("data", (d: Uint8Array) => (data += new TextDecoder().decode(d)));
    socket.on("error", () => {});
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(data.includes("admitted") ? "admitted" : "refused");
    });
  });
}
