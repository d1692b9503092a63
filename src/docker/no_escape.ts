/**
 * The no-escape rules: what in a request body or query could reach the host, read field by
 * field as dockerd would read it.
 *
 * Every object below is checked against the full list of its Go struct's fields (moby
 * `api/types/container`, `mount`, `network`). Go's decoder matches keys case-insensitively
 * with Unicode simple folding (`privileged`, `PRIVILEGED` and `Privileſed` all set
 * `Privileged`): a folded key is checked as its field where the field is marked foldable (a
 * leaf no other module reads by name), and refused as a disguise elsewhere; two keys for one
 * field are refused. A key that folds to no field is one nobody has decided about yet and is
 * refused, unless its value is `null` (a no-op for Go). Values of the wrong type are refused
 * too (fail closed; the daemon would refuse them as well).
 *
 * @module
 */

import { lstatSync, realpathSync } from "node:fs";
import { isJsonObject, type JsonValue } from "./strict_json.ts";
import { nonRootUserProblem } from "./non_root_user.ts";
import { logOptionsProblem } from "./log_options.ts";
import { tmpfsProblem } from "./tmpfs_options.ts";
import { type NetworkAllowances, networkOptionsProblem } from "./network_options.ts";

/** What a role allows beyond the preset (see the policy file's role options). */
export interface EscapeAllowances extends NetworkAllowances {
  /** Host directories that bind mounts may come from (whole path components). */
  allowBindMounts?: readonly string[];
  /** Capabilities `CapAdd` may name beyond Docker's default set (upper case, no `CAP_`). */
  allowCapabilities?: readonly string[];
  /** Sysctl names `Sysctls` may set. */
  allowSysctls?: readonly string[];
  /** Runtimes besides the default (`runc`). */
  allowRuntimes?: readonly string[];
  /** Containers `VolumesFrom` may name. */
  allowVolumesFrom?: readonly string[];
  /** Log drivers besides `json-file`, `local`, `journald` and `none`. */
  allowLogDrivers?: readonly string[];
  /**
   * Volume drivers besides `local`, whose options are then the driver's own; `local` here
   * lifts the local driver's tmpfs-only option list.
   */
  allowVolumeDrivers?: readonly string[];
  /** Refuse containers and execs that would run as root (`User` empty, `0`, `root`, …). */
  nonRootUser?: boolean;
}

/** How the rules look at the host. */
export interface EscapeContext {
  /** The role's allowances. */
  allow: EscapeAllowances;
  /**
   * Resolve symbolic links in bind sources before comparing them with `allowBindMounts` (the
   * gate runs on the daemon's host, i.e. the target is a unix socket). Default: false.
   */
  resolveSymlinks?: boolean;
  /**
   * The role is isolated per owner: `VolumesFrom` and `NetworkMode: container:…` may name the
   * caller's own containers, which the owner check (`isolation.ts`) then confirms. Default: false.
   */
  isolated?: boolean;
}

/** A refusal: which field, and why. */
export type Violation = string;

type Check = (value: JsonValue, ctx: EscapeContext, at: string) => Violation | undefined;

/** Go's `encoding/json` key folding, as a superset: ASCII case, `ſ` (U+017F) and the Kelvin sign. */
export function foldKey(key: string): string {
  return key.replaceAll("\u017f", "s").toLowerCase();
}

const any: Check = () => undefined;

/**
 * Fields whose key may come in another spelling that Go folds onto them (`detachKeys`,
 * `CPURealtimePeriod`): leaves checked by value alone that no other module reads by name
 * (the owner check in isolation.ts reads HostConfig's Binds, Mounts, Links, … spelled
 * exactly, so those stay exact-only). See {@linkcode foldable}.
 */
const FOLDABLE = new WeakSet<Check>();

/** `check`, also for a key that Go's decoder folds onto the field. */
function foldable(check: Check): Check {
  const each: Check = (value, ctx, at) => check(value, ctx, at);
  FOLDABLE.add(each);
  return each;
}

/**
 * A struct, read as Go's decoder reads it: each key is the field spelled exactly or, for a
 * {@linkcode foldable} field, a key folding onto it; a second key for one field is refused (Go
 * keeps the last, the gate would have to guess which). A key that is no field is refused
 * unless its value is `null`, which Go's decoder never acts on (docker-py's
 * `NetworkingConfig: {"n": null}`).
 */
function struct(fields: Record<string, Check>): Check {
  const read = goStructReader(Object.keys(fields));
  return (value, ctx, at) => {
    if (value === null) return undefined;
    if (!isJsonObject(value)) return `${at || "body"} is not an object`;
    const members = read(value, at);
    if (typeof members === "string") return members;
    for (const { field, exact, value: v, where } of members) {
      if (!exact && !FOLDABLE.has(fields[field])) {
        return `${where}: key is not spelled as the field "${field}" (Go would read it as that)`;
      }
      const bad = fields[field](v, ctx, where);
      if (bad) return bad;
    }
    return undefined;
  };
}

