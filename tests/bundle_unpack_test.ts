/**
 * The bundle archive reader's rules, entry by entry (`src/ca/bundle_unpack.ts`), and the
 * bundle check before install (`src/ca/bundle_install.ts`). The end-to-end refusals of
 * archives made by `tar` and `openssl` are in `use_e2e_test.ts`.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { gzipSync } from "node:zlib";
import { type ArchiveEntry, tarArchive } from "../src/ca/bundle_archive.ts";
import { readBundleArchive } from "../src/ca/bundle_unpack.ts";
import { checkBundle, installBundle } from "../src/ca/bundle_install.ts";
import { createCa, issueClient } from "../src/ca/issue.ts";

const file = (name: string, text = "x"): ArchiveEntry => ({
  name,
  data: new TextEncoder().encode(text),
  mode: 0o600,
});
const BUNDLE = ["alice/ca.pem", "alice/cert.pem", "alice/key.pem"].map((n) => file(n));
const tgz = (entries: ArchiveEntry[]) => gzipSync(tarArchive(entries, 0));

/** A tar with one header's type flag changed (checksum fixed up), as tar would write it. */
function withType(entries: ArchiveEntry[], index: number, flag: string): Uint8Array {
  const tar = Buffer.from(tarArchive(entries, 0));
  let at = 0;
  for (let i = 0; i < index; i++) at += 512 + Math.ceil(entries[i].data.length / 512) * 512;
  tar.write(flag, at + 156, "latin1");
  tar.fill(" ", at + 148, at + 156);
  let sum = 0;
  for (let i = at; i < at + 512; i++) sum += tar[i];
  tar.write(sum.toString(8).padStart(6, "0") + "\0 ", at + 148, "latin1");
  return gzipSync(tar);
}

Deno.test("bundle archive: exactly a bundle's files in one NAME/ directory", () => {
  const ok = readBundleArchive(tgz([...BUNDLE, file("alice/host", "gate:2376\n")]));
  assert.equal(ok.name, "alice");
  assert.equal(ok.host, "gate:2376");
  assert.equal(readBundleArchive(tgz(BUNDLE)).host, undefined);
  const refused: [Uint8Array, RegExp][] = [
    [tgz([...BUNDLE, file("alice/../x")]), /unexpected entry "alice\/\.\.\/x"/],
    [tgz([file("../x"), ...BUNDLE]), /unexpected entry "\.\.\/x" \(outside one NAME/],
    [tgz([file("/etc/x"), ...BUNDLE]), /unexpected entry "\/etc\/x"/],
    [tgz([...BUNDLE, file("bob/ca.pem")]), /"bob\/ca\.pem" \(outside alice\/\)/],
    [tgz([...BUNDLE, file("alice/ca.pem")]), /"alice\/ca\.pem" \(a second copy\)/],
    [tgz([...BUNDLE, file("alice/x/ca.pem")]), /not one of/],
    [tgz(BUNDLE.slice(0, 2)), /alice\/key\.pem is missing/],
    [tgz([]), /empty/],
    [withType(BUNDLE, 2, "2"), /"alice\/key\.pem" \(a symlink\)/],
    [withType(BUNDLE, 2, "1"), /\(a hard link\)/],
    [withType(BUNDLE, 0, "x"), /\(a PAX header\)/],
    [withType(BUNDLE, 0, "L"), /\(a GNU long name\)/],
    [withType(BUNDLE, 1, "5"), /\(a directory\)/],
    [new TextEncoder().encode("not gzip"), /not a gzip'd tar/],
    [gzipSync(new Uint8Array(2 * 1024 * 1024)), /larger than 1048576 bytes unpacked/],
    [tgz([...BUNDLE, file("alice/host", "x".repeat(70_000))]), /oversized length/],
    [gzipSync(tarArchive(BUNDLE, 0).subarray(0, 700)), /truncated/],
  ];
  for (const [bytes, why] of refused) {
    assert.throws(() => readBundleArchive(bytes), why);
  }
  // tar's own directory entry is fine.
  const dirEntry = withType([file("alice/", ""), ...BUNDLE], 0, "5");
  assert.equal(readBundleArchive(dirEntry).name, "alice");
  // A corrupted header.
  const bad = Buffer.from(tarArchive(BUNDLE, 0));
  bad[10] ^= 1;
  assert.throws(() => readBundleArchive(gzipSync(bad)), /checksum/);
});

Deno.test("bundle check: the key matches, the certificate chains and is in date", async () => {
  const DAY = 86_400_000;
  const ca = await createCa();
  const alice = await issueClient(ca, "alice");
  const b = { name: "alice", ca: ca.certPem, cert: alice.certPem, key: alice.keyPem };
  await checkBundle(b);
  const other = await issueClient(ca, "bob");
  await assert.rejects(checkBundle({ ...b, key: other.keyPem }), /key\.pem does not match/);
  await assert.rejects(checkBundle({ ...b, key: "junk" }), /not a usable private key/);
  await assert.rejects(checkBundle({ ...b, ca: "junk" }), /ca\.pem is not a PEM certificate/);
  const foreign = await createCa({ commonName: "dockgate CA" });
  await assert.rejects(checkBundle({ ...b, ca: foreign.certPem }), /does not chain to ca\.pem/);
  const old = await issueClient(ca, "alice", {
    notBefore: new Date(Date.now() - 10 * DAY),
    notAfter: new Date(Date.now() - DAY),
  });
  await assert.rejects(
    checkBundle({ ...b, cert: old.certPem, key: old.keyPem }),
    /alice\/cert\.pem cannot be used: certificate expired \d{4}-/,
  );
});

Deno.test("bundle install: without force, any file there refuses before one is written", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const bundle = { name: "alice", ca: "CA\n", cert: "NEW CERT\n", key: "NEW KEY\n", host: "h:1" };
    await Deno.writeTextFile(`${dir}/cert.pem`, "OLD CERT\n");
    const err = await installBundle(bundle, dir, false).catch((e) => e);
    assert.equal((err as { code?: string }).code, "EEXIST", String(err));
    assert.match(String(err), /cert\.pem/);
    for (const f of ["key.pem", "ca.pem", "host"]) {
      await assert.rejects(Deno.lstat(`${dir}/${f}`), Deno.errors.NotFound, `${f} not written`);
    }
    assert.equal(await Deno.readTextFile(`${dir}/cert.pem`), "OLD CERT\n", "the old one stays");
    await installBundle(bundle, dir, true);
    assert.equal(await Deno.readTextFile(`${dir}/key.pem`), "NEW KEY\n", "force replaces");
    assert.equal(await Deno.readTextFile(`${dir}/cert.pem`), "NEW CERT\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
