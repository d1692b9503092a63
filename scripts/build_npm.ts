#!/usr/bin/env -S deno run -A
/**
 * Builds the npm package: `deno task build:npm [VERSION] [--out DIR] [--pack-dest DIR] [--no-pack]`.
 *
 * What dnt would do, with the TypeScript compiler from npm (JSR and dnt are not reachable):
 *
 * 1. Stage `mod.ts`, `cli.ts` and every local module they import into a temp dir, rewriting
 *    module specifiers: relative `.ts` imports become `.js`; bare import-map names and `npm:`
 *    specifiers become plain package names (`npm:@peculiar/x509@^2` → `@peculiar/x509`), and
 *    each package used becomes a dependency with the version range from `deno.json`.
 * 2. Type-check strictly and emit ES2022 ESM `.js` + `.d.ts` into `DIR/esm` (default `npm/`).
 *    `cli.js` gets a `#!/usr/bin/env node` shebang and is the `dockgate` bin.
 * 3. Write `DIR/package.json` (name `dockgate`, VERSION or deno.json's version, `engines.node
 *    >=20`, `exports`, `types`, `bin`, `dependencies`), copy README.md and LICENSE.
 * 4. `npm pack` into `--pack-dest` (default `dist/`), unless `--no-pack`.
 *
 * `src/version.ts` must agree with deno.json; a VERSION argument that differs is written into
 * the package's copy of it, so `dockgate version` reports the package version.
 *
 * @module
 */

import ts from "typescript";
import {
  chmod,
  copyFile,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import { isBuiltin } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { buildMain, run, stepTimer } from "./lib/build_common.ts";

/** Repository root. */
export const ROOT: string = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** The modules the package is built from: the library entry and the command line. */
export const ENTRIES = { library: "mod.ts", bin: "cli.ts" } as const;

/** The npm package name. */
export const PACKAGE_NAME = "dockgate";

/** The parts of `deno.json` and `package.json` that decide how specifiers map to npm. */
export interface ImportConfig {
  /** `deno.json` `imports` (the import map). */
  imports: Record<string, string>;
  /** `package.json` dependencies (Deno resolves bare names from it with nodeModulesDir). */
  packageJsonDeps: Record<string, string>;
}

/** A staged source tree. */
export interface StagedSources {
  /** The staging directory (a mirror of the repository's layout). */
  dir: string;
  /** Staged files, relative to `dir`. */
  files: string[];
  /** npm packages the code imports: name → version range. */
  dependencies: Record<string, string>;
}

/** Options for {@linkcode stageSources}. */
export interface StageOptions {
  /** Repository root holding the entries, deno.json and node_modules. */
  root: string;
  /** Entry modules, relative to `root`. */
  entries: string[];
  /** How bare and `npm:` specifiers map to packages. */
  config: ImportConfig;
  /** Rewrite a staged file's text (path relative to `root`). */
  transform?: (path: string, text: string) => string;
}

/** What {@linkcode buildNpm} produced. */
export interface NpmBuildResult {
  /** The package directory. */
  outDir: string;
  /** The package version. */
  version: string;
  /** `npm pack`'s tarball, unless packing was skipped. */
  tarball?: string;
  /** Dependencies written to package.json. */
  dependencies: Record<string, string>;
  /** Milliseconds per step. */
  timings: Record<string, number>;
}

/** Options for {@linkcode buildNpm}. */
export interface NpmBuildOptions {
  /** Package version. Default: deno.json's `version`. */
  version?: string;
  /** Package directory (emptied first). Default: `ROOT/npm`. */
  outDir?: string;
  /** Where `npm pack` writes the tarball; `null` skips packing. Default: `ROOT/dist`. */
  packDest?: string | null;
  /** Progress lines. Default: stderr. */
  log?: (line: string) => void;
}

const SEMVER = /^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/;
const NPM_SPECIFIER = /^npm:\/?((?:@[^/@]+\/)?[^/@]+)(?:@([^/]+))?(\/.*)?$/;
const VERSION_LINE = /^export const VERSION = "([^"]*)";$/m;

