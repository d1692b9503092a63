/**
 * Unit tests of the rules behind the hardening (see hardening_test.ts for the same rules end
 * to end): handshake slots and throttled refusals, the log's escaping and its sink, CRL
 * succession, IP canonical forms, trust-file modes.
 */

import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { createCa } from "../src/ca/issue.ts";
import { createCrl } from "../src/ca/crl_issue.ts";
import { crlRollback, loadCrlFile } from "../src/pki/crl.ts";
import { HandshakeSlots, ThrottledRefusals } from "../src/net/handshakes.ts";
import { formatLogLine, streamSink } from "../src/observe/logger.ts";
import { canonicalIp, evaluatePolicy } from "../src/access/policy.ts";
import { crlStaleness, revocationVerdict } from "../src/access/authorize.ts";
import { unsafeMode } from "../src/pki/trust_files.ts";
import { parseCertificatePem } from "../src/pki/pem.ts";

Deno.test("HandshakeSlots: per-address cap, oldest evicted when full, release is idempotent", () => {
  const slots = new HandshakeSlots<string>(3, 2);
  assert.deepEqual(slots.admit("a1", "A"), { ok: true, evicted: undefined });
  assert.equal(slots.admit("a2", "A").ok, true);
  assert.equal(slots.admit("a3", "A").ok, false, "third from A is over its cap");
  assert.equal(slots.admit("b1", "B").ok, true);
  const c = slots.admit("c1", "C");
  assert.equal(c.ok && c.evicted, "a1", "the oldest pending handshake makes room");
  assert.equal(slots.size, 3);
  // a1 was evicted: A has one slot again.
  assert.equal(slots.admit("a4", "A").ok && slots.size, 3);
  slots.release("b1");
  slots.release("b1");
  assert.equal(slots.size, 2);
  assert.throws(() => new HandshakeSlots(0, 1), RangeError);
});

Deno.test("ThrottledRefusals: once per address and reason per interval, with the count", () => {
  const lines: Record<string, unknown>[] = [];
  const log = new ThrottledRefusals({ log: (_l, _m, f) => void lines.push(f ?? {}) }, 1000);
  for (let i = 0; i < 10; i++) log.refuse("10.0.0.1", `10.0.0.1:${i}`, "cap", 5_000 + i);
  log.refuse("10.0.0.2", "10.0.0.2:1", "cap", 5_010);
  log.refuse("10.0.0.1", "10.0.0.1:1", "other", 5_010);
  assert.equal(lines.length, 3);
  log.refuse("10.0.0.1", "10.0.0.1:99", "cap", 6_001);
  assert.equal(lines.length, 4);
  assert.equal(lines[3].suppressed, 9, "says how many it swallowed");
});

Deno.test("log lines: peer-chosen text cannot forge or hide lines", () => {
  const line = formatLogLine("warn", "refused\nINFO accepted", {
    identity: "evil\r\nINFO accepted identity=admin",
    ansi: "\x1b[2Khidden",
    bidi: "abc\u202edef",
    plain: "alice",
  });
  assert.equal(line.split("\n").length, 1);
  // deno-lint-ignore no-control-regex
  assert.ok(!/[\x00-\x1f\x7f\u202e]/.test(line), line);
  assert.match(line, /identity="evil\\r\\nINFO accepted identity=admin"/);
  assert.match(line, /ansi="\\u001b\[2Khidden"/);
  assert.match(line, /bidi="abc\\u202edef"/);
  assert.match(line, / plain=alice$/);
});

Deno.test("streamSink: drops (and then reports) lines while the stream is too far behind", () => {
  const written: string[] = [];
  const stream = Object.assign(new EventEmitter(), {
    writableLength: 0,
    write: (chunk: string) => written.push(chunk),
  });
  const sink = streamSink(stream, { maxQueuedBytes: 10 });
  sink.write("a");
  stream.writableLength = 11;
  sink.write("b");
  sink.write("c");
  stream.writableLength = 0;
  sink.write("d");
  assert.equal(sink.dropped, 2);
  assert.equal(written[0], "a\n");
  assert.match(written[1], /WARN log lines dropped count=2/);
  assert.equal(written[2], "d\n");
  // A stream that throws synchronously marks the sink dead instead of throwing.
  const broken = Object.assign(new EventEmitter(), {
    write: () => {
      throw new Error("EBADF");
    },
  });
  const dead = streamSink(broken);
  dead.write("x");
  dead.write("y");
  assert.equal(dead.alive, false);
  assert.equal(dead.dropped, 2);
});

