/**
 * The help text of every command (`dockgate help [TOPIC]`, `dockgate VERB --help`), its
 * defaults read from the one DEFAULTS table.
 *
 * @example
 * ```ts
 * import { HELP } from "./help.ts";
 * if (!HELP.serve.includes("--max-handshakes")) throw new Error();
 * ```
 *
 * @module
 */

import { DEFAULTS } from "../config/defaults.ts";
import { VERSION } from "../version.ts";

/** Help text by topic: `main`, `keygen`, `serve`, `connect`. */
export const HELP: Record<string, string> = {
  main: `dockgate ${VERSION}: mutual TLS in front of the Docker API

Usage:
  dockgate keygen [server|client NAME|renew NAME|revoke NAME|SERIAL] [options]   the PKI
  dockgate serve [options]      TLS listener that demands a client certificate, relays to Docker
  dockgate connect --server HOST:PORT [options]   local socket that wraps connections in mTLS
  dockgate policy check FILE --identity CN METHOD PATH [--body F]   what an API policy decides
  dockgate env NAME [--host HOST:PORT] [--context [--apply]] [--bundle F]   how a client connects
  dockgate inspect [DIR|FILE]... [--json] [--fail-within DAYS]   certificates and their dates
  dockgate doctor [--pki DIR] [--certs DIR] [--target ADDR] [--server HOST:PORT]   checks, with fixes
  dockgate completion bash      bash completion: source <(dockgate completion bash)
  dockgate help COMMAND         options of one command (also: dockgate COMMAND --help)
  dockgate --version

Quickstart (Docker host):  dockgate serve      (creates ./pki on first run)
Client:  docker --tlsverify -H tcp://HOST:2376 --tlscacert pki/clients/default/ca.pem \\
           --tlscert pki/clients/default/cert.pem --tlskey pki/clients/default/key.pem version`,
  keygen:
    `dockgate keygen [--dir DIR] [--key-type T] [--days N] [--ca-days N] [--san NAME|IP]... [--force]
    Create DIR (default ./pki): CA, server bundle, client bundle "default"; keeps what exists.
dockgate keygen server [--name HOST] [--issuer INT] [--dir DIR] [--san NAME|IP]... [--key-type T] [--days N] [--force]
    --name HOST: one Docker host of a fleet, DIR/servers/HOST/ (CN and first SAN HOST);
    without it the single DIR/server bundle.
dockgate keygen client NAME [--issuer INT] [--dir DIR] [--ou OU]... [--key-type T] [--days N] [--force [--revoke-old]]
    --force re-issues; the earlier certificates stay valid unless --revoke-old revokes them.
    --issuer INT: issued by intermediate INT; cert.pem holds the leaf and INT.
dockgate keygen intermediate NAME [--dir DIR] [--key-type T] [--days N (default 1825)] [--force]
    An intermediate CA DIR/intermediates/NAME/ (pathlen 0) signed by the root, with its own
    records and CRL, added to every server bundle's ca.pem; then the root key can go offline.
dockgate keygen renew NAME|server [--dir DIR] [--days N] [--new-key] [--revoke-old]
    A new certificate, same names, same key (or --new-key); the old one stays valid until it
    expires unless --revoke-old. A running serve picks a renewed server certificate up itself.
dockgate keygen revoke NAME|SERIAL [--dir DIR]
    Revoke (by NAME: every unexpired certificate ever issued to NAME) with the CA that issued
    it, write its CRL (DIR/ca/crl.pem or DIR/intermediates/INT/crl.pem), and the CRLs of all
    CAs as one crl.pem in DIR/server and each DIR/servers/HOST. Publish that file for --crl-url.
dockgate keygen crl [--dir DIR]
    Publish the CRL again from the PKI's revocation record (e.g. after crl.pem was lost).
  --key-type   p256 (default), p384, rsa2048, rsa3072, rsa4096
  --days       leaf validity in days (default 365); --ca-days CA validity (default 3650)
  --san        extra server names/IPs (defaults: localhost, 127.0.0.1, ::1, host name)
    Example: dockgate keygen --dir /etc/dockgate/pki --san gate.example.com && dockgate keygen client ci-runner --dir /etc/dockgate/pki`,
  serve: `dockgate serve [options]
  --listen ADDR            TCP address (default ${DEFAULTS.serveListen}; port 0 = any free port)
  --target ADDR            unix:///path or tcp://host:port (default ${DEFAULTS.serveTarget})
  --certs DIR              bundle with ca.pem, cert.pem, key.pem [, crl.pem] (default ./${DEFAULTS.serveCerts};
                           created with the whole PKI on first run when no TLS flag is given)
  --cert F --key F --ca F  individual files (override --certs)
  --crl F|DIR              CRLs: PEM (several in one file) or DER, or a directory of them, one
                           per issuing CA (repeatable; default, without --crl or --crl-url:
                           crl.pem in --certs when present)
  --crl-url URL            fetch a CRL over HTTP(S) at start and every --crl-refresh (repeatable;
                           ETag/If-Modified-Since; a failed fetch keeps the last good copy)
  --crl-refresh D          how often each --crl-url is fetched again (default ${DEFAULTS.crlRefresh}; sooner at
                           the CRL's nextUpdate)
  --crl-cache DIR          where the last good copy of each fetched CRL is kept (default:
                           crl-cache in --certs)
  --allow-cn NAME          allow this client CN (repeatable; * matches one DNS label)
  --allow-san NAME|URI|IP  allow this client SAN (repeatable)
  --allow-ou OU            allow this client OU (repeatable); no allow flag = any cert from the CA
  --handshake-timeout D    drop peers that do not finish the handshake (default ${DEFAULTS.handshakeTimeout})
  --crl-stale warn|refuse  a CRL past its nextUpdate: warn and keep using it (default), or refuse
                           every client until a current one is loaded
  --max-connections N      concurrent authenticated connection cap (default ${DEFAULTS.maxConnections})
  --max-handshakes N       concurrent TLS handshakes; when full the oldest is dropped (default ${DEFAULTS.maxHandshakes})
  --max-handshakes-per-address N   concurrent handshakes from one address (default ${DEFAULTS.maxHandshakesPerAddress})
  --keep-revoked-connections   at a reload, keep open connections of identities now revoked
                           or no longer allowed (default: they are ended)
  --drain-timeout D        on SIGTERM/SIGINT, let open connections finish this long (default ${DEFAULTS.drainTimeout})
  --max-conn-lifetime D    end connections older than this (default: never)
  --insecure-key-perms     accept a key file readable by group or others, and trust files or
                           directories others could write
  --log-level L            debug, info (default), warn, error
  --log-format F           text (default; the level coloured on a terminal unless NO_COLOR) or json
  --metrics ADDR           serve Prometheus /metrics and /healthz on ADDR (loopback, e.g.
                           tcp://127.0.0.1:9323; --unsafe-metrics allows any address)
  --require-target         fail at start when the target does not answer (default: warn, start,
                           and relay once it answers; /healthz says 503 meanwhile)
  --policy FILE            per-identity Docker API rules (JSON or YAML; see README "API policy");
                           an identity without a role is refused
  --policy-mode M          enforce (default ${DEFAULTS.policyMode}) or audit (forward, log would_deny)
  --audit-log FILE         JSON lines: every request of a restricted role, every connection
                           (default: stderr when --policy is given; reopened on SIGHUP)
  --max-body SIZE          largest request body read for inspection, 413 above (default ${DEFAULTS.maxBody})
  --state-dir DIR          the owner record of isolated roles (default $STATE_DIRECTORY, else
                           ${DEFAULTS.stateDir}); serve refuses to start when it cannot be written
  SIGHUP or a change to any of the files reloads them (allow-lists come from flags: restart to
  change them); open connections are kept unless a reload revokes or disallows them.
    Example: dockgate serve --certs /etc/dockgate/pki/server --policy policy.yaml --metrics tcp://127.0.0.1:9323`,
  policy:
    `dockgate policy check FILE --identity CN [--ou OU]... [--san NAME]... METHOD PATH [--body F]
    Print what the API policy FILE decides for this request and the rule that decided it.
    Exit 0 when allowed, 1 when denied (2 for usage errors). PATH may carry /vN.NN and a query.
    Example: dockgate policy check policy.json --identity ci-runner POST /v1.41/containers/create --body create.json`,
  inspect: `dockgate inspect [DIR|FILE]... [--json] [--fail-within DAYS]
    Every certificate in a PKI, a bundle or PEM files (default ./${DEFAULTS.pkiDir}): role, subject,
    SANs, EKU, serial, end date and days left, revoked (by a CRL found beside it), key type.
    --json          the same as JSON
    --fail-within N exit 1 when a certificate (not revoked) expires within N days
    Example: dockgate inspect /etc/dockgate/pki --fail-within 30 || mail -s "renew" ops@example.com`,
  doctor:
    `dockgate doctor [--pki DIR] [--certs DIR] [--target ADDR] [--listen ADDR] [--server HOST:PORT [--client-certs DIR]]
    One PASS/FAIL line per check, with the fix; exit 0 only when all pass. Without options:
    --pki ./${DEFAULTS.pkiDir} --target ${DEFAULTS.serveTarget}.
    --pki DIR           the CA, the server bundle and every client bundle: files readable, keys
                        private (0600, ours), key matches certificate, signed by the CA, EKU,
                        server names cover the host (--server's, else localhost and this host),
                        30+ days left, CRL signed and fresh
    --certs DIR         one bundle, the same checks
    --target ADDR       the Docker daemon answers /_ping (and its API version)
    --listen ADDR       the port is free
    --server HOST:PORT  a full mTLS round trip to a running serve with --client-certs DIR
                        (default PKI/clients/default): who it was admitted as, /_ping
    Example: dockgate doctor --pki /etc/dockgate/pki --server gate.example.com:2376`,
  completion: `dockgate completion bash
    Print a bash completion script (verbs, and each verb's flags).
    Example: echo 'source <(dockgate completion bash)' >> ~/.bashrc`,
  env:
    `dockgate env NAME [--dir DIR] [--host HOST[:PORT]]... [--hosts-file F] [--context [--apply]] [--bundle FILE.tar.gz]
    How client NAME (bundle DIR/clients/NAME, DIR default ./${DEFAULTS.pkiDir}) reaches the gate at
    HOST:PORT (default: this host's name, port 2376):
    (default)    shell lines: eval "$(dockgate env alice --host gate.example.com:2376)"
    --context    the "docker context create" command; with --apply, run it
    --bundle F   pack ca.pem, cert.pem, key.pem into F (created 0600, never over a file)
    --host H1 --host H2 ... or --hosts-file F (a HOST[:PORT] per line, # comments): a fleet; one
                 "docker context create" per host, named after the host (with --apply, run them)
    Example: dockgate env alice --host gate.example.com:2376 --context --apply && docker --context alice ps
    Example: dockgate env ci --host h1 --host h2 --apply && docker --context h2 ps`,
  connect: `dockgate connect --server HOST:PORT [options]
  --listen ADDR            unix:///path (created 0600) or tcp://127.0.0.1:PORT
                           (default $XDG_RUNTIME_DIR/dockgate.sock, else /tmp/dockgate-UID.sock)
  --certs DIR              client bundle (default $DOCKER_CERT_PATH, then ~/.docker)
  --cert F --key F --ca F  individual files (override --certs)
  --server-name NAME       name the server certificate must carry (default: the --server host)
  --unsafe-listen          allow a TCP listen address off loopback
  --drain-timeout D        on SIGTERM/SIGINT, let open connections finish this long (default ${DEFAULTS.connectDrainTimeout})
  --insecure-key-perms     accept a key file readable by group or others
  --log-level L            debug, info (default), warn, error
  --log-format F           text (default) or json
    Example: dockgate connect --server gate.example.com:2376 --certs ~/.docker/gate & DOCKER_HOST=unix://$XDG_RUNTIME_DIR/dockgate.sock docker ps`,
};
