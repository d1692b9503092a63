/**
 * The differential between the gate's request reader and Go's `net/http` (dockerd's), used by
 * tests/differential_test.ts (a bounded run) and scripts/fuzz_differential.ts (long runs).
 *
 * The rule: whenever the gate accepts a request, Go accepts it too and agrees exactly on
 * method, Host, decoded path, query, framing, body bytes, keep-alive and the number of bytes
 * the request used; and when Go's `ParseForm` would take anything from the body, the gate's
 * content-type rule refuses it for restricted roles. The gate refusing what Go accepts is
 * allowed (it is counted).
 *
 * @module
 */

import { contentTypeProblem } from "../../../src/docker/request_body.ts";
import { Buffer } from "node:buffer";
import {
  ChunkedReader,
  findHeadEnd,
  HttpError,
  parseRequestHead,
  type RequestHead,
  valuesOf,
} from "../../../src/docker/http.ts";
import { parseApiTarget } from "../../../src/docker/api_path.ts";

/** What Go read of one request (the oracle's JSON, see main.go). */
export interface GoRequest {
  method: string;
  requestURI: string;
  /** Base64 of the Host bytes. */
  host: string;
  path: string;
  rawQuery: string;
  query: Record<string, string[]>;
  queryErr: string;
  contentLength: number;
  transferEncoding: string[] | null;
  close: boolean;
  body: string;
  consumed: number;
  postForm: Record<string, string[]>;
  formReadBody: number;
  multipartReadBody: number;
  parseFormErr: string;
}

/** What Go read of one input: its requests, then why it stopped ("" at the end of input). */
export interface GoResult {
  id: number;
  requests: GoRequest[];
  error: string;
}

/** What the gate read of one request it accepted. */
export interface GateRequest {
  method: string;
  target: string;
  host: string;
  /** The decoded path with its version prefix, as Go's `URL.Path`. */
  path: string;
  query: [string, string][];
  framing: RequestHead["framing"];
  close: boolean;
  body: Buffer;
  consumed: number;
  /** Why a restricted role's body would be refused for its content type, if it would. */
  contentTypeRefusal?: string;
}

/** What the gate read of one input: the requests it accepted, then why it stopped. */
export interface GateResult {
  requests: GateRequest[];
  /** `"refused: …"`, `"incomplete"`, or `""` at the end of input or after a closing request. */
  stop: string;
}

/** The gate's reading of `bytes`: up to 3 pipelined requests, as api_relay.ts reads them. */
export function gateRead(bytes: Buffer): GateResult {
  const requests: GateRequest[] = [];
  let pos = 0;
  try {
    while (requests.length < 3 && pos < bytes.length) {
      const rest = bytes.subarray(pos);
      const end = findHeadEnd(rest);
      if (end === -1) return { requests, stop: "incomplete" };
      const head = parseRequestHead(rest.subarray(0, end));
      const target = parseApiTarget(head.target);
      let body: Buffer;
      let used = end;
      if (head.framing.kind === "length") {
        if (rest.length - end < head.framing.length) return { requests, stop: "incomplete" };
        body = rest.subarray(end, end + head.framing.length);
        used += head.framing.length;
      } else if (head.framing.kind === "chunked") {
        const reader = new ChunkedReader();
        const data: Buffer[] = [];
        used += reader.feed(rest.subarray(end), (d) => data.push(Buffer.from(d)));
        if (!reader.done) return { requests, stop: "incomplete" };
        body = Buffer.concat(data);
      } else body = Buffer.alloc(0);
      const hasBody = head.framing.kind === "chunked" ||
        (head.framing.kind === "length" && head.framing.length > 0);
      const version = target.version === undefined ? "" : `/v${target.version}`;
      requests.push({
        method: head.method,
        target: head.target,
        host: valuesOf(head, "host")[0] ?? "",
        path: version && target.path === "/" ? version : version + target.path,
        query: target.query,
        framing: head.framing,
        close: head.close,
        body,
        consumed: used,
        contentTypeRefusal: hasBody ? contentTypeProblem(head) : undefined,
      });
      pos += used;
      if (head.close || head.upgrade) return { requests, stop: "" };
    }
  } catch (err) {
    if (err instanceof HttpError) return { requests, stop: `refused: ${err.message}` };
    throw err;
  }
  return { requests, stop: "" };
}

/** The gate's query pairs grouped as Go's `url.Values` (keys, each with its values in order). */
function grouped(pairs: [string, string][]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [k, v] of pairs) (out[k] ??= []).push(v);
  return out;
}

function sameValues(a: Record<string, string[]>, b: Record<string, string[]>): boolean {
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  return JSON.stringify(ka) === JSON.stringify(kb) &&
    ka.every((k) => JSON.stringify(a[k]) === JSON.stringify(b[k]));
}