/** Read deno.json's and package.json's import settings from `root`. */
export async function readImportConfig(root: string): Promise<ImportConfig> {
  const deno = JSON.parse(await readFile(join(root, "deno.json"), "utf8"));
  let packageJsonDeps: Record<string, string> = {};
  try {
    packageJsonDeps = JSON.parse(await readFile(join(root, "package.json"), "utf8")).dependencies ??
      {};
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  return { imports: deno.imports ?? {}, packageJsonDeps };
}

/** Split `npm:name@range/sub` into its parts; undefined when `spec` is not an npm specifier. */
export function parseNpmSpecifier(
  spec: string,
): { name: string; version?: string; subpath: string } | undefined {
  const m = spec.match(NPM_SPECIFIER);
  if (!m) return undefined;
  return { name: m[1], version: m[2], subpath: m[3] ?? "" };
}

/** `name/sub/path` or `@scope/name/sub` → package name and `/sub...`. */
function splitPackage(spec: string): { name: string; subpath: string } {
  const parts = spec.split("/");
  const n = spec.startsWith("@") ? 2 : 1;
  return {
    name: parts.slice(0, n).join("/"),
    subpath: parts.length > n ? "/" + parts.slice(n).join("/") : "",
  };
}

/**
 * Map one non-relative specifier to what Node should import, recording npm dependencies.
 * Throws for specifiers with no npm equivalent (`jsr:`, URLs, unknown bare names).
 */
export function mapSpecifier(
  spec: string,
  config: ImportConfig,
  deps: Record<string, string>,
): string {
  if (spec.startsWith("node:") || isBuiltin(spec)) return spec;
  let target = spec;
  if (!spec.startsWith("npm:")) {
    target = importMapTarget(spec, config) ?? "";
    if (!target) {
      const { name, subpath } = splitPackage(spec);
      const version = config.packageJsonDeps[name];
      if (version === undefined) {
        throw new Error(
          `"${spec}" is neither in deno.json imports nor in package.json dependencies`,
        );
      }
      target = `npm:${name}@${version}${subpath}`;
    }
  }
  if (target.startsWith("node:")) return target;
  const npm = parseNpmSpecifier(target);
  if (!npm) throw new Error(`"${spec}" maps to "${target}", which has no npm equivalent`);
  const version = npm.version ?? versionFromConfig(npm.name, config);
  if (version === undefined) {
    throw new Error(`No version range for npm package "${npm.name}" (${spec})`);
  }
  const known = deps[npm.name];
  if (known !== undefined && known !== version) {
    throw new Error(
      `npm package "${npm.name}" is imported with two ranges: ${known} and ${version}`,
    );
  }
  deps[npm.name] = version;
  return npm.name + npm.subpath;
}

function importMapTarget(spec: string, config: ImportConfig): string | undefined {
  if (config.imports[spec] !== undefined) return config.imports[spec];
  // Longest "prefix/" entry first, as import maps do.
  const prefixes = Object.keys(config.imports).filter((k) => k.endsWith("/") && spec.startsWith(k))
    .sort((a, b) => b.length - a.length);
  if (prefixes.length) return config.imports[prefixes[0]] + spec.slice(prefixes[0].length);
  // Deno lets "pkg/sub" follow an entry "pkg" → "npm:pkg@range".
  const { name, subpath } = splitPackage(spec);
  const base = config.imports[name];
  if (subpath && base?.startsWith("npm:")) {
    const npm = parseNpmSpecifier(base);
    if (npm && npm.subpath === "") return base + subpath;
  }
  return undefined;
}

function versionFromConfig(name: string, config: ImportConfig): string | undefined {
  for (const target of Object.values(config.imports)) {
    const npm = parseNpmSpecifier(target);
    if (npm?.name === name && npm.version) return npm.version;
  }
  return config.packageJsonDeps[name];
}

/** `./x.ts` → `./x.js` (and `.mts` → `.mjs`); other relative specifiers stay. */
function jsExtension(spec: string): string {
  if (spec.endsWith(".d.ts")) return spec;
  if (spec.endsWith(".mts")) return spec.slice(0, -4) + ".mjs";
  if (spec.endsWith(".cts")) return spec.slice(0, -4) + ".cjs";
  return spec.replace(/\.tsx?$/, ".js");
}

/**
 * Copy `entries` and every local module they import into a fresh temp dir (same layout),
 * rewriting specifiers for Node (see the module doc). The dir gets a `package.json` with
 * `"type": "module"` and a `node_modules` link to `root`'s, so TypeScript and bundlers resolve
 * packages as Node will. Remove `dir` when done.
 */
export async function stageSources(options: StageOptions): Promise<StagedSources> {
  const root = resolve(options.root);
  const dir = await mkdtemp(join(tmpdir(), "dockgate-stage-"));
  const deps: Record<string, string> = {};
  const files: string[] = [];
  const seen = new Set<string>();
  const queue = options.entries.map((e) => resolve(root, e));
  try {
    while (queue.length) {
      const file = queue.shift()!;
      if (seen.has(file)) continue;
      seen.add(file);
      const rel = relative(root, file);
      if (rel.startsWith("..")) throw new Error(`${file} is outside ${root}`);
      if (!/\.m?ts$/.test(file)) throw new Error(`${rel}: only TypeScript modules can be staged`);
      let text = await readFile(file, "utf8");
      const info = ts.preProcessFile(text, true, true);
      // Rewrite from the end so earlier positions stay valid.
      const refs = [...info.importedFiles].sort((a, b) => b.pos - a.pos);
      for (const ref of refs) {
        const spec = ref.fileName;
        let mapped: string;
        if (spec.startsWith("./") || spec.startsWith("../")) {
          queue.push(resolve(dirname(file), spec));
          mapped = jsExtension(spec);
        } else if (
          spec.startsWith("/") || /^[a-z][a-z0-9+.-]*:\/\//i.test(spec) || spec.startsWith("jsr:")
        ) {
          throw new Error(`${rel}: cannot publish an import of "${spec}" to npm`);
        } else {
          try {
            mapped = mapSpecifier(spec, options.config, deps);
          } catch (err) {
            throw new Error(`${rel}: ${(err as Error).message}`);
          }
        }
        // `pos` is at or just before the string's opening quote, depending on the TS version.
        const start = text.indexOf(spec, ref.pos);
        if (
          start < 0 || start - ref.pos > 1 || !/["'`]/.test(text[start - 1]) ||
          text[start + spec.length] !== text[start - 1]
        ) {
          throw new Error(`${rel}: cannot locate the specifier "${spec}" at offset ${ref.pos}`);
        }
        if (mapped !== spec) text = text.slice(0, start) + mapped + text.slice(start + spec.length);
      }
      if (options.transform) text = options.transform(rel, text);
      await mkdir(dirname(join(dir, rel)), { recursive: true });
      await writeFile(join(dir, rel), text);
      files.push(rel);
    }
    await writeFile(join(dir, "package.json"), '{ "type": "module", "private": true }\n');
    await symlink(join(root, "node_modules"), join(dir, "node_modules"), "dir");
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return { dir, files: files.sort(), dependencies: sortKeys(deps) };
}

function sortKeys(o: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)));
}

