/**
 * Renders a bench run as Markdown: machine line, tables with median [min–max] and ratios to
 * socat and to the best peer, the load generator's CPU and the direct baselines, the
 * targets (met / not met) and a reading.
 *
 * @module
 */

import type { Results, Summary } from "./results.ts";

/** Facts about the run printed in the header. */
export interface RunInfo {
  /** ISO date. */
  date: string;
  /** `nproc=2, AMD EPYC, 23.5 GiB RAM, Linux 6.1…`. */
  machine: string;
  /** Versions of runtimes and peers. */
  versions: Record<string, string>;
  /** Quick (smoke) or full. */
  quick: boolean;
  /** Sizes used, for the header. */
  sizes: Record<string, unknown>;
  /** Wall time of the whole run in seconds. */
  elapsedS: number;
  /** Contenders skipped and why. */
  skipped: string[];
  /** Further facts about how this run was made (one sentence each). */
  notes: string[];
  /** Measurements that failed (the run went on without them). */
  failures: string[];
  /** Contender id → label. */
  labels: Record<string, string>;
  /** Ids of third-party peers. */
  peers: string[];
}

interface Metric {
  id: string;
  label: string;
  higherBetter: boolean;
  digits?: number;
}

const fmt = (x: number, digits = 0) =>
  Math.abs(x) >= 1000 && digits === 0 ? Math.round(x).toString() : x.toFixed(digits);

function cell(s: Summary | undefined, digits = 0): string {
  if (!s) return "–";
  if (s.n === 1) return fmt(s.median, digits);
  return `${fmt(s.median, digits)} [${fmt(s.min, digits)}–${fmt(s.max, digits)}]`;
}

const ratio = (
  a?: number,
  b?: number,
) => (a !== undefined && b !== undefined && b > 0 && a >= 0 ? a / b : undefined);
const rfmt = (r?: number) => (r === undefined ? "–" : `${r.toFixed(2)}×`);

/** The renderer, bound to one run's results. */
export class Report {
  #r: Results;
  #info: RunInfo;
  constructor(results: Results, info: RunInfo) {
    this.#r = results;
    this.#info = info;
  }