/** One member of a JSON object as Go's decoder assigns it to a struct's field. */
export interface GoMember {
  /** The field's name as the struct spells it. */
  field: string;
  /** Whether the key is spelled exactly as the field (else it folds onto it). */
  exact: boolean;
  /** The member's value. */
  value: JsonValue;
  /** Where it is, for a message (`HostConfig.Binds`). */
  where: string;
}

/**
 * Go's rule for the keys of a struct, the one reader of it: each key is a field spelled
 * exactly or folding onto one ({@linkcode foldKey}); a second key for one field is refused
 * (Go keeps the last, the gate would have to guess which); a key that is no field is refused
 * unless its value is `null` (which Go's decoder never acts on), and left out. The reader
 * gives the members to check, or the problem.
 *
 * @example
 * ```ts
 * import { goStructReader } from "./no_escape.ts";
 * const read = goStructReader(["username", "serveraddress"]);
 * const m = read({ UserName: "u", x: null }, "");
 * if (typeof m === "string" || m[0].field !== "username" || m[0].exact || m.length !== 1) {
 *   throw new Error(String(m));
 * }
 * if (typeof read({ username: "a", USERNAME: "b" }, "") !== "string") throw new Error();
 * if (typeof read({ pass: "a" }, "") !== "string") throw new Error();
 * ```
 */
export function goStructReader(
  fields: readonly string[],
): (object: { [key: string]: JsonValue }, at: string) => GoMember[] | string {
  const names = new Set(fields);
  const folded = new Map(fields.map((f) => [foldKey(f), f]));
  return (object, at) => {
    const seen = new Map<string, string>();
    const members: GoMember[] = [];
    for (const [key, value] of Object.entries(object)) {
      const where = at ? `${at}.${key}` : key;
      const exact = names.has(key);
      const field = exact ? key : folded.get(foldKey(key));
      if (field === undefined) {
        if (value === null) continue;
        return `${where}: unknown field (denied until the policy knows it)`;
      }
      const first = seen.get(field);
      if (first !== undefined) {
        return `${where}: a second spelling of the field "${field}" (after "${first}")`;
      }
      seen.set(field, key);
      members.push({ field, exact, value, where });
    }
    return members;
  };
}

function list(item: Check): Check {
  return (value, ctx, at) => {
    if (value === null) return undefined;
    if (!Array.isArray(value)) return `${at} is not a list`;
    for (let i = 0; i < value.length; i++) {
      const bad = item(value[i], ctx, `${at}[${i}]`);
      if (bad) return bad;
    }
    return undefined;
  };
}

function stringValue(value: JsonValue, at: string): string | Violation {
  return typeof value === "string" ? value : `${at} is not a string`;
}

const mustBeEmpty = (why: string): Check => (value, _ctx, at) => {
  if (value === null || value === "" || value === false || value === 0) return undefined;
  if (Array.isArray(value) && value.length === 0) return undefined;
  if (isJsonObject(value) && Object.keys(value).length === 0) return undefined;
  return `${at}: ${why}`;
};

/**
 * Whether a namespace mode (`NetworkMode`, `PidMode`, …, a build's `networkmode`) joins a
 * namespace outside the container: `host`, `container:…` or `ns:…`, in any case.
 *
 * @example
 * ```ts
 * import { sharesNamespace } from "./no_escape.ts";
 * if (!sharesNamespace("Container:web") || sharesNamespace("ci-net")) throw new Error();
 * ```
 */
export function sharesNamespace(mode: string): boolean {
  const v = mode.toLowerCase();
  return v === "host" || v.startsWith("container:") || v.startsWith("ns:");
}

/** Namespace modes: `host`, `container:…` and `ns:…` join namespaces outside the container. */
const namespaceMode: Check = (value, _ctx, at) => {
  if (value === null) return undefined;
  if (typeof value !== "string") return `${at} is not a string`;
  return sharesNamespace(value)
    ? `${at}=${value} shares a namespace outside the container`
    : undefined;
};

/** Capabilities Docker grants by default: adding them again changes nothing. */
const DEFAULT_CAPS = new Set([
  "CHOWN",
  "DAC_OVERRIDE",
  "FSETID",
  "FOWNER",
  "MKNOD",
  "NET_RAW",
  "SETGID",
  "SETUID",
  "SETFCAP",
  "SETPCAP",
  "NET_BIND_SERVICE",
  "SYS_CHROOT",
  "KILL",
  "AUDIT_WRITE",
]);

