import assert from "node:assert/strict";
import { ROUTES } from "../src/docker/routes.ts";
import { imageRefProblem, knowsRoute, queryProblem } from "../src/docker/route_params.ts";
import { parseApiTarget } from "../src/docker/api_path.ts";
import { hostProblem, isNonPublicAddress } from "../src/docker/host_check.ts";

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

Deno.test("host check: names that resolve to non-public addresses, or not at all, are refused", async () => {
  for (
    const a of [
      "127.0.0.1",
      "10.1.2.3",
      "172.31.0.1",
      "192.168.1.1",
      "169.254.169.254",
      "100.64.0.1",
      "0.0.0.0",
      "::1",
      "::",
      "fe80::1",
      "fd00::1",
      "::ffff:127.0.0.1",
    ]
  ) {
    assert.ok(isNonPublicAddress(a), a);
  }
  for (const a of ["8.8.8.8", "93.184.215.14", "2606:4700::1111"]) {
    assert.ok(!isNonPublicAddress(a), a);
  }
  // The system resolver, through /etc/hosts: localhost is the host's loopback.
  assert.match((await hostProblem(["localhost"]))!, /resolves to (127\.0\.0\.1|::1)/);
  const fake = (map: Record<string, string[]>) => (n: string) =>
    n in map
      ? Promise.resolve(map[n])
      : Promise.reject(Object.assign(new Error("x"), { code: "ENOTFOUND" }));
  const r = fake({
    "pub.example": ["93.184.215.14"],
    "mixed.example": ["93.184.215.14", "10.0.0.1"],
  });
  assert.equal(await hostProblem(["pub.example"], r), undefined);
  assert.match(
    (await hostProblem(["pub.example", "mixed.example"], r))!,
    /mixed\.example.*10\.0\.0\.1/,
  );
  assert.match((await hostProblem(["gone.example"], r))!, /does not resolve \(ENOTFOUND\)/);
  const never = () => new Promise<string[]>(() => {});
  assert.match((await hostProblem(["slow.example"], never, 50))!, /did not resolve in 50 ms/);
});

Deno.test("route params: the DNS names a request makes dockerd contact are collected", () => {
  const hosts: string[] = [];
  const t = parseApiTarget(
    `/images/create?fromImage=reg.example:5000/a/b&fromSrc=${
      encodeURIComponent("https://x.example/y")
    }`,
  );
  assert.equal(queryProblem("POST", "/images/create", t, { hosts }), undefined);
  assert.deepEqual(hosts.sort(), ["reg.example", "x.example"]);
  const open: string[] = [];
  queryProblem("POST", "/images/create", t, { allowPrivateAddresses: true, hosts: open });
  assert.deepEqual(open, [], "a role that allows private addresses resolves nothing");
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
  // An isolated role's named network is isolation's owner-checked reference (isolation_test).
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
