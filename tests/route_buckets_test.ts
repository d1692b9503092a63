// matchRoutes tests a path only against the routes of its first segment (routes.ts): the
// result must be exactly that of testing every route of the method, in table order.
import assert from "node:assert/strict";
import { matchRoutes, ROUTES } from "../src/docker/routes.ts";

/** The full scan matchRoutes replaces. */
function everyRoute(method: string, path: string) {
  return ROUTES.filter((r) => r.method === method && r.regex.test(path));
}

/** Paths each pattern matches, and near misses around them. */
function samples(): string[] {
  const out = new Set(["", "/", "//", "/_ping/", "containers", "/containers", "/containers/"]);
  for (const r of ROUTES) {
    for (const fill of ["a", "a/b", "json", "exec", "", "containers/json"]) {
      const p = r.pattern.replace(/\{name\}|\{id\}|\*\*|\*/g, fill);
      for (const v of [p, `${p}/`, `${p}x`, p.slice(0, -1), `/x${p}`, `/${p}`, p.toUpperCase()]) {
        out.add(v);
      }
    }
  }
  return [...out];
}

Deno.test("matchRoutes by first segment equals the scan of every route", () => {
  const methods = [...new Set(ROUTES.map((r) => r.method)), "PATCH", "get"];
  let matched = 0;
  for (const path of samples()) {
    for (const method of methods) {
      const want = everyRoute(method, path);
      assert.deepEqual(matchRoutes(method, path), want, `${method} ${path}`);
      matched += want.length;
    }
  }
  if (matched < ROUTES.length) throw new Error(`only ${matched} matches: the samples are too few`);
});