/**
 * A capability name as the daemon reads it: case-insensitive, `CAP_` optional.
 *
 * @example
 * ```ts
 * import { normalizeCapability } from "./no_escape.ts";
 * if (normalizeCapability("cap_sys_admin") !== "SYS_ADMIN") throw new Error();
 * ```
 */
export function normalizeCapability(name: string): string {
  const upper = name.toUpperCase();
  return upper.startsWith("CAP_") ? upper.slice(4) : upper;
}

const capAdd: Check = list((value, ctx, at) => {
  const s = stringValue(value, at);
  if (s !== value) return s;
  const cap = normalizeCapability(s);
  if (
    DEFAULT_CAPS.has(cap) || ctx.allow.allowCapabilities?.map(normalizeCapability).includes(cap)
  ) {
    return undefined;
  }
  return `${at}=${s}: capability not allowed`;
});

/** `--security-opt` values that only restrict; everything else loosens or relabels. */
const SAFE_SECURITY_OPT = /^no-new-privileges([=:](true|false))?$/;

const securityOpt: Check = list((value, _ctx, at) => {
  const s = stringValue(value, at);
  if (s !== value) return s;
  return SAFE_SECURITY_OPT.test(s)
    ? undefined
    : `${at}=${s}: only no-new-privileges is allowed (seccomp, apparmor, label and systempaths options can lift confinement)`;
});

const onList = (option: keyof EscapeAllowances, what: string): Check => (value, ctx, at) => {
  if (value === null || value === "") return undefined;
  if (typeof value !== "string") return `${at} is not a string`;
  const allowed = ctx.allow[option] as readonly string[] | undefined;
  return allowed?.includes(value)
    ? undefined
    : `${at}=${value}: ${what} not on the role's ${option}`;
};

const sysctls: Check = (value, ctx, at) => {
  if (value === null) return undefined;
  if (!isJsonObject(value)) return `${at} is not an object`;
  for (const key of Object.keys(value)) {
    if (!ctx.allow.allowSysctls?.includes(key)) {
      return `${at}.${key}: sysctl not on the role's allowSysctls`;
    }
  }
  return undefined;
};

const volumesFrom: Check = (value, ctx, at) =>
  // Isolated: the caller's own containers (checked by owner), or those on the list.
  ctx.isolated
    ? list(stringItem)(value, ctx, at)
    : list(onList("allowVolumesFrom", "container"))(value, ctx, at);

const stringItem: Check = (value, _ctx, at) =>
  typeof value === "string" ? undefined : `${at} is not a string`;

/** The network mode: the namespace rule, except an isolated role's own containers. */
const networkMode: Check = (value, ctx, at) =>
  ctx.isolated && typeof value === "string" && value.startsWith("container:")
    ? undefined
    : namespaceMode(value, ctx, at);

const runtime: Check = (value, ctx, at) =>
  value === "runc" ? undefined : onList("allowRuntimes", "runtime")(value, ctx, at);

/** A log driver name: the local ones, or one on the role's list. */
const logConfigType: Check = (value, ctx, at) =>
  typeof value === "string" && ["", "json-file", "local", "journald", "none"].includes(value)
    ? undefined
    : onList("allowLogDrivers", "log driver")(value, ctx, at);

/**
 * A log driver and its options (`LogConfig`'s `Type`/`Config`, a service's `LogDriver`
 * `Name`/`Options`): the driver on the lists above, the options through `logOptionsProblem`.
 */
const logSettings = (driverKey: string, optionsKey: string): Check => {
  const shape = struct({ [driverKey]: logConfigType, [optionsKey]: any });
  return (value, ctx, at) =>
    shape(value, ctx, at) ??
      (isJsonObject(value)
        ? logOptionsProblem(
          value[driverKey],
          value[optionsKey],
          ctx.allow.allowLogDrivers,
          `${at}.${optionsKey}`,
        )
        : undefined);
};

const logConfig: Check = logSettings("Type", "Config");

const nonNegative = (why: string): Check => (value, _ctx, at) =>
  value === null || (typeof value === "number" && value >= 0) ? undefined : `${at}: ${why}`;

/** `Privileged` unset or false. */
const notPrivileged = (why: string): Check => (value, _ctx, at) =>
  value === null || value === false ? undefined : `${at}: ${why}`;

const zeroOnly = (why: string): Check => (value, _ctx, at) =>
  value === null || value === 0 ? undefined : `${at}: ${why}`;

/**
 * Clean a path as Go's `filepath.Clean` does (`//`, `.` and `..` resolved lexically).
 *
 * @example
 * ```ts
 * import { cleanPath } from "./no_escape.ts";
 * if (cleanPath("/srv/ci/../../etc/") !== "/etc") throw new Error();
 * ```
 */
export function cleanPath(path: string): string {
  const out: string[] = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") out.pop();
    else out.push(part);
  }
  return "/" + out.join("/");
}

