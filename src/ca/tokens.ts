/**
 * Join tokens in the PKI (`DIR/tokens/`, see `layout.ts`): `keygen token NAME` makes one, the
 * gate redeems it once. Each record is a file of its own, `ID.json` (0600), holding the
 * secret's SHA-256 (never the secret), the name it may enrol, its role, its expiry and the
 * lifetime of the certificate it buys. Redeeming renames `ID.json` to `ID.used`: a rename is
 * atomic, so of two gates (or two connections) redeeming the same token at once exactly one
 * wins, and a used token stays used across restarts.
 *
 * @module
 */

import { readFile, rename } from "node:fs/promises";
import { timingSafeEqual } from "node:crypto";
import { Buffer } from "node:buffer";
import { pkiLayout, tokenFiles, tokensDir } from "./layout.ts";
import { validateClientName } from "./issue.ts";
import { ensureDir, KEY_MODE, syncDirectory } from "./files.ts";
import { dirname } from "node:path";
import { readText, writeFileAtomic } from "../util/fs_util.ts";
import { parseCertificatePem } from "../pki/pem.ts";
import { caPinOf, formatJoinToken, parseJoinToken, secretDigest } from "../pki/join_token.ts";

/** The most a token may live (it is a bearer secret until used). */
export const MAX_TOKEN_TTL_MS = 7 * 86_400_000;
/** The longest certificate a token buys unless `longLived` is set. */
export const MAX_SHORT_CERT_TTL_MS = 7 * 86_400_000;
/** The shortest certificate a token may buy (renewal needs room). */
export const MIN_CERT_TTL_MS = 30_000;

/** One token's record. */
export interface TokenRecord {
  /** The id (the file name). */
  id: string;
  /** The name the certificate gets (its CN), whatever the CSR asks for. */
  name: string;
  /** Written as the certificate's OU, for the API policy (`identities: [{ ou, role }]`). */
  role?: string;
  /** SHA-256 of the secret, hex. */
  secretSha256: string;
  /** The root CA pin the token carries. */
  caPin: string;
  /** When the token stops working, ISO 8601. */
  expiresAt: string;
  /** Lifetime of the certificate it buys, in milliseconds. */
  certTtlMs: number;
  /** When it was made, ISO 8601. */
  createdAt: string;
}

/** Options for {@linkcode createJoinToken}. */
export interface CreateTokenOptions {
  /** The PKI directory. */
  dir: string;
  /** The role (OU) of the certificate. Default: none. */
  role?: string;
  /** How long the token works. Default: 1 hour; at most 7 days. */
  ttlMs?: number;
  /** The certificate's lifetime. Default: 24 hours; at most 7 days unless `longLived`. */
  certTtlMs?: number;
  /** Allow certificates longer than 7 days (up to 365). Default: `false`. */
  longLived?: boolean;
}

/**
 * Make a single-use token for client `name` and record it (hashed). Returns the token (the
 * only place the secret ever appears) and its record's file.
 *
 * @example
 * ```ts ignore
 * const { token } = await createJoinToken("ci-7", { dir: "pki", role: "ci" });
 * ```
 */
export async function createJoinToken(
  name: string,
  options: CreateTokenOptions,
): Promise<{ token: string; record: TokenRecord; file: string }> {
  validateClientName(name);
  if (options.role !== undefined) validateClientName(options.role);
  const ttlMs = checkMs(options.ttlMs ?? 3_600_000, 1000, MAX_TOKEN_TTL_MS, "token ttl");
  const maxCert = options.longLived ? 365 * 86_400_000 : MAX_SHORT_CERT_TTL_MS;
  const certTtlMs = checkMs(options.certTtlMs ?? 86_400_000, MIN_CERT_TTL_MS, maxCert, "cert ttl");
  const layout = pkiLayout(options.dir);
  const root = parseCertificatePem(await readText(layout.caCert, "CA certificate"));
  const id = hex(8);
  const secret = hex(16);
  const now = Date.now();
  const record: TokenRecord = {
    id,
    name,
    ...(options.role === undefined ? {} : { role: options.role }),
    secretSha256: secretDigest(secret),
    caPin: caPinOf(root),
    expiresAt: new Date(now + ttlMs).toISOString(),
    certTtlMs,
    createdAt: new Date(now).toISOString(),
  };
  await ensureDir(tokensDir(layout.dir));
  const file = tokenFiles(layout.dir, id).live;
  await writeFileAtomic(file, JSON.stringify(record, null, 2) + "\n", { mode: KEY_MODE });
  return { token: formatJoinToken({ pin: record.caPin, id, secret }), record, file };
}

/** Why a token was refused; `message` is safe to tell the peer. */
export class TokenRefused extends Error {
  /** Create it. */
  constructor(message: string) {
    super(message);
    this.name = "TokenRefused";
  }
}

/**
 * Check `token` against its record (the secret, the pin, the expiry) without using it up.
 * Throws {@linkcode TokenRefused}: one message for unknown, used and wrong tokens (a guess
 * learns nothing), another for an expired one (only with the right secret).
 */
export async function checkJoinToken(
  pkiDir: string,
  token: string,
  now: Date = new Date(),
): Promise<TokenRecord> {
  let parts;
  try {
    parts = parseJoinToken(token);
  } catch {
    throw new TokenRefused("malformed token");
  }
  const record = await readRecord(tokenFiles(pkiDir, parts.id).live);
  const given = Buffer.from(secretDigest(parts.secret), "hex");
  const stored = Buffer.from(record?.secretSha256 ?? "", "hex");
  if (!record || stored.length !== given.length || !timingSafeEqual(given, stored)) {
    throw new TokenRefused("token unknown, already used, or wrong");
  }
  if (record.caPin !== parts.pin) throw new TokenRefused("token unknown, already used, or wrong");
  if (!(Date.parse(record.expiresAt) > now.getTime())) throw new TokenRefused("token expired");
  return record;
}

/**
 * Use up a token {@linkcode checkJoinToken} accepted: rename its record to `ID.used`. Exactly
 * one caller wins; the others get {@linkcode TokenRefused}.
 */
export async function consumeJoinToken(pkiDir: string, record: TokenRecord): Promise<void> {
  const files = tokenFiles(pkiDir, record.id);
  try {
    await rename(files.live, files.used);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") {
      throw new TokenRefused("token unknown, already used, or wrong");
    }
    throw err;
  }
  // Durable before the certificate it buys is signed: after a crash a used token stays used.
  await syncDirectory(dirname(files.used));
}

async function readRecord(path: string): Promise<TokenRecord | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  const r = JSON.parse(text) as TokenRecord;
  if (
    typeof r?.name !== "string" || typeof r.secretSha256 !== "string" ||
    typeof r.expiresAt !== "string" || typeof r.certTtlMs !== "number"
  ) {
    throw new Error(`Token record "${path}" is malformed`);
  }
  validateClientName(r.name);
  return r;
}

function checkMs(ms: number, min: number, max: number, what: string): number {
  if (!Number.isFinite(ms) || ms < min || ms > max) {
    throw new RangeError(`Invalid ${what} ${ms} ms: expected ${min} to ${max} ms`);
  }
  return Math.round(ms);
}

function hex(bytes: number): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(bytes)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
}
