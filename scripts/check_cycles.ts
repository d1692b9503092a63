/**
 * Fails when the project's own modules import each other in a cycle, and prints each cycle as a
 * chain of files (`src/a.ts -> src/b.ts -> src/a.ts`).
 *
 * Usage: `deno run -A scripts/check_cycles.ts [--dir DIR] [ROOT ...]`: the modules under DIR
 * (default: this repository) reached from each ROOT (default: `cli.ts`, `mod.ts` and every
 * `.ts` file under `src/`, so a module no entry point reaches yet is checked too). The
 * graph is `deno info --json` of each root; type-only imports count as well (a cycle of types
 * today is a cycle of values after the next edit, and it still ties the files together). Only
 * files inside the repository are nodes: `npm:` and `node:` specifiers are leaves.
 *
 * Exit status: 0 without a cycle, 1 with one, 2 when `deno info` fails.
 *
 * @example The library half: find cycles in a graph
 * ```ts
 * import { findCycles } from "./check_cycles.ts";
 * const graph = new Map([["a", ["b"]], ["b", ["a"]], ["c", ["a"]]]);
 * const cycles = findCycles(graph);
 * if (cycles.length !== 1 || cycles[0].join(" ") !== "a b a") throw new Error("one cycle a-b");
 * ```
 *
 * @module
 */

/** Module -> the modules it imports (code or type), both as file paths or URLs. */
export type ImportGraph = Map<string, readonly string[]>;

interface InfoDependency {
  code?: { specifier?: string };
  type?: { specifier?: string };
}
interface InfoModule {
  specifier: string;
  dependencies?: InfoDependency[];
}

/**
 * The strongly connected components of the graph with more than one member (or a self-import),
 * each as one chain of imports: it starts and ends at the component's first member in sorted
 * order and is a shortest way back to it (the component may hold more files than the chain).
 *
 * @example
 * ```ts
 * import { findCycles } from "./check_cycles.ts";
 * if (findCycles(new Map([["a", ["b"]], ["b", []]])).length !== 0) throw new Error("no cycle");
 * ```
 */
export function findCycles(graph: ImportGraph): string[][] {
  return tangles(graph).map((component) => shortestCycle(graph, component));
}

/** The components that hold a cycle (more than one member, or a self-import), sorted. */
function tangles(graph: ImportGraph): string[][] {
  return stronglyConnected(graph)
    .filter((c) => c.length > 1 || (graph.get(c[0]) ?? []).includes(c[0]))
    .sort((a, b) => a[0].localeCompare(b[0]));
}

/** Tarjan's algorithm, iterative (a deep import chain must not overflow the stack). */
function stronglyConnected(graph: ImportGraph): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const out: string[][] = [];
  let next = 0;
  for (const start of [...graph.keys()].sort()) {
    if (index.has(start)) continue;
    const work: { node: string; edge: number }[] = [{ node: start, edge: 0 }];
    index.set(start, next);
    low.set(start, next++);
    stack.push(start);
    onStack.add(start);
    while (work.length > 0) {
      const frame = work[work.length - 1];
      const edges = graph.get(frame.node) ?? [];
      if (frame.edge < edges.length) {
        const to = edges[frame.edge++];
        if (!graph.has(to)) continue;
        if (!index.has(to)) {
          index.set(to, next);
          low.set(to, next++);
          stack.push(to);
          onStack.add(to);
          work.push({ node: to, edge: 0 });
        } else if (onStack.has(to)) {
          low.set(frame.node, Math.min(low.get(frame.node)!, index.get(to)!));
        }
        continue;
      }
      work.pop();
      if (work.length > 0) {
        const parent = work[work.length - 1].node;
        low.set(parent, Math.min(low.get(parent)!, low.get(frame.node)!));
      }
      if (low.get(frame.node) === index.get(frame.node)) {
        const component: string[] = [];
        let member: string;
        do {
          member = stack.pop()!;
          onStack.delete(member);
          component.push(member);
        } while (member !== frame.node);
        out.push(component.sort());
      }
    }
  }
  return out;
}

/** A shortest path from the component's first member back to it, inside the component. */
function shortestCycle(graph: ImportGraph, component: string[]): string[] {
  const members = new Set(component);
  const start = component[0];
  const cameFrom = new Map<string, string>();
  const queue = [start];
  for (let i = 0; i < queue.length; i++) {
    const node = queue[i];
    for (const to of [...(graph.get(node) ?? [])].sort()) {
      if (!members.has(to)) continue;
      if (to === start) {
        // Walk back from the last node to the start, then close the loop.
        const back: string[] = [];
        for (let at = node; at !== start; at = cameFrom.get(at)!) back.push(at);
        return [start, ...back.reverse(), start];
      }
      if (!cameFrom.has(to)) {
        cameFrom.set(to, node);
        queue.push(to);
      }
    }
  }
  throw new RangeError(`no cycle through ${start} in its component`);
}

/** The repository-local import graph of `deno info --json` output, keyed by path from `base`. */
export function graphFromInfo(info: { modules: InfoModule[] }, base: string): ImportGraph {
  const local = (specifier: string): string | undefined => {
    if (!specifier.startsWith("file://")) return undefined;
    const path = decodeURIComponent(new URL(specifier).pathname);
    return path.startsWith(base) ? path.slice(base.length) : undefined;
  };
  const graph: ImportGraph = new Map();
  for (const module of info.modules) {
    const from = local(module.specifier);
    if (from === undefined) continue;
    const to = new Set<string>();
    for (const dep of module.dependencies ?? []) {
      for (const target of [dep.code?.specifier, dep.type?.specifier]) {
        const path = target === undefined ? undefined : local(target);
        if (path !== undefined) to.add(path);
      }
    }
    graph.set(from, [...to].sort());
  }
  return graph;
}

async function denoInfo(root: string): Promise<{ modules: InfoModule[] }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", root],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`deno info --json ${root} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

async function sourceFiles(dir: string): Promise<string[]> {
  const files: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) files.push(...await sourceFiles(path));
    else if (entry.isFile && path.endsWith(".ts")) files.push(path);
  }
  return files.sort();
}

async function main(args: string[]): Promise<number> {
  let repo = new URL("..", import.meta.url).pathname;
  if (args[0] === "--dir") {
    if (args[1] === undefined) throw new TypeError("--dir needs a directory");
    repo = (await Deno.realPath(args[1])).replace(/\/?$/, "/");
    args = args.slice(2);
  }
  Deno.chdir(repo);
  const roots = args.length > 0 ? args : ["cli.ts", "mod.ts", ...await sourceFiles("src")];
  const graph: ImportGraph = new Map();
  // One `deno info` over an entry point covers most files; the rest are asked for on their own.
  for (const root of roots) {
    if (graph.has(root)) continue;
    try {
      for (const [from, to] of graphFromInfo(await denoInfo(root), repo)) graph.set(from, to);
    } catch (e) {
      console.error(`check_cycles: ${(e as Error).message}`);
      return 2;
    }
  }
  const cycles = tangles(graph);
  for (const component of cycles) {
    // One chain per tangle; when more files are caught in it, name them all (each needs a cut).
    const chain = shortestCycle(graph, component);
    const more = component.length > chain.length - 1 ? ` (tangled: ${component.join(", ")})` : "";
    console.log(`import cycle: ${chain.join(" -> ")}${more}`);
  }
  console.log(
    cycles.length === 0
      ? `check_cycles: no import cycle in ${graph.size} modules`
      : `check_cycles: ${cycles.length} import cycle(s) in ${graph.size} modules`,
  );
  return cycles.length === 0 ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