/** The error code of a failed file system call (`ENOENT`, `ELOOP`, …), or its message. */
function errorCode(e: unknown): string {
  const code = (e as { code?: unknown })?.code;
  return typeof code === "string" ? code : String(e);
}

/**
 * The real path of `path`, resolving links in its longest existing prefix; or why it cannot
 * be known. Only a component that does not exist at all (`lstat` says `ENOENT`) is skipped
 * (dockerd creates missing bind sources as plain directories). Anything else refuses: a link
 * chain longer than the kernel's limit, a loop, a dangling link (dockerd may see its target,
 * or create it), a directory the gate may not read. Every such case would otherwise end up
 * compared as the unresolved link's own name, inside the allowed root.
 */
function realPath(path: string): { path: string } | { error: string } {
  const parts = path.split("/").slice(1);
  for (let n = parts.length; n >= 0; n--) {
    const prefix = "/" + parts.slice(0, n).join("/");
    try {
      const real = realpathSync.native(prefix);
      return { path: cleanPath([real, ...parts.slice(n)].join("/")) };
    } catch (e) {
      const why = errorCode(e);
      if (why !== "ENOENT") return { error: `${prefix}: ${why}` };
      try {
        lstatSync(prefix);
      } catch (l) {
        if (errorCode(l) === "ENOENT") continue; // not there (yet): look one level up
        return { error: `${prefix}: ${errorCode(l)}` };
      }
      return { error: `${prefix} is a link whose target does not exist in the gate's view` };
    }
  }
  return { error: "/: cannot be resolved" };
}

/** Whether `path` is `root` or below it, by whole components. */
function under(path: string, root: string): boolean {
  return root === "/" || path === root || path.startsWith(root + "/");
}

/**
 * The one bind-source rule: the cleaned source must be one of the role's `allowBindMounts`
 * itself, by whole components, and (on the daemon's host) resolve to where that root resolves;
 * a root under another root allows nothing.
 *
 * Why not anything below a root: dockerd reads a bind source at every start of the container,
 * not at its create, and follows the links it meets then. A directory below a root is one the
 * role's containers can replace (a bind of the root is writable) by a link to any host path,
 * after the gate looked: the start then mounts the host's `/`. A root itself lies in a
 * directory the role cannot write, unless another root contains it.
 */
function bindSource(source: string, ctx: EscapeContext, at: string): Violation | undefined {
  if (!source.startsWith("/")) return `${at}=${source}: bind source is not an absolute path`;
  const resolve = (p: string) =>
    ctx.resolveSymlinks ? realPath(cleanPath(p)) : { path: cleanPath(p) };
  const path = cleanPath(source);
  const roots = (ctx.allow.allowBindMounts ?? []).map((r) => ({
    clean: cleanPath(r),
    real: resolve(r),
  }));
  const root = roots.find((r) => r.clean === path);
  if (!root) {
    return `${at}=${source}: bind mount of ${path} is not one of the role's allowBindMounts ` +
      "(a directory below one can be swapped for a link before a start)";
  }
  // An allowed root the gate cannot resolve allows nothing.
  if ("error" in root.real) {
    return `${at}=${source}: bind source cannot be resolved in the gate's view (${root.real.error})`;
  }
  const real = root.real.path;
  const outer = roots.find((r) =>
    r.clean !== path &&
    (under(path, r.clean) || ("path" in r.real && real !== r.real.path && under(real, r.real.path)))
  );
  return outer
    ? `${at}=${source}: allowBindMounts ${path} lies under ${outer.clean}, whose binds can swap it for a link`
    : undefined;
}

const binds: Check = list((value, ctx, at) => {
  const s = stringValue(value, at);
  if (s !== value) return s;
  const parts = s.split(":");
  if (parts.length < 2) return undefined; // an anonymous volume
  const source = parts[0];
  // A source that is not a path is a named volume: its stored driver and options are checked
  // on the daemon before the create is forwarded (volume_check.ts, with volumeProblem).
  if (!source.startsWith("/") && !source.startsWith(".") && !source.includes("/")) return undefined;
  return bindSource(source, ctx, at);
});

/** The volume driver dockerd uses when none is named (moby `volume.DefaultDriverName`). */
const LOCAL_DRIVER = "local";

/**
 * A volume driver name: the local driver (also as `""` or unset, its default), or one on the
 * role's `allowVolumeDrivers`. Any other driver is code outside dockerd that the gate cannot
 * read (a plugin may mount whatever host path its options name).
 */
const volumeDriver: Check = (value, ctx, at) =>
  value === null || value === "" || value === LOCAL_DRIVER
    ? undefined
    : onList("allowVolumeDrivers", "volume driver")(value, ctx, at);

