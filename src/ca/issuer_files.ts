/**
 * The issuer a long-running signer (serve's enrolment port) signs with, kept current with its
 * files: `ca.pem` and `ca-key.pem` of the root or of an intermediate. Each signing asks
 * {@linkcode IssuerFiles.current}, which compares both files' identity (device, inode, size,
 * modification and change times) with those it loaded from; the same files give the issuer
 * already loaded (its key stays imported in `ca_key_cache.ts`), changed ones are loaded and
 * checked again (`loadIssuer`). `keygen rotate-ca` re-signing the intermediate, or
 * `keygen intermediate --force` replacing its key, are picked up by the next signing without
 * a restart. While the files do not match (one replaced, not yet the other), signing fails
 * and nothing is cached, so the next attempt loads again.
 *
 * @module
 */

import { stat } from "node:fs/promises";
import { caFiles, intermediateLayout, pkiLayout } from "./layout.ts";
import { type Issuer, loadIssuer } from "./issuers.ts";
import { loadedCa } from "./ca_key_cache.ts";
import type { X509Certificate } from "../pki/x509.ts";

/** An issuer as loaded, with its certificate parsed. */
export interface CurrentIssuer {
  /** The issuer (its PEM pair, records directory and chain). */
  issuer: Issuer;
  /** Its certificate, parsed (what a renewing leaf is checked against). */
  cert: X509Certificate;
}

/**
 * The issuer `name` of the PKI in `dir` (the root when `undefined`), reloaded when its files
 * change.
 *
 * @example
 * ```ts ignore
 * const files = new IssuerFiles("pki", "enroll");
 * const { issuer } = await files.current();
 * ```
 */
export class IssuerFiles {
  #loaded?: { identity: string; current: CurrentIssuer };
  #loading?: Promise<CurrentIssuer>;
  readonly #paths: { cert: string; key: string };

  /** Files of issuer `name` in PKI `dir`. */
  constructor(readonly dir: string, readonly name: string | undefined) {
    this.#paths = name === undefined
      ? caFiles(pkiLayout(dir).caDir)
      : intermediateLayout(dir, name);
  }

  /** The issuer as its files are now; throws as `loadIssuer` does when they are unusable. */
  async current(): Promise<CurrentIssuer> {
    const identity = await this.#identity();
    if (this.#loaded?.identity === identity) return this.#loaded.current;
    // Concurrent callers after a change share one load.
    this.#loading ??= this.#load(identity).finally(() => (this.#loading = undefined));
    return await this.#loading;
  }

  async #load(identity: string): Promise<CurrentIssuer> {
    const issuer = await loadIssuer(this.dir, this.name);
    const current = { issuer, cert: (await loadedCa(issuer.ca)).caCert };
    // The files may have changed while they were read: keep what was read only if not.
    if (await this.#identity() === identity) this.#loaded = { identity, current };
    return current;
  }

  async #identity(): Promise<string> {
    const parts: string[] = [];
    for (const path of [this.#paths.cert, this.#paths.key]) {
      const s = await stat(path, { bigint: true });
      parts.push(`${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`);
    }
    return parts.join("/");
  }
}
