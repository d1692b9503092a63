/**
 * What a restricted role's request may carry besides head and query (src/docker/request_body.ts)
 * and how the relay applies it, over real TLS to the recording target (node:http):
 *
 * - `Upgrade` only on the routes dockerd hijacks: a logs request with `Upgrade: tcp` opened a
 *   raw relay on Docker 23+ (whose logs answer has a stream content type), after which every
 *   request went to the daemon unread.
 * - Form and multipart bodies refused: Go's `ParseForm` reads them before the query.
 * - Archive uploads plain tar only (gzip, bzip2, xz, zstd made by the real tools refused).
 * - The audit record of a request refused while its body was read names its method and path.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { join } from "node:path";
import { jsonRequest, splitResponses, tlsExchange } from "./helpers/http_raw.ts";
import { withApiGate } from "./helpers/api_gate.ts";
import { freeTempDir } from "./helpers/wait.ts";
import { parseRequestHead } from "../src/docker/http.ts";
import { contentTypeProblem, mediaTypeOf, tarPrefixProblem } from "../src/docker/request_body.ts";
import { activeShields, shieldProblem, SHIELDS } from "../src/docker/shields.ts";

const head = (contentType: string) =>
  parseRequestHead(
    Buffer.from(`POST / HTTP/1.1\r\nHost: d\r\nContent-Type: ${contentType}\r\n\r\n`, "latin1"),
  );

Deno.test("request body: media types as Go's mime.ParseMediaType reads them, else refused", () => {
  assert.equal(mediaTypeOf(head("application/json")), "application/json");
  assert.equal(mediaTypeOf(head(" Application/JSON ;charset=utf-8")), "application/json");
  assert.equal(mediaTypeOf(head("text/plain")), "text/plain");
  for (
    const form of [
      "application/x-www-form-urlencoded",
      "APPLICATION/X-WWW-FORM-URLENCODED; charset=x",
      "application/x-www-form-urlencoded\t",
      "multipart/form-data; boundary=x",
      "image/png",
    ]
  ) assert.ok(contentTypeProblem(head(form)), form);
  // Go trims U+0085 (NEL) and folds U+0130 to "i": bytes outside ASCII are refused outright.
  for (
    const odd of [
      "application/x-www-form-urlencoded\xc2\x85",
      "appl\xc4\xb0cation/json",
      "application/json/x",
      "application",
      ";charset=utf-8",
    ]
  ) assert.throws(() => mediaTypeOf(head(odd)), TypeError, JSON.stringify(odd));
  const two = parseRequestHead(
    Buffer.from("POST / HTTP/1.1\r\nHost: d\r\nContent-Type: a/b\r\ncontent-type: c/d\r\n\r\n"),
  );
  assert.match(contentTypeProblem(two)!, /more than one Content-Type/);
  assert.equal(
    contentTypeProblem(parseRequestHead(Buffer.from("GET / HTTP/1.1\r\nHost: d\r\n\r\n"))),
    undefined,
  );
});

/** A tar of one small file made by the real `tar`, and the same through each compressor. */
async function archives(): Promise<Record<string, Buffer>> {
  const dir = await freeTempDir("dg-tar-");
  await Deno.writeTextFile(join(dir, "hello.txt"), "hello\n".repeat(200));
  const run = async (cmd: string, args: string[], input?: Buffer) => {
    const p = new Deno.Command(cmd, {
      args,
      cwd: dir,
      stdin: input ? "piped" : "null",
      stdout: "piped",
    })
      .spawn();
    if (input) {
      const w = p.stdin.getWriter();
      await w.write(input);
      await w.close();
    }
    const out = await p.output();
    assert.equal(out.code, 0, `${cmd} failed`);
    return Buffer.from(out.stdout);
  };
  const tar = await run("tar", ["-c", "hello.txt"]);
  const result: Record<string, Buffer> = { tar };
  for (const z of ["gzip", "bzip2", "xz", "zstd"]) result[z] = await run(z, ["-c"], tar);
  await Deno.remove(dir, { recursive: true });
  return result;
}

Deno.test("request body: archive uploads are plain tar, by the first block, as dockerd detects", async () => {
  const a = await archives();
  assert.equal(tarPrefixProblem(a.tar), undefined);
  for (const z of ["gzip", "bzip2", "xz", "zstd"]) {
    assert.match(tarPrefixProblem(a[z]) ?? "", new RegExp(z), z);
  }
  const skippable = Buffer.alloc(512);
  skippable.set([0x5e, 0x2a, 0x4d, 0x18]);
  assert.match(tarPrefixProblem(skippable)!, /zstd/);
  const broken = Buffer.from(a.tar);
  broken[0] ^= 1; // the header's checksum no longer holds
  assert.match(tarPrefixProblem(broken)!, /not a tar header/);
  assert.match(tarPrefixProblem(a.tar.subarray(0, 100))!, /shorter/);
  assert.equal(tarPrefixProblem(Buffer.alloc(1024)), undefined, "an empty archive is tar");
});

Deno.test("api relay: Upgrade on a route dockerd does not hijack is refused, and the connection stays read", async () => {
  await withApiGate(async (f) => {
    for (const who of ["ro", "ci"]) {
      const c = await f.creds(who);
      const before = f.recorded.length;
      const ex = await tlsExchange(
        f.port,
        c,
        "GET /v1.45/containers/c1/logs?stdout=1&follow=1 HTTP/1.1\r\nHost: d\r\n" +
          "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n" +
          jsonRequest(
            "POST",
            "/v1.45/containers/create",
            `{"Image":"bb","HostConfig":{"Binds":["/:/host"]}}`,
          ),
      );
      const rs = splitResponses(ex.data);
      assert.deepEqual(rs.map((r) => r.status), [403, 403], `${who}: ${ex.data}`);
      assert.match(rs[0].body.toString(), /Upgrade is only for attach and exec start/);
      assert.equal(f.recorded.length, before, `${who}: nothing reached the daemon`);
    }
  });
});