/**
 * `o` items a tmpfs may take: its size, root mode and owner (`mount(8)` tmpfs options), each
 * with a plain value. Any other item can be a mount flag: `bind`/`rbind` turn the tmpfs into a
 * bind of `device`, `exec`/`suid`/`dev` lift restrictions.
 */
const TMPFS_OPTION = /^(size=[0-9]+[kmgKMG%]?|mode=[0-7]{1,4}|uid=[0-9]+|gid=[0-9]+)$/;

/**
 * The local driver's options as an allow-list: none, or exactly a tmpfs (`type=tmpfs`,
 * `device=tmpfs`, and an `o` of size/mode/uid/gid items only). The local driver hands `type`,
 * `o` and `device` to mount(2) (moby `volume/local/local_unix.go`): `o=bind` works with any
 * type, overlay takes host directories in `o`, a block device in `device` mounts a host disk,
 * and a relative `device` is resolved against dockerd's working directory (`/`). A role that
 * lists `local` in `allowVolumeDrivers` takes all of that on itself.
 */
function localOptions(options: Record<string, JsonValue>, at: string): Violation | undefined {
  const keys = Object.keys(options);
  if (keys.length === 0) return undefined;
  for (const key of keys) {
    if (typeof options[key] !== "string") return `${at}.${key} is not a string`;
  }
  const refuse = (why: string) =>
    `${at}=${JSON.stringify(options)}: ${why} (local volumes may only be a tmpfs: ` +
    `type=tmpfs, device=tmpfs, o of size=, mode=, uid=, gid=; other options need the role's ` +
    `allowVolumeDrivers: ["local"])`;
  const extra = keys.find((k) => !["type", "device", "o"].includes(k));
  if (extra !== undefined) return refuse(`option ${JSON.stringify(extra)} not allowed`);
  if (options["type"] !== "tmpfs") return refuse("type is not tmpfs");
  if (options["device"] !== "tmpfs") return refuse("device is not tmpfs");
  const o = options["o"];
  if (o === undefined) return undefined;
  const bad = (o as string).split(",").find((item) => !TMPFS_OPTION.test(item));
  return bad === undefined ? undefined : refuse(`mount option ${JSON.stringify(bad)} not allowed`);
}

/**
 * The one volume rule: a volume's driver and its options, wherever a volume may be created
 * (`POST /volumes/create`, a mount's `DriverConfig`) and wherever one the daemon already has
 * is mounted (its stored `Driver` and `Options`, `volume_check.ts`).
 *
 * @example
 * ```ts
 * import { volumeProblem } from "./no_escape.ts";
 * const bind = { type: "none", o: "bind", device: "/etc" };
 * if (!volumeProblem("local", bind, { allow: {} }, "Options")) throw new Error();
 * if (volumeProblem("local", bind, { allow: { allowVolumeDrivers: ["local"] } }, "Options")) throw new Error();
 * if (volumeProblem("", { type: "tmpfs", device: "tmpfs", o: "size=1m" }, { allow: {} }, "o")) throw new Error();
 * ```
 */
export function volumeProblem(
  driver: JsonValue | undefined,
  options: JsonValue | undefined,
  ctx: EscapeContext,
  at: string,
): Violation | undefined {
  const name = driver === undefined || driver === null ? "" : driver;
  const badDriver = volumeDriver(name, ctx, `${at}: driver`);
  if (badDriver) return badDriver;
  if (options === null || options === undefined) return undefined;
  if (!isJsonObject(options)) return `${at} is not an object`;
  const local = name === "" || name === LOCAL_DRIVER;
  // A driver on the role's list (local included) is trusted with its own options.
  if (!local || ctx.allow.allowVolumeDrivers?.includes(LOCAL_DRIVER)) return undefined;
  return localOptions(options, at);
}

const driverConfig: Check = struct({
  Name: any,
  Options: any,
});

const subpath: Check = (value, _ctx, at) =>
  value === null || (typeof value === "string" && !value.split("/").includes(".."))
    ? undefined
    : `${at}: subpath must not contain '..'`;

const mountShape: Check = struct({
  Type: any,
  Source: any,
  Target: any,
  ReadOnly: any,
  Consistency: any,
  BindOptions: struct({
    Propagation: any,
    NonRecursive: any,
    CreateMountpoint: any,
    ReadOnlyNonRecursive: any,
    ReadOnlyForceRecursive: any,
  }),
  VolumeOptions: struct({
    NoCopy: any,
    Labels: any,
    Subpath: subpath,
    DriverConfig: driverConfig,
  }),
  ImageOptions: struct({ Subpath: subpath }),
  TmpfsOptions: struct({ SizeBytes: any, Mode: any, Options: any }),
  ClusterOptions: mustBeEmpty("cluster volumes are not inspected"),
});

