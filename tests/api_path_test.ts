/** Unit tests of src/docker/api_path.ts: decode once, refuse what is not canonical. */
import assert from "node:assert/strict";
import { parseApiTarget, queryValues, versionBelow } from "../src/docker/api_path.ts";
import { HttpError } from "../src/docker/http.ts";

Deno.test("targets: version prefix, path and query split as dockerd routes them", () => {
  const t = parseApiTarget("/v1.41/containers/json?all=1&filters=%7B%22a%22%3A1%7D");
  assert.equal(t.path, "/containers/json");
  assert.equal(t.version, "1.41");
  assert.deepEqual(queryValues(t, "filters"), ['{"a":1}']);
  assert.equal(parseApiTarget("/_ping").version, undefined);
  assert.equal(parseApiTarget("/v1.41").path, "/");
  assert.equal(parseApiTarget("/%63ontainers/create").path, "/containers/create", "decoded once");
  assert.equal(parseApiTarget("/images/library%2Bx/json").path, "/images/library+x/json");
  assert.deepEqual(parseApiTarget("/build?t=a+b&t=c").query, [["t", "a b"], ["t", "c"]]);
  assert.equal(parseApiTarget("/vfoo/containers/json").path, "/vfoo/containers/json");
});

Deno.test("targets: non-canonical paths are refused, not guessed at", () => {
  for (
    const [target, re] of [
      ["/containers/x/../create", /dot segment/],
      ["/containers/./create", /dot segment/],
      ["/containers/%2e%2e/create", /dot segment/],
      ["//containers/create", /empty path segment/],
      ["/v1.41//containers/create", /empty path segment/],
      ["/containers/create/", /trailing/],
      ["/containers%2Fcreate", /encoded/],
      ["/containers%5ccreate", /encoded/],
      ["/containers/a%00b/json", /encoded/],
      ["/%2563ontainers/create", /encoded/],
      ["/containers/%zz/json", /invalid percent/],
      ["/containers/%ff/json", /not UTF-8/],
      ["/containers/a%0ab/json", /control character/],
      ["/v1.41.1/containers/json", /malformed API version/],
      ["/v1/containers/json", /malformed API version/],
      ["/containers/json?a=1;b=2", /';'/],
      ["/containers/json?a=%zz", /invalid percent/],
    ] as const
  ) {
    assert.throws(
      () => parseApiTarget(target),
      (e: unknown) => e instanceof HttpError && e.status === 400 && re.test(e.message),
      target,
    );
  }
});

Deno.test("versions compare numerically", () => {
  assert.ok(versionBelow("1.9", "1.24"));
  assert.ok(versionBelow("1.23", "1.24"));
  assert.ok(!versionBelow("1.24", "1.24"));
  assert.ok(!versionBelow("1.41", "1.24"));
  assert.ok(!versionBelow("2.0", "1.24"));
});