  #label(id: string): string {
    const base: Record<string, string> = {
      "direct-tls": "direct: loadgen → Node TLS sink (no gate)",
      "direct-tls-deno": "direct: loadgen → Deno node:tls sink (no gate)",
      "direct-unix": "direct: unix socket, no TLS (no gate)",
      "ssh": "Docker over SSH (ssh://, loopback sshd)",
    };
    return base[id] ?? this.#info.labels[id] ?? id;
  }

  #med(w: string, k: string, c: string, m: string): number | undefined {
    return this.#r.get(w, k, c, m)?.median;
  }

  /** Best peer's median for a metric (max or min), with its id. */
  #best(
    w: string,
    k: string,
    m: string,
    higherBetter: boolean,
  ): { id: string; v: number } | undefined {
    let best: { id: string; v: number } | undefined;
    for (const id of this.#info.peers) {
      const v = this.#med(w, k, id, m);
      if (v === undefined) continue;
      if (!best || (higherBetter ? v > best.v : v < best.v)) best = { id, v };
    }
    return best;
  }

  #table(
    w: string,
    k: string,
    metrics: Metric[],
    ratioMetrics: string[],
    extra?: (c: string) => string[],
  ) {
    const rows = this.#r.contenders(w, k);
    const head = ["contender", ...metrics.map((m) => m.label)];
    const ratioHead = ratioMetrics.flatMap((m) => {
      const l = metrics.find((x) => x.id === m)!.label;
      return [`${l} ×socat`, `${l} ×best peer`];
    });
    const extraHead = extra ? extra("__head__") : [];
    const lines = [
      `| ${[...head, ...ratioHead, ...extraHead].join(" | ")} |`,
      `|${[...head, ...ratioHead, ...extraHead].map(() => "---").join("|")}|`,
    ];
    for (const c of rows) {
      const vals = metrics.map((m) => cell(this.#r.get(w, k, c, m.id), m.digits));
      const rs = ratioMetrics.flatMap((m) => {
        const hb = metrics.find((x) => x.id === m)!.higherBetter;
        const v = this.#med(w, k, c, m);
        return [
          rfmt(ratio(v, this.#med(w, k, "socat", m))),
          rfmt(ratio(v, this.#best(w, k, m, hb)?.v)),
        ];
      });
      lines.push(`| ${[this.#label(c), ...vals, ...rs, ...(extra ? extra(c) : [])].join(" | ")} |`);
    }
    return lines.join("\n");
  }

  #bestNote(w: string, k: string, metrics: Metric[]): string {
    const parts = metrics.map((m) => {
      const b = this.#best(w, k, m.id, m.higherBetter);
      return b ? `${m.label}: ${this.#label(b.id)}` : undefined;
    }).filter(Boolean);
    return parts.length ? `Best peer per column — ${parts.join("; ")}.` : "";
  }

  /** Added latency (median over runs of gate − paired direct unix) for p50_us/p99_us/p999_us. */
  #added(k: string, c: string, p: string): number | undefined {
    return this.#med("latency", k, c, `added_${p}`);
  }

  /** The whole document. */
  render(): string {
    const i = this.#info;
    const out: string[] = [];
    out.push(
      `# dockgate benchmark${i.quick ? " (quick smoke run — sizes too small to mean much)" : ""}`,
    );
    out.push("");
    out.push(`Date: ${i.date}. Wall time of the run: ${(i.elapsedS / 60).toFixed(1)} min.`);
    out.push("");
    out.push(
      `Machine: ${i.machine}; runtimes: Deno ${i.versions.Deno ?? "?"}, Node.js ${
        i.versions["Node.js"] ?? "?"
      }.`,
    );
    out.push("");
    out.push(`Versions: ${Object.entries(i.versions).map(([k, v]) => `${k} ${v}`).join("; ")}.`);
    out.push("");
    out.push(
      "**One run on a shared, noisy 2-core machine** (other engineers' tests were running at the same time). " +
        "Absolute numbers move a lot between runs; the ratios between contenders within this run are what count. " +
        `Each figure is the median of ${i.sizes.runs} run(s), with [min–max] when there is more than one; the runs ` +
        "of the contenders are interleaved (run 1 of each, then run 2 of each, …) so drifts hit everyone.",
    );
    out.push("");
    out.push(
      "Setup: every contender listens on 127.0.0.1 in the same role — mutual TLS, client certificate required and " +
        "verified against our CA, the same server/client certificates from `dockgate keygen` — and relays to the " +
        "same unix socket. Target: `bench/tools/target.mjs` (Node: a sink/source for bulk and a tiny keep-alive HTTP " +
        "responder for `GET /_ping`). Load generator: `bench/tools/loadgen.mjs` (Node `node:tls` client). " +
        "dockgate runs with its defaults (info log to a file) plus `--max-connections 30000` and the handshake caps " +
        "lifted (`--max-handshakes 30000 --max-handshakes-per-address 30000`: the load generator is one address); socat " +
        "`OPENSSL-LISTEN:…,fork,verify=1 UNIX-CONNECT:…`; stunnel4 `verifyChain = yes`, `requireCert = yes`, " +
        "foreground; HAProxy `mode tcp`, `bind … ssl crt … ca-file … verify required` (default threads = 2 here). " +
        "The direct baselines (no gate) show what the load generator and target manage on their own.",
    );
    out.push("");
    out.push(`Sizes: ${Object.entries(i.sizes).map(([k, v]) => `${k}=${v}`).join(", ")}.`);
    if (i.skipped.length) {
      out.push("");
      out.push(`Skipped: ${i.skipped.join("; ")}.`);
    }
    if (i.notes.length) out.push("", ...i.notes.map((n) => `- ${n}`));

    for (const k of this.#r.keyTypes("bulk")) {
      const metrics: Metric[] = [
        { id: "up_MBps", label: "upload MB/s", higherBetter: true },
        { id: "down_MBps", label: "download MB/s", higherBetter: true },
        { id: "up_gate_cpu_s_per_GB", label: "gate CPU s/GB up", higherBetter: false, digits: 2 },
        {
          id: "down_gate_cpu_s_per_GB",
          label: "gate CPU s/GB down",
          higherBetter: false,
          digits: 2,
        },
        { id: "up_loadgen_cpu_pct", label: "loadgen CPU % up", higherBetter: false },
        { id: "down_loadgen_cpu_pct", label: "loadgen CPU % down", higherBetter: false },
        { id: "up_target_cpu_pct", label: "target CPU % up", higherBetter: false },
      ];
      out.push("", `## 1. Bulk throughput, one connection, ${k}`, "");
      out.push(
        "Upload = client → gate → unix sink; download = unix source → gate → client. MB = 10^6 bytes. " +
          "CPU % = share of one core during the transfer.",
        "",
      );
      out.push(this.#table("bulk", k, metrics, ["up_MBps", "down_MBps"]));
      out.push("", this.#bestNote("bulk", k, metrics.slice(0, 2)));
    }

    for (const k of this.#r.keyTypes("connrate")) {
      const conc = [
        ...new Set(this.#r.samples.filter((s) => s.workload === "connrate").map((s) => s.metric)),
      ]
        .filter((m) => /^c\d+_per_s$/.test(m));
      const metrics: Metric[] = conc.map((m) => ({
        id: m,
        label: `conns/s c=${m.slice(1, -6)}`,
        higherBetter: true,
      }));
      const cpu: Metric[] = conc.flatMap((m) => [
        {
          id: m.replace("per_s", "loadgen_cpu_pct"),
          label: `loadgen CPU % c=${m.slice(1, -6)}`,
          higherBetter: false,
        },
        {
          id: m.replace("per_s", "gate_cpu_pct"),
          label: `gate CPU % c=${m.slice(1, -6)}`,
          higherBetter: false,
        },
      ]);
      out.push("", `## 2. New connections: full mTLS handshake + GET /_ping + close, ${k}`, "");
      out.push(
        "Each connection: TCP connect, full TLS handshake with client certificate (no session resumption), " +
          "`GET /_ping` with `Connection: close`, read the answer, close. Fixed duration per measurement.",
        "",
      );
      out.push(this.#table("connrate", k, [...metrics, ...cpu], conc));
      out.push("", this.#bestNote("connrate", k, metrics));
      const errs = this.#r.samples.filter((s) =>
        s.workload === "connrate" && s.keyType === k && /errors/.test(s.metric)
      )
        .reduce((n, s) => n + s.value, 0);
      out.push("", `Failed connections over all measurements: ${errs}.`);
    }

    for (const k of this.#r.keyTypes("latency")) {
      const metrics: Metric[] = [
        { id: "p50_us", label: "p50 µs", higherBetter: false },
        { id: "p99_us", label: "p99 µs", higherBetter: false },
        { id: "p999_us", label: "p99.9 µs", higherBetter: false },
      ];
      out.push("", `## 3. Keep-alive request latency, ${k}`, "");
      out.push(
        "`GET /_ping` round trips on one keep-alive connection. Every request through the gate is paired with " +
          'one straight to the target\'s unix socket at the same moment (alternating which goes first); "added" = ' +
          "gate percentile − paired direct percentile of the same run (median over runs), so machine noise hits both " +
          "alike. Ratios are of added latency (lower is better); – where the reference's added latency is ≤ 0 (noise).",
        "",
      );
      const rows = this.#r.contenders("latency", k);
      const peersAdded = (p: string) => {
        let best: number | undefined;
        for (const id of this.#info.peers) {
          const a = this.#added(k, id, p);
          if (a !== undefined && (best === undefined || a < best)) best = a;
        }
        return best;
      };
      const head = [
        "contender",
        ...metrics.map((m) => m.label),
        "added p50",
        "added p99",
        "added p99.9",
        "added p50 ×stunnel",
        "added p99 ×stunnel",
        "added p50 ×socat",
        "added p50 ×best peer",
      ];
      out.push(`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`);
      for (const c of rows) {
        const a = (p: string) => this.#added(k, c, p);
        out.push(
          `| ${
            [
              this.#label(c),
              ...metrics.map((m) => cell(this.#r.get("latency", k, c, m.id))),
              ...["p50_us", "p99_us", "p999_us"].map((p) =>
                cell(this.#r.get("latency", k, c, `added_${p}`))
              ),
              rfmt(ratio(a("p50_us"), this.#added(k, "stunnel", "p50_us"))),
              rfmt(ratio(a("p99_us"), this.#added(k, "stunnel", "p99_us"))),
              rfmt(ratio(a("p50_us"), this.#added(k, "socat", "p50_us"))),
              rfmt(ratio(a("p50_us"), peersAdded("p50_us"))),
            ].join(" | ")
          } |`,
        );
      }
    }

    for (const k of this.#r.keyTypes("memory")) {
      const steps = [
        ...new Set(this.#r.samples.filter((s) => s.workload === "memory").map((s) => s.metric)),
      ]
        .filter((m) => m.startsWith("held_at_")).map((m) => Number(m.slice(8))).sort((a, b) =>
          a - b
        );
      const metrics: Metric[] = steps.flatMap((n) => [
        { id: `held_at_${n}`, label: `held of ${n}`, higherBetter: true },
        { id: `mem_MiB_at_${n}`, label: `MiB at ${n}`, higherBetter: false, digits: 1 },
        { id: `kib_per_conn_at_${n}`, label: `KiB/conn at ${n}`, higherBetter: false, digits: 1 },
      ]);
      out.push("", `## 4. Memory holding idle established mTLS connections, ${k}`, "");
      out.push(
        "A fresh gate; each connection does one `GET /_ping` and then stays open and idle. Memory = summed PSS of " +
          "the gate's processes (socat: one process per connection, so it is only taken to " +
          `${this.#info.sizes.socatHoldMax}); KiB/conn = growth over the idle gate ÷ connections. Lower is better.`,
        "",
      );
      const nofile = Number(this.#info.sizes.nofile);
      if (!this.#info.quick && Math.max(...steps) < 10_000) {
        out.push(
          `The largest step is ${
            Math.max(...steps)
          }, not 10,000: this machine's hard open-files limit is ${nofile} ` +
            "and cannot be raised here (no CAP_SYS_RESOURCE), and every relaying gate holds two descriptors per " +
            "connection (client + target) plus a few of its own (stunnel refuses clients past about (limit − 470) ÷ 2), " +
            "so no single-process contender can hold 10,000 relayed connections here; the step is set where all of them fit.",
          "",
        );
      }
      out.push(this.#table("memory", k, metrics, steps.map((n) => `kib_per_conn_at_${n}`)));
      const errs = this.#r.samples.filter((s) =>
        s.workload === "memory" && s.keyType === k && /errors/.test(s.metric)
      )
        .map((s) => `${this.#label(s.contender)} ${s.value}`).filter((s) => !s.endsWith(" 0"));
      out.push("", `Connection errors while opening: ${errs.length ? errs.join(", ") : "none"}.`);
    }

    for (const k of this.#r.keyTypes("docker")) {
      const metrics: Metric[] = [
        { id: "version_ms", label: "`docker version` ms/cmd", higherBetter: false },
        { id: "ps_ms", label: "`docker ps` ms/cmd", higherBetter: false },
        { id: "saveload_s", label: "save→load s", higherBetter: false, digits: 2 },
      ];
      out.push("", `## 5. Real Docker CLI against a private dockerd (${k})`, "");
      out.push(
        `\`docker save | docker load\` of a ${this.#info.sizes.imageMiB} MiB image through the same route both ways, ` +
          `and ${this.#info.sizes.versionCount} sequential \`docker version\` and as many \`docker ps -a\` (each a new CLI process and ` +
          "connection). TLS gates: Docker CLI `--tlsverify` straight to the gate; tunnel: CLI → unix socket of " +
          "`dockgate connect` → `dockgate serve`; SSH: `DOCKER_HOST=ssh://root@127.0.0.1:PORT` (no connection " +
          "sharing), remote `docker system dial-stdio`. Lower is better; ratios are time ÷ socat's time.",
        "",
      );
      const vsSsh = ["version_ms", "ps_ms", "saveload_s"];
      out.push(this.#table("docker", k, metrics, ["version_ms", "saveload_s"], (c) => {
        if (c === "__head__") {
          return [
            "speed-up vs SSH (version)",
            "speed-up vs SSH (ps)",
            "speed-up vs SSH (save→load)",
          ];
        }
        return vsSsh.map((m) =>
          rfmt(ratio(this.#med("docker", k, "ssh", m), this.#med("docker", k, c, m)))
        );
      }));
    }

    for (const k of this.#r.keyTypes("policy")) out.push(...this.#policySection(k));
    for (const k of this.#r.keyTypes("isolation")) out.push(...this.#isolationSection(k));
    for (const k of this.#r.keyTypes("chains")) out.push(...this.#chainsSection(k));
    for (const k of this.#r.keyTypes("enroll")) out.push(...this.#enrollSection(k));

    if (i.failures.length) {
      out.push(
        "",
        "## Failed measurements",
        "",
        ...i.failures.map((f) => `- ${f.replaceAll("|", "\\|")}`),
      );
    }
    out.push("", "## Targets", "", ...this.#targets(), "", "## Reading", "", this.#reading(), "");
    return out.join("\n");
  }

  /**
   * The policy relay's rows: each runtime's no-escape gate, and its full role audited per
   * request, against its own raw relay.
   */
  #policyPairs(k: string): { raw: string; policy: string }[] {
    const have = new Set(this.#r.contenders("policy", k));
    return [
      ["dockgate-deno", "dockgate-deno-policy"],
      ["dockgate-node", "dockgate-node-policy"],
      ["dockgate-deno", "dockgate-deno-full-audit"],
      ["dockgate-node", "dockgate-node-full-audit"],
    ]
      .filter(([r, p]) => have.has(r) && have.has(p)).map(([raw, policy]) => ({ raw, policy }));
  }

  #policySection(k: string): string[] {
    const out = [
      "",
      `## 6. Policy relay: a no-escape identity against the raw relay (${k})`,
      "",
      "The same gate, the client's certificate mapped to a `no-escape` role by `--policy` (every request " +
      "head parsed, decided and forwarded by the HTTP-aware relay; audit log to a file) against a `full` " +
      "identity's raw byte relay. New connections: full mTLS handshake + `GET /v1.41/containers/json` + close; " +
      "latency: the same request on one keep-alive connection, added over the paired direct unix request; " +
      "upload: one `POST /v1.41/images/load` with a Content-Length body (`docker load`'s shape), streamed " +
      "through uninspected. Ratio = policy ÷ raw (for latency: added policy ÷ added raw, lower is better). " +
      'The `full, request audit` rows: a `full` role with `"audit": "requests"` (the same HTTP-aware relay, ' +
      "everything allowed, a record per request) against the raw relay a `full` role gets by default.",
      "",
    ];
    const conc = [
      ...new Set(this.#r.samples.filter((s) => s.workload === "policy").map((s) => s.metric)),
    ]
      .filter((m) => /^c\d+_per_s$/.test(m));
    const metrics = [
      ...conc.map((m) => ({ id: m, label: `conns/s c=${m.slice(1, -6)}`, digits: 0 })),
      ...this.#keepAlive().map((m) => ({ id: m, label: `req/s c=${m.slice(4, -10)}`, digits: 0 })),
      { id: "docker_ps_ms", label: "`docker ps` ms", digits: 1 },
      { id: "added_p50_us", label: "added p50 µs", digits: 0 },
      { id: "added_p99_us", label: "added p99 µs", digits: 0 },
      { id: "upload_MBps", label: "upload MB/s", digits: 0 },
      { id: "upload_gate_cpu_s_per_GB", label: "gate CPU s/GB upload", digits: 2 },
    ];
    out.push(
      `| relay | ${metrics.map((m) => m.label).join(" | ")} |`,
      `|---|${metrics.map(() => "---").join("|")}|`,
    );
    for (const { raw, policy } of this.#policyPairs(k)) {
      for (const c of [raw, policy]) {
        out.push(
          `| ${this.#label(c)} | ${
            metrics.map((m) => cell(this.#r.get("policy", k, c, m.id), m.digits)).join(" | ")
          } |`,
        );
      }
      out.push(
        `| ratio policy ÷ raw | ${
          metrics.map((m) =>
            rfmt(ratio(this.#med("policy", k, policy, m.id), this.#med("policy", k, raw, m.id)))
          )
            .join(" | ")
        } |`,
      );
    }
    return [...out, ...this.#socketProxyRows(k, metrics)];
  }

  /** Keep-alive request-rate metrics of workload 6 (`ka_c1_req_per_s`, …). */
  #keepAlive(): string[] {
    return [
      ...new Set(this.#r.samples.filter((s) => s.workload === "policy").map((s) => s.metric)),
    ].filter((m) => /^ka_c\d+_req_per_s$/.test(m));
  }

  /**
   * Workload 6's docker-socket-proxy part: its row in the same units, then every dockgate row
   * as a ratio to it (rates: dockgate ÷ proxy; `docker ps` and latency: proxy ÷ dockgate, so
   * above 1× is dockgate faster everywhere).
   */
  #socketProxyRows(k: string, metrics: { id: string; label: string; digits: number }[]) {
    const sp = "socket-proxy";
    if (!this.#r.contenders("policy", k).includes(sp)) return [];
    const slower = new Set(["docker_ps_ms", "added_p50_us", "added_p99_us"]);
    const shown = metrics.filter((m) => m.id !== "upload_gate_cpu_s_per_GB");
    const out = [
      "",
      "Against docker-socket-proxy's rules on HAProxy (`mode http`, its " +
      "ACLs with CONTAINERS, IMAGES, INFO, POST and its default switches on, `verify required` on " +
      "the bind; config in bench/lib/socket_proxy.ts), in the same run. Ratio = dockgate's rate ÷ " +
      "the proxy's (for `docker ps` and latency: the proxy's time ÷ dockgate's), so >1× is dockgate " +
      "faster.",
      "",
      `| relay | ${shown.map((m) => m.label).join(" | ")} |`,
      `|---|${shown.map(() => "---").join("|")}|`,
      `| ${this.#label(sp)} | ${
        shown.map((m) => cell(this.#r.get("policy", k, sp, m.id), m.digits)).join(" | ")
      } |`,
    ];
    for (const { raw, policy } of this.#policyPairs(k)) {
      if (!policy.endsWith("-policy")) continue; // the raw rows are in already
      for (const c of [raw, policy]) {
        out.push(
          `| ${this.#label(c)} ÷ proxy | ${
            shown.map((m) => {
              const a = this.#med("policy", k, c, m.id), b = this.#med("policy", k, sp, m.id);
              return rfmt(slower.has(m.id) ? ratio(b, a) : ratio(a, b));
            }).join(" | ")
          } |`,
        );
      }
    }
    const direct = this.#r.get("policy", k, "direct-unix", "docker_ps_ms");
    if (direct) {
      out.push("", `\`docker ps\` straight on dockerd's socket, no gate: ${cell(direct, 1)} ms.`);
    }
    return out;
  }

  #chainsSection(k: string): string[] {
    const out = [
      "",
      `## 8. Chains and a 100,000-serial CRL (${k})`,
      "",
      "The same gate on Deno and on Node. Handshakes: new connections/s (full mTLS handshake + " +
      "`GET /_ping` + close) with a leaf under an intermediate that the client sends (`cert.pem` = " +
      "leaf + intermediate; the server's `ca.pem` holds the root alone, so the gate reads the presented " +
      "chain and checks every link) against a leaf straight under the root. CRL: a CRL listing " +
      '100,000 serials (made by `openssl ca`, ~3 MB PEM): startup (spawn to "listening") against the ' +
      'same gate without it, reload of a new one (SIGHUP to "reloaded"), and new connections/s at ' +
      "c=16 with it against without it (the lookup is a set).",
      "",
    ];
    const metrics = [
      { id: "direct_c1_per_s", label: "direct c=1/s", digits: 0 },
      { id: "chain_c1_per_s", label: "chain c=1/s", digits: 0 },
      { id: "direct_c16_per_s", label: "direct c=16/s", digits: 0 },
      { id: "chain_c16_per_s", label: "chain c=16/s", digits: 0 },
      { id: "crl100k_c16_per_s", label: "100k CRL c=16/s", digits: 0 },
      { id: "startup_ms", label: "startup ms", digits: 0 },
      { id: "startup_ms_crl100k", label: "startup ms, 100k CRL", digits: 0 },
      { id: "reload_ms_crl100k", label: "reload ms, 100k CRL", digits: 0 },
    ];
    out.push(
      `| gate | ${
        metrics.map((m) => m.label).join(" | ")
      } | chain ÷ direct c=1, c=16 | 100k CRL ÷ none c=16 |`,
      `|---|${metrics.map(() => "---").join("|")}|---|---|`,
    );
    for (const c of this.#r.contenders("chains", k)) {
      const r = (a: string, b: string) =>
        rfmt(ratio(this.#med("chains", k, c, a), this.#med("chains", k, c, b)));
      out.push(
        `| ${this.#label(c)} | ${
          metrics.map((m) => cell(this.#r.get("chains", k, c, m.id), m.digits)).join(" | ")
        } | ${r("chain_c1_per_s", "direct_c1_per_s")}, ${
          r("chain_c16_per_s", "direct_c16_per_s")
        } | ${r("crl100k_c16_per_s", "direct_c16_per_s")} |`,
      );
    }
    return out;
  }

  #enrollSection(k: string): string[] {
    const out = [
      "",
      `## 9. Enrolment and renewal (${k})`,
      "",
      `\`serve --enroll\` on Deno and on Node, pinned to one core (\`taskset -c 0\`; the load ` +
      "generator on the other). Enrolment: a join token (made in the PKI beforehand) and a CSR " +
      "over TLS for a certificate signed by the gate's intermediate and recorded; renewal: each " +
      "enrolled certificate over mTLS for a new one. 8 at once, every request from an address of " +
      `its own (the per-address limit is not what is measured); ${this.#info.sizes.enrollCount} ` +
      "of each per run. Gate CPU ms per operation from `/proc` (contention on a shared machine " +
      "moves it less than the rates). Handshakes: new connections/s on the API port (full mTLS " +
      "handshake + `GET /_ping` + close, c=16) of the same gate with `--enroll` against without.",
      "",
    ];
    const metrics = [
      { id: "enroll_per_s", label: "enrolments/s", digits: 1 },
      { id: "enroll_gate_cpu_ms", label: "gate CPU ms/enrolment", digits: 1 },
      { id: "renew_per_s", label: "renewals/s", digits: 1 },
      { id: "renew_gate_cpu_ms", label: "gate CPU ms/renewal", digits: 1 },
      { id: "handshake_c16_per_s", label: "API c=16/s", digits: 0 },
      { id: "handshake_c16_per_s_enroll", label: "API c=16/s, --enroll", digits: 0 },
    ];
    out.push(
      `| gate | ${metrics.map((m) => m.label).join(" | ")} | with ÷ without --enroll |`,
      `|---|${metrics.map(() => "---").join("|")}|---|`,
    );
    for (const c of this.#r.contenders("enroll", k)) {
      const r = rfmt(
        ratio(
          this.#med("enroll", k, c, "handshake_c16_per_s_enroll"),
          this.#med("enroll", k, c, "handshake_c16_per_s"),
        ),
      );
      out.push(
        `| ${this.#label(c)} | ${
          metrics.map((m) => cell(this.#r.get("enroll", k, c, m.id), m.digits)).join(" | ")
        } | ${r} |`,
      );
    }
    return out;
  }

  /** The isolation rows: each runtime's isolated gate against its plain no-escape gate. */
  #isolationPairs(k: string): { plain: string; isolated: string }[] {
    const have = new Set(this.#r.contenders("isolation", k));
    return [
      ["dockgate-deno-policy", "dockgate-deno-isolated"],
      ["dockgate-node-policy", "dockgate-node-isolated"],
    ].filter(([p, i]) => have.has(p) && have.has(i)).map(([plain, isolated]) => ({
      plain,
      isolated,
    }));
  }

  #isolationSection(k: string): string[] {
    const out = [
      "",
      `## 7. Owner isolation: an isolated identity against a plain no-escape one (${k})`,
      "",
      "`docker inspect`'s request, `GET /v1.41/containers/bench/json` (a ~3 KiB answer), on keep-alive " +
      "connections, in requests per second. The isolated role's gate first inspects the container itself " +
      "over its own daemon connection (the owner check: a fresh lookup every request, nothing cached), then " +
      "forwards the request with the full ID; the plain no-escape role forwards it as it is. " +
      "Ratio = isolated ÷ no-escape.",
      "",
    ];
    const metrics = [1, 8].map((c) => ({
      id: `c${c}_req_per_s`,
      label: `req/s c=${c}`,
      digits: 0,
    }));
    out.push(
      `| relay | ${metrics.map((m) => m.label).join(" | ")} |`,
      `|---|${metrics.map(() => "---").join("|")}|`,
    );
    for (const { plain, isolated } of this.#isolationPairs(k)) {
      for (const c of [plain, isolated]) {
        out.push(
          `| ${this.#label(c)} | ${
            metrics.map((m) => cell(this.#r.get("isolation", k, c, m.id), m.digits)).join(" | ")
          } |`,
        );
      }
      out.push(
        `| ratio isolated ÷ no-escape | ${
          metrics.map((m) =>
            rfmt(
              ratio(
                this.#med("isolation", k, isolated, m.id),
                this.#med("isolation", k, plain, m.id),
              ),
            )
          ).join(" | ")
        } |`,
      );
    }
    return out;
  }

  #targets(): string[] {
    const lines: string[] = [
      "| target | contender | key | measured | verdict |",
      "|---|---|---|---|---|",
    ];
    const add = (target: string, c: string, k: string, measured: string, ok: boolean | undefined) =>
      lines.push(
        `| ${target} | ${this.#label(c)} | ${k} | ${measured} | ${
          ok === undefined ? "not measured" : ok ? "met" : "**not met**"
        } |`,
      );
    const gates = ["dockgate-deno", "dockgate-node"];
    for (const k of this.#r.keyTypes("bulk")) {
      for (const c of gates) {
        for (const d of ["up", "down"]) {
          const m = `${d}_MBps`;
          const rs = ratio(this.#med("bulk", k, c, m), this.#med("bulk", k, "socat", m));
          const rb = ratio(this.#med("bulk", k, c, m), this.#best("bulk", k, m, true)?.v);
          add(
            `bulk ${d}load ≥1.0× socat and ≥0.9× best peer`,
            c,
            k,
            `${rfmt(rs)} socat, ${rfmt(rb)} best peer`,
            rs === undefined || rb === undefined ? undefined : rs >= 1 && rb >= 0.9,
          );
        }
      }
    }
    for (const k of this.#r.keyTypes("connrate")) {
      const conc = [
        ...new Set(this.#r.samples.filter((s) => s.workload === "connrate").map((s) => s.metric)),
      ]
        .filter((m) => /^c\d+_per_s$/.test(m));
      for (const c of gates) {
        for (const m of conc) {
          const rs = ratio(this.#med("connrate", k, c, m), this.#med("connrate", k, "socat", m));
          const rt = ratio(this.#med("connrate", k, c, m), this.#med("connrate", k, "stunnel", m));
          add(
            `new conns/s c=${m.slice(1, -6)} ≥3× socat and ≥1.0× stunnel`,
            c,
            k,
            `${rfmt(rs)} socat, ${rfmt(rt)} stunnel`,
            rs === undefined || rt === undefined ? undefined : rs >= 3 && rt >= 1,
          );
        }
      }
    }
    for (const k of this.#r.keyTypes("policy")) {
      const conc = [
        ...new Set(this.#r.samples.filter((s) => s.workload === "policy").map((s) => s.metric)),
      ]
        .filter((m) => /^c\d+_per_s$/.test(m));
      for (const { raw, policy } of this.#policyPairs(k)) {
        const r = (m: string) =>
          ratio(this.#med("policy", k, policy, m), this.#med("policy", k, raw, m));
        for (const m of conc) {
          add(
            `policy relay conns/s c=${m.slice(1, -6)} ≥0.8× the raw relay's`,
            policy,
            k,
            rfmt(r(m)),
            r(m) === undefined ? undefined : r(m)! >= 0.8,
          );
        }
        add(
          "policy relay added p50 ≤1.5× the raw relay's",
          policy,
          k,
          rfmt(r("added_p50_us")),
          r("added_p50_us") === undefined ? undefined : r("added_p50_us")! <= 1.5,
        );
        add(
          "policy relay upload ≥0.9× the raw relay's",
          policy,
          k,
          rfmt(r("upload_MBps")),
          r("upload_MBps") === undefined ? undefined : r("upload_MBps")! >= 0.9,
        );
        if (!policy.endsWith("-policy")) continue; // the peer rows compare the no-escape role
        const sp = (m: string) =>
          ratio(this.#med("policy", k, policy, m), this.#med("policy", k, "socket-proxy", m));
        for (const m of this.#keepAlive()) {
          add(
            `no-escape keep-alive \`GET /containers/json\` req/s c=${
              m.slice(4, -10)
            } ≥1.0× docker-socket-proxy's`,
            policy,
            k,
            rfmt(sp(m)),
            sp(m) === undefined ? undefined : sp(m)! >= 1,
          );
        }
        // A time: the rate ratio is the proxy's time over dockgate's.
        const ps = ratio(
          this.#med("policy", k, "socket-proxy", "docker_ps_ms"),
          this.#med("policy", k, policy, "docker_ps_ms"),
        );
        add(
          "no-escape `docker ps` rate ≥1.0× docker-socket-proxy's",
          policy,
          k,
          rfmt(ps),
          ps === undefined ? undefined : ps >= 1,
        );
      }
    }
    for (const k of this.#r.keyTypes("isolation")) {
      for (const { plain, isolated } of this.#isolationPairs(k)) {
        for (const c of [1, 8]) {
          const m = `c${c}_req_per_s`;
          const r = ratio(
            this.#med("isolation", k, isolated, m),
            this.#med("isolation", k, plain, m),
          );
          // One extra inspect per request: half the rate is the floor of doing it at all.
          add(
            `isolated inspect req/s c=${c} ≥0.5× the no-escape role's`,
            isolated,
            k,
            rfmt(r),
            r === undefined ? undefined : r >= 0.5,
          );
        }
      }
    }
    for (const k of this.#r.keyTypes("chains")) {
      for (const c of this.#r.contenders("chains", k)) {
        for (const n of [1, 16]) {
          const r = ratio(
            this.#med("chains", k, c, `chain_c${n}_per_s`),
            this.#med("chains", k, c, `direct_c${n}_per_s`),
          );
          add(
            `handshakes/s c=${n} with a two-level chain ≥0.8× a direct leaf`,
            c,
            k,
            rfmt(r),
            r === undefined ? undefined : r >= 0.8,
          );
        }
        const reload = this.#med("chains", k, c, "reload_ms_crl100k");
        add(
          "reload of a 100,000-serial CRL <1 s",
          c,
          k,
          reload === undefined ? "–" : `${reload.toFixed(0)} ms`,
          reload === undefined ? undefined : reload < 1000,
        );
        const o1 = ratio(
          this.#med("chains", k, c, "crl100k_c16_per_s"),
          this.#med("chains", k, c, "direct_c16_per_s"),
        );
        add(
          "conns/s with a 100,000-serial CRL ≥0.9× without (O(1) lookup)",
          c,
          k,
          rfmt(o1),
          o1 === undefined ? undefined : o1 >= 0.9,
        );
      }
    }
    for (const k of this.#r.keyTypes("enroll")) {
      for (const c of this.#r.contenders("enroll", k)) {
        for (const [m, what] of [["enroll", "enrolments"], ["renew", "renewals"]]) {
          const rate = this.#med("enroll", k, c, `${m}_per_s`);
          const ms = this.#med("enroll", k, c, `${m}_gate_cpu_ms`);
          // 100/s on one core is 10 ms of gate CPU each: the rate the CPU alone allows.
          add(
            `${what} ≥100/s on one core (≤10 ms gate CPU each)`,
            c,
            k,
            rate === undefined || ms === undefined
              ? "–"
              : `${rate.toFixed(1)}/s, ${ms.toFixed(1)} ms CPU (${(1000 / ms).toFixed(0)}/s)`,
            rate === undefined || ms === undefined ? undefined : rate >= 100 && ms <= 10,
          );
        }
        const r = ratio(
          this.#med("enroll", k, c, "handshake_c16_per_s_enroll"),
          this.#med("enroll", k, c, "handshake_c16_per_s"),
        );
        add(
          "API handshakes/s c=16 with --enroll ≥0.95× without",
          c,
          k,
          rfmt(r),
          r === undefined ? undefined : r >= 0.95,
        );
      }
    }
    for (const k of this.#r.keyTypes("latency")) {
      for (const c of gates) {
        const r50 = ratio(this.#added(k, c, "p50_us"), this.#added(k, "stunnel", "p50_us"));
        const r99 = ratio(this.#added(k, c, "p99_us"), this.#added(k, "stunnel", "p99_us"));
        add(
          "added latency p50 ≤1.2× stunnel's, p99 ≤2×",
          c,
          k,
          `p50 ${rfmt(r50)}, p99 ${rfmt(r99)}`,
          r50 === undefined || r99 === undefined ? undefined : r50 <= 1.2 && r99 <= 2,
        );
      }
    }
    for (const k of this.#r.keyTypes("memory")) {
      const steps = [
        ...new Set(this.#r.samples.filter((s) => s.workload === "memory").map((s) => s.metric)),
      ]
        .filter((m) => m.startsWith("held_at_")).map((m) => Number(m.slice(8)));
      const n = Math.max(...steps);
      for (const c of gates) {
        const kib = this.#med("memory", k, c, `kib_per_conn_at_${n}`);
        const held = this.#r.get("memory", k, c, `held_at_${n}`);
        const errs = this.#r.get("memory", k, c, `errors_at_${n}`);
        add(
          `≤64 KiB per idle connection at ${n}, ${n} held without error`,
          c,
          k,
          kib === undefined
            ? "–"
            : `${kib.toFixed(1)} KiB/conn, held ${held?.min ?? "–"} (min), errors ${
              errs?.max ?? "–"
            }`,
          kib === undefined ? undefined : kib <= 64 && held?.min === n && errs?.max === 0,
        );
      }
    }
    for (const k of this.#r.keyTypes("docker")) {
      for (const [m, cmd] of [["version_ms", "docker version"], ["ps_ms", "docker ps -a"]]) {
        // The floor: the same command straight on the daemon's unix socket, no gate at all.
        const floor = ratio(
          this.#med("docker", k, "ssh", m),
          this.#med("docker", k, "direct-unix", m),
        );
        for (const c of [...gates, "tunnel-deno"]) {
          const r = ratio(this.#med("docker", k, "ssh", m), this.#med("docker", k, c, m));
          add(
            `\`${cmd}\` through dockgate ≥5× faster than over SSH`,
            c,
            k,
            `${rfmt(r)} (no gate at all: ${rfmt(floor)})`,
            r === undefined ? undefined : r >= 5,
          );
        }
      }
    }
    return lines;
  }

  #reading(): string {
    const k = "ecdsa-p256";
    const m = (w: string, c: string, metric: string) => this.#med(w, k, c, metric);
    /** Node's figure relative to Deno's, as "better" factor (>1: Node better). */
    const nodeVsDeno = (w: string, metric: string, higherBetter: boolean) => {
      const d = m(w, "dockgate-deno", metric);
      const n = m(w, "dockgate-node", metric);
      if (d === undefined || n === undefined || d <= 0 || n <= 0) return undefined;
      return higherBetter ? n / d : d / n;
    };
    const say = (r: number | undefined, what: string) => {
      if (r === undefined) return undefined;
      if (r >= 1.1) return `${what}: Node ${r.toFixed(2)}× better`;
      if (r <= 1 / 1.1) return `${what}: Deno ${(1 / r).toFixed(2)}× better`;
      return `${what}: within 10% (${r >= 1 ? "Node" : "Deno"} ${Math.max(r, 1 / r).toFixed(2)}×)`;
    };
    const memKey =
      [...new Set(this.#r.samples.filter((x) => x.workload === "memory").map((x) => x.metric))]
        .filter((x) => x.startsWith("kib_per_conn_at_")).sort((a, b) =>
          Number(b.slice(16)) - Number(a.slice(16))
        )[0];
    const concs = [
      ...new Set(this.#r.samples.filter((x) => x.workload === "connrate").map((x) => x.metric)),
    ]
      .filter((x) => /^c\d+_per_s$/.test(x));
    const parts = [
      say(nodeVsDeno("bulk", "up_MBps", true), "bulk upload"),
      say(nodeVsDeno("bulk", "down_MBps", true), "bulk download"),
      ...concs.map((c) =>
        say(nodeVsDeno("connrate", c, true), `new connections c=${c.slice(1, -6)}`)
      ),
      say(this.#ratioAdded("dockgate-node", "dockgate-deno"), "added keep-alive latency p50"),
      memKey
        ? say(
          nodeVsDeno("memory", memKey, false),
          `memory per idle connection at ${memKey.slice(16)}`,
        )
        : undefined,
      say(nodeVsDeno("docker", "version_ms", false), "`docker version`"),
      say(nodeVsDeno("docker", "saveload_s", false), "docker save→load"),
    ].filter(Boolean);
    const out = [`Node vs Deno in this run (${k}): ${parts.join("; ")}.`];
    // Which runtime for what, from the same numbers (10% either way counts as a tie).
    const pick = (
      r: number | undefined,
    ) => (r === undefined ? undefined : r >= 1.1 ? "Node" : r <= 1 / 1.1 ? "Deno" : "either");
    const bulk = [nodeVsDeno("bulk", "up_MBps", true), nodeVsDeno("bulk", "down_MBps", true)].map(
      pick,
    );
    const bulkPick = bulk.includes("Node") && !bulk.includes("Deno")
      ? "Node"
      : bulk.includes("Deno") && !bulk.includes("Node")
      ? "Deno"
      : "either";
    const connPick = pick(
      nodeVsDeno("connrate", "c16_per_s", true) ?? nodeVsDeno("connrate", "c1_per_s", true),
    );
    const memPick = memKey ? pick(nodeVsDeno("memory", memKey, false)) : undefined;
    const rec = [
      `large transfers (image save/load/push, build contexts, volume copies): ${bulkPick}`,
      connPick ? `many short connections (CI runners, monitoring polls): ${connPick}` : undefined,
      memPick
        ? `many idle long-lived connections (\`docker events\`, \`logs -f\`): ${memPick}`
        : undefined,
    ].filter(Boolean);
    out.push(`Which runtime for what, on these numbers — ${rec.join("; ")}.`);
    const peersBulk = this.#best("bulk", k, "up_MBps", true);
    const peersConn = this.#best("connrate", k, "c16_per_s", true);
    if (peersBulk && peersConn) {
      out.push(
        `Best peer: ${this.#label(peersBulk.id)} for bulk, ${
          this.#label(peersConn.id)
        } for new connections ` +
          "(HAProxy runs 2 threads here; dockgate and the Node/Deno runtimes use one core for JavaScript). " +
          "What was tuned on the way, and what still costs, is in bench/README.md.",
      );
    }
    return out.join(" ");
  }

  /** How much less latency `a` adds than `b` (>1: `a` adds less). */
  #ratioAdded(a: string, b: string): number | undefined {
    const x = this.#added("ecdsa-p256", a, "p50_us");
    const y = this.#added("ecdsa-p256", b, "p50_us");
    return x === undefined || y === undefined || x <= 0 || y <= 0 ? undefined : y / x;
  }
}
