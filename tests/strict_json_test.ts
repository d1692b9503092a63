/** Unit tests of src/docker/strict_json.ts: one value, no duplicates, nothing after it. */
import assert from "node:assert/strict";
import { JsonError, parseStrictJson } from "../src/docker/strict_json.ts";

const enc = new TextEncoder();
const parse = (s: string | Uint8Array) =>
  parseStrictJson(typeof s === "string" ? enc.encode(s) : s);

Deno.test("strict JSON reads what JSON.parse reads", () => {
  for (
    const text of [
      '{"a":1,"b":[true,false,null],"c":{"d":"e\\u00e9\\n"},"e":-1.5e3}',
      "[]",
      "  {}  ",
      '"\\ud83d\\ude00"',
      "0",
    ]
  ) assert.deepEqual(JSON.parse(JSON.stringify(parse(text))), JSON.parse(text), text);
  const o = parse('{"__proto__":{"Privileged":true}}') as Record<string, unknown>;
  assert.equal(Object.getPrototypeOf(o), null);
  assert.deepEqual(Object.keys(o), ["__proto__"]);
});

Deno.test("strict JSON refuses what two readers could read two ways", () => {
  for (
    const [text, re] of [
      ['{"Privileged":false,"Privileged":true}', /duplicate key "Privileged"/],
      ['{"a":{"b":1,"b":2}}', /duplicate key "b"/],
      ['{"Privil\\u0065ged":1,"Privileged":2}', /duplicate key/],
      ['{"a":1} {"b":2}', /data after/],
      ['{"a":1}x', /data after/],
      ["", /unexpected token/],
      ['{"a":1,}', /expected a key/],
      ["[1,]", /unexpected token/],
      ["{'a':1}", /expected a key/],
      ["NaN", /unexpected token/],
      ["01", /data after/],
      ['"\\ud800"', /lone surrogate/],
      ['"a\tb"', /control character/],
      ["[".repeat(100) + "]".repeat(100), /nested too deeply/],
    ] as const
  ) {
    assert.throws(
      () => parse(text),
      (e: unknown) => e instanceof JsonError && re.test(e.message),
      text,
    );
  }
  assert.throws(() => parse(new Uint8Array([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d])), /UTF-8/);
});