const mount: Check = (value, ctx, at) => {
  const shape = mountShape(value, ctx, at);
  if (shape || !isJsonObject(value)) return shape;
  const type = value["Type"];
  if (type === "bind") {
    const source = stringValue(value["Source"] ?? "", `${at}.Source`);
    return source === value["Source"] ? bindSource(source, ctx, `${at}.Source`) : source;
  }
  if (type === "volume") {
    const vo = value["VolumeOptions"];
    const dc = isJsonObject(vo) ? vo["DriverConfig"] : undefined;
    if (isJsonObject(dc)) {
      return volumeProblem(dc["Name"], dc["Options"], ctx, `${at}.VolumeOptions.DriverConfig`);
    }
    return undefined;
  }
  if (type === "tmpfs" || type === "image") return undefined;
  return `${at}.Type=${JSON.stringify(type)}: mount type not allowed`;
};

const mounts: Check = list(mount);

/** Resources: shared by HostConfig and UpdateConfig (leaves: any spelling Go folds). */
const RESOURCE_FIELDS: Record<string, Check> = {
  CpuShares: any,
  Memory: any,
  NanoCpus: any,
  CgroupParent: mustBeEmpty("a cgroup parent places the container outside its own cgroup"),
  BlkioWeight: any,
  BlkioWeightDevice: any,
  BlkioDeviceReadBps: any,
  BlkioDeviceWriteBps: any,
  BlkioDeviceReadIOps: any,
  BlkioDeviceWriteIOps: any,
  CpuPeriod: any,
  CpuQuota: any,
  CpuRealtimePeriod: any,
  CpuRealtimeRuntime: zeroOnly("real-time CPU time can starve the host"),
  CpusetCpus: any,
  CpusetMems: any,
  Devices: mustBeEmpty("host devices are not allowed"),
  DeviceCgroupRules: mustBeEmpty("device cgroup rules are not allowed"),
  DeviceRequests: mustBeEmpty("device requests (GPUs, drivers) are not allowed"),
  KernelMemory: any,
  KernelMemoryTCP: any,
  MemoryReservation: any,
  MemorySwap: any,
  MemorySwappiness: any,
  OomKillDisable: any,
  PidsLimit: any,
  Ulimits: any,
  CpuCount: any,
  CpuPercent: any,
  IOMaximumIOps: any,
  IOMaximumBandwidth: any,
};
const RESOURCES: Record<string, Check> = Object.fromEntries(
  Object.entries(RESOURCE_FIELDS).map(([k, c]) => [k, foldable(c)]),
);

const HOST_CONFIG: Record<string, Check> = {
  ...RESOURCES,
  Binds: binds,
  ContainerIDFile: any,
  LogConfig: logConfig,
  NetworkMode: networkMode,
  PortBindings: any,
  RestartPolicy: any,
  AutoRemove: any,
  VolumeDriver: volumeDriver,
  VolumesFrom: volumesFrom,
  ConsoleSize: any,
  Annotations: mustBeEmpty("runtime annotations are not allowed"),
  CapAdd: capAdd,
  CapDrop: any,
  CgroupnsMode: namespaceMode,
  Dns: any,
  DnsOptions: any,
  DnsSearch: any,
  ExtraHosts: any,
  GroupAdd: any,
  IpcMode: namespaceMode,
  Cgroup: mustBeEmpty("joining another cgroup is not allowed"),
  Links: any,
  OomScoreAdj: nonNegative("a negative OOM score makes the host kill its own processes first"),
  PidMode: namespaceMode,
  Privileged: notPrivileged("privileged containers are not allowed"),
  PublishAllPorts: any,
  ReadonlyRootfs: any,
  SecurityOpt: securityOpt,
  StorageOpt: any,
  Tmpfs: (value, _ctx, at) => tmpfsProblem(value, at),
  UTSMode: namespaceMode,
  UsernsMode: namespaceMode,
  ShmSize: any,
  Sysctls: sysctls,
  Runtime: runtime,
  Isolation: any,
  Mounts: mounts,
  MaskedPaths: (value, _ctx, at) =>
    value === null ? undefined : `${at}: replacing the masked paths unmasks host kernel files`,
  ReadonlyPaths: (value, _ctx, at) =>
    value === null ? undefined : `${at}: replacing the read-only paths makes host files writable`,
  Init: any,
};
const hostConfig: Check = struct(HOST_CONFIG);

/**
 * HostConfig fields at the top level of a create body: moby's ContainerConfigWrapper embeds a
 * second HostConfig there, used whole when `HostConfig` is absent (a few resources are merged
 * in when it is present). They get HostConfig's rules, except the fields the owner check
 * (isolation.ts) reads only inside `HostConfig`: those must be sent there.
 */
