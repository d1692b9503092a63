/**
 * A certificate authority run by `openssl ca`, for tests that need certificates our own
 * keygen would never make (odd dates, key usages, Unicode names, stale or old CRLs), so the
 * tests do not share our code's assumptions.
 */

import { execFileSync } from "node:child_process";
import { chmodSync, copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** Dates in OpenSSL's `YYYYMMDDHHMMSSZ` form. */
export function opensslDate(d: Date): string {
  return d.toISOString().replace(/[-:T]/g, "").replace(/\.\d+Z$/, "Z");
}

/** Days from now as a Date (negative: in the past). */
export function daysFromNow(days: number): Date {
  return new Date(Date.now() + days * 86_400_000);
}

function openssl(args: string[], cwd?: string): string {
  try {
    return execFileSync("openssl", args, {
      cwd,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`openssl ${args.join(" ")} failed: ${e.stderr ?? e.message}`);
  }
}

/** A certificate and its key, as files and PEM text. */
export interface Issued {
  certPath: string;
  keyPath: string;
  cert: string;
  key: string;
}

/** Options for one certificate. */
export interface IssueOptions {
  /** `-subj` form, e.g. `/CN=alice/OU=ops`. UTF-8 allowed. */
  subject: string;
  /** Extension lines, e.g. `extendedKeyUsage = clientAuth`. */
  extensions: string[];
  /** Validity; default: from yesterday for 30 days. */
  notBefore?: Date;
  notAfter?: Date;
  /** The serial number in hex (e.g. another certificate's); default: the CA's next. */
  serial?: string;
}

/** Extensions of an ordinary TLS client certificate. */
export const CLIENT_EXT = [
  "basicConstraints = critical, CA:FALSE",
  "keyUsage = critical, digitalSignature",
  "extendedKeyUsage = clientAuth",
];

/** Extensions of an ordinary intermediate CA. */
export const CA_EXT = [
  "basicConstraints = critical, CA:TRUE",
  "keyUsage = critical, keyCertSign, cRLSign",
  "subjectKeyIdentifier = hash",
  "authorityKeyIdentifier = keyid",
];

/** Extensions of an ordinary TLS server certificate for localhost. */
export const SERVER_EXT = [
  "basicConstraints = critical, CA:FALSE",
  "keyUsage = critical, digitalSignature",
  "extendedKeyUsage = serverAuth",
  "subjectAltName = DNS:localhost, IP:127.0.0.1",
];

/** An `openssl ca` directory: CA key and certificate, database, serial and CRL number. */
export class OpensslCa {
  readonly certPath: string;
  readonly keyPath: string;
  #count = 0;

  private constructor(readonly dir: string) {
    this.certPath = join(dir, "ca.pem");
    this.keyPath = join(dir, "ca-key.pem");
  }

  /** The CA certificate PEM. */
  get cert(): string {
    return readFileSync(this.certPath, "utf8");
  }

  /**
   * Make a CA in `dir` (created): a self-signed P-256 certificate with CA:TRUE and
   * keyCertSign/cRLSign, valid `notBefore`..`notAfter` (default: yesterday + 30 days).
   */
  static create(
    dir: string,
    opts: { name?: string; notBefore?: Date; notAfter?: Date; extensions?: string[] } = {},
  ): OpensslCa {
    const ca = OpensslCa.#empty(dir, [
      ...opts.extensions ??
        ["basicConstraints = critical, CA:TRUE", "keyUsage = critical, keyCertSign, cRLSign"],
      "subjectKeyIdentifier = hash",
    ]);
    ca.#keyAndCsr(ca.keyPath, join(dir, "ca.csr"), `/CN=${opts.name ?? "openssl test CA"}`);
    ca.#sign(join(dir, "ca.csr"), ca.certPath, join(dir, "ca-ext.cnf"), opts, [
      "-selfsign",
      "-keyfile",
      ca.keyPath,
    ]);
    chmodSync(ca.keyPath, 0o600);
    return ca;
  }

  /**
   * An intermediate CA in `dir` (created), signed by this CA, with `extensions` (default: an
   * ordinary intermediate, CA:TRUE and keyCertSign/cRLSign); it issues and revokes like any
   * `OpensslCa`, with its own database and CRL numbers.
   */
  intermediate(
    dir: string,
    opts: { name?: string; extensions?: string[]; notBefore?: Date; notAfter?: Date } = {},
  ): OpensslCa {
    const ca = OpensslCa.#empty(dir, opts.extensions ?? CA_EXT);
    ca.#keyAndCsr(ca.keyPath, join(dir, "ca.csr"), `/CN=${opts.name ?? "openssl intermediate"}`);
    this.#sign(join(dir, "ca.csr"), ca.certPath, join(dir, "ca-ext.cnf"), opts);
    chmodSync(ca.keyPath, 0o600);
    return ca;
  }

  /**
   * An `openssl ca` directory in `dir` (created) for an existing CA certificate and key (e.g.
   * the root `dockgate keygen` made), to issue what keygen never would (a chosen serial).
   */
  static adopt(dir: string, certPath: string, keyPath: string): OpensslCa {
    const ca = OpensslCa.#empty(dir, []);
    copyFileSync(certPath, ca.certPath);
    copyFileSync(keyPath, ca.keyPath);
    chmodSync(ca.keyPath, 0o600);
    return ca;
  }

  /** A CA directory with an empty database, its config, and `extensions` for its own certificate. */
  static #empty(dir: string, extensions: string[]): OpensslCa {
    mkdirSync(join(dir, "newcerts"), { recursive: true });
    const ca = new OpensslCa(dir);
    writeFileSync(join(dir, "index.txt"), "");
    writeFileSync(join(dir, "serial"), "1000\n");
    writeFileSync(join(dir, "crlnumber"), "01\n");
    writeFileSync(join(dir, "openssl.cnf"), ca.#config());
    writeFileSync(join(dir, "ca-ext.cnf"), `[ext]\n${extensions.join("\n")}\n`);
    return ca;
  }

  /** Issue a certificate (new P-256 key) into `dir/NAME-cert.pem` and `NAME-key.pem`. */
  issue(name: string, opts: IssueOptions): Issued {
    const n = ++this.#count;
    const base = join(this.dir, `${name}-${n}`);
    const ext = `${base}.ext`;
    writeFileSync(ext, `[ext]\n${opts.extensions.join("\n")}\n`);
    if (opts.serial !== undefined) {
      if (!/^[0-9a-f]+$/i.test(opts.serial)) throw new TypeError(`serial: not hex: ${opts.serial}`);
      // openssl reads the serial file as whole bytes of hex.
      const hex = opts.serial.length % 2 ? `0${opts.serial}` : opts.serial;
      writeFileSync(join(this.dir, "serial"), `${hex}\n`);
    }
    this.#keyAndCsr(`${base}-key.pem`, `${base}.csr`, opts.subject);
    this.#sign(`${base}.csr`, `${base}-cert.pem`, ext, opts);
    chmodSync(`${base}-key.pem`, 0o600);
    return {
      certPath: `${base}-cert.pem`,
      keyPath: `${base}-key.pem`,
      cert: readFileSync(`${base}-cert.pem`, "utf8"),
      key: readFileSync(`${base}-key.pem`, "utf8"),
    };
  }

  /** Mark a certificate revoked in the CA database (the next {@linkcode crl} lists it). */
  revoke(certPath: string): void {
    openssl(["ca", "-config", join(this.dir, "openssl.cnf"), "-revoke", certPath]);
  }

  /** Generate a CRL (next CRL number) into `path`; optional lastUpdate/nextUpdate. */
  crl(path: string, opts: { thisUpdate?: Date; nextUpdate?: Date } = {}): string {
    const args = ["ca", "-config", join(this.dir, "openssl.cnf"), "-gencrl", "-out", path];
    if (opts.thisUpdate) args.push("-crl_lastupdate", opensslDate(opts.thisUpdate));
    if (opts.nextUpdate) args.push("-crl_nextupdate", opensslDate(opts.nextUpdate));
    openssl(args);
    return readFileSync(path, "utf8");
  }

  /** A new P-256 key at `keyPath` and a request for `subject` (UTF-8) at `csrPath`. */
  #keyAndCsr(keyPath: string, csrPath: string, subject: string): void {
    openssl([
      "req",
      "-new",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      keyPath,
      "-out",
      csrPath,
      "-subj",
      subject,
      "-utf8",
    ]);
  }

  /** Sign `csr` into `out` with the `[ext]` section of `extFile`, valid for the given dates. */
  #sign(
    csr: string,
    out: string,
    extFile: string,
    dates: { notBefore?: Date; notAfter?: Date },
    extra: string[] = [],
  ): void {
    openssl([
      "ca",
      "-batch",
      "-config",
      join(this.dir, "openssl.cnf"),
      ...extra,
      "-in",
      csr,
      "-out",
      out,
      "-notext",
      "-utf8",
      "-preserveDN",
      "-extfile",
      extFile,
      "-extensions",
      "ext",
      "-startdate",
      opensslDate(dates.notBefore ?? daysFromNow(-1)),
      "-enddate",
      opensslDate(dates.notAfter ?? daysFromNow(30)),
    ]);
  }

  #config(): string {
    return `[ca]
default_ca = CA_default
[CA_default]
dir = ${this.dir}
database = $dir/index.txt
new_certs_dir = $dir/newcerts
certificate = $dir/ca.pem
private_key = $dir/ca-key.pem
serial = $dir/serial
crlnumber = $dir/crlnumber
default_md = sha256
default_days = 30
default_crl_days = 30
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no
string_mask = utf8only
[policy_any]
commonName = optional
organizationalUnitName = optional
organizationName = optional
`;
  }
}

/**
 * A server bundle directory for `dockgate serve --certs DIR` from `ca`: `cert.pem` and
 * `key.pem` for localhost, and `ca.pem` holding `trust` (default: `ca`'s certificate).
 */
export function serverBundle(ca: OpensslCa, dir: string, trust?: string): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const server = ca.issue("server", { subject: "/CN=localhost", extensions: SERVER_EXT });
  writeFileSync(join(dir, "cert.pem"), server.cert);
  writeFileSync(join(dir, "key.pem"), server.key, { mode: 0o600 });
  writeFileSync(join(dir, "ca.pem"), trust ?? ca.cert);
  return dir;
}
