/**
 * The answer reader's event-stream filter (src/docker/answer_reader.ts): a chunked stream of
 * JSON lines is passed on as it comes, line by line, whatever the chunking; a container event
 * goes to the owner only for a container in the gate's record (its image may have given it
 * the owner label); the stream's end ends the answer. A container create's 201 is sent only
 * once the gate's record of it is durable, and the answers behind it wait for it.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { AnswerReader } from "../src/docker/answer_reader.ts";
import { type Exchange, newExchange } from "../src/docker/relay_exchange.ts";
import { ChunkedReader } from "../src/docker/http.ts";
import { waitFor } from "./helpers/wait.ts";

Deno.test("answer reader: the event stream is filtered line by line, as it comes", () => {
  const own = "a".repeat(64);
  const forged = "f".repeat(64);
  const record = {
    has: (o: string, id: string) => o === "team-b" && id === own,
    add: async () => {},
  };
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

Deno.test("answer reader: a create's 201 waits for its record; the answers behind it wait too", async () => {
  const id = "c".repeat(64);
  let durable!: () => void;
  const added: string[] = [];
  const record = {
    has: () => false,
    add: (o: string, i: string) => {
      added.push(`${o} ${i}`);
      return new Promise<void>((resolve) => (durable = resolve));
    },
  };
  const create = newExchange("POST", "/containers/create", "tenant", false);
  create.answer = {
    rule: { kind: "container-create", name: "" },
    owner: "team-b",
    own: new Set(),
    record,
  };
  const line = [create, newExchange("GET", "/_ping", "tenant", false)];
  const out: string[] = [];
  const reader = new AnswerReader({
    current: () => line[0],
    ending: () => false,
    toClient: (b) => void out.push(Buffer.from(b).toString()),
    answered: () => void line.shift(),
    switchToRaw: () => {},
    later: (fn) => {
      fn();
      reader.pump();
    },
  });
  const body = JSON.stringify({ Id: id, Warnings: [] });
  reader.feed(Buffer.from(
    `HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: ${body.length}` +
      `\r\n\r\n${body}HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK`,
  ));
  reader.pump();
  assert.deepEqual(added, [`team-b ${id}`]);
  assert.ok(reader.waiting);
  assert.deepEqual(out, [], "nothing is sent before the create is recorded");
  assert.equal(line.length, 2);
  durable();
  await waitFor(() => line.length === 0, { what: "both answers, in order" });
  assert.match(out[0], /^HTTP\/1\.1 201 /);
  assert.match(out[1], /^HTTP\/1\.1 200 OK/);
});
