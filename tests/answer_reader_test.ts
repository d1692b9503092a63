/**
 * The answer reader's event-stream filter (src/docker/answer_reader.ts): a chunked stream of
 * JSON lines is passed on as it comes, line by line, whatever the chunking; a container event
 * goes to the owner only for a container in the gate's record (its image may have given it
 * the owner label); the stream's end ends the answer.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { AnswerReader } from "../src/docker/answer_reader.ts";
import { type Exchange, newExchange } from "../src/docker/relay_exchange.ts";
import { ChunkedReader } from "../src/docker/http.ts";

Deno.test("answer reader: the event stream is filtered line by line, as it comes", () => {
  const own = "a".repeat(64);
  const forged = "f".repeat(64);
  const record = { has: (o: string, id: string) => o === "team-b" && id === own, add() {} };
  const exchange: Exchange = newExchange("GET", "/events", "tenant", false);
  exchange.answer = { rule: { kind: "event-stream" }, owner: "team-b", own: new Set(), record };
  const line = [exchange];
  const out: Buffer[] = [];
  const reader = new AnswerReader({
    current: () => line[0],
    ending: () => false,
    toClient: (b) => void out.push(Buffer.from(b)),
    answered: () => void line.shift(),
    switchToRaw: () => {},
  });
  const ev = (id: string, action: string) =>
    JSON.stringify({
      Type: "container",
      Action: action,
      Actor: { ID: id, Attributes: { "dockgate.owner": "team-b" } },
    }) + "\n";
  const chunk = (s: string) => `${Buffer.byteLength(s).toString(16)}\r\n${s}\r\n`;
  const feed = (s: string) => {
    reader.feed(Buffer.from(s));
    reader.pump();
  };
  const seen = () => {
    const all = Buffer.concat(out).toString();
    const body = all.slice(all.indexOf("\r\n\r\n") + 4);
    const dechunked: Buffer[] = [];
    new ChunkedReader().feed(Buffer.from(body), (d) => void dechunked.push(Buffer.from(d)));
    return Buffer.concat(dechunked).toString();
  };
  feed("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
  feed(chunk(ev(own, "create")));
  assert.equal(seen(), ev(own, "create"), "passed on at once");
  // A forged container's event, then an own one split over two chunks, then two in one.
  const own2 = ev(own, "start");
  feed(chunk(ev(forged, "create")) + chunk(own2.slice(0, 10)));
  feed(chunk(own2.slice(10)));
  feed(chunk(ev(forged, "start") + JSON.stringify({ Type: "image", Action: "pull" }) + "\n"));
  feed(chunk("not json\n"));
  assert.equal(line.length, 1, "the stream is still open");
  feed("0\r\n\r\n");
  assert.equal(line.length, 0, "the end of the stream ends the answer");
  assert.equal(
    seen(),
    ev(own, "create") + own2 + JSON.stringify({ Type: "image", Action: "pull" }) + "\n",
  );
  assert.ok(Buffer.concat(out).toString().endsWith("0\r\n\r\n"));
});
