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
import { retirePreviousCa, rotateCa } from "../ca/rotate_ca.ts";
import { createJoinToken } from "../ca/tokens.ts";
import { clientsDir, fleetBundleDir, pkiLayout } from "../ca/layout.ts";

function reportKeygen(io: CliIo, report: KeygenReport) {
  for (const f of report.created) io.say(`created ${f}`);
  for (const f of report.kept) io.say(`kept    ${f} (exists; use --force to replace)`);
  for (const n of report.notes ?? []) io.say(`note: ${n}`);
}

/** `dockgate keygen …`: create or extend the PKI, revoke, publish the CRL. */
export async function runKeygen(cmd: KeygenCommand, io: CliIo): Promise<number> {
  if (cmd.action === "revoke") return await revoke(cmd.dir, cmd.subject, io);
  if (cmd.action === "token") {
    const { token, file } = await createJoinToken(cmd.name, cmd);
    // stdout: the token alone (scripts capture it); stderr: where its record is.
    io.out(token);
    io.say(`recorded ${file} (single use, expires in ${Math.round(cmd.ttlMs / 60_000)} min)`);
    return 0;
  }
  if (cmd.action === "crl") {
    const r = await republishCrl(cmd.dir);
    for (const p of r.published) {
      io.say(
        `published CRL number ${p.number} of ${p.label} listing ${p.total} revoked certificate(s)`,
      );
    }
    for (const label of r.skipped) io.say(`note: ${label}: key offline, its CRL was kept as it is`);
    for (const f of r.written) io.say(`wrote   ${f}`);
    return 0;
  }
  if (cmd.action === "rotate-ca") {
    reportKeygen(io, await rotateCa({ dir: cmd.dir, keyType: cmd.keyType, caDays: cmd.caDays }));
    return 0;
  }
  if (cmd.action === "retire-ca") {
    reportKeygen(io, await retirePreviousCa({ dir: cmd.dir, force: cmd.force }));
    return 0;
  }
  reportKeygen(io, await issue(cmd));
  sayNextSteps(cmd, io);
  return 0;
}

/** The issuing actions, through the library. */
function issue(
  cmd: Exclude<KeygenCommand, { action: "revoke" | "crl" | "token" | "rotate-ca" | "retire-ca" }>,
): Promise<KeygenReport> {
  const { dir, days } = cmd;
  switch (cmd.action) {
    case "init": {
      const { keyType, caDays, sans, force, newCa } = cmd;
      return initPki({ dir, keyType, days, caDays, sans, force, newCa });
    }
    case "server": {
      const { keyType, sans, force, name, issuer } = cmd;
      return issueServerBundle({ dir, keyType, days, sans, force, name, issuer });
    }
    case "intermediate":
      return createIntermediate(cmd.name, { dir, keyType: cmd.keyType, days, force: cmd.force });
    case "renew":
      return renewBundle(cmd.name, {
        dir,
        days,
        newKey: cmd.newKey,
        revokeOld: cmd.revokeOld,
        host: cmd.host,
      });
    case "client": {
      const { keyType, force, revokeOld, issuer } = cmd;
      return issueClientBundle(cmd.name, {
        dir,
        keyType,
        days,
        organizationalUnits: cmd.ous,
        force,
        revokeOld,
        issuer,
      });
    }
  }
}

/** What to do with what was just issued. */
function sayNextSteps(cmd: KeygenCommand, io: CliIo): void {
  if (cmd.action === "init") {
    io.say(`client bundle for the Docker CLI: DOCKER_CERT_PATH=${clientsDir(cmd.dir, "default")}`);
  } else if (cmd.action === "server" && cmd.name) {
    io.say(
      `serve on ${cmd.name} with: dockgate serve --certs ${fleetBundleDir(cmd.dir, cmd.name)}`,
    );
  } else if (cmd.action === "intermediate") {
    io.say(
      `issue from it with: dockgate keygen client NAME --issuer ${cmd.name} --dir ${cmd.dir} ` +
        `(the root key ${pkiLayout(cmd.dir).caKey} may now go offline)`,
    );
  } else if (cmd.action === "client") sayClientNextSteps(io, cmd.dir, cmd.name);
}

/** How the new client bundle reaches the Docker CLI. */
function sayClientNextSteps(io: CliIo, dir: string, name: string): void {
  io.say(`use it with: DOCKER_CERT_PATH=${clientsDir(dir, name)} DOCKER_TLS_VERIFY=1`);
  io.say("next steps:");
  io.say(`  eval "$(dockgate env ${name} --dir ${dir} --host HOST:2376)"`);
  io.say(`  dockgate env ${name} --dir ${dir} --host HOST:2376 --context --apply`);
  io.say(
    `  dockgate env ${name} --dir ${dir} --bundle ${name}.tar.gz --host HOST:2376   (to copy ` +
      `it; then "dockgate use ${name}.tar.gz" on the client)`,
  );
}

/** `keygen revoke NAME|SERIAL`: revoke, publish, and say what changed. */
async function revoke(dir: string, subject: string, io: CliIo): Promise<number> {
  const r = await revokeCertificate(dir, subject);
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
