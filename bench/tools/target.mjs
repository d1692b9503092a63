// The benchmark's target (run with Node): one unix-socket server that every contender
// relays to, and optionally the same service over mutual TLS on loopback for the "direct"
// (no gate) baseline.
//
// Per connection, the first bytes pick the mode:
//   "UP <n>\n" + n bytes   the sink counts n bytes, answers "OK\n" and ends
//   "DOWN <n>\n"           the source writes n bytes (a reused 1 MiB block) and ends
//   HTTP/1.1 requests      a tiny keep-alive responder: every request gets 200 "OK"
//                          (Connection: close is honoured), like dockerd's GET /_ping; a
//                          Content-Length body is read and dropped first; GET
//                          /containers/{name}/json answers an inspect (Id, owner label
//                          "default": the isolation rows' owner check reads it)
//
// Usage: node target.mjs --unix PATH [--tls-port N --cert F --key F --ca F]
// Prints one JSON line {"ready":true,"tlsPort":N} on stdout once listening.

import fs from "node:fs";
import net from "node:net";
import tls from "node:tls";
import { randomFillSync } from "node:crypto";
import process from "node:process";
import { Buffer } from "node:buffer";

const args = new Map();
for (let i = 2; i < process.argv.length; i += 2) {
  args.set(process.argv[i].replace(/^--/, ""), process.argv[i + 1]);
}

const BLOCK = randomFillSync(Buffer.alloc(1 << 20));
const PING_OK = Buffer.from(
  "HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\n\r\nOK",
);
const PING_CLOSE = Buffer.from(
  "HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK",
);

// An inspect answer of the size dockerd gives for a small container (~3 KiB).
const INSPECT_BODY = Buffer.from(JSON.stringify({
  Id: "b".repeat(64),
  Name: "/bench",
  Config: { Labels: { "dockgate.owner": "default", "com.example.pad": "x".repeat(2800) } },
}));
const INSPECT_OK = Buffer.concat([
  Buffer.from(
    `HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Type: application/json\r\nContent-Length: ${INSPECT_BODY.length}\r\n\r\n`,
  ),
  INSPECT_BODY,
]);
const INSPECT = /^GET \S*\/containers\/[^/ ]+\/json[ ?]/;

/** @param {net.Socket} s */
function handle(s) {
  s.on("error", () => {});
  let head = Buffer.alloc(0);
  const onFirst = (chunk) => {
    head = head.length ? Buffer.concat([head, chunk]) : chunk;
    const nl = head.indexOf(10);
    if (nl < 0) {
      if (head.length > 8192) s.destroy();
      return;
    }
    s.off("data", onFirst);
    const line = head.subarray(0, nl).toString("latin1");
    if (line.startsWith("UP ")) sink(s, Number(line.slice(3)), head.length - nl - 1);
    else if (line.startsWith("DOWN ")) source(s, Number(line.slice(5)));
    else http(s, head);
  };
  s.on("data", onFirst);
}

function sink(s, total, already) {
  let got = already;
  const finish = () => {
    s.end("OK\n");
  };
  if (got >= total) return finish();
  s.on("data", (chunk) => {
    got += chunk.length;
    if (got >= total) finish();
  });
}

function source(s, total) {
  let sent = 0;
  const pump = () => {
    while (sent < total) {
      const n = Math.min(BLOCK.length, total - sent);
      sent += n;
      if (!s.write(n === BLOCK.length ? BLOCK : BLOCK.subarray(0, n))) {
        s.once("drain", pump);
        return;
      }
    }
    s.end();
  };
  s.resume();
  pump();
}

function http(s, first) {
  // Heads are parsed as text; a Content-Length body (the upload rows: docker load's shape) is
  // counted and dropped without being converted.
  let buf = Buffer.alloc(0);
  let skip = 0;
  const feed = (chunk) => {
    if (skip > 0) {
      const n = Math.min(skip, chunk.length);
      skip -= n;
      chunk = chunk.subarray(n);
      if (skip === 0) s.write(PING_OK);
      if (chunk.length === 0) return;
    }
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    let end;
    while (skip === 0 && (end = buf.indexOf("\r\n\r\n")) >= 0) {
      const req = buf.subarray(0, end).toString("latin1");
      buf = buf.subarray(end + 4);
      if (/\r\nconnection:\s*close/i.test(req)) {
        s.end(PING_CLOSE);
        s.off("data", feed);
        return;
      }
      if (INSPECT.test(req)) {
        s.write(INSPECT_OK);
        continue;
      }
      const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(req)?.[1] ?? 0);
      const have = Math.min(length, buf.length);
      buf = buf.subarray(have);
      skip = length - have;
      if (skip === 0) s.write(PING_OK);
    }
  };
  s.on("data", feed);
  s.on("end", () => s.end());
  feed(first);
}

const unixPath = args.get("unix");
try {
  fs.unlinkSync(unixPath);
} catch { /* not there */ }
const unix = net.createServer({ allowHalfOpen: true }, handle);
await new Promise((r) => unix.listen(unixPath, r));

let tlsPort = null;
if (args.has("tls-port")) {
  const server = tls.createServer({
    cert: fs.readFileSync(args.get("cert")),
    key: fs.readFileSync(args.get("key")),
    ca: [fs.readFileSync(args.get("ca"))],
    requestCert: true,
    rejectUnauthorized: true,
    allowHalfOpen: true,
  }, handle);
  server.on("tlsClientError", () => {});
  await new Promise((r) => server.listen(Number(args.get("tls-port")), "127.0.0.1", r));
  tlsPort = server.address().port;
}
process.on("SIGTERM", () => process.exit(0));
process.stdout.write(JSON.stringify({ ready: true, tlsPort }) + "\n");