const OWNER_CHECKED = ["Binds", "Mounts", "VolumeDriver", "VolumesFrom", "NetworkMode", "Links"];
const TOP_LEVEL_HOST_CONFIG: Record<string, Check> = Object.fromEntries(
  Object.entries(HOST_CONFIG).map(([k, c]) => [
    k,
    OWNER_CHECKED.includes(k)
      ? (_v: JsonValue, _ctx: EscapeContext, at: string) =>
        `${at}: only read inside HostConfig (send it there)`
      : c,
  ]),
);

const user: Check = (value, ctx, at) => {
  if (!ctx.allow.nonRootUser) return undefined;
  if (value === null) return `${at}: the role runs nothing as root (set a non-root user)`;
  if (typeof value !== "string") return `${at} is not a string`;
  const problem = nonRootUserProblem(value);
  return problem ? `${at}=${value || '""'}: ${problem}` : undefined;
};

const endpointSettings: Check = struct({
  IPAMConfig: any,
  Links: any,
  Aliases: any,
  DriverOpts: any,
  GwPriority: any,
  NetworkID: any,
  EndpointID: any,
  Gateway: any,
  IPAddress: any,
  MacAddress: any,
  IPPrefixLen: any,
  IPv6Gateway: any,
  GlobalIPv6Address: any,
  GlobalIPv6PrefixLen: any,
  DNSNames: any,
});

const networkingConfig: Check = struct({
  EndpointsConfig: (value, ctx, at) => {
    if (value === null) return undefined;
    if (!isJsonObject(value)) return `${at} is not an object`;
    for (const [network, settings] of Object.entries(value)) {
      if (network === "host") return `${at}.host: the host network is not allowed`;
      const bad = endpointSettings(settings, ctx, `${at}.${network}`);
      if (bad) return bad;
    }
    return undefined;
  },
});

/** `POST /containers/create`: the container config with its HostConfig and networking. */
const createBody: Check = struct({
  ...TOP_LEVEL_HOST_CONFIG,
  // ContainerConfigWrapper's own: the old spelling of CpusetCpus.
  Cpuset: any,
  Hostname: any,
  Domainname: any,
  User: user,
  AttachStdin: any,
  AttachStdout: any,
  AttachStderr: any,
  ExposedPorts: any,
  Tty: any,
  OpenStdin: any,
  StdinOnce: any,
  Env: any,
  Cmd: any,
  Healthcheck: any,
  ArgsEscaped: any,
  Image: any,
  Volumes: any,
  WorkingDir: any,
  Entrypoint: any,
  NetworkDisabled: any,
  MacAddress: any,
  OnBuild: any,
  Labels: any,
  StopSignal: any,
  StopTimeout: any,
  Shell: any,
  HostConfig: hostConfig,
  NetworkingConfig: networkingConfig,
});

/**
 * `POST /containers/{id}/exec`. Its fields are leaves no other module reads, so any spelling
 * Go folds onto them is read as them (docker-py sends `detachKeys`); `User` stays exact for
 * the non-root check. `Container` is docker-py's, read by no daemon (the path names it).
 */
const execBody: Check = struct({
  User: user,
  Privileged: foldable(notPrivileged("privileged exec is not allowed")),
  Tty: foldable(any),
  ConsoleSize: foldable(any),
  AttachStdin: foldable(any),
  AttachStderr: foldable(any),
  AttachStdout: foldable(any),
  Detach: foldable(any),
  DetachKeys: foldable(any),
  Env: foldable(any),
  WorkingDir: foldable(any),
  Cmd: foldable(any),
  Container: any,
});

/** `POST /containers/{id}/update`. */
const updateBody: Check = struct({ ...RESOURCES, RestartPolicy: any });

/** `POST /volumes/create`. */
const volumeBody: Check = (value, ctx, at) => {
  const shape = struct({
    Name: any,
    Driver: any,
    DriverOpts: any,
    Labels: any,
    ClusterVolumeSpec: mustBeEmpty("cluster volumes are not inspected"),
  })(value, ctx, at);
  if (shape || !isJsonObject(value)) return shape;
  return volumeProblem(value["Driver"], value["DriverOpts"], ctx, "DriverOpts");
};

/** `POST /networks/create`: moby's `network.CreateRequest`, its drivers an allow-list. */
const networkBody: Check = (value, ctx, at) => {
  const shape = networkShape(value, ctx, at);
  if (shape || !isJsonObject(value)) return shape;
  return networkOptionsProblem(value, ctx.allow);
};

const networkShape: Check = struct({
  Name: any,
  CheckDuplicate: any,
  Driver: any,
  Scope: any,
  EnableIPv4: any,
  EnableIPv6: any,
  IPAM: any,
  Internal: any,
  Attachable: any,
  Ingress: any,
  ConfigOnly: any,
  ConfigFrom: struct({ Network: any }),
  Options: any,
  Labels: any,
});

/** `POST /networks/{id}/connect`. */
const connectBody: Check = struct({
  Container: any,
  EndpointConfig: endpointSettings,
});

