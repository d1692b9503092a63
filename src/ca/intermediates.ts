/**
 * A fleet's PKI: intermediates under the root (`DIR/intermediates/NAME/`, for teams that keep
 * the root key offline) and the issuers bundles are made from. An intermediate's directory
 * has the same layout and records as `DIR/ca/` (`ca.pem`, `ca-key.pem`, `issued.jsonl`,
 * `revoked.json`, `crlnumber`, `crl.pem`), so issuing and revoking work the same with either.
 *
 * @module
 */

import { mkdir, readFile } from "node:fs/promises";
import { bundlePaths, intermediateLayout, pkiLayout, serverBundleDirs } from "./layout.ts";
import { issueIntermediate, type KeyType } from "./issue.ts";
import { pathExists, writeFileAtomic } from "../util/fs_util.ts";
import { issuedEntry, publishCrl, recordIssued } from "./records.ts";
import { AlreadyExistsError, type KeygenReport } from "./files.ts";
import { loadCa, pkiExists } from "./issuers.ts";

/** Options for {@linkcode createIntermediate}. */
export interface CreateIntermediateOptions {
  /** PKI root directory (its root key is needed, once). */
  dir: string;
  /** Key algorithm. Default: `"p256"`. */
  keyType?: KeyType;
  /** Lifetime in days. Default: 1825, never past the root's end. */
  days?: number;
  /** Replace an existing intermediate of that name. Default: `false`. */
  force?: boolean;
}

/**
 * Create intermediate `name` signed by the root, with an empty CRL, and add it to the trust
 * bundle (`ca.pem`) of every server bundle of the PKI, so a gate can verify its CRL. Throws
 * {@linkcode AlreadyExistsError} when it exists and `force` is not set.
 *
 * @example
 * ```ts ignore
 * await createIntermediate("team-a", { dir: "pki" });
 * // now: dockgate keygen client alice --issuer team-a
 * ```
 */
export async function createIntermediate(
  name: string,
  options: CreateIntermediateOptions,
): Promise<KeygenReport> {
  const layout = intermediateLayout(options.dir, name);
  if (!(await pkiExists(options.dir))) {
    throw new Error(`No CA in "${pkiLayout(options.dir).caDir}": run "dockgate keygen" first`);
  }
  if (!options.force && await pathExists(layout.cert, { follow: false })) {
    throw new AlreadyExistsError(
      layout.cert,
      `Intermediate "${name}" already exists ("${layout.cert}"): use --force to replace it`,
    );
  }
  const root = await loadCa(options.dir);
  const pair = await issueIntermediate(root, name, {
    keyType: options.keyType,
    days: options.days,
  });
  const report: KeygenReport = { created: [], kept: [] };
  await mkdir(layout.dir, { recursive: true, mode: 0o700 });
  await writeFileAtomic(layout.key, pair.keyPem, { mode: 0o600, replace: options.force === true });
  await writeFileAtomic(layout.cert, pair.certPem, {
    mode: 0o644,
    replace: options.force === true,
  });
  report.created.push(layout.key, layout.cert);
  await recordIssued(pkiLayout(options.dir).caDir, [issuedEntry(pair.certPem, name, "ca")]);
  const published = await publishCrl({ caDir: layout.dir, pkiDir: options.dir }, pair);
  report.created.push(...published.written);
  report.created.push(...await trustInServers(options.dir, pair.certPem));
  return report;
}

/** Add `certPem` to the `ca.pem` of every server bundle that lacks it; the files written. */
async function trustInServers(dir: string, certPem: string): Promise<string[]> {
  const written: string[] = [];
  for (const b of await serverBundleDirs(pkiLayout(dir).dir)) {
    const ca = bundlePaths(b).ca;
    if (!(await pathExists(ca))) continue;
    const text = await readFile(ca, "utf8");
    if (text.includes(certPem.trim())) continue;
    await writeFileAtomic(ca, text.endsWith("\n") ? text + certPem : `${text}\n${certPem}`, {
      mode: 0o644,
      replace: true,
    });
    written.push(ca);
  }
  return written;
}