/**
 * Type-check `staged` strictly against Node's types and emit ESM `.js` + `.d.ts` into
 * `outDir`. Throws with the formatted diagnostics (paths relative to the repository layout).
 */
export function compile(
  staged: StagedSources,
  entries: string[],
  outDir: string,
  root: string,
): void {
  const parsed = ts.parseJsonConfigFileContent(
    {
      compilerOptions: {
        target: "ES2022",
        module: "NodeNext",
        moduleResolution: "NodeNext",
        lib: ["ES2022", "DOM"], // DOM: the WebCrypto types (CryptoKey …) of the global `crypto`
        types: ["node"],
        typeRoots: [join(root, "node_modules", "@types")],
        strict: true,
        noImplicitOverride: true,
        noFallthroughCasesInSwitch: true,
        forceConsistentCasingInFileNames: true,
        skipLibCheck: false,
        declaration: true,
        noEmitOnError: true,
        newLine: "lf",
        rootDir: staged.dir,
        outDir,
      },
      files: entries,
    },
    ts.sys,
    staged.dir,
  );
  const host: ts.FormatDiagnosticsHost = {
    getCanonicalFileName: (f) => f,
    getCurrentDirectory: () => staged.dir,
    getNewLine: () => "\n",
  };
  if (parsed.errors.length) throw new Error(ts.formatDiagnostics(parsed.errors, host));
  const program = ts.createProgram({ rootNames: parsed.fileNames, options: parsed.options });
  const diagnostics = [...ts.getPreEmitDiagnostics(program)];
  if (diagnostics.length === 0) diagnostics.push(...program.emit().diagnostics);
  if (diagnostics.length) {
    const shown = ts.formatDiagnosticsWithColorAndContext(diagnostics.slice(0, 20), host);
    const more = diagnostics.length > 20 ? `\n… and ${diagnostics.length - 20} more` : "";
    throw new Error(`TypeScript ${ts.version}: ${diagnostics.length} error(s)\n${shown}${more}`);
  }
}

/** The dockgate version declared in deno.json, checked against src/version.ts. */
export async function declaredVersion(root: string): Promise<string> {
  const deno = JSON.parse(await readFile(join(root, "deno.json"), "utf8"));
  const version = deno.version;
  if (typeof version !== "string" || !SEMVER.test(version)) {
    throw new Error(`deno.json has no valid "version" (${version})`);
  }
  const source = await readFile(join(root, "src", "version.ts"), "utf8");
  const m = source.match(VERSION_LINE);
  if (!m) throw new Error(`src/version.ts has no line export const VERSION = "…";`);
  if (m[1] !== version) {
    throw new Error(`src/version.ts says ${m[1]} but deno.json says ${version}: keep them in step`);
  }
  return version;
}

