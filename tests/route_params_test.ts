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

Deno.test("route_params: build's networkmode names a user network as a no-escape container may (docker-py)", () => {
  // docker-py's test_build_with_network_mode builds on a network it created, by ID.
  const on = (q: string, ctx = {}) =>
    queryProblem("POST", "/build", parseApiTarget(`/build?${q}`), ctx);
  assert.equal(on("networkmode=1eca40222eb0"), undefined);
  assert.equal(on("networkmode=ci-net"), undefined);
  for (const bad of ["host", "HOST", "container:web", "Container:web", "ns:/proc/1/ns/net"]) {
    assert.match(on(`networkmode=${bad}`) ?? "", /networkmode/, bad);
  }
  // Owner isolation does not see a build's network: isolated roles keep the shared ones only.
  assert.match(on("networkmode=ci-net", { isolated: true }) ?? "", /networkmode/);
  assert.equal(on("networkmode=none", { isolated: true }), undefined);
});

Deno.test("route_params: dockerd reads the first dockerfile= (FormValue); later copies are never read", () => {
  // docker-py sends a Dockerfile from outside the context as two values: its name in the
  // context, then its contents (a tuple that requests expands).
  const q = "dockerfile=.dockerfile.1f&dockerfile=FROM%20busybox%0ARUN%20true&t=x";
  assert.equal(queryProblem("POST", "/build", parseApiTarget(`/build?${q}`), {}), undefined);
  // The first copy is the one dockerd reads, and is checked.
  const bad = "dockerfile=a%0Ab&dockerfile=Dockerfile";
  assert.match(
    queryProblem("POST", "/build", parseApiTarget(`/build?${bad}`), {}) ?? "",
    /dockerfile/,
  );
  // Every other single-valued parameter still refuses a second copy.
  assert.match(
    queryProblem(
      "POST",
      "/build",
      parseApiTarget("/build?networkmode=none&networkmode=host"),
      {},
    ) ??
      "",
    /given twice/,
  );
});

Deno.test("route_params: image tag's force= is docker-py's, read by no daemon since API 1.24", () => {
  const tag = (q: string) =>
    queryProblem("POST", "/images/{name}/tag", parseApiTarget(`/images/bb/tag?${q}`), {});
  assert.equal(tag("repo=x&tag=1&force=0"), undefined);
  assert.equal(tag("repo=x&force=1"), undefined);
  assert.match(tag("repo=x&force=f") ?? "", /force/);
  assert.match(tag("repo=x&force=1&force=0") ?? "", /given twice/);
});
