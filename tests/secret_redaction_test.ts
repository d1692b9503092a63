/**
 * Reads that keep secrets (src/docker/secret_redaction.ts and its place in the answer reader):
 * the shapes of every route it covers (service, task, secret, config, plugin, image), the
 * bytes it does not touch, which roles and routes it applies to, and the answer reader's
 * fail-closed cases: a Content-Length answer rewritten with its new length, an answer that is
 * not JSON or is encoded answered 502, an error answer passed as it came.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { AnswerReader } from "../src/docker/answer_reader.ts";
import { compileApiPolicy } from "../src/docker/api_policy.ts";
import { newExchange } from "../src/docker/relay_exchange.ts";
import {
  REDACTED,
  RedactionError,
  redactSecrets,
  redactsSecrets,
} from "../src/docker/secret_redaction.ts";

const redact = (v: unknown) =>
  JSON.parse(new TextDecoder().decode(redactSecrets(new TextEncoder().encode(JSON.stringify(v)))));
const B64 = Buffer.from(REDACTED).toString("base64");

Deno.test("secret redaction: every shape the covered routes answer", () => {
  const spec = {
    Name: "web",
    TaskTemplate: {
      ContainerSpec: { Image: "nginx", Env: ["DB_PASS=pw", "PLAIN"], Args: ["-p", "x"] },
      PluginSpec: { Env: ["K=v"] },
    },
  };
  const services = redact([{ ID: "s", Spec: spec, PreviousSpec: spec }]);
  for (const s of [services[0].Spec, services[0].PreviousSpec]) {
    assert.deepEqual(s.TaskTemplate.ContainerSpec.Env, [`DB_PASS=${REDACTED}`, "PLAIN"]);
    assert.deepEqual(s.TaskTemplate.ContainerSpec.Args, ["-p", "x"], "command lines stay");
    assert.deepEqual(s.TaskTemplate.PluginSpec.Env, [`K=${REDACTED}`]);
  }
  const task = redact({ ID: "t", Spec: { ContainerSpec: { Env: ["A=1=2"] } } });
  assert.deepEqual(task.Spec.ContainerSpec.Env, [`A=${REDACTED}`]);
  for (const kind of ["secret", "config"]) {
    const one = redact({ ID: kind, Spec: { Name: "n", Labels: { a: "b" }, Data: "aHVudGVyMg==" } });
    assert.deepEqual(one.Spec, { Name: "n", Labels: { a: "b" }, Data: B64 }, kind);
    assert.equal(Buffer.from(one.Spec.Data, "base64").toString(), REDACTED, "still base64");
  }
  const plugin = redact([{
    Settings: { Env: ["DEBUG=1"] },
    Config: { Env: [{ Name: "DEBUG", Settable: ["value"], Value: "0" }, { Name: "X" }] },
  }]);
  assert.deepEqual(plugin[0].Settings.Env, [`DEBUG=${REDACTED}`]);
  assert.deepEqual(plugin[0].Config.Env, [
    { Name: "DEBUG", Settable: ["value"], Value: REDACTED },
    { Name: "X" },
  ]);
  const image = redact({ Config: { Env: ["T=s"] }, ContainerConfig: { Env: null } });
  assert.deepEqual(image, { Config: { Env: [`T=${REDACTED}`] }, ContainerConfig: { Env: null } });
  assert.deepEqual(redact({ Env: [7, null] }), { Env: [REDACTED, null] }, "odd items: the marker");
  const swarm = redact({ ID: "s", JoinTokens: { Worker: "SWMTKN-1-w", Manager: "SWMTKN-1-m" } });
  assert.deepEqual(swarm.JoinTokens, { Worker: REDACTED, Manager: REDACTED });
  const ca = redact({ Spec: { CAConfig: { SigningCAKey: "a2V5", SigningCACert: "" } } });
  assert.deepEqual(ca.Spec.CAConfig, { SigningCAKey: B64, SigningCACert: "" });
});

Deno.test("secret redaction: an image history's CreatedBy lines (ENV, build args) go", () => {
  const body = '[{"CreatedBy":"/bin/sh -c #(nop)  ENV PASSWORD=hunter2","Size":0},' +
    '{"CreatedBy":"|1 TOKEN=s3 /bin/sh -c make","Size":1},{"CreatedBy":"","Size":2}]';
  const out = new TextDecoder().decode(redactSecrets(new TextEncoder().encode(body)));
  assert.equal(
    out,
    `[{"CreatedBy":"${REDACTED}","Size":0},{"CreatedBy":"${REDACTED}","Size":1},` +
      '{"CreatedBy":"","Size":2}]',
  );
});

Deno.test("secret redaction: drivers' option values (log, volume, mount, endpoint) go", () => {
  const out = redact({
    HostConfig: {
      LogConfig: { Type: "splunk", Config: { "splunk-token": "t0k", "splunk-url": "u" } },
      Mounts: [{
        VolumeOptions: { DriverConfig: { Name: "local", Options: { o: "password=p" } } },
      }],
    },
    Options: { type: "cifs", o: "password=p", n: null },
    NetworkSettings: { Networks: { n: { DriverOpts: { k: "v" } } } },
    Config: { Hostname: "h" },
  });
  assert.deepEqual(out.HostConfig.LogConfig, {
    Type: "splunk",
    Config: { "splunk-token": REDACTED, "splunk-url": REDACTED },
  });
  assert.deepEqual(out.HostConfig.Mounts[0].VolumeOptions.DriverConfig.Options, { o: REDACTED });
  assert.deepEqual(out.Options, { type: REDACTED, o: REDACTED, n: null });
  assert.deepEqual(out.NetworkSettings.Networks.n.DriverOpts, { k: REDACTED });
  assert.deepEqual(out.Config, { Hostname: "h" }, "a container's Config is no option map");
});

Deno.test("secret redaction: only the values' bytes change; not JSON is an error", () => {
  const text = '{"N":1e400,"S":"\\u00e9","Config":{"Env":["A=\\"q\\""]}}';
  const out = new TextDecoder().decode(redactSecrets(new TextEncoder().encode(text)));
  assert.equal(out, `{"N":1e400,"S":"\\u00e9","Config":{"Env":["A=${REDACTED}"]}}`);
  const same = new TextEncoder().encode('{"Id":"x"}');
  assert.equal(redactSecrets(same), same, "nothing to redact: the very bytes");
  for (const bad of ["not json", '{"Env":["A=1"],"Env":[]}', '{"a":1} x']) {
    assert.throws(() => redactSecrets(new TextEncoder().encode(bad)), RedactionError, bad);
  }
});

Deno.test("secret redaction: read-only roles without allowSecrets, the covered routes", () => {
  const p = compileApiPolicy({
    roles: {
      ro: { preset: "read-only" },
      seer: { preset: "read-only", allowSecrets: true },
      ci: { preset: "no-escape" },
    },
    identities: [],
  }, "x");
  const ro = p.roles.get("ro")!;
  for (
    const path of [
      "/containers/db/json",
      "/images/a/b:1/json",
      "/images/a/b:1/history",
      "/volumes",
      "/volumes/share",
      "/system/df",
      "/services",
      "/tasks/t",
      "/info",
    ]
  ) {
    assert.ok(redactsSecrets(ro, "GET", path), path);
  }
  for (const path of ["/containers/json", "/services/s/logs", "/exec/e/json", "/version"]) {
    assert.ok(!redactsSecrets(ro, "GET", path), path);
  }
  assert.ok(!redactsSecrets(ro, "HEAD", "/containers/db/json"), "no body to redact");
  assert.ok(!redactsSecrets(p.roles.get("seer")!, "GET", "/containers/db/json"));
  assert.ok(!redactsSecrets(p.roles.get("ci")!, "GET", "/containers/db/json"));
  for (const name of ["ro", "seer", "ci"]) {
    assert.ok(redactsSecrets(p.roles.get(name)!, "GET", "/swarm"), `${name}: join tokens`);
  }
  for (
    const role of [{ preset: "no-escape", allowSecrets: false }, {
      preset: "read-only",
      allowSecrets: "yes",
    }]
  ) {
    assert.throws(
      () => compileApiPolicy({ roles: { r: role }, identities: [] }, "p"),
      /roles\.r\.allowSecrets/,
    );
  }
});

/** The client's bytes for one answer to a redacted exchange. */
function answerFor(answer: string): string {
  const exchange = newExchange("GET", "/containers/db/json", "ro", false);
  exchange.redact = true;
  const line = [exchange];
  const out: Buffer[] = [];
  const reader = new AnswerReader({
    current: () => line[0],
    ending: () => false,
    toClient: (b) => void out.push(Buffer.from(b)),
    answered: () => void line.shift(),
    switchToRaw: () => {},
  });
  // Byte by byte: the answer is read whole whatever the pieces.
  for (const byte of Buffer.from(answer)) {
    reader.feed(Buffer.from([byte]));
    reader.pump();
  }
  assert.equal(line.length, 0, "answered");
  return Buffer.concat(out).toString();
}