/** Every way request `g` (gate) and `o` (Go) disagree; empty when they agree. */
function requestDifferences(g: GateRequest, o: GoRequest): string[] {
  const out: string[] = [];
  const check = (what: string, ok: boolean, detail: string) => {
    if (!ok) out.push(`${what}: ${detail}`);
  };
  check("method", g.method === o.method, `${g.method} vs ${o.method}`);
  check("target", g.target === o.requestURI, `${g.target} vs ${o.requestURI}`);
  const goHost = Buffer.from(o.host ?? "", "base64").toString("latin1");
  check("host", g.host === goHost, `${JSON.stringify(g.host)} vs ${JSON.stringify(goHost)}`);
  check("path", g.path === o.path, `${JSON.stringify(g.path)} vs ${JSON.stringify(o.path)}`);
  check("query error", o.queryErr === "", o.queryErr);
  check(
    "query",
    sameValues(grouped(g.query), o.query ?? {}),
    `${JSON.stringify(g.query)} vs ${JSON.stringify(o.query)}`,
  );
  const te = o.transferEncoding ?? [];
  const framingOk = g.framing.kind === "chunked"
    ? te.length === 1 && te[0] === "chunked"
    : g.framing.kind === "length"
    ? te.length === 0 && o.contentLength === g.framing.length
    : te.length === 0 && o.contentLength === 0;
  check("framing", framingOk, `${JSON.stringify(g.framing)} vs CL ${o.contentLength} TE ${te}`);
  const goBody = Buffer.from(o.body, "base64");
  check("body", goBody.equals(g.body), `${g.body.length} vs ${goBody.length} bytes`);
  check("consumed", g.consumed === o.consumed, `${g.consumed} vs ${o.consumed}`);
  check("close", g.close === o.close, `${g.close} vs ${o.close}`);
  const formFromBody = o.formReadBody > 0 || o.multipartReadBody > 0 ||
    Object.keys(o.postForm ?? {}).length > 0;
  check(
    "form body",
    !formFromBody || g.contentTypeRefusal !== undefined,
    `Go's ParseForm read ${o.formReadBody} (FormValue ${o.multipartReadBody}) body bytes (${
      JSON.stringify(o.postForm)
    }) ` +
      "and the content-type rule would forward it",
  );
  return out;
}

/** The outcome of comparing one input. */
export interface Comparison {
  /** Disagreements on requests the gate accepted (must be empty). */
  differences: string[];
  /** Requests Go accepted that the gate refused (allowed). */
  gateStricter: number;
  /** Requests both accepted (and agreed on). */
  agreed: number;
}

/** Compare the gate's and Go's readings of one input. */
export function compare(gate: GateResult, go: GoResult): Comparison {
  const differences: string[] = [];
  gate.requests.forEach((g, i) => {
    const o = go.requests[i];
    if (!o) differences.push(`request ${i}: gate accepted, Go: ${go.error || "no request"}`);
    else differences.push(...requestDifferences(g, o).map((d) => `request ${i}: ${d}`));
  });
  const gateStricter = gate.stop.startsWith("refused") &&
      go.requests.length > gate.requests.length
    ? 1
    : 0;
  return { differences, gateStricter, agreed: gate.requests.length };
}

/**
 * Go's build cache for the oracle: kept between runs (outside the repository), because
 * compiling and linking it into an empty cache was 6 s of CPU per run of the unit tier, the
 * same work each time. Go's cache is safe for concurrent builds and keyed by every input, so
 * a stale entry cannot be used. `$XDG_CACHE_HOME/dockgate-test/go-oracle`, else under
 * `~/.cache`; without either, under the build's own temp dir as before.
 */
function oracleGoCache(dir: string): string {
  const base = Deno.env.get("XDG_CACHE_HOME") ||
    (Deno.env.get("HOME") ? `${Deno.env.get("HOME")}/.cache` : "");
  return base ? `${base}/dockgate-test/go-oracle` : `${dir}/gocache`;
}

/** Build the oracle into `dir` (a temp dir; nothing is fetched). */
export async function buildOracle(dir: string): Promise<string> {
  const bin = `${dir}/go_oracle`;
  const out = await new Deno.Command("go", {
    args: ["build", "-o", bin, "."],
    cwd: new URL(".", import.meta.url).pathname,
    env: {
      GOCACHE: oracleGoCache(dir),
      GOPATH: `${dir}/gopath`,
      GOPROXY: "off",
      GOFLAGS: "",
      GO111MODULE: "on",
      CGO_ENABLED: "0",
    },
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`go build failed: ${new TextDecoder().decode(out.stderr)}`);
  return bin;
}

/** Whether a `go` toolchain is on PATH. */
export function goAvailable(): boolean {
  try {
    return new Deno.Command("go", { args: ["version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

/** Run every input through one oracle process; results in input order. */
export async function runOracle(bin: string, inputs: readonly Buffer[]): Promise<GoResult[]> {
  const child = new Deno.Command(bin, { stdin: "piped", stdout: "piped", stderr: "piped" })
    .spawn();
  const output = child.output();
  const writer = child.stdin.getWriter();
  const lines = inputs.map((b, id) => JSON.stringify({ id, b64: b.toString("base64") }) + "\n");
  await writer.write(new TextEncoder().encode(lines.join("")));
  await writer.close();
  const out = await output;
  if (!out.success) throw new Error(`oracle failed: ${new TextDecoder().decode(out.stderr)}`);
  const results = new TextDecoder().decode(out.stdout).trim().split("\n").map((l) =>
    JSON.parse(l) as GoResult
  );
  if (results.length !== inputs.length) throw new Error("oracle answered a different count");
  return results;
}
