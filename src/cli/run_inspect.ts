/**
 * `dockgate inspect [PATH…] [--json] [--fail-within DAYS]`: every certificate of a PKI or
 * bundle in a table (or JSON), and exit 1 when one expires within DAYS (or already has).
 *
 * @module
 */

import type { InspectCommand } from "./args.ts";
import type { CliIo } from "./io.ts";
import { type CertificateRow, inspectCertificates } from "../report/inspect.ts";

/** The rows as an aligned text table. */
export function formatTable(rows: CertificateRow[]): string[] {
  const head = [
    "ROLE",
    "SUBJECT",
    "SANS",
    "EKU",
    "SERIAL",
    "NOT AFTER",
    "DAYS",
    "REVOKED",
    "KEY",
    "FILE",
  ];
  const body = rows.map((r) => [
    r.role,
    r.subject,
    r.sans.join(",") || "-",
    r.eku.join(",") || "-",
    r.serial.length > 16 ? `${r.serial.slice(0, 16)}…` : r.serial,
    r.notAfter.slice(0, 10),
    String(r.daysLeft),
    r.revoked === undefined ? "-" : r.revoked ? "REVOKED" : "no",
    r.keyType,
    r.path,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  return [head, ...body].map((cols) =>
    cols.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd()
  );
}

/** Print the certificates; 1 when `--fail-within` finds one running out. */
export async function runInspect(cmd: InspectCommand, io: CliIo): Promise<number> {
  const rows = await inspectCertificates(cmd.paths);
  if (rows.length === 0) throw new Error(`No certificates found in ${cmd.paths.join(", ")}`);
  if (cmd.json) io.out(JSON.stringify(rows, null, 2));
  else for (const line of formatTable(rows)) io.out(line);
  if (cmd.failWithinDays === undefined) return 0;
  const soon = rows.filter((r) => r.revoked !== true && r.daysLeft < cmd.failWithinDays!);
  for (const r of soon) {
    io.say(
      `expires ${
        r.daysLeft < 0 ? "already" : `in ${r.daysLeft} days`
      }: ${r.role} ${r.subject} (${r.path})`,
    );
  }
  return soon.length > 0 ? 1 : 0;
}
