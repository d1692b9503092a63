/**
 * The client side of enrolment: `dockgate join` and `dockgate renew`. The key is made here
 * and never leaves (0600 in the bundle directory); the gate is checked against the CA pin
 * (`pinned_tls.ts`) before the CSR is sent; the answer is checked too (the certificate is for
 * our key, chains to the pinned root, and is a client certificate) before anything is
 * written. Files go in the Docker CLI's layout (`ca.pem`, `cert.pem`, `key.pem`), each by an
 * atomic rename, so a `docker` run never reads half a file; `enroll.json` remembers where
 * the gate's enrolment port is, for renewals.
 *
 * @module
 */

import { readFile } from "node:fs/promises";
import { join as joinPath } from "node:path";
import { x509 } from "../pki/x509.ts";
import { certToPem, exportKeyPem, importPrivateKeyPem, parseCertificatesPem } from "../pki/pem.ts";
import { trustStoreOf, verifyChain } from "../pki/chain.ts";
import { caPinOf, parseJoinToken } from "../pki/join_token.ts";
import { sameBytes } from "../pki/verify.ts";
import { type BundlePaths, bundlePaths } from "../ca/layout.ts";
import { CERT_MODE, ensureDir, KEY_MODE } from "../ca/files.ts";
import { pathExists, writeFileAtomic } from "../util/fs_util.ts";
import { connectPinned } from "./pinned_tls.ts";
import {
  type EnrollAnswer,
  type EnrollRequest,
  EXCHANGE_TIMEOUT_MS,
  lineOf,
  MAX_ANSWER_BYTES,
  parseAnswer,
  readLine,
} from "./protocol.ts";

/** Where a bundle's gate is: written by join as `DIR/enroll.json`, read by renew. */
export interface EnrollPlace {
  /** The enrolment port's host. */
  host: string;
  /** Its port. */
  port: number;
  /** The name the gate's certificate carries, when not `host`. */
  serverName?: string;
}

/** Options for {@linkcode joinGate}. */
export interface JoinOptions extends EnrollPlace {
  /** The token (`dockgate keygen token`). */
  token: string;
  /** The bundle directory (created 0700). */
  dir: string;
  /** Replace an existing bundle there. Default: `false`. */
  force?: boolean;
  /** Deadline of each step. Default: 10 s. */
  timeoutMs?: number;
}

/** What a join or renewal wrote. */
export interface JoinResult {
  /** The bundle's files. */
  files: BundlePaths;
  /** The certificate's CN. */
  name: string;
  /** Its end. */
  notAfter: Date;
}

/** The file that says where the bundle's gate is. */
export function enrollPlaceFile(dir: string): string {
  return joinPath(dir, "enroll.json");
}

/**
 * Join: a key here, the gate checked against the token's pin, the CSR and token sent, the
 * answer checked, the bundle written. Throws (writing nothing) on any failure.
 *
 * @example
 * ```ts ignore
 * const r = await joinGate({ host: "gate.example", port: 2377, token, dir: `${HOME}/.docker` });
 * ```
 */
export async function joinGate(options: JoinOptions): Promise<JoinResult> {
  const { pin } = parseJoinToken(options.token);
  const files = bundlePaths(options.dir);
  if (!options.force) {
    for (const f of [files.ca, files.cert, files.key]) {
      if (await pathExists(f, { follow: false })) {
        throw new Error(`"${f}" exists: give another --dir, or --force to replace the bundle`);
      }
    }
  }
  const keys = await crypto.subtle.generateKey(EC_P256, true, ["sign", "verify"]);
  const csr = await makeCsr(keys);
  const answer = await exchange(options, pin, undefined, {
    op: "enroll",
    token: options.token.trim(),
    csr,
  });
  const checked = await checkAnswer(answer.answer, keys.publicKey, answer.root);
  await ensureDir(options.dir, true);
  const force = options.force === true;
  await writeFileAtomic(files.key, await exportKeyPem(keys.privateKey), {
    mode: KEY_MODE,
    replace: force,
  });
  await writeFileAtomic(files.ca, certToPem(answer.root), { mode: CERT_MODE, replace: force });
  await writeFileAtomic(files.cert, checked.certPem, { mode: CERT_MODE, replace: force });
  const place: EnrollPlace = {
    host: options.host,
    port: options.port,
    serverName: options.serverName,
  };
  await writeFileAtomic(enrollPlaceFile(options.dir), JSON.stringify(place) + "\n", {
    mode: CERT_MODE,
    replace: true,
  });
  return { files, name: checked.name, notAfter: checked.notAfter };
}

