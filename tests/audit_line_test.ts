// auditLine builds its line from the record's own JSON with the time put first: the text must
// be exactly that of stringifying one object with `time` first, then the escape pass.
import assert from "node:assert/strict";
import { auditLine, type AuditRecord } from "../src/observe/audit.ts";
import { escapeControls } from "../src/observe/logger.ts";

function reference(record: AuditRecord, time: Date): string {
  const json = JSON.stringify({ time: time.toISOString(), ...record });
  return /^[\x20-\x7e]*$/.test(json) ? json : escapeControls(json);
}

Deno.test("auditLine: the same text as one object with the time first", () => {
  const base: AuditRecord = {
    event: "request",
    identity: "alice",
    serial: "3A0F",
    peer: "127.0.0.1:4000",
    role: "ci",
    method: "GET",
    path: "/containers/json",
    decision: "allow",
    rule: "no-escape",
    status: 200,
    bytes_in: 80,
    bytes_out: 300,
    ms: 0,
  };
  const odd = ["a\u202eb", "tab\there", "nl\nx", "\u0000", "é", "\u2028", '"q"', "\\", "😀", ""];
  const times = [new Date(0), new Date(1796643502780), new Date(1796643502780), new Date(5)];
  for (const time of times) {
    assert.equal(auditLine(base, time), reference(base, time));
    for (const text of odd) {
      for (const key of ["identity", "path", "rule", "error"] as const) {
        const record = { ...base, [key]: text };
        assert.equal(auditLine(record, time), reference(record, time), `${key} ${text}`);
      }
    }
  }
  const sparse = { event: "connection", identity: "-", serial: "-", peer: "-" } as AuditRecord;
  assert.equal(auditLine(sparse, times[1]), reference(sparse, times[1]));
  assert.throws(() => auditLine(base, new Date(NaN)), RangeError);
});