/** `POST /networks/{id}/disconnect`. */
const disconnectBody: Check = struct({ Container: any, Force: any });

/** A swarm service's container: the same rules as a container's, in swarm's field names. */
const serviceContainer: Check = struct({
  Image: any,
  Labels: any,
  Command: any,
  Args: any,
  Hostname: any,
  Env: any,
  Dir: any,
  User: user,
  Groups: any,
  Privileges: struct({
    CredentialSpec: any,
    SELinuxContext: mustBeEmpty("SELinux label overrides are not allowed"),
    Seccomp: struct({
      Mode: (value, _ctx, at) =>
        value === null || value === "" || value === "default"
          ? undefined
          : `${at}=${JSON.stringify(value)}: only the default seccomp profile is allowed`,
      Profile: mustBeEmpty("custom seccomp profiles are not allowed"),
    }),
    AppArmor: struct({
      Mode: (value, _ctx, at) =>
        value === null || value === "" || value === "default"
          ? undefined
          : `${at}=${JSON.stringify(value)}: AppArmor must stay on`,
    }),
    NoNewPrivileges: any,
  }),
  Init: any,
  StopSignal: any,
  TTY: any,
  OpenStdin: any,
  ReadOnly: any,
  Mounts: mounts,
  StopGracePeriod: any,
  Healthcheck: any,
  Hosts: any,
  DNSConfig: any,
  Secrets: any,
  Configs: any,
  Isolation: any,
  Sysctls: sysctls,
  CapabilityAdd: capAdd,
  CapabilityDrop: any,
  Ulimits: any,
  OomScoreAdj: nonNegative("a negative OOM score makes the host kill its own processes first"),
});

/** A service's network attachments: never the host network. */
const serviceNetworks: Check = list((value, ctx, at) => {
  const bad = struct({ Target: any, Aliases: any, DriverOpts: any })(value, ctx, at);
  if (bad || !isJsonObject(value)) return bad;
  return value["Target"] === "host"
    ? `${at}.Target=host: the host network is not allowed`
    : undefined;
});

/** `POST /services/create` and `/services/{id}/update`: a ServiceSpec. */
const serviceBody: Check = struct({
  Name: any,
  Labels: any,
  TaskTemplate: struct({
    ContainerSpec: serviceContainer,
    PluginSpec: mustBeEmpty("plugin services install plugins"),
    NetworkAttachmentSpec: mustBeEmpty("network attachment tasks are swarm-internal"),
    Resources: any,
    RestartPolicy: any,
    Placement: any,
    Networks: serviceNetworks,
    LogDriver: logSettings("Name", "Options"),
    ForceUpdate: any,
    Runtime: (value, _ctx, at) =>
      value === null || value === "" || value === "container"
        ? undefined
        : `${at}=${JSON.stringify(value)}: only container tasks are allowed`,
  }),
  Mode: any,
  UpdateConfig: any,
  RollbackConfig: any,
  Networks: serviceNetworks,
  EndpointSpec: any,
});

/** The body checks by route inspection kind. */
export const BODY_CHECKS = {
  create: createBody,
  exec: execBody,
  update: updateBody,
  volume: volumeBody,
  network: networkBody,
  connect: connectBody,
  disconnect: disconnectBody,
  service: serviceBody,
} as const;

/**
 * Check a parsed body of kind `kind`; the violation, or `undefined` when nothing in it can
 * reach the host.
 *
 * @example
 * ```ts
 * import { checkBody } from "./no_escape.ts";
 * const ctx = { allow: { allowBindMounts: ["/srv/ci"] } };
 * if (checkBody("create", { Image: "busybox", HostConfig: { Binds: ["/srv/ci:/x"] } }, ctx)) throw new Error();
 * if (!checkBody("create", { HostConfig: { privileged: true } }, ctx)) throw new Error("folded key");
 * ```
 */
export function checkBody(
  kind: keyof typeof BODY_CHECKS,
  body: JsonValue,
  ctx: EscapeContext,
): Violation | undefined {
  if (!isJsonObject(body)) return "body is not a JSON object";
  if (ctx.allow.nonRootUser) {
    // No user means the image's default, which is root unless the image says otherwise.
    const task = kind === "service" && isJsonObject(body["TaskTemplate"])
      ? body["TaskTemplate"]
      : undefined;
    const spec = task && isJsonObject(task["ContainerSpec"]) ? task["ContainerSpec"] : undefined;
    const unset = kind === "create" || kind === "exec"
      ? !("User" in body)
      : kind === "service" && !(spec && "User" in spec);
    if (unset) {
      return "User: not set (the image's default may be root; the role runs nothing as root)";
    }
  }
  return BODY_CHECKS[kind](body, ctx, "");
}
