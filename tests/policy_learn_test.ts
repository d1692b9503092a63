/**
 * The policy learned from an audit log (src/docker/policy_learn.ts) and the `policy learn`
 * command line: the least preset that covers the routes used, deny entries for every other
 * route the preset allows (never one a logged request matches, a container named with a
 * slash too), allow entries for paths no route knows, torn lines skipped, identities chosen,
 * and the flags that do not apply refused.
 */
import assert from "node:assert/strict";
import { compileApiPolicy, decideRequest } from "../src/docker/api_policy.ts";
import { parseApiTarget } from "../src/docker/api_path.ts";
import { learnPolicy, learnRole, readAuditRequests } from "../src/docker/policy_learn.ts";
import { parseCommand } from "../src/cli/args.ts";
import { runPolicyLearn } from "../src/cli/run_policy_learn.ts";

const req = (text: string) => {
  const [method, path] = text.split(" ");
  return { method, path };
};
const allowedBy = (spec: ReturnType<typeof learnRole>, text: string) => {
  const role = compileApiPolicy({ roles: { r: spec }, identities: [] }, "learned").roles.get("r")!;
  const { method, path } = req(text);
  return decideRequest(role, { method, target: parseApiTarget(path) }).allow;
};

Deno.test("policy learn: the least preset, deny entries for the rest", () => {
  const reads = ["GET /_ping", "GET /containers/json", "GET /containers/a/exec/b/json"];
  const ro = learnRole(reads.map(req));
  assert.equal(ro.preset, "read-only");
  for (const r of reads) assert.ok(allowedBy(ro, r), r);
  for (const r of ["GET /info", "GET /images/json", "GET /containers/a/logs"]) {
    assert.ok(!allowedBy(ro, r), r);
  }
  const dl = learnRole(["GET /containers/a/export"].map(req));
  assert.equal(dl.allowDownloads, true);
  assert.ok(allowedBy(dl, "GET /containers/b/export"));
  const writes = learnRole(["POST /containers/a/restart", "GET /_ping"].map(req));
  assert.equal(writes.preset, "no-escape");
  assert.ok(allowedBy(writes, "POST /containers/b/restart"));
  assert.ok(!allowedBy(writes, "POST /containers/b/kill"));
  assert.ok(!allowedBy(writes, "GET /containers/json"));
  assert.deepEqual(learnRole(["POST /containers/a/exec"].map(req)).preset, "no-escape");
  assert.deepEqual(learnRole(["POST /plugins/pull"].map(req)), { preset: "full" });
  const odd = learnRole(["GET /custom/thing"].map(req));
  assert.deepEqual(odd.allow, ["GET /custom/thing"]);
  assert.ok(allowedBy(odd, "GET /custom/thing"));
});

Deno.test("policy learn: records read per identity, torn lines skipped", () => {
  const rec = (identity: string, method: string, path: string) =>
    JSON.stringify({ event: "request", identity, method, path, decision: "allow" });
  const log = [
    rec("a", "GET", "/_ping"),
    rec("b", "GET", "/info"),
    JSON.stringify({ event: "connection", identity: "a" }),
    rec("a", "GET", "/_ping"),
    rec("sha256:0123", "GET", "/info"),
    '{"event":"request","identity":"a","meth',
  ].join("\n");
  const all = readAuditRequests(log, []);
  assert.equal(all.skipped, 1);
  assert.deepEqual(all.byIdentity.get("a"), [{ method: "GET", path: "/_ping" }]);
  assert.deepEqual([...readAuditRequests(log, ["b"]).byIdentity.keys()], ["b"]);
  const p = learnPolicy(all.byIdentity);
  assert.deepEqual(p.identities.map((i) => i.cn), ["a", "b"], "no cn for a fingerprint");
  compileApiPolicy(p, "learned");
});

Deno.test("policy learn: the command line", () => {
  assert.deepEqual(
    parseCommand(["policy", "learn", "a.log", "--identity", "x", "--identity", "y"], {}),
    {
      kind: "policy-learn",
      log: "a.log",
      identities: ["x", "y"],
      against: undefined,
    },
  );
  assert.throws(
    () => parseCommand(["policy", "learn", "a.log", "--body", "b"], {}),
    /--body does not apply/,
  );
  assert.throws(() => parseCommand(["policy", "learn"], {}), /needs AUDIT_LOG/);
  assert.throws(
    () =>
      parseCommand(["policy", "check", "p", "--identity", "a", "--identity", "b", "GET", "/"], {}),
    /needs one --identity/,
  );
  assert.throws(
    () =>
      parseCommand(["policy", "check", "p", "--identity", "a", "--against", "x", "GET", "/"], {}),
    /--against does not apply/,
  );
});

Deno.test("policy learn: refused requests are not learned; full and allow entries warned", async () => {
  const rec = (decision: string, method: string, path: string) =>
    JSON.stringify({ event: "request", identity: "ci", method, path, decision });
  const log = [
    rec("allow", "GET", "/_ping"),
    rec("deny", "POST", "/plugins/pull"),
    rec("deny", "GET", "/custom/probe"),
    rec("would_deny", "POST", "/containers/a/restart"),
  ].join("\n");
  const r = readAuditRequests(log, []);
  assert.deepEqual(r.byIdentity.get("ci"), [
    { method: "GET", path: "/_ping" },
    { method: "POST", path: "/containers/a/restart" },
  ], "a refused probe was never forwarded: not a request the client needed");
  assert.equal(r.refused, 2);
  const learned = learnRole(r.byIdentity.get("ci")!);
  assert.equal(learned.preset, "no-escape", "would_deny (audit mode, forwarded) still counts");
  assert.equal(learned.allow, undefined);

  const dir = await Deno.makeTempDir();
  try {
    const run = async (text: string) => {
      const file = `${dir}/audit.log`;
      await Deno.writeTextFile(file, text);
      const io = { out: [] as string[], say: [] as string[] };
      const code = await runPolicyLearn(
        { kind: "policy-learn", log: file, identities: [], against: undefined },
        {
          out: (l: string) => void io.out.push(l),
          say: (l: string) => void io.say.push(l),
        } as unknown as Parameters<typeof runPolicyLearn>[1],
      );
      assert.equal(code, 0);
      return io;
    };
    const quiet = await run(log);
    assert.ok(quiet.say.some((l) => /2 refused request\(s\).*not learned/.test(l)), quiet.say[0]);
    assert.ok(!quiet.say.some((l) => /warning/.test(l)), quiet.say.join("\n"));
    const loud = await run([
      rec("allow", "POST", "/plugins/pull"),
      JSON.stringify({
        event: "request",
        identity: "odd",
        method: "GET",
        path: "/custom/x",
        decision: "would_deny",
      }),
    ].join("\n"));
    assert.ok(
      loud.say.some((l) => /warning: learned-ci is full/.test(l)),
      loud.say.join("\n"),
    );
    assert.ok(
      loud.say.some((l) =>
        /warning: learned-odd allows paths no route knows: GET \/custom\/x/.test(l)
      ),
      loud.say.join("\n"),
    );
    assert.ok(!loud.out.some((l) => /warning/.test(l)), "warnings on stderr, not in the JSON");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