/** Stage the sources with `cli.ts`'s shebang for Node and `src/version.ts` set to `version`. */
export async function stageForNode(root: string, version: string): Promise<StagedSources> {
  return await stageSources({
    root,
    entries: [ENTRIES.library, ENTRIES.bin],
    config: await readImportConfig(root),
    transform(path, text) {
      if (path === ENTRIES.bin) return "#!/usr/bin/env node\n" + text.replace(/^#!.*\n/, "");
      if (path === join("src", "version.ts")) {
        return text.replace(VERSION_LINE, `export const VERSION = ${JSON.stringify(version)};`);
      }
      return text;
    },
  });
}

async function exists(path: string): Promise<boolean> {
  return await stat(path).then(() => true, () => false);
}

/** Build (and by default pack) the npm package; see the module doc. */
export async function buildNpm(options: NpmBuildOptions = {}): Promise<NpmBuildResult> {
  const log = options.log ?? ((line: string) => console.error(line));
  const { timings, step } = stepTimer("build:npm", log);
  const declared = await declaredVersion(ROOT); // also checks src/version.ts against deno.json
  const version = options.version ?? declared;
  if (!SEMVER.test(version)) {
    throw new Error(`Invalid version "${version}": expected semver, e.g. 1.2.3`);
  }
  const outDir = resolve(options.outDir ?? join(ROOT, "npm"));
  const packDest = options.packDest === null
    ? null
    : resolve(options.packDest ?? join(ROOT, "dist"));
  if (outDir === ROOT || ROOT.startsWith(outDir + "/")) {
    throw new Error(`Refusing to empty ${outDir}`);
  }

  const staged = await step("stage sources", () => stageForNode(ROOT, version));
  try {
    await rm(outDir, { recursive: true, force: true });
    await step(
      `type-check and emit (TypeScript ${ts.version})`,
      () => compile(staged, [ENTRIES.library, ENTRIES.bin], join(outDir, "esm"), ROOT),
    );
  } finally {
    await rm(staged.dir, { recursive: true, force: true });
  }

  const bin = join("esm", ENTRIES.bin.replace(/\.ts$/, ".js"));
  await chmod(join(outDir, bin), 0o755);
  await rm(join(outDir, "esm", ENTRIES.bin.replace(/\.ts$/, ".d.ts")), { force: true });
  const types = "./" + join("esm", ENTRIES.library.replace(/\.ts$/, ".d.ts"));
  const main = "./" + join("esm", ENTRIES.library.replace(/\.ts$/, ".js"));
  // The README links into docs/ and CHANGELOG.md: they go with it, so no link is dead on npm.
  const docFiles = await packagedDocs();
  const pkg = {
    name: PACKAGE_NAME,
    version,
    description:
      "Mutual TLS in front of the Docker API: a gate for the Docker socket, a client tunnel and a small PKI",
    license: "MIT",
    keywords: ["docker", "tls", "mtls", "mutual-tls", "proxy", "security"],
    type: "module",
    main,
    types,
    exports: { ".": { types, default: main }, "./package.json": "./package.json" },
    bin: { dockgate: bin },
    files: ["esm/", ...docFiles],
    engines: { node: ">=20" },
    dependencies: staged.dependencies,
  };
  await writeFile(join(outDir, "package.json"), JSON.stringify(pkg, null, 2) + "\n");
  for (const file of docFiles) {
    if (!(await exists(join(ROOT, file)))) {
      log(`build:npm: WARNING: no ${file} to copy`);
      continue;
    }
    await mkdir(dirname(join(outDir, file)), { recursive: true });
    await copyFile(join(ROOT, file), join(outDir, file));
  }
  log(
    `build:npm: ${outDir} (${PACKAGE_NAME}@${version}, dependencies ${
      JSON.stringify(staged.dependencies)
    })`,
  );

  let tarball: string | undefined;
  if (packDest !== null) {
    await mkdir(packDest, { recursive: true });
    const out = await step(
      "npm pack",
      () => run("npm", ["pack", "--json", "--pack-destination", packDest], { cwd: outDir }).stdout,
    );
    const [info] = JSON.parse(out.slice(out.indexOf("[")));
    tarball = join(packDest, info.filename);
    log(`build:npm: ${tarball} (${info.size} bytes, ${info.entryCount} files)`);
  }
  return { outDir, version, tarball, dependencies: staged.dependencies, timings };
}

if (import.meta.main) {
  const options: NpmBuildOptions = {};
  await buildMain({
    task: "build:npm",
    usage: "[VERSION] [--out DIR] [--pack-dest DIR] [--no-pack]",
    valued: {
      "--out": (v) => (options.outDir = v),
      "--pack-dest": (v) => (options.packDest = v),
    },
    switches: { "--no-pack": () => (options.packDest = null) },
    build: (version) => buildNpm({ ...options, version }),
  });
}

/** The documentation files the package carries: README, LICENSE, CHANGELOG and docs/*.md. */
export async function packagedDocs(): Promise<string[]> {
  const docs = (await readdir(join(ROOT, "docs")).catch(() => [] as string[]))
    .filter((f) => f.endsWith(".md")).sort().map((f) => `docs/${f}`);
  return ["README.md", "LICENSE", "CHANGELOG.md", ...docs];
}
