/**
 * `dockgate keygen …`: the library's keygen, revoke and CRL functions, reported line by line.
 *
 * @module
 */

import type { KeygenCommand } from "./args.ts";
import type { CliIo } from "./io.ts";
import { initPki, issueClientBundle, issueServerBundle, renewBundle } from "../ca/keygen.ts";
import { type KeygenReport } from "../ca/files.ts";
import { republishCrl, revokeCertificate } from "../ca/revoke.ts";
import { createIntermediate } from "../ca/intermediates.ts";
import { clientsDir, fleetBundleDir, pkiLayout } from "../ca/layout.ts";

function reportKeygen(io: CliIo, report: KeygenReport) {
  for (const f of report.created) io.say(`created ${f}`);
  for (const f of report.kept) io.say(`kept    ${f} (exists; use --force to replace)`);
  for (const n of report.notes ?? []) io.say(`note: ${n}`);
}

/** `dockgate keygen …`: create or extend the PKI, revoke, publish the CRL. */
export async function runKeygen(cmd: KeygenCommand, io: CliIo): Promise<number> {
  switch (cmd.action) {
    case "init":
      reportKeygen(
        io,
        await initPki({
          dir: cmd.dir,
          keyType: cmd.keyType,
          days: cmd.days,
          caDays: cmd.caDays,
          sans: cmd.sans,
          force: cmd.force,
        }),
      );
      io.say(
        `client bundle for the Docker CLI: DOCKER_CERT_PATH=${clientsDir(cmd.dir, "default")}`,
      );
      return 0;
    case "server":
      reportKeygen(
        io,
        await issueServerBundle({
          dir: cmd.dir,
          keyType: cmd.keyType,
          days: cmd.days,
          sans: cmd.sans,
          force: cmd.force,
          name: cmd.name,
          issuer: cmd.issuer,
        }),
      );
      if (cmd.name) {
        io.say(
          `serve on ${cmd.name} with: dockgate serve --certs ${fleetBundleDir(cmd.dir, cmd.name)}`,
        );
      }
      return 0;
    case "intermediate":
      reportKeygen(
        io,
        await createIntermediate(cmd.name, {
          dir: cmd.dir,
          keyType: cmd.keyType,
          days: cmd.days,
          force: cmd.force,
        }),
      );
      io.say(
        `issue from it with: dockgate keygen client NAME --issuer ${cmd.name} --dir ${cmd.dir} ` +
          `(the root key ${pkiLayout(cmd.dir).caKey} may now go offline)`,
      );
      return 0;
    case "renew":
      reportKeygen(
        io,
        await renewBundle(cmd.name, {
          dir: cmd.dir,
          days: cmd.days,
          newKey: cmd.newKey,
          revokeOld: cmd.revokeOld,
        }),
      );
      return 0;
    case "client":
      reportKeygen(
        io,
        await issueClientBundle(cmd.name, {
          dir: cmd.dir,
          keyType: cmd.keyType,
          days: cmd.days,
          organizationalUnits: cmd.ous,
          force: cmd.force,
          revokeOld: cmd.revokeOld,
          issuer: cmd.issuer,
        }),
      );
      io.say(
        `use it with: DOCKER_CERT_PATH=${clientsDir(cmd.dir, cmd.name)} DOCKER_TLS_VERIFY=1`,
      );
      io.say("next steps:");
      io.say(`  eval "$(dockgate env ${cmd.name} --dir ${cmd.dir} --host HOST:2376)"`);
      io.say(`  dockgate env ${cmd.name} --dir ${cmd.dir} --host HOST:2376 --context --apply`);
      io.say(
        `  dockgate env ${cmd.name} --dir ${cmd.dir} --bundle ${cmd.name}.tar.gz   (to copy it)`,
      );
      return 0;
    case "revoke": {
      const r = await revokeCertificate(cmd.dir, cmd.subject);
      const already = r.serials.filter((s) => !r.newlyRevokedSerials.includes(s));
      const whose = r.name ? ` of client ${r.name}` : "";
      if (r.newlyRevokedSerials.length) {
        io.say(
          `revoked ${r.newlyRevokedSerials.length} certificate(s)${whose}: serial ${
            r.newlyRevokedSerials.join(", ")
          }`,
        );
      }
      if (already.length) io.say(`already revoked${whose}: serial ${already.join(", ")}`);
      io.say(`${r.total} revoked in all; CRL number ${r.crlNumber}`);
      for (const f of r.written) io.say(`wrote   ${f}`);
      return 0;
    }
    case "crl": {
      const r = await republishCrl(cmd.dir);
      io.say(`published CRL number ${r.number} listing ${r.total} revoked certificate(s)`);
      for (const f of r.written) io.say(`wrote   ${f}`);
      return 0;
    }
  }
}
