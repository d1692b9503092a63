/**
 * An attacker's pass over the relay's body and upgrade rules (Content-Type allow-list, hijack
 * routes only, plain-tar archive uploads, 400 on broken chunked framing), end to end: raw
 * requests over real TLS through `dockgate serve --policy` to a private dockerd. Every case
 * asserts the SAFE outcome, judged on the daemon's own socket (what it stored), so a case that
 * gets through fails the test.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { join } from "node:path";
import { dockerdUnavailable, exists, startDockerd } from "./helpers/dockerd.ts";
import { freeTempDir } from "./helpers/wait.ts";
import { RESTRICTED_POLICY, type ServeProcess, startPolicyGate, tlsFlags } from "./helpers/gate.ts";
import { jsonRequest, splitResponses, tarHeader, tlsExchange } from "./helpers/http_raw.ts";
import { bundleCreds } from "./helpers/tls_peers.ts";

/** A tar archive made by the real tar (`flag` "" plain, "z" gzip, "j" bzip2, "J" xz). */
async function tarOf(dir: string, name: string, flag: string): Promise<Buffer> {
  await Deno.writeTextFile(join(dir, name), "from the attacker\n");
  const out = await new Deno.Command("tar", {
    args: [`-c${flag}f`, "-", name],
    cwd: dir,
    stdout: "piped",
  }).output();
  assert.equal(out.code, 0);
  return Buffer.from(out.stdout);
}

/** `data` as chunked framing, `size` bytes a chunk, each size written with `pad` zeros. */
function chunked(data: Buffer, size: number, pad = 0): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < data.length; i += size) {
    const c = data.subarray(i, i + size);
    parts.push(
      Buffer.from(`${"0".repeat(pad)}${c.length.toString(16)}\r\n`),
      c,
      Buffer.from("\r\n"),
    );
  }
  parts.push(Buffer.from("0\r\n\r\n"));
  return Buffer.concat(parts);
}

