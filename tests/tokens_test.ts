import assert from "node:assert/strict";
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { runCli } from "./helpers/gate.ts";
import { keygenOk } from "./helpers/keygen_inproc.ts";
import { freeTempDir } from "./helpers/wait.ts";
import { checkJoinToken, consumeJoinToken, TokenRefused } from "../src/ca/tokens.ts";
import { parseJoinToken } from "../src/pki/join_token.ts";

function refused(text: string) {
  return (e: unknown) => e instanceof TokenRefused && e.message.includes(text);
}

async function allText(dir: string): Promise<string> {
  let text = "";
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) text += await readFile(join(e.parentPath, e.name), "utf8");
  }
  return text;
}

Deno.test("keygen token: one line on stdout, recorded hashed (0600), pinned to the root", async () => {
  const dir = await freeTempDir("dg-tok-");
  await keygenOk(["--dir", dir]);
  const r = await runCli(["keygen", "token", "ci-7", "--dir", dir, "--role", "ci"]);
  assert.deepEqual(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split("\n");
  assert.deepEqual(lines.length, 1);
  const parts = parseJoinToken(lines[0]);
  const file = join(dir, "tokens", `${parts.id}.json`);
  assert.deepEqual((await stat(file)).mode & 0o777, 0o600);
  // The secret is nowhere in the PKI; its digest is.
  assert(!(await allText(dir)).includes(parts.secret), "the secret was stored");
  const record = await checkJoinToken(dir, lines[0]);
  assert.deepEqual([record.name, record.role, record.certTtlMs], ["ci-7", "ci", 86_400_000]);
  // The pin is openssl's SPKI digest of the root.
  const openssl = new Deno.Command("sh", {
    args: [
      "-c",
      `openssl x509 -in ${dir}/ca/ca.pem -pubkey -noout | openssl pkey -pubin ` +
      `-outform der | sha256sum`,
    ],
  }).outputSync();
  assert.deepEqual(new TextDecoder().decode(openssl.stdout).split(" ")[0], parts.pin);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("join tokens: single use, wrong secrets and expiry refused", async () => {
  const dir = await freeTempDir("dg-tok-");
  await keygenOk(["--dir", dir]);
  const token = await keygenOk(["token", "bob", "--dir", dir, "--ttl", "2s"]);
  const wrong = token.slice(0, -4) + (token.endsWith("0000") ? "1111" : "0000");
  await assert.rejects(() => checkJoinToken(dir, wrong), refused("unknown"));
  const record = await checkJoinToken(dir, token);
  await consumeJoinToken(dir, record);
  await assert.rejects(() => consumeJoinToken(dir, record), refused("already used"));
  await assert.rejects(() => checkJoinToken(dir, token), refused("already used"));
  const later = await keygenOk(["token", "carol", "--dir", dir, "--ttl", "2s"]);
  await assert.rejects(
    () => checkJoinToken(dir, later, new Date(Date.now() + 3000)),
    refused("expired"),
  );
  assert.deepEqual(
    (await runCli(["keygen", "token", "x", "--dir", dir, "--cert-ttl", "169h"])).code,
    2,
  );
  await Deno.remove(dir, { recursive: true });
});
