import assert from "node:assert/strict";
import { ROUTES } from "../src/docker/routes.ts";
import { imageRefProblem, knowsRoute, queryProblem } from "../src/docker/route_params.ts";
import { parseApiTarget } from "../src/docker/api_path.ts";

Deno.test("route_params: every route a restricted role may use has its parameter list", () => {
  const missing = ROUTES.filter((r) => r.kind !== "escape" && !knowsRoute(r.method, r.pattern));
  assert.deepEqual(missing.map((r) => `${r.method} ${r.pattern}`), []);
});

Deno.test("route_params: a route the table does not know takes no query", () => {
  assert.equal(
    queryProblem("POST", "/plugins/pull", parseApiTarget("/plugins/pull"), {}),
    undefined,
  );
  assert.match(
    queryProblem("POST", "/plugins/pull", parseApiTarget("/plugins/pull?remote=x"), {})!,
    /no query parameters/,
  );
});

Deno.test("route_params: registries of image references (as the reference parser splits them)", () => {
  for (const ok of ["busybox", "library/busybox:1", "ghcr.io/a/b@sha256:00", "quay.io:443/a"]) {
    assert.equal(imageRefProblem(ok, {}), undefined, ok);
  }
  for (
    const bad of [
      "127.0.0.1:5000/x",
      "localhost/x",
      "localhost:5000/x",
      "[::1]:5000/x",
      "registry:5000/x",
      "Registry/x",
      "10.1.2.3/x",
      "a.localhost/x",
      "x y",
    ]
  ) {
    assert.ok(imageRefProblem(bad, {}), bad);
  }
  assert.equal(imageRefProblem("127.0.0.1:5000/x", { allowPrivateAddresses: true }), undefined);
});