Deno.test({
  name: "attack: relay body and upgrade rules hold against a real dockerd",
  ignore: dockerdUnavailable(),
  sanitizeOps: false,
  sanitizeResources: false,
}, async (t) => {
  const d = await startDockerd();
  if (!d) return;
  const work = await freeTempDir("dga-");
  let gate: ServeProcess | undefined;
  try {
    const g = await startPolicyGate(d.host, work, RESTRICTED_POLICY, ["ro", "ci", "t1", "t2"], [
      "--audit-log",
      join(work, "audit.log"),
    ]);
    await g.gate.waitForLog(/API policy: /);
    gate = g.gate;
    const port = gate.port;
    const creds = (n: string) => bundleCreds(g.pki, n);
    const as = (who: string, args: string[]) =>
      d.docker([...tlsFlags(join(g.pki, "clients", who)), ...args], { host: gate!.host });
    const v = `/v${(await d.docker(["version", "-f", "{{.Server.APIVersion}}"])).stdout.trim()}`;
    const raw = async (who: string, bytes: Buffer | string) => {
      const ex = await tlsExchange(port, await creds(who), bytes);
      return { ex, statuses: splitResponses(ex.data).map((r) => r.status) };
    };
    const bindCreate = (name: string) =>
      jsonRequest(
        "POST",
        `${v}/containers/create?name=${name}`,
        JSON.stringify({ Image: d.image, HostConfig: { Binds: ["/:/host"] } }),
      );

    await t.step(
      "form bodies on a prune, every spelling: another owner's container survives",
      async () => {
        assert.equal((await as("t2", ["create", "--name", "victim", d.image, "true"])).code, 0);
        const body = "filters=%7B%7D";
        const form = (ct: string, method = "POST", proto = "HTTP/1.1") =>
          `${method} ${v}/containers/prune ${proto}\r\nHost: d\r\n${ct}` +
          `Content-Length: ${body.length}\r\n\r\n${body}`;
        const cases: [string, string, number | undefined][] = [
          [
            "lower-case name, upper-case value",
            "content-type: APPLICATION/X-WWW-FORM-URLENCODED\r\n",
            403,
          ],
          [
            "parameters and spaces",
            "Content-Type:   application/x-www-form-urlencoded ;charset=utf-8 \r\n",
            403,
          ],
          ["trailing ;", "Content-Type: application/x-www-form-urlencoded;\r\n", 403],
          ["tabs", "Content-Type:\tapplication/x-www-form-urlencoded\t\r\n", 403],
          [
            "bad parameter (Go returns the type with an error)",
            "Content-Type: application/x-www-form-urlencoded; =;;x\r\n",
            403,
          ],
          [
            "json then form",
            "Content-Type: application/json\r\ncontent-type: application/x-www-form-urlencoded\r\n",
            undefined,
          ],
          [
            "form then json",
            "content-TYPE: application/x-www-form-urlencoded\r\nContent-Type: application/json\r\n",
            undefined,
          ],
          ["multipart without boundary", "Content-Type: multipart/form-data\r\n", 403],
          ["empty Content-Type", "Content-Type:\r\n", undefined],
          ["text/plain", "Content-Type: text/plain\r\n", undefined],
          [
            "name with a space before the colon",
            "Content-Type : application/x-www-form-urlencoded\r\n",
            400,
          ],
          [
            "name with underscore",
            "Content_Type: application/x-www-form-urlencoded\r\n",
            undefined,
          ],
          [
            "non-ASCII after the type",
            "Content-Type: application/x-www-form-urlencoded\u00a0\r\n",
            undefined,
          ],
        ];
        for (const [what, ct, want] of cases) {
          const { ex, statuses } = await raw("t1", Buffer.from(form(ct), "latin1"));
          if (want !== undefined) assert.equal(statuses[0], want, `${what}: ${ex.data}`);
          assert.equal(await exists(d, "victim"), true, `${what}: victim survived (${ex.data})`);
        }
        for (const method of ["PUT", "PATCH", "DELETE", "GET"]) {
          const { ex } = await raw(
            "t1",
            form("Content-Type: application/x-www-form-urlencoded\r\n", method),
          );
          assert.equal(await exists(d, "victim"), true, `${method}: victim survived (${ex.data})`);
        }
        const h10 = await raw(
          "t1",
          form("Content-Type: application/x-www-form-urlencoded\r\n", "POST", "HTTP/1.0"),
        );
        assert.equal(h10.statuses[0], 403, h10.ex.data.toString());
        assert.equal(await exists(d, "victim"), true, "HTTP/1.0: victim survived");
      },
    );

    await t.step("a form body on create (inspected JSON route) is refused", async () => {
      const body = "Image=bb&HostConfig=x";
      const { ex, statuses } = await raw(
        "ci",
        `POST ${v}/containers/create?name=formcreate HTTP/1.1\r\nHost: d\r\n` +
          `Content-Type: application/x-www-form-urlencoded\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
      );
      assert.equal(statuses[0], 403, ex.data.toString());
      assert.equal(await exists(d, "formcreate"), false);
    });

    await t.step("Upgrade spellings never turn the connection raw", async () => {
      assert.equal((await d.docker(["run", "--name", "talker", d.image, "echo", "hi"])).code, 0);
      const heads: [string, string][] = [
        [
          "keep-alive, Upgrade on logs",
          `GET ${v}/containers/talker/logs?stdout=1 HTTP/1.1\r\nHost: d\r\nConnection: keep-alive, Upgrade\r\nUpgrade: tcp\r\n\r\n`,
        ],
        [
          "Upgrade without Connection on logs",
          `GET ${v}/containers/talker/logs?stdout=1 HTTP/1.1\r\nHost: d\r\nUpgrade: tcp\r\n\r\n`,
        ],
        [
          "HTTP/1.0 keep-alive Upgrade",
          `GET ${v}/containers/json HTTP/1.0\r\nConnection: keep-alive, upgrade\r\nUpgrade: tcp\r\n\r\n`,
        ],
        [
          "attach on a missing container (daemon 404)",
          `POST ${v}/containers/nosuch/attach?stream=1&stdout=1 HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n`,
        ],
        [
          "attach without Upgrade on a missing container",
          `POST ${v}/containers/nosuch/attach?stream=1&stdout=1 HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\n\r\n`,
        ],
        [
          "exec start of a missing exec",
          `POST ${v}/exec/nosuch/start HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{"Detach":false}`,
        ],
        [
          "attach/ws spelled as POST",
          `POST ${v}/containers/talker/attach/ws HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n`,
        ],
        [
          "a name with /attach in it, logs",
          `GET ${v}/containers/talker/attach/logs HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n`,
        ],
        [
          "attach on a stopped container (daemon hijacks, then closes)",
          `POST ${v}/containers/talker/attach?stream=0&logs=1&stdout=1 HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n`,
        ],
      ];
      let n = 0;
      for (const who of ["ro", "ci"]) {
        for (const [what, head] of heads) {
          const name = `upg-${who}-${n++}`;
          const { ex, statuses } = await raw(who, head + bindCreate(name));
          assert.equal(await exists(d, name), false, `${who} ${what}: no container (${ex.data})`);
          if (!statuses.includes(101) && !/raw-stream/.test(ex.data.toString("latin1"))) {
            // An ordinary answer: the create behind it was read and refused (or the gate closed).
            assert.notEqual(statuses.at(-1), 201, `${who} ${what}: ${ex.data}`);
          }
        }
      }
    });

    await t.step("a detached exec start (an ordinary answer) keeps the relay reading", async () => {
      assert.equal(
        (await d.docker([
          "run",
          "-d",
          "--network",
          "none",
          "--name",
          "runner",
          d.image,
          "sleep",
          "300",
        ])).code,
        0,
      );
      const mk = await new Deno.Command("curl", {
        args: [
          "-s",
          "--unix-socket",
          d.socket,
          "-H",
          "Content-Type: application/json",
          "-d",
          '{"Cmd":["sleep","1"]}',
          "http://d/containers/runner/exec",
        ],
        stdout: "piped",
      }).output();
      const execId = (JSON.parse(new TextDecoder().decode(mk.stdout)) as { Id: string }).Id;
      for (const [who, upgrade] of [["ci", true], ["ci", false]] as const) {
        const name = `exec-${upgrade}`;
        const body = '{"Detach":true}';
        const { ex, statuses } = await raw(
          who,
          `POST ${v}/exec/${execId}/start HTTP/1.1\r\nHost: d\r\n` +
            (upgrade ? "Connection: Upgrade\r\nUpgrade: tcp\r\n" : "") +
            `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}` +
            bindCreate(name),
        );
        assert.equal(await exists(d, name), false, `${name}: ${ex.data}`);
        assert.equal(statuses.at(-1), 403, `${name}: ${ex.data}`);
      }
    });

    await t.step("archive uploads: compressed or not-tar never reach the daemon", async () => {
      assert.equal((await d.docker(["create", "--name", "box", d.image, "true"])).code, 0);
      const put = (framing: string) =>
        `PUT ${v}/containers/box/archive?path=/ HTTP/1.1\r\nHost: d\r\n` +
        `Content-Type: application/x-tar\r\n${framing}\r\n`;
      let i = 0;
      const file = () => `f${i++}.txt`;
      const dropped = async (name: string) =>
        (await d.docker(["cp", `box:/${name}`, "-"])).code === 0;
      // `emptyFirst`: the framing ends the upload before the compressed bytes, so the daemon
      // answers the empty upload (200) and the bytes behind are no request (400, close).
      const attempt = async (
        what: string,
        make: (name: string) => Promise<Buffer>,
        emptyFirst = false,
      ) => {
        const name = file();
        const bytes = await make(name);
        const { ex, statuses } = await raw("ci", bytes);
        assert.equal(await dropped(name), false, `${what}: nothing unpacked (${ex.data})`);
        if (emptyFirst) {
          // HTTP/1.0 ends with the answer, so the bytes behind may get no 400 at all.
          assert.equal(statuses[0], 200, `${what}: ${ex.data}`);
          assert.ok(statuses.slice(1).every((x) => x === 400), `${what}: ${ex.data}`);
        } else assert.notEqual(statuses[0], 200, `${what}: ${ex.data}`);
      };
      const len = (b: Buffer) =>
        Buffer.concat([Buffer.from(put(`Content-Length: ${b.length}\r\n`)), b]);
      const chk = (b: Buffer, size: number, pad = 0) =>
        Buffer.concat([Buffer.from(put("Transfer-Encoding: chunked\r\n")), chunked(b, size, pad)]);
      for (const flag of ["z", "j", "J"]) {
        await attempt(`tar -c${flag}`, async (n) => len(await tarOf(work, n, flag)));
        await attempt(
          `tar -c${flag}, 1-byte chunks`,
          async (n) => chk(await tarOf(work, n, flag), 1),
        );
        await attempt(
          `tar -c${flag}, 7-byte chunks, leading zeros`,
          async (n) => chk(await tarOf(work, n, flag), 7, 12),
        );
      }
      await attempt(
        "gzip after an all-zero first block",
        async (n) => len(Buffer.concat([Buffer.alloc(512), await tarOf(work, n, "z")])),
      );
      await attempt(
        "gzip, Content-Length 0 with the body behind",
        async (n) =>
          Buffer.concat([Buffer.from(put("Content-Length: 0\r\n")), await tarOf(work, n, "z")]),
        true,
      );
      await attempt(
        "gzip, chunked with an empty last chunk first",
        async (n) =>
          Buffer.concat([
            Buffer.from(put("Transfer-Encoding: chunked\r\n") + "0\r\n\r\n"),
            await tarOf(work, n, "z"),
          ]),
      );
      await attempt("gzip, HTTP/1.0 without a length", async (n) =>
        Buffer.concat([
          Buffer.from(
            `PUT ${v}/containers/box/archive?path=/ HTTP/1.0\r\nContent-Type: application/x-tar\r\n\r\n`,
          ),
          await tarOf(work, n, "z"),
        ]), true);
      await attempt("gzip with Expect: 100-continue", async (n) => {
        const gz = await tarOf(work, n, "z");
        return Buffer.concat([
          Buffer.from(put(`Expect: 100-continue\r\nContent-Length: ${gz.length}\r\n`)),
          gz,
        ]);
      });
      await attempt(
        "a tar header whose name is gzip magic (checksum holds), then gzip",
        async (n) => {
          const gz = await tarOf(work, n, "z");
          const hdr = tarHeader(Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0x61]), 0);
          // The gzip member overwrites the header's start: magic first, but the rest is a header.
          const block = Buffer.from(hdr);
          gz.copy(block, 0, 0, Math.min(gz.length, 100));
          return len(Buffer.concat([block, gz.subarray(100), Buffer.alloc(1024)]));
        },
      );
      await attempt("gzip under 512 bytes, chunk split inside the magic", async (n) => {
        const gz = await tarOf(work, n, "z");
        return Buffer.concat([
          Buffer.from(put("Transfer-Encoding: chunked\r\n")),
          chunked(gz.subarray(0, 2), 2),
          Buffer.from(""),
          chunked(gz.subarray(2), 64).subarray(0),
        ]);
      });
      await attempt("gzip with a chunk extension", async (n) => {
        const gz = await tarOf(work, n, "z");
        return Buffer.concat([
          Buffer.from(put("Transfer-Encoding: chunked\r\n") + `${gz.length.toString(16)};a=b\r\n`),
          gz,
          Buffer.from("\r\n0\r\n\r\n"),
        ]);
      });
      await attempt("gzip with a chunk size padded to 16 digits (Go takes 16)", async (n) => {
        const gz = await tarOf(work, n, "z");
        return Buffer.concat([
          Buffer.from(
            put("Transfer-Encoding: chunked\r\n") +
              `${gz.length.toString(16).padStart(16, "0")}\r\n`,
          ),
          gz,
          Buffer.from("\r\n0\r\n\r\n"),
        ]);
      });
      await attempt("compressed content-type spelled differently", async (n) => {
        const gz = await tarOf(work, n, "z");
        return Buffer.concat([
          Buffer.from(
            `PUT ${v}/containers/box/archive?path=/ HTTP/1.1\r\nHost: d\r\nContent-Type: application/gzip\r\nContent-Length: ${gz.length}\r\n\r\n`,
          ),
          gz,
        ]);
      });
      // The plain tar the CLI sends still works (the test's control).
      const plain = await tarOf(work, "plain.txt", "");
      const ok = await raw("ci", len(plain));
      assert.equal(ok.statuses[0], 200, ok.ex.data.toString());
      assert.equal(await dropped("plain.txt"), true);
    });

    await t.step("broken chunked framing: 400 and close, nothing smuggled behind it", async () => {
      const smuggle = (name: string) => bindCreate(name);
      const tar = await tarOf(work, "ok.txt", "");
      const cases: [string, (name: string) => Buffer][] = [
        ["bad size line after a good tar block", (name) =>
          Buffer.concat([
            Buffer.from(
              `PUT ${v}/containers/box/archive?path=/ HTTP/1.1\r\nHost: d\r\nContent-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\n\r\n`,
            ),
            Buffer.from(`${tar.length.toString(16)}\r\n`),
            tar,
            Buffer.from("\r\nzz\r\n"),
            Buffer.from(smuggle(name)),
          ])],
        ["chunk longer than its size, smuggled create inside", (name) =>
          Buffer.concat([
            Buffer.from(
              `PUT ${v}/containers/box/archive?path=/ HTTP/1.1\r\nHost: d\r\nContent-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\n\r\n`,
            ),
            Buffer.from(`200\r\n`),
            tar.subarray(0, 512),
            Buffer.from(`0\r\n\r\n${smuggle(name)}\r\n0\r\n\r\n`),
          ])],
        ["bare LF size line behind a pipelined GET", (name) =>
          Buffer.from(
            `GET ${v}/containers/json HTTP/1.1\r\nHost: d\r\n\r\n` +
              `POST ${v}/containers/create?name=${name} HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n` +
              `2\n{}\r\n0\r\n\r\n` + smuggle(name),
          )],
        ["chunk extension with the create inside", (name) =>
          Buffer.from(
            `GET ${v}/containers/json HTTP/1.1\r\nHost: d\r\n\r\n` +
              `POST ${v}/containers/prune HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n\r\n` +
              `0;x\r\n\r\n` + smuggle(name),
          )],
        ["trailer after the last chunk", (name) =>
          Buffer.from(
            `POST ${v}/containers/prune HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n\r\n` +
              `0\r\nX: y\r\n\r\n` + smuggle(name),
          )],
      ];
      let n = 0;
      for (const [what, make] of cases) {
        const name = `smug-${n++}`;
        const { ex, statuses } = await raw("ci", make(name));
        assert.equal(await exists(d, name), false, `${what}: ${ex.data}`);
        assert.ok(statuses.includes(400), `${what}: the gate answered 400 (${statuses})`);
        assert.equal(ex.timedOut, false, `${what}: the gate closed`);
      }
    });
  } finally {
    await gate?.stop();
    await d.stop();
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
});
