// A bare node:tls server with the gate's client-certificate settings and nothing else: the
// baseline of bench/soak_handshakes.ts (--bare), to tell the runtime's memory from ours.
// Usage: node bare_tls_server.mjs BUNDLE_DIR   (or deno run -A …); prints "listening on".
import tls from "node:tls";
import fs from "node:fs";
import process from "node:process";

const dir = process.argv[2];
const server = tls.createServer({
  requestCert: true,
  rejectUnauthorized: true,
  ca: fs.readFileSync(`${dir}/ca.pem`),
  cert: fs.readFileSync(`${dir}/cert.pem`),
  key: fs.readFileSync(`${dir}/key.pem`),
  handshakeTimeout: 10_000,
});
server.on("connection", (raw) => raw.on("error", () => {}));
server.on("tlsClientError", (_err, socket) => socket.destroy());
server.on("secureConnection", (s) => {
  s.on("error", () => {});
  s.on("data", (d) => s.write(d));
  s.on("end", () => s.end());
});
server.listen(0, "127.0.0.1", () => {
  console.error(`INFO listening on tcp://127.0.0.1:${server.address().port}`);
});