Deno.test("CRL succession: lower number or earlier thisUpdate from the same key is a rollback", async () => {
  const ca = await createCa();
  const other = await createCa();
  const cas = [parseCertificatePem(ca.certPem), parseCertificatePem(other.certPem)];
  const dir = await Deno.makeTempDir();
  try {
    const load = async (name: string, pem: string) => {
      await Deno.writeTextFile(`${dir}/${name}`, pem);
      return await loadCrlFile(`${dir}/${name}`, cas);
    };
    const t = new Date(Date.now() - 60_000);
    const n5 = await load("5.pem", await createCrl(ca, [], { number: 5n, thisUpdate: t }));
    assert.equal(n5.number, 5n);
    const n4 = await load("4.pem", await createCrl(ca, [], { number: 4n }));
    assert.match(crlRollback(n5, n4)!, /CRL number 4, lower than 5 in force/);
    const older = await load(
      "o.pem",
      await createCrl(ca, [], { number: 6n, thisUpdate: new Date(t.getTime() - 1000) }),
    );
    assert.match(crlRollback(n5, older)!, /before the one in force/);
    const n6 = await load("6.pem", await createCrl(ca, [], { number: 6n }));
    assert.equal(crlRollback(n5, n6), undefined);
    assert.equal(crlRollback(n5, n5), undefined, "the same CRL again is fine");
    // Another CA key (a re-keyed CA) is not compared.
    const theirs = await load("t.pem", await createCrl(other, [], { number: 1n }));
    assert.equal(crlRollback(n5, theirs), undefined);
    // Large numbers (20 octets) survive the round trip.
    const big = (1n << 158n) + 12345n;
    assert.equal((await load("b.pem", await createCrl(ca, [], { number: big }))).number, big);
    const plain = await load("p.pem", await createCrl(ca, []));
    assert.equal(plain.number, undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("revocation verdicts: revoked serials always, stale CRLs only with refuse", () => {
  const stale = { serials: new Set(["abc"]), nextUpdate: new Date(Date.now() - 1000) };
  const leaf = (serial: string) => [{ serial, issuer: "ca" }];
  assert.match(revocationVerdict(leaf("abc"), { ...stale, stale: "warn" })!, /is revoked/);
  assert.equal(revocationVerdict(leaf("def"), { ...stale, stale: "warn" }), undefined);
  assert.match(
    revocationVerdict(leaf("def"), { ...stale, stale: "refuse" })!,
    /CRL expired .*refuse/,
  );
  // Per issuer: a CA's CRL covers its own certificates, not another CA's.
  const byIssuer = new Map([["ca", { serials: new Set(["abc"]), issuer: "CN=ca" }]]);
  assert.match(revocationVerdict(leaf("abc"), { byIssuer })!, /certificate serial abc is revoked/);
  assert.equal(revocationVerdict([{ serial: "abc", issuer: "other" }], { byIssuer }), undefined);
  const viaIntermediate = [{ serial: "1", issuer: "int" }, {
    serial: "abc",
    issuer: "ca",
    intermediate: "CN=int",
  }];
  assert.match(
    revocationVerdict(viaIntermediate, { byIssuer })!,
    /intermediate CA \(CN=int\) serial abc is revoked/,
  );
  assert.match(crlStaleness({ thisUpdate: new Date(Date.now() + 60_000) })!, /not valid yet/);
  assert.equal(
    crlStaleness({ thisUpdate: new Date(0), nextUpdate: new Date(Date.now() + 60_000) }),
    undefined,
  );
});

Deno.test("IP allow-list entries match IP SANs by value only", () => {
  const peer = (over: Partial<{ dnsNames: string[]; ips: string[] }>) => ({
    commonName: "x",
    organizationalUnits: [],
    dnsNames: [],
    uris: [],
    ips: [],
    ...over,
  });
  assert.equal(
    evaluatePolicy({ allowSan: ["10.0.0.7"] }, peer({ dnsNames: ["10.0.0.7"] })).allow,
    false,
  );
  assert.equal(evaluatePolicy({ allowSan: ["10.0.0.7"] }, peer({ ips: ["10.0.0.7"] })).allow, true);
  assert.equal(
    evaluatePolicy({ allowSan: ["[::1]"] }, peer({ ips: ["0:0:0:0:0:0:0:1"] })).allow,
    true,
  );
  assert.equal(
    evaluatePolicy({ allowSan: ["2001:db8::1"] }, peer({ ips: ["2001:db8::2"] })).allow,
    false,
  );
  assert.equal(
    evaluatePolicy({ allowSan: ["Gate.Example"] }, peer({ dnsNames: ["gate.example"] })).allow,
    true,
  );
  for (const bad of ["1.2.3.4.5", "256.1.1.1", "1::2::3", "::g", "1:2:3:4:5:6:7:8:9", ""]) {
    assert.equal(canonicalIp(bad), undefined, bad);
  }
});

Deno.test("trust-file modes: owner us or root, no group/other write except sticky root dirs", () => {
  const me = 1000;
  const file = (mode: number, uid = me) => unsafeMode("/f", { mode, uid, isDirectory: false }, me);
  const dir = (mode: number, uid = me) => unsafeMode("/d", { mode, uid, isDirectory: true }, me);
  assert.equal(file(0o644), undefined);
  assert.equal(file(0o644, 0), undefined);
  assert.match(file(0o644, 1001)!.problem, /owned by uid 1001/);
  assert.match(file(0o664)!.problem, /mode 0664/);
  assert.match(file(0o646)!.fix, /chmod go-w/);
  assert.equal(dir(0o41777, 0), undefined, "/tmp");
  assert.ok(dir(0o41777), "a sticky world-writable dir of someone else than root is not /tmp");
  assert.ok(dir(0o40777, 0), "world-writable without sticky");
  assert.ok(file(0o1666, 0), "sticky does not help a file");
});
