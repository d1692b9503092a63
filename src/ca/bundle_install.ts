/**
 * A client bundle read from its archive (`bundle_unpack.ts`), checked and installed on the
 * client machine (`dockgate use`). The checks come before any write: the key matches the
 * certificate, the certificate chains to the bundle's CA for client authentication (dates and
 * key usage included), and the target directory holds no bundle yet (`force` replaces one).
 *
 * @module
 */

import { lstat } from "node:fs/promises";
import { join } from "node:path";
import { type BundleArchive, BundleArchiveError, HOST_FILE } from "./bundle_unpack.ts";
import { CERT_MODE, ensureDir, KEY_MODE } from "./files.ts";
import { trustStoreOf, verifyChain } from "../pki/chain.ts";
import { keyMatchesCertificate, parseCertificatesPem } from "../pki/pem.ts";
import { leafUsageProblem, usageFactsOf } from "../pki/usage.ts";
import { BUNDLE_FILES } from "../pki/credentials.ts";
import { fsErrorText, pathExists, writeFileAtomic } from "../util/fs_util.ts";

/**
 * Check a bundle's certificates and key; throws {@linkcode BundleArchiveError} with the
 * first problem (one line).
 *
 * @example
 * ```ts
 * import { createCa, issueClient } from "./issue.ts";
 * import { checkBundle } from "./bundle_install.ts";
 * const ca = await createCa();
 * const alice = await issueClient(ca, "alice");
 * await checkBundle({ name: "alice", ca: ca.certPem, cert: alice.certPem, key: alice.keyPem });
 * const other = await createCa();
 * const bad = await checkBundle({ name: "a", ca: other.certPem, cert: alice.certPem, key: alice.keyPem })
 *   .catch((e) => e);
 * if (!String(bad).includes("does not chain to ca.pem")) throw new Error(String(bad));
 * ```
 */
export async function checkBundle(bundle: BundleArchive): Promise<void> {
  const n = bundle.name;
  const parse = (text: string, file: string) => {
    try {
      const certs = parseCertificatesPem(text);
      if (certs.length === 0) throw new Error("no certificate in it");
      return certs;
    } catch (err) {
      throw new BundleArchiveError(`${n}/${file} is not a PEM certificate (${firstLine(err)})`);
    }
  };
  const anchors = parse(bundle.ca, "ca.pem");
  const [leaf, ...intermediates] = parse(bundle.cert, "cert.pem");
  let matches: boolean;
  try {
    matches = await keyMatchesCertificate(bundle.key, bundle.cert);
  } catch (err) {
    throw new BundleArchiveError(`${n}/key.pem is not a usable private key (${firstLine(err)})`);
  }
  if (!matches) throw new BundleArchiveError(`${n}/key.pem does not match ${n}/cert.pem`);
  // The leaf's own rules first, so that an expired certificate is not said not to chain.
  const usage = leafUsageProblem(usageFactsOf(leaf), "client");
  if (usage) throw new BundleArchiveError(`${n}/cert.pem cannot be used: ${usage.reason}`);
  const chain = await verifyChain(leaf, intermediates, trustStoreOf(anchors), "client");
  if (!chain.ok) {
    throw new BundleArchiveError(`${n}/cert.pem does not chain to ca.pem: ${chain.reason}`);
  }
}

/** The paths {@linkcode installBundle} wrote. */
export interface InstalledBundle {
  /** The directory (the Docker CLI's DOCKER_CERT_PATH). */
  dir: string;
  /** Its files. */
  ca: string;
  cert: string;
  key: string;
}

/**
 * The bundle files already in `dir` (none when `dir` does not exist); a `dir` that is
 * not a directory is an error.
 */
export async function existingBundleFiles(dir: string): Promise<string[]> {
  const st = await lstat(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return undefined;
    throw new Error(`Cannot use "${dir}": ${fsErrorText(err)}`);
  });
  if (!st) return [];
  if (!st.isDirectory()) throw new Error(`Cannot use "${dir}": not a directory`);
  const names = [BUNDLE_FILES.ca, BUNDLE_FILES.cert, BUNDLE_FILES.key, HOST_FILE];
  const found: string[] = [];
  for (const f of names) if (await pathExists(join(dir, f), { follow: false })) found.push(f);
  return found;
}

/**
 * Write a checked bundle into `dir` (created 0700 with its parents): `key.pem` 0600, the
 * certificates 0644, `host` when the archive recorded one. Each file is written atomically;
 * an existing one is replaced only with `force`: without it, any bundle file already in `dir`
 * is an `EEXIST` error before the first write (one appearing meanwhile, from the write).
 *
 * @example
 * ```ts ignore
 * const bundle = readBundleArchive(await readFile("alice.tar.gz"));
 * await checkBundle(bundle);
 * await installBundle(bundle, `${HOME}/.docker/dockgate/alice`, false);
 * ```
 */
export async function installBundle(
  bundle: BundleArchive,
  dir: string,
  force: boolean,
): Promise<InstalledBundle> {
  // Every file is checked before any is written: a refusal at the second file would leave a
  // new key beside the old certificate (a pair that does not match, and no bundle either).
  const there = force ? [] : await existingBundleFiles(dir);
  if (there.length > 0) {
    throw Object.assign(
      new Error(`"${dir}" already holds ${there.join(", ")}: nothing was written`),
      { code: "EEXIST" },
    );
  }
  await ensureDir(dir, true);
  const out = {
    dir,
    ca: join(dir, BUNDLE_FILES.ca),
    cert: join(dir, BUNDLE_FILES.cert),
    key: join(dir, BUNDLE_FILES.key),
  };
  // The key first: if anything stops us it is the file that must never be left half-made.
  await writeFileAtomic(out.key, bundle.key, { mode: KEY_MODE, replace: force });
  await writeFileAtomic(out.cert, bundle.cert, { mode: CERT_MODE, replace: force });
  await writeFileAtomic(out.ca, bundle.ca, { mode: CERT_MODE, replace: force });
  if (bundle.host !== undefined) {
    await writeFileAtomic(join(dir, HOST_FILE), `${bundle.host}\n`, {
      mode: CERT_MODE,
      replace: force,
    });
  }
  return out;
}

function firstLine(err: unknown): string {
  return String((err as Error)?.message ?? err).split("\n")[0];
}