Deno.test("api relay: form and multipart bodies never reach the daemon for restricted roles", async () => {
  await withApiGate(async (f) => {
    const pad = "x=" + "a".repeat(6000);
    const cases: [string, string, string][] = [
      ["ci", "/v1.41/build?t=x", `${pad}&networkmode=host`],
      ["iso", "/v1.41/containers/prune", "filters=%7B%7D"],
      ["iso", "/v1.41/volumes/prune", "filters=%7B%7D"],
      ["ro", "/v1.41/networks/prune", "filters=%7B%7D"],
    ];
    for (const [who, path, body] of cases) {
      const c = await f.creds(who);
      for (const type of ["application/x-www-form-urlencoded", "multipart/form-data; boundary=b"]) {
        const ex = await tlsExchange(
          f.port,
          c,
          `POST ${path} HTTP/1.1\r\nHost: d\r\nContent-Type: ${type}\r\n` +
            `Content-Length: ${body.length}\r\n\r\n${body}` +
            "GET /v1.41/_ping HTTP/1.1\r\nHost: d\r\n\r\n",
        );
        const rs = splitResponses(ex.data);
        assert.deepEqual(rs.map((r) => r.status), [403, 200], `${who} ${path} ${type}`);
        assert.match(rs[0].body.toString(), /form|not one the gate forwards/);
      }
    }
    assert.ok(
      f.recorded.every((r) => !/build|prune/.test(r.url)),
      `nothing but pings reached the daemon: ${f.recorded.map((r) => r.url)}`,
    );
  });
});

Deno.test("api relay: compressed archive uploads are refused, plain tar is forwarded byte-exact", async () => {
  const a = await archives();
  await withApiGate(async (f) => {
    const ci = await f.creds("ci");
    for (const [kind, bytes] of Object.entries(a)) {
      const before = f.recorded.length;
      // Chunked in small pieces, as `docker cp` streams it: the first block spans chunks.
      const parts: Buffer[] = [
        Buffer.from(
          "PUT /v1.41/containers/c1/archive?path=/tmp HTTP/1.1\r\nHost: d\r\n" +
            "Content-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\n\r\n",
        ),
      ];
      for (let i = 0; i < bytes.length; i += 100) {
        const piece = bytes.subarray(i, i + 100);
        parts.push(Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from("\r\n"));
      }
      parts.push(Buffer.from("0\r\n\r\nGET /v1.41/_ping HTTP/1.1\r\nHost: d\r\n\r\n"));
      const ex = await tlsExchange(f.port, ci, Buffer.concat(parts));
      const statuses = splitResponses(ex.data).map((r) => r.status);
      if (kind === "tar") {
        assert.deepEqual(statuses, [200, 200]);
        assert.deepEqual(f.recorded[before].body, bytes, "forwarded byte-exact");
      } else {
        assert.deepEqual(statuses, [403, 200], kind);
        assert.equal(f.recorded.length, before + 1, `${kind}: only the ping reached the daemon`);
      }
    }
  });
});

Deno.test("api relay: a refusal while a body is read is audited with its method and path", async () => {
  await withApiGate(async (f) => {
    const ci = await f.creds("ci");
    const big = "{" + " ".repeat(4096) + "}";
    await tlsExchange(f.port, ci, jsonRequest("POST", "/v1.41/containers/create", big));
    const rec = f.audit.find((r) => r.event === "request" && r.status === 413);
    assert.ok(rec, JSON.stringify(f.audit));
    assert.equal(rec.method, "POST");
    assert.equal(rec.path, "/containers/create");
  }, { maxBodyBytes: 1024 });
});

Deno.test("shields: by the daemon's version, unknown versions shielded", () => {
  assert.deepEqual(activeShields("20.10.24+dfsg1"), []);
  assert.deepEqual(activeShields("29.5.1"), []);
  assert.ok(activeShields("25.0.0").length > 0);
  assert.ok(activeShields("29.5.0").length > 0);
  assert.equal(activeShields("not a version").length, SHIELDS.length);
  assert.equal(activeShields(undefined).length, SHIELDS.length);
  assert.match(shieldProblem("GET", "/containers/a/b/archive", "26.1.5+dfsg1")!, /CVE-2026-41568/);
  assert.equal(shieldProblem("GET", "/containers/a/json", "26.1.5"), undefined);
});

Deno.test("api relay: shields refuse docker cp on an affected daemon, and on one that cannot say its version", async () => {
  const a = await archives();
  for (const version of ["26.1.5+dfsg1", null]) {
    await withApiGate(async (f) => {
      const ci = await f.creds("ci");
      const ex = await tlsExchange(
        f.port,
        ci,
        Buffer.concat([
          Buffer.from(
            `PUT /v1.45/containers/c1/archive?path=/tmp HTTP/1.1\r\nHost: d\r\n` +
              `Content-Type: application/x-tar\r\nContent-Length: ${a.tar.length}\r\n\r\n`,
          ),
          a.tar,
          Buffer.from("GET /v1.45/containers/c1/archive?path=/etc HTTP/1.1\r\nHost: d\r\n\r\n"),
        ]),
      );
      const rs = splitResponses(ex.data);
      assert.deepEqual(rs.map((r) => r.status), [403, 403], String(version));
      assert.match(rs[0].body, /shield CVE-2026-41568/);
      assert.equal(f.recorded.length, 0, "nothing reached the daemon");
    }, { targetVersion: version });
  }
});
