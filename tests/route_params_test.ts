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