Deno.test("secret redaction in the answer reader: lengths, 502 when unreadable, errors pass", () => {
  const body = '{"Config":{"Env":["PASSWORD=hunter2"]}}';
  const want = `{"Config":{"Env":["PASSWORD=${REDACTED}"]}}`;
  const head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n";
  const length = answerFor(`${head}Content-Length: ${body.length}\r\n\r\n${body}`);
  assert.equal(length, `${head}Content-Length: ${want.length}\r\n\r\n${want}`);
  const chunked = answerFor(
    `${head}Transfer-Encoding: chunked\r\n\r\n5\r\n${body.slice(0, 5)}\r\n` +
      `${(body.length - 5).toString(16)}\r\n${body.slice(5)}\r\n0\r\n\r\n`,
  );
  assert.equal(chunked, `${head}Content-Length: ${want.length}\r\n\r\n${want}`);
  const notJson = answerFor(`${head}Content-Length: 11\r\n\r\nPASSWORD=hi`);
  assert.match(notJson, /^HTTP\/1\.1 502 /);
  assert.match(notJson, /dockgate: not passed on: the daemon's answer is not JSON to redact/);
  assert.ok(!notJson.includes("PASSWORD=hi"));
  const gz = answerFor(
    `${head}Content-Encoding: gzip\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
  );
  assert.match(gz, /^HTTP\/1\.1 502 [^]*an answer to redact is encoded \(gzip\)/);
  assert.ok(!gz.includes("hunter2"));
  const missing = `HTTP/1.1 404 Not Found\r\nContent-Length: 26\r\n\r\n{"message":"No such: db"}\n`;
  assert.equal(answerFor(missing), missing, "passed on as the daemon sent it");
});

Deno.test("secret redaction: image history's CreatedBy lines go whole, the rest stays", () => {
  const history = redact([
    { Id: "a", CreatedBy: "/bin/sh -c #(nop)  ENV PASSWORD=hunter2", Tags: null },
    { Id: "c", CreatedBy: "ENV TOKEN=s3cr3t K2=v2", Comment: "buildkit.dockerfile.v0" },
    { Id: "h", CreatedBy: "" },
  ]);
  // The whole line: its words cannot be told apart into names and values (build args too).
  assert.deepEqual(history.map((h: { CreatedBy: string }) => h.CreatedBy), [
    REDACTED,
    REDACTED,
    "",
  ]);
  assert.equal(history[0].Id, "a", "the rest unchanged");
  const p = compileApiPolicy({
    roles: { ro: { preset: "read-only" }, seer: { preset: "read-only", allowSecrets: true } },
    identities: [],
  }, "x");
  for (const path of ["/images/a/history", "/images/reg:5000/a/b:1/history"]) {
    assert.ok(redactsSecrets(p.roles.get("ro")!, "GET", path), path);
    assert.ok(!redactsSecrets(p.roles.get("seer")!, "GET", path), path);
  }
});
