/**
 * Workload 8: chains and big CRLs, dockgate against itself on Deno and on Node.
 *
 * - Handshakes: new connections/s (full mTLS handshake + `GET /_ping` + close) with a client
 *   whose leaf is under an intermediate it sends itself (`cert.pem` = leaf + intermediate,
 *   the server's `ca.pem` the root alone: the gate asks the runtime for the presented chain
 *   and checks every link), against a leaf straight under the root, on the same gate.
 * - CRL scale: the same gate with a CRL of 100,000 revoked serials (made by `openssl ca`):
 *   startup time (spawn to "listening") against none, reload time of a new 100k CRL (SIGHUP
 *   to "reloaded"), and new connections/s with it against none (the lookup is a set: O(1)).
 *
 * @module
 */

import { join } from "node:path";
import type { Contender, Pki, Running } from "./contenders.ts";
import { runOk } from "./proc.ts";
import { type Bench, loadgen, startContender, subdir, type Target } from "./workloads.ts";

/** How many serials the big CRL lists. */
export const BIG_CRL_SERIALS = 100_000;

/** The chain PKI: a copy of `pki` with an intermediate, a chained client and a 100k CRL. */
async function chainPkis(bench: Bench, pki: Pki) {
  const dir = await subdir(bench, "chains");
  const p = join(dir, "pki");
  await runOk("cp", ["-a", join(pki.serverDir, ".."), p]);
  const cli = (args: string[]) =>
    runOk(bench.deno, ["run", "-A", "--quiet", join(bench.root, "cli.ts"), ...args, "--dir", p]);
  await cli(["keygen", "intermediate", "bench-int"]);
  await cli(["keygen", "client", "chained", "--issuer", "bench-int"]);
  // The server trusts the root alone, as step-ca and Vault deployments do: the chain comes
  // from the client. Its CRL: the root's.
  const server = join(p, "server");
  await Deno.copyFile(join(p, "ca", "ca.pem"), join(server, "ca.pem"));
  await Deno.copyFile(join(p, "ca", "crl.pem"), join(server, "crl.pem"));
  const direct: Pki = { ...pki, serverDir: server, clientDir: join(p, "clients", "default") };
  const chained: Pki = { ...direct, clientDir: join(p, "clients", "chained") };
  // A copy of the server bundle whose crl.pem lists 100,000 serials, signed by the root.
  const big = join(p, "server-crl");
  await runOk("cp", ["-a", server, big]);
  const ca = join(dir, "openssl-ca");
  await Deno.mkdir(ca);
  const lines: string[] = [];
  for (let i = 0; i < BIG_CRL_SERIALS; i++) {
    lines.push(
      `R\t301231235959Z\t260101000000Z\t${
        (0x10000000 + i).toString(16).toUpperCase()
      }\tunknown\t/CN=r${i}`,
    );
  }
  await Deno.writeTextFile(join(ca, "index.txt"), lines.join("\n") + "\n");
  await Deno.writeTextFile(join(ca, "crlnumber"), "1000\n");
  await Deno.writeTextFile(
    join(ca, "ca.cnf"),
    `[ca]\ndefault_ca = d\n[d]\ndatabase = ${ca}/index.txt\ncrlnumber = ${ca}/crlnumber\n` +
      `certificate = ${p}/ca/ca.pem\nprivate_key = ${p}/ca/ca-key.pem\ndefault_md = sha256\n` +
      `default_crl_days = 30\n`,
  );
  const makeBig = () =>
    runOk("openssl", [
      "ca",
      "-config",
      join(ca, "ca.cnf"),
      "-gencrl",
      "-out",
      join(big, "crl.pem"),
    ]);
  await makeBig();
  return { direct, chained, withCrl: { ...direct, serverDir: big }, makeBig };
}

/** Workload 8: see the module doc. */
export async function chainsWorkload(
  bench: Bench,
  contenders: Contender[],
  pki: Pki,
  target: Target,
) {
  const res = bench.results;
  const k = pki.keyType;
  const { direct, chained, withCrl, makeBig } = await chainPkis(bench, pki);
  const rate = async (id: string, gate: Running, client: Pki, c: number) => {
    const r = await loadgen(bench, "connrate", gate.endpoint, client, [
      "--concurrency",
      String(c),
      "--duration-ms",
      String(bench.sizes.connrateMs),
    ]);
    if (r.errors) throw new Error(`${id}: ${r.errors} errors, last: ${r.lastError}`);
    return r.perSec as number;
  };
  // Startup: from just before the spawn to the time stamp of the gate's own "listening" line
  // (waiting for the line polls with backoff, too coarse to time it).
  const timed = async (fn: () => Promise<Running>): Promise<[Running, number]> => {
    const t = Date.now();
    const gate = await fn();
    const stamp = gate.procs[0].log().match(/^(\S+Z) INFO listening on/m)?.[1];
    const at = stamp ? Date.parse(stamp) : NaN;
    if (!Number.isFinite(at)) throw new Error("no time stamp on the listening line");
    return [gate, at - t];
  };
  for (let i = 0; i < bench.sizes.runs; i++) {
    for (const c of contenders) {
      const [gate, startMs] = await timed(() => startContender(bench, c, direct, target.socket));
      try {
        res.add("chains", k, c.id, "startup_ms", startMs);
        for (const n of [1, 16]) {
          const d = await rate(c.id, gate, direct, n);
          const ch = await rate(c.id, gate, chained, n);
          res.add("chains", k, c.id, `direct_c${n}_per_s`, d);
          res.add("chains", k, c.id, `chain_c${n}_per_s`, ch);
          bench.say(
            `  chains ${k} run ${i + 1} ${c.id} c=${n}: direct ${d.toFixed(0)}/s, two-level chain ${
              ch.toFixed(0)
            }/s`,
          );
        }
      } finally {
        await gate.stop();
      }
      const [big, bigMs] = await timed(() => startContender(bench, c, withCrl, target.socket));
      try {
        res.add("chains", k, c.id, "startup_ms_crl100k", bigMs);
        const withList = await rate(c.id, big, direct, 16);
        res.add("chains", k, c.id, "crl100k_c16_per_s", withList);
        // A new 100k CRL (the next number), then SIGHUP: the time to "reloaded".
        await makeBig();
        const proc = big.procs[0];
        const before = (proc.log().match(/INFO reloaded/g) ?? []).length;
        const t = performance.now();
        Deno.kill(proc.pid, "SIGHUP");
        while ((proc.log().match(/INFO reloaded/g) ?? []).length === before) {
          if (performance.now() - t > 30_000) throw new Error(`${c.id}: no reload in 30 s`);
          if (/ERROR reload failed/.test(proc.log())) throw new Error(`${c.id}: reload failed`);
          await new Promise((r) => setTimeout(r, 5));
        }
        const reloadMs = performance.now() - t;
        res.add("chains", k, c.id, "reload_ms_crl100k", reloadMs);
        bench.say(
          `  chains ${k} run ${i + 1} ${c.id}: startup ${startMs.toFixed(0)} ms, with a 100k CRL ` +
            `${bigMs.toFixed(0)} ms; reload ${reloadMs.toFixed(0)} ms; c=16 with it ${
              withList.toFixed(0)
            }/s`,
        );
      } finally {
        await big.stop();
      }
    }
  }
}
