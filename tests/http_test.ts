/**
 * Unit tests of src/docker/http.ts: one test per framing rule, each with the bytes that
 * break it (and the nearest valid form, which must pass).
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  ChunkedReader,
  findHeadEnd,
  gateResponse,
  HttpError,
  MAX_HEAD_BYTES,
  parseRequestHead,
  parseResponseHead,
  responseFraming,
  serializeRequestHead,
} from "../src/docker/http.ts";

function head(text: string) {
  const b = Buffer.from(text, "latin1");
  const end = findHeadEnd(b);
  assert.ok(end > 0, `incomplete head: ${JSON.stringify(text)}`);
  return parseRequestHead(b.subarray(0, end));
}

function refused(text: string, re: RegExp, status = 400) {
  assert.throws(() => head(text), (e: unknown) => {
    assert.ok(e instanceof HttpError, String(e));
    assert.equal(e.status, status, e.message);
    assert.match(e.message, re);
    return true;
  }, JSON.stringify(text));
}

const H = "Host: d\r\n";

Deno.test("request head: a valid one parses with its framing", () => {
  const h = head(`POST /v1.41/containers/create?name=a HTTP/1.1\r\n${H}Content-Length: 12\r\n\r\n`);
  assert.equal(h.method, "POST");
  assert.equal(h.target, "/v1.41/containers/create?name=a");
  assert.deepEqual(h.framing, { kind: "length", length: 12 });
  assert.equal(h.close, false);
  assert.equal(
    head(`GET / HTTP/1.1\r\n${H}Transfer-Encoding: Chunked\r\n\r\n`).framing.kind,
    "chunked",
  );
  assert.equal(head(`GET / HTTP/1.1\r\n${H}\r\n`).framing.kind, "none");
});

Deno.test("request head: Content-Length rules", () => {
  refused(
    `POST / HTTP/1.1\r\n${H}Content-Length: 1\r\nContent-Length: 1\r\n\r\n`,
    /more than one Content-Length/,
  );
  refused(`POST / HTTP/1.1\r\n${H}Content-Length: 1\r\nContent-Length: 2\r\n\r\n`, /more than one/);
  refused(`POST / HTTP/1.1\r\n${H}Content-Length: -1\r\n\r\n`, /not a decimal/);
  refused(`POST / HTTP/1.1\r\n${H}Content-Length: 0x10\r\n\r\n`, /not a decimal/);
  refused(`POST / HTTP/1.1\r\n${H}Content-Length: 1,1\r\n\r\n`, /not a decimal/);
  refused(`POST / HTTP/1.1\r\n${H}Content-Length: +5\r\n\r\n`, /not a decimal/);
  refused(
    `POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n`,
    /together/,
  );
});

Deno.test("request head: only one chunked transfer coding", () => {
  refused(
    `POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip, chunked\r\n\r\n`,
    /only transfer coding/,
  );
  refused(
    `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked, identity\r\n\r\n`,
    /only transfer coding/,
  );
  refused(`POST / HTTP/1.1\r\n${H}Transfer-Encoding: xchunked\r\n\r\n`, /only transfer coding/);
  refused(
    `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n`,
    /more than one Transfer/,
  );
  refused(`POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n`, /HTTP\/1\.0/);
});

Deno.test("request head: line rules (obs-fold, bare CR/LF, NUL, names, length)", () => {
  refused(`GET / HTTP/1.1\r\n${H}X-A: 1\r\n  folded\r\n\r\n`, /obsolete line folding/);
  refused(`GET / HTTP/1.1\r\n${H}X-A: 1\n\r\n`, /bare LF/);
  refused(`GET / HTTP/1.1\r\n${H}X-A: a\rb\r\n\r\n`, /bare CR/);
  refused(`GET / HTTP/1.1\r\n${H}X-A: a\0b\r\n\r\n`, /NUL/);
  refused(`GET / HTTP/1.1\r\n${H}Content Length: 1\r\n\r\n`, /not a token/);
  refused(`GET / HTTP/1.1\r\n${H}Content-Length : 1\r\n\r\n`, /not a token/);
  refused(`GET / HTTP/1.1\r\n${H}: empty\r\n\r\n`, /malformed header/);
  refused(`GET / HTTP/1.1\r\n${H}NoColon\r\n\r\n`, /malformed header/);
  refused(`\r\nGET / HTTP/1.1\r\n${H}\r\n`, /malformed/);
  assert.throws(
    () => findHeadEnd(Buffer.from(`GET / HTTP/1.1\r\nX: ${"a".repeat(MAX_HEAD_BYTES)}`)),
    (e: unknown) => e instanceof HttpError && e.status === 400 && /too long/.test(e.message),
  );
});

Deno.test("request head: request line rules", () => {
  refused(`G@T / HTTP/1.1\r\n${H}\r\n`, /method is not a token/);
  refused(`GET  / HTTP/1.1\r\n${H}\r\n`, /malformed request line/);
  refused(`GET / HTTP/2.0\r\n${H}\r\n`, /only HTTP\/1\.1/);
  refused(`GET http://d/_ping HTTP/1.1\r\n${H}\r\n`, /absolute or asterisk/);
  refused(`OPTIONS * HTTP/1.1\r\n${H}\r\n`, /absolute or asterisk/);
  refused(`GET /a#frag HTTP/1.1\r\n${H}\r\n`, /bad character/);
  refused(`GET /caf\xe9 HTTP/1.1\r\n${H}\r\n`, /bad character/);
  refused(`GET / HTTP/1.1\r\n\r\n`, /exactly one Host/);
  refused(`GET / HTTP/1.1\r\n${H}${H}\r\n`, /exactly one Host/);
  assert.equal(head(`GET / HTTP/1.0\r\n\r\n`).close, true, "HTTP/1.0 closes by default");
  assert.equal(head(`GET / HTTP/1.1\r\n${H}Connection: close\r\n\r\n`).close, true);
  assert.equal(
    head(`POST /x HTTP/1.1\r\n${H}Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n`).upgrade,
    true,
  );
});

Deno.test("chunked reader: strict framing, exact lengths", () => {
  const data: Buffer[] = [];
  const r = new ChunkedReader();
  const bytes = Buffer.from("4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\nNEXT");
  // Byte by byte: the state machine must not depend on chunk boundaries.
  let used = 0;
  for (let i = 0; i < bytes.length && !r.done; i++) {
    used += r.feed(bytes.subarray(i, i + 1), (d) => data.push(Buffer.from(d)));
  }
  assert.equal(used, bytes.length - 4);
  assert.equal(Buffer.concat(data).toString(), "Wikipedia");
  const bad = (text: string, re: RegExp) =>
    assert.throws(() => new ChunkedReader().feed(Buffer.from(text)), re, JSON.stringify(text));
  bad("4;ext=1\r\nWiki\r\n0\r\n\r\n", /no extensions/);
  bad("4 \r\nWiki\r\n0\r\n\r\n", /no extensions/);
  bad("4\nWiki\r\n0\r\n\r\n", /bare LF/);
  bad("4\r\nWikiX\r\n0\r\n\r\n", /longer than its size/);
  bad("-1\r\n", /bad chunk size/);
  bad("0\r\nX-Trailer: 1\r\n\r\n", /trailers/);
  bad("ffffffffffffffffff\r\n", /too long|bad chunk size/);
});

Deno.test("response heads and their framing", () => {
  const r = (t: string) => parseResponseHead(Buffer.from(t));
  assert.deepEqual(responseFraming(r("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"), "GET"), {
    kind: "length",
    length: 3,
  });
  assert.equal(
    responseFraming(r("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"), "HEAD").kind,
    "none",
  );
  assert.equal(responseFraming(r("HTTP/1.1 204 No Content\r\n\r\n"), "DELETE").kind, "none");
  assert.equal(
    responseFraming(r("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), "GET").kind,
    "chunked",
  );
  assert.equal(responseFraming(r("HTTP/1.1 200 OK\r\n\r\n"), "GET").kind, "close");
  assert.equal(
    r("HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n").status,
    101,
  );
  assert.throws(() => r("HTTP/1.1 2000 OK\r\n\r\n"), /malformed status line/);
  assert.throws(
    () =>
      responseFraming(
        r("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
        "GET",
      ),
    /unframeable/,
  );
});

Deno.test("the gate's own answers and re-serialized heads", () => {
  const a = gateResponse(403, "dockgate: x may not y", false).toString();
  const [headText, body] = a.split("\r\n\r\n");
  assert.match(headText, /^HTTP\/1\.1 403 Forbidden\r\n/);
  assert.match(headText, new RegExp(`Content-Length: ${Buffer.byteLength(body)}`));
  assert.deepEqual(JSON.parse(body), { message: "dockgate: x may not y" });
  assert.match(gateResponse(400, "bad", true).toString(), /Connection: close/);
  const h = head(`POST /x HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nX-A: 1\r\n\r\n`);
  assert.equal(
    serializeRequestHead(h, 7).toString(),
    `POST /x HTTP/1.1\r\n${H}X-A: 1\r\nContent-Length: 7\r\n\r\n`,
  );
});