/**
 * Renew the bundle in `dir` over mTLS with its current certificate, for the same key: only
 * `cert.pem` changes, by one atomic rename. The gate is checked against the pin of the
 * bundle's `ca.pem`.
 *
 * @example
 * ```ts ignore
 * const r = await renewBundleOnce({ dir: `${HOME}/.docker` });
 * ```
 */
export async function renewBundleOnce(
  options: { dir: string; place?: EnrollPlace; timeoutMs?: number },
): Promise<JoinResult> {
  const files = bundlePaths(options.dir);
  const place = options.place ?? await readPlace(options.dir);
  const [root] = parseCertificatesPem(await readFile(files.ca, "utf8"));
  const certPem = await readFile(files.cert, "utf8");
  const keyPem = await readFile(files.key, "utf8");
  const [leaf] = parseCertificatesPem(certPem);
  const privateKey = await importPrivateKeyPem(keyPem, leaf);
  const publicKey = await leaf.publicKey.export();
  const csr = await makeCsr({ privateKey, publicKey });
  const answer = await exchange(
    { ...place, timeoutMs: options.timeoutMs },
    caPinOf(root),
    { certPem, keyPem },
    { op: "renew", csr },
  );
  const checked = await checkAnswer(answer.answer, publicKey, answer.root);
  await writeFileAtomic(files.cert, checked.certPem, { mode: CERT_MODE, replace: true });
  return { files, name: checked.name, notAfter: checked.notAfter };
}

/** When a certificate is due for renewal: at 2/3 of its lifetime (step-ca's rule). */
export function renewalTime(cert: x509.X509Certificate): Date {
  const start = cert.notBefore.getTime();
  return new Date(start + ((cert.notAfter.getTime() - start) * 2) / 3);
}

const EC_P256 = { name: "ECDSA", namedCurve: "P-256" } as const;

async function makeCsr(keys: CryptoKeyPair): Promise<string> {
  const a = keys.publicKey.algorithm as { name: string; namedCurve?: string };
  const signingAlgorithm = a.name === "ECDSA"
    ? { name: "ECDSA", hash: a.namedCurve === "P-384" ? "SHA-384" : "SHA-256" }
    : { name: a.name, hash: "SHA-256" };
  // The gate sets every name itself; the CSR proves possession of the key, nothing more.
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: "CN=dockgate join",
    keys,
    signingAlgorithm,
  });
  return csr.toString("pem");
}

async function exchange(
  place: EnrollPlace & { timeoutMs?: number },
  pin: string,
  client: { certPem: string; keyPem: string } | undefined,
  request: EnrollRequest,
): Promise<{ answer: EnrollAnswer; root: x509.X509Certificate }> {
  const timeoutMs = place.timeoutMs ?? EXCHANGE_TIMEOUT_MS;
  const { socket, root } = await connectPinned({ ...place, pin, client, timeoutMs });
  try {
    socket.write(lineOf(request));
    const line = await readLine(socket, MAX_ANSWER_BYTES, timeoutMs);
    return { answer: parseAnswer(line), root };
  } finally {
    socket.destroy();
  }
}

/** The gate's answer: a client certificate for our key, chaining to the pinned root. */
async function checkAnswer(
  answer: EnrollAnswer,
  publicKey: CryptoKey,
  root: x509.X509Certificate,
): Promise<{ certPem: string; name: string; notAfter: Date }> {
  if (!answer.ok) throw new Error(`The gate refused: ${answer.error}`);
  const chain = parseCertificatesPem(answer.cert);
  if (chain.length === 0 || chain.length > 9) throw new Error("The gate answered no certificate");
  const [leaf, ...rest] = chain;
  const ours = new Uint8Array(await crypto.subtle.exportKey("spki", publicKey));
  if (!sameBytes(new Uint8Array(leaf.publicKey.rawData), ours)) {
    throw new Error("The gate answered a certificate for another key");
  }
  const verdict = await verifyChain(leaf, rest, trustStoreOf([root]), "client");
  if (!verdict.ok) throw new Error(`The gate's certificate is not usable: ${verdict.reason}`);
  const name = leaf.subjectName.getField("CN")[0] ?? "";
  return { certPem: chain.map(certToPem).join(""), name, notAfter: leaf.notAfter };
}

async function readPlace(dir: string): Promise<EnrollPlace> {
  const file = enrollPlaceFile(dir);
  let place: EnrollPlace;
  try {
    place = JSON.parse(await readFile(file, "utf8"));
  } catch (err) {
    throw new Error(
      `Cannot read "${file}" (written by dockgate join): ${(err as Error).message}; give --server`,
    );
  }
  if (typeof place?.host !== "string" || !Number.isInteger(place.port)) {
    throw new Error(`"${file}" is malformed: give --server HOST:PORT`);
  }
  return place;
}
