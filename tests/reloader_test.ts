/**
 * The reloader on real files and a real gate: a rotation written in two steps (key, then
 * certificate) is taken once the files have settled, never half-done; a broken file is kept
 * out and the gate keeps its configuration; concurrent reload requests coalesce.
 */

import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type Reloader, startReloader } from "../src/config/reloader.ts";
import { loadServeConfig, type ServeConfigSource } from "../src/config/serve_config.ts";
import { initPki, issueServerBundle } from "../src/ca/keygen.ts";
import { pkiLayout } from "../src/ca/layout.ts";
import { resolveBundlePaths } from "../src/pki/credentials.ts";
import { serve, type ServeHandle } from "../src/serve.ts";
import type { LogLevel } from "../src/observe/logger.ts";
import { freeTempDir, waitFor } from "./helpers/wait.ts";

interface Fixture {
  dir: string;
  source: ServeConfigSource;
  gate: ServeHandle;
  reloads: number;
  lines: string[];
  reloader?: Reloader;
}

async function withGate(fn: (f: Fixture) => Promise<void>) {
  const dir = await freeTempDir("dg-reload-");
  await initPki({ dir });
  const source: ServeConfigSource = {
    paths: resolveBundlePaths({ certs: pkiLayout(dir).server.dir }),
    crls: [{ path: join(pkiLayout(dir).server.dir, "crl.pem") }],
    policy: { allowAny: true },
  };
  const config = await loadServeConfig(source);
  const real = await serve({
    listen: { transport: "tcp", host: "127.0.0.1", port: 0 },
    target: { transport: "unix", path: join(dir, "none.sock") },
    tls: config.tls,
    policy: config.policy,
    revocations: config.revocations,
    selfTest: false,
  });
  const f: Fixture = { dir, source, gate: real, reloads: 0, lines: [] };
  // The real gate, counting the reloads it is given.
  const gate = {
    reload: (u: Parameters<ServeHandle["reload"]>[0]) => {
      f.reloads++;
      real.reload(u);
    },
  };
  const logger = { log: (l: LogLevel, m: string) => void f.lines.push(`${l} ${m}`) };
  const reloader = startReloader({ source, config, gate, logger, pollMs: 100 });
  f.reloader = reloader;
  try {
    await fn(f);
  } finally {
    reloader.stop();
    await real.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("reloader: a two-step rotation is taken once, when the files have settled", async () => {
  await withGate(async (f) => {
    const server = pkiLayout(f.dir).server;
    // Make the new pair elsewhere, then write key and certificate one after the other.
    const other = await freeTempDir("dg-reload-new-");
    try {
      await initPki({ dir: other });
      await issueServerBundle({ dir: other, force: true });
      const key = await readFile(pkiLayout(other).server.key, "utf8");
      const cert = await readFile(pkiLayout(other).server.cert, "utf8");
      const ca = await readFile(pkiLayout(other).server.ca, "utf8");
      const crl = await readFile(join(pkiLayout(other).server.dir, "crl.pem"), "utf8");
      await writeFile(server.key, key);
      await writeFile(server.cert, cert);
      await writeFile(server.ca, ca);
      await writeFile(join(server.dir, "crl.pem"), crl);
      await waitFor(() => f.reloads === 1, { what: "one reload" });
      // An absence cannot be polled for: let three more polls pass, then nothing more may
      // have been reloaded.
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(f.reloads, 1);
      assert.deepEqual(f.lines.filter((l) => l.startsWith("error")), [], "never a half rotation");
      assert.ok(f.lines.some((l) => l === "info reloaded"), f.lines.join("\n"));
    } finally {
      await Deno.remove(other, { recursive: true });
    }
  });
});

Deno.test("reloader: a broken file is kept out; the gate keeps its configuration", async () => {
  await withGate(async (f) => {
    const cert = pkiLayout(f.dir).server.cert;
    const good = await readFile(cert, "utf8");
    await writeFile(cert, "not a certificate\n");
    await waitFor(() => f.lines.some((l) => l.startsWith("error reload failed")), {
      what: "reload failed",
    });
    assert.equal(f.reloads, 0, "nothing was applied");
    await writeFile(cert, good);
    await waitFor(() => f.reloads === 1, { what: "the fixed file is taken" });
  });
});

Deno.test("reloader: concurrent reload requests coalesce into one more run", async () => {
  await withGate(async (f) => {
    const results = await Promise.all([f.reloader!.reload("a"), f.reloader!.reload("b")]);
    assert.deepEqual(results, [true, true]);
    assert.equal(f.reloads, 2, "the first, and one more for everything asked meanwhile");
  });
});
