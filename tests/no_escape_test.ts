/**
 * Unit tests of src/docker/no_escape.ts: each no-escape rule, its folded and disguised forms,
 * and the nearest allowed body.
 */
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  checkBody,
  cleanPath,
  type EscapeContext,
  foldKey,
  normalizeCapability,
} from "../src/docker/no_escape.ts";
import { parseStrictJson } from "../src/docker/strict_json.ts";

const ctx: EscapeContext = { allow: { allowBindMounts: ["/srv/ci"] } };
const create = (hostConfig: unknown, top: Record<string, unknown> = {}) =>
  checkBody("create", { Image: "bb", ...top, HostConfig: hostConfig } as never, ctx);
const denied = (v: string | undefined, re: RegExp, what: string) => {
  assert.ok(v, `${what} must be denied`);
  assert.match(v!, re, what);
};

Deno.test("no-escape: a plain container and the Docker CLI's defaults pass", () => {
  assert.equal(
    create({ Binds: null, NetworkMode: "default", CapAdd: null, Privileged: false }),
    undefined,
  );
  assert.equal(create({ Binds: ["/srv/ci:/w:ro", "named:/data", "/anon"] }), undefined);
  assert.equal(
    create({ CapAdd: ["NET_BIND_SERVICE", "cap_chown"], SecurityOpt: ["no-new-privileges"] }),
    undefined,
  );
  assert.equal(
    create({
      Mounts: [{ Type: "tmpfs", Target: "/t" }, { Type: "volume", Source: "v", Target: "/v" }],
    }),
    undefined,
  );
  assert.equal(create({ NetworkMode: "none", IpcMode: "shareable", PidMode: "" }), undefined);
  assert.equal(create(null), undefined);
});

Deno.test("no-escape: privileged, namespaces, capabilities, devices", () => {
  denied(create({ Privileged: true }), /Privileged/, "Privileged");
  for (const f of ["NetworkMode", "PidMode", "IpcMode", "UTSMode", "UsernsMode", "CgroupnsMode"]) {
    for (const v of ["host", "HOST", "container:abc", "ns:/proc/1/ns/net"]) {
      denied(create({ [f]: v }), /shares a namespace/, `${f}=${v}`);
    }
  }
  for (const cap of ["SYS_ADMIN", "sys_admin", "CAP_SYS_ADMIN", "cap_Sys_Admin", "ALL", "all"]) {
    denied(create({ CapAdd: [cap] }), /capability not allowed/, cap);
  }
  assert.equal(
    checkBody("create", { HostConfig: { CapAdd: ["cap_net_admin"] } }, {
      allow: { allowCapabilities: ["NET_ADMIN"] },
    }),
    undefined,
    "allowCapabilities, normalised",
  );
  denied(
    create({ Devices: [{ PathOnHost: "/dev/sda", PathInContainer: "/d" }] }),
    /host devices/,
    "Devices",
  );
  denied(create({ DeviceRequests: [{ Count: -1 }] }), /device requests/, "DeviceRequests");
  denied(create({ DeviceCgroupRules: ["a *:* rwm"] }), /cgroup rules/, "DeviceCgroupRules");
  assert.equal(create({ Devices: [] }), undefined, "an empty list is nothing");
});

Deno.test("no-escape: security options, masked paths, sysctls, cgroups, runtimes, logs", () => {
  for (
    const opt of [
      "seccomp=unconfined",
      "seccomp:unconfined",
      "seccomp={}",
      "apparmor=unconfined",
      "label=disable",
      "label:disable",
      "label=type:spc_t",
      "systempaths=unconfined",
      "writable-cgroups=true",
    ]
  ) denied(create({ SecurityOpt: [opt] }), /only no-new-privileges/, opt);
  denied(create({ MaskedPaths: [] }), /masked paths/, "MaskedPaths []");
  denied(create({ ReadonlyPaths: [] }), /read-only paths/, "ReadonlyPaths []");
  denied(create({ Sysctls: { "kernel.core_pattern": "|/x" } }), /allowSysctls/, "Sysctls");
  denied(create({ CgroupParent: "/" }), /cgroup parent/, "CgroupParent");
  denied(create({ Cgroup: "container:x" }), /cgroup/, "Cgroup");
  denied(create({ VolumesFrom: ["other"] }), /allowVolumesFrom/, "VolumesFrom");
  denied(create({ Runtime: "kata" }), /allowRuntimes/, "Runtime");
  assert.equal(create({ Runtime: "runc" }), undefined);
  denied(create({ LogConfig: { Type: "syslog", Config: {} } }), /allowLogDrivers/, "log driver");
  // No Type is the daemon's default driver, which may be a network one (attack s11).
  for (const type of [{}, { Type: "" }, { Type: "json-file" }]) {
    denied(
      create({ LogConfig: { ...type, Config: { "syslog-address": "tcp://10.0.0.1:514" } } }),
      /log option not allowed/,
      `log options of ${JSON.stringify(type)}`,
    );
    const local = { "max-size": "1m", "max-file": "2", tag: "t", mode: "non-blocking" };
    assert.equal(create({ LogConfig: { ...type, Config: local } }), undefined);
  }
  const gelf = { allow: { allowLogDrivers: ["gelf"] } };
  const own = { LogConfig: { Type: "gelf", Config: { "gelf-address": "udp://x:1" } } };
  assert.equal(checkBody("create", { Image: "bb", HostConfig: own }, gelf), undefined);
  denied(create({ OomScoreAdj: -1000 }), /OOM/, "OomScoreAdj");
  denied(create({ CpuRealtimeRuntime: 950000 }), /real-time/, "CpuRealtimeRuntime");
  denied(create({ Annotations: { a: "b" } }), /annotations/, "Annotations");
  denied(
    create({}, { NetworkingConfig: { EndpointsConfig: { host: {} } } }),
    /host network/,
    "EndpointsConfig.host",
  );
});

Deno.test("no-escape: bind mounts, cleaned, by whole components, and in disguise", () => {
  for (
    const bind of [
      "/:/host",
      "/etc:/e",
      "/srv/ci/../../etc:/h",
      "/srv/ci/../ci2:/h",
      "/srv/cix:/h",
      "//etc:/h",
      "/srv/./ci/../../:/h",
      // Below the root: dockerd reads it again at every start, after the role's containers
      // (a bind of the root is writable) may have swapped it for a link (attack s11).
      "/srv/ci/work:/h",
      "/srv/ci/a/../b:/b",
      "/srv//ci/x:/x",
    ]
  ) denied(create({ Binds: [bind] }), /not one of the role's allowBindMounts/, bind);
  assert.equal(create({ Binds: ["/srv/ci:/ci", "/srv//ci/:/c2", "/srv/ci/x/..:/c3"] }), undefined);
  denied(
    create({ Mounts: [{ Type: "bind", Source: "/", Target: "/h" }] }),
    /Mounts\[0\]\.Source/,
    "Mounts bind",
  );
  denied(
    create({
      Mounts: [{
        Type: "volume",
        Target: "/h",
        VolumeOptions: {
          DriverConfig: { Name: "local", Options: { type: "none", o: "bind", device: "/etc" } },
        },
      }],
    }),
    /VolumeOptions\.DriverConfig=.*type is not tmpfs/,
    "local-driver bind volume",
  );
  denied(
    checkBody("volume", { Name: "v", DriverOpts: { type: "ext4", device: "/dev/sda1" } }, ctx),
    /device/,
    "a host block device",
  );
  denied(
    checkBody("volume", {
      Name: "v",
      Driver: "local",
      DriverOpts: { type: "none", o: "bind", device: "/" },
    }, ctx),
    /DriverOpts=.*type is not tmpfs/,
    "volume create bind",
  );
  denied(
    checkBody("volume", {
      Name: "v",
      DriverOpts: { type: "nfs", o: "addr=10.0.0.1", device: ":/export" },
    }, ctx),
    /type is not tmpfs/,
    'NFS (needs allowVolumeDrivers: ["local"])',
  );
  assert.equal(
    checkBody("volume", { Name: "v", DriverOpts: { type: "tmpfs", device: "tmpfs" } }, ctx),
    undefined,
  );
  denied(
    create({ Mounts: [{ Type: "npipe", Source: "x", Target: "/x" }] }),
    /mount type not allowed/,
    "npipe",
  );
  denied(
    create({
      Mounts: [{
        Type: "volume",
        Source: "v",
        Target: "/v",
        VolumeOptions: { Subpath: "../../etc" },
      }],
    }),
    /subpath/,
    "Subpath ..",
  );
  assert.equal(cleanPath("/a//b/./c/../d/"), "/a/b/d");
  assert.equal(cleanPath("/../.."), "/");
});

Deno.test("no-escape: only a root binds, and a root inside another root allows nothing", async () => {
  const root = await mkdtemp(join(tmpdir(), "dg-ne-"));
  const elsewhere = await mkdtemp(join(tmpdir(), "dg-ne-"));
  try {
    await symlink("/etc", join(root, "escape"));
    await mkdir(join(root, "inner"));
    await mkdir(join(root, "other"));
    await symlink(join(root, "inner"), join(elsewhere, "link"));
    const roots = [root, `${root}/inner`, `${elsewhere}/link`];
    const local: EscapeContext = { allow: { allowBindMounts: roots }, resolveSymlinks: true };
    const bind = (source: string) =>
      checkBody("create", { HostConfig: { Binds: [`${source}:/h`] } }, local);
    assert.equal(bind(root), undefined);
    for (const below of ["escape", "new/dir", "other"]) {
      denied(bind(`${root}/${below}`), /not one of the role's allowBindMounts/, below);
    }
    // The role's binds of ROOT can swap what is inside it, by name or where a link leads.
    denied(bind(`${root}/inner`), /lies under/, "inner");
    denied(bind(`${elsewhere}/link`), /lies under/, "a root that is a link into another");
    // Elsewhere, a root that is a link is the admin's: dockerd follows the same link.
    const alone: EscapeContext = {
      allow: { allowBindMounts: [`${root}/escape`] },
      resolveSymlinks: true,
    };
    assert.equal(
      checkBody("create", { HostConfig: { Binds: [`${root}/escape:/h`] } }, alone),
      undefined,
    );
  } finally {
    await rm(root, { recursive: true, force: true });
    await rm(elsewhere, { recursive: true, force: true });
  }
});

Deno.test("no-escape: a bind source the gate cannot resolve is refused (fail closed)", async () => {
  const root = await mkdtemp(join(tmpdir(), "dg-ne-"));
  try {
    // A chain longer than the kernel's 40 links: realpath gives up with ELOOP.
    await symlink("/etc", join(root, "l0"));
    for (let i = 1; i <= 45; i++) await symlink(join(root, `l${i - 1}`), join(root, `l${i}`));
    await symlink(join(root, "loop-b"), join(root, "loop-a"));
    await symlink(join(root, "loop-a"), join(root, "loop-b"));
    // Dangling: the target does not exist in the gate's view (dockerd may see it, or create it).
    await symlink("/nonexistent-dg/etc", join(root, "dangling"));
    await symlink("dangling/sub", join(root, "via-dangling"));
    const sources = [
      "l45",
      "l45/x",
      "loop-a",
      "loop-a/x",
      "dangling",
      "dangling/x",
      "via-dangling",
    ];
    // The roots themselves: a root the gate cannot resolve allows nothing.
    const local: EscapeContext = {
      allow: { allowBindMounts: sources.map((s) => `${root}/${s}`) },
      resolveSymlinks: true,
    };
    for (const source of sources) {
      denied(
        checkBody("create", { HostConfig: { Binds: [`${root}/${source}:/h`] } }, local),
        /cannot be resolved/,
        source,
      );
      denied(
        checkBody("create", {
          HostConfig: { Mounts: [{ Type: "bind", Source: `${root}/${source}`, Target: "/h" }] },
        }, local),
        /cannot be resolved/,
        `Mounts ${source}`,
      );
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

Deno.test("no-escape: keys Go would fold onto a field are refused, unknown fields too", () => {
  const body = (text: string) => parseStrictJson(new TextEncoder().encode(text));
  for (
    const text of [
      '{"HostConfig":{"privileged":true}}',
      '{"HostConfig":{"PRIVILEGED":true}}',
      '{"hostconfig":{"Privileged":true}}',
      '{"Hoſtconfig":{"Privileged":true}}',
      '{"HostConfig":{"ſecurityOpt":["seccomp=unconfined"]}}',
      '{"HostConfig":{"Networ\u212aMode":"host"}}',
      '{"HostConfig":{"capadd":["SYS_ADMIN"]}}',
    ]
  ) denied(checkBody("create", body(text), ctx), /not spelled as the field/, text);
  denied(
    checkBody("create", body('{"HostConfig":{"Capabilities":["ALL"]}}'), ctx),
    /unknown field/,
    "Capabilities",
  );
  denied(checkBody("create", body('{"Sneaky":1}'), ctx), /unknown field/, "top level");
  denied(
    checkBody("exec", body('{"privileged":true,"Cmd":["sh"]}'), ctx),
    /privileged exec/,
    "exec",
  );
  assert.equal(foldKey("Hoſt\u212aey"), "hostkey");
  // Map keys (labels, sysctls, options) are not fields: their case is kept as sent.
  assert.equal(
    checkBody("create", body('{"Labels":{"privileged":"x","Privileged":"y"}}'), ctx),
    undefined,
  );
});

Deno.test("no-escape: wrong types and root users", () => {
  denied(create({ Privileged: 1 }), /Privileged/, "Privileged as a number");
  denied(create({ Binds: "/:/h" }), /not a list/, "Binds as a string");
  denied(create({ NetworkMode: ["host"] }), /not a string/, "NetworkMode as a list");
  const nonRoot: EscapeContext = { allow: { nonRootUser: true } };
  // Go's Atoi takes a sign (+0 is uid 0); a name is looked up in the image's /etc/passwd.
  for (const u of ["", "0", "00", "0000:5", "root", "root:root", "+0", "-0", "+0:+0", "nobody"]) {
    denied(checkBody("create", { Image: "bb", User: u }, nonRoot), /root/, `User ${u}`);
  }
  for (const u of ["1000", "1000:1000", "65534:0"]) {
    assert.equal(checkBody("create", { Image: "bb", User: u }, nonRoot), undefined, u);
  }
  denied(checkBody("create", { Image: "bb", User: "0" }, nonRoot), /root/, "User 0");
  denied(checkBody("create", { Image: "bb" }, nonRoot), /root/, "no User");
  assert.equal(checkBody("create", { Image: "bb", User: "1000" }, nonRoot), undefined);
  denied(checkBody("exec", { Cmd: ["sh"], User: "root" }, nonRoot), /root/, "exec as root");
  assert.equal(normalizeCapability("Cap_Net_Raw"), "NET_RAW");
});

Deno.test("no-escape: swarm services get the container rules, in swarm's field names", () => {
  const service = (containerSpec: unknown, task: Record<string, unknown> = {}) =>
    checkBody("service", {
      Name: "web",
      TaskTemplate: { ContainerSpec: { Image: "bb", ...containerSpec as object }, ...task },
      Mode: { Replicated: { Replicas: 1 } },
    } as never, ctx);
  assert.equal(
    service({ Command: ["sleep", "1"], CapabilityAdd: ["NET_BIND_SERVICE"] }),
    undefined,
  );
  assert.equal(
    service({ Mounts: [{ Type: "bind", Source: "/srv/ci", Target: "/w" }] }),
    undefined,
  );
  denied(
    service({ Mounts: [{ Type: "bind", Source: "/", Target: "/h" }] }),
    /allowBindMounts/,
    "bind /",
  );
  denied(service({ CapabilityAdd: ["CAP_SYS_ADMIN"] }), /capability not allowed/, "CapabilityAdd");
  denied(service({ Privileges: { Seccomp: { Mode: "unconfined" } } }), /seccomp/, "seccomp");
  denied(service({ Privileges: { AppArmor: { Mode: "disabled" } } }), /AppArmor/, "apparmor");
  denied(service({ Privileges: { SELinuxContext: { Disable: true } } }), /SELinux/, "selinux");
  denied(service({ Sysctls: { "kernel.shmmax": "1" } }), /allowSysctls/, "Sysctls");
  denied(service({ privileges: {} }), /not spelled as the field "Privileges"/, "folded key");
  denied(service({}, { PluginSpec: { Name: "evil/plugin" } }), /plugin/, "PluginSpec");
  denied(service({}, { Runtime: "plugin" }), /only container tasks/, "Runtime plugin");
  denied(service({}, { Networks: [{ Target: "host" }] }), /host network/, "host network");
  denied(service({}, { LogDriver: { Name: "syslog" } }), /allowLogDrivers/, "log driver");
  denied(
    service({}, { LogDriver: { Options: { "fluentd-address": "10.0.0.1:24224" } } }),
    /LogDriver\.Options\.fluentd-address: log option not allowed/,
    "default driver's options",
  );
  denied(
    checkBody("service", { TaskTemplate: { ContainerSpec: { Image: "bb" } } }, {
      allow: { nonRootUser: true },
    }),
    /User: not set/,
    "nonRootUser",
  );
});

Deno.test("no-escape: local-driver volume options are an allow-list (tmpfs, sized)", () => {
  const volume = (opts: unknown, driver?: string, allow = ctx.allow) =>
    checkBody("volume", { Name: "v", Driver: driver, DriverOpts: opts } as never, { allow });
  const mountOpts = (opts: unknown, name = "local") =>
    create({
      Mounts: [{
        Type: "volume",
        Target: "/v",
        VolumeOptions: { DriverConfig: { Name: name, Options: opts } },
      }],
    });
  const service = (opts: unknown) =>
    checkBody("service", {
      Name: "s",
      TaskTemplate: {
        ContainerSpec: {
          Image: "bb",
          Mounts: [{
            Type: "volume",
            Target: "/v",
            VolumeOptions: { DriverConfig: { Name: "local", Options: opts } },
          }],
        },
      },
    } as never, ctx);
  const escapes: Record<string, string>[] = [
    { type: "none", o: "bind", device: "/srv/ci/x" },
    { type: "tmpfs", o: "bind", device: "/" },
    { type: "tmpfs", o: "size=1m,bind", device: "/" },
    { type: "tmpfs", o: "rbind", device: "tmpfs" },
    { type: "tmpfs", device: "/etc" },
    { type: "overlay", o: "lowerdir=/etc,upperdir=/u,workdir=/w", device: "overlay" },
    { type: "none", o: "bind", device: "etc" },
    { type: "ext4", device: "dev/vda" },
    { type: "nfs", o: "addr=10.0.0.1", device: ":/export" },
    { type: "tmpfs", device: "tmpfs", size: "1g" },
    { type: "tmpfs", device: "tmpfs", o: "size=1m,exec" },
    { type: "tmpfs", device: "tmpfs", o: "size=1m," },
    { type: "tmpfs", device: "tmpfs", Device: "/" },
    { type: "Tmpfs", device: "tmpfs" },
  ];
  for (const opts of escapes) {
    const what = JSON.stringify(opts);
    denied(volume(opts), /DriverOpts/, `volume create ${what}`);
    denied(volume(opts, "local"), /DriverOpts/, `volume create, driver local, ${what}`);
    denied(mountOpts(opts), /DriverConfig/, `container Mounts ${what}`);
    denied(service(opts), /DriverConfig/, `service Mounts ${what}`);
  }
  for (
    const opts of [
      undefined,
      null,
      {},
      { type: "tmpfs", device: "tmpfs" },
      { type: "tmpfs", device: "tmpfs", o: "size=64m,mode=1777,uid=1000,gid=1000" },
      { type: "tmpfs", device: "tmpfs", o: "size=10%" },
    ]
  ) {
    const what = JSON.stringify(opts);
    assert.equal(volume(opts), undefined, `volume create ${what}`);
    assert.equal(mountOpts(opts), undefined, `container Mounts ${what}`);
    assert.equal(service(opts), undefined, `service Mounts ${what}`);
  }
  // Any other driver: only with the role's allowVolumeDrivers, and then its options are its own.
  denied(volume(undefined, "rexray"), /allowVolumeDrivers/, "another driver");
  denied(mountOpts(undefined, "rexray"), /allowVolumeDrivers/, "another driver in Mounts");
  denied(create({ VolumeDriver: "rexray", Binds: ["v:/v"] }), /allowVolumeDrivers/, "VolumeDriver");
  assert.equal(create({ VolumeDriver: "local", Binds: ["v:/v"] }), undefined);
  const plugin = { ...ctx.allow, allowVolumeDrivers: ["rexray"] };
  assert.equal(volume({ size: "10" }, "rexray", plugin), undefined, "allowed driver's options");
  denied(volume({ type: "none", o: "bind", device: "/" }, "local", plugin), /DriverOpts/, "local");
  // Listing local lifts the option allow-list for the local driver (the role's explicit choice).
  const local = { ...ctx.allow, allowVolumeDrivers: ["local"] };
  assert.equal(
    volume({ type: "nfs", o: "addr=10.0.0.1", device: ":/e" }, "local", local),
    undefined,
  );
  denied(volume({ type: "tmpfs", device: 5 }), /not a string/, "a non-string option");
});

Deno.test("contrib/dockgate.service gives the gate dockerd's view of the file system", async () => {
  // The gate resolves bind sources in its own mount namespace: an option that hides, empties
  // or replaces a directory there (ProtectHome=yes, PrivateTmp, TemporaryFileSystem, …) makes
  // a link under an allowed root look like a plain missing directory, and pass.
  const unit = await Deno.readTextFile(new URL("../contrib/dockgate.service", import.meta.url));
  const service = unit.split(/^\[/m).find((s) => s.startsWith("Service]"))!;
  // Options known to keep every path visible as dockerd sees it (read-only is still visible).
  const sameView: Record<string, RegExp> = {
    ProtectSystem: /^(strict|full|true|yes|false|no)$/,
    ProtectHome: /^(read-only|false|no)$/,
    PrivateTmp: /^(false|no)$/,
    ReadOnlyPaths: /./,
    ReadWritePaths: /./,
    // Read-only views of /proc/sys, /sys and the cgroup tree: still visible.
    ProtectKernelTunables: /^(true|yes|false|no)$/,
    ProtectControlGroups: /^(true|yes|false|no)$/,
    // These hide /usr/lib/modules and /proc/kmsg: a path through them cannot be resolved by
    // the gate, which refuses it (stricter than dockerd, never looser).
    ProtectKernelModules: /^(true|yes|false|no)$/,
    ProtectKernelLogs: /^(true|yes|false|no)$/,
    // The gate's own directories, bind-mounted writable on themselves: same paths.
    StateDirectory: /^dockgate$/,
    LogsDirectory: /^dockgate$/,
  };
  // Options that do not touch the mount namespace; any other key must be decided here first.
  const noView = new Set([
    "Type",
    "NotifyAccess",
    "ExecStart",
    "ExecReload",
    "KillSignal",
    "TimeoutStopSec",
    "Restart",
    "RestartSec",
    "NoNewPrivileges",
    "LimitNOFILE",
    // Identity, capabilities, cgroup device rules, namespaces, system calls: no file system view.
    "User",
    "Group",
    "SupplementaryGroups",
    "CapabilityBoundingSet",
    "AmbientCapabilities",
    "StateDirectoryMode",
    "LogsDirectoryMode",
    "UMask",
    "DevicePolicy",
    "ProtectClock",
    "ProtectHostname",
    "RestrictNamespaces",
    "RestrictRealtime",
    "RestrictSUIDSGID",
    "LockPersonality",
    "RemoveIPC",
    "RestrictAddressFamilies",
    "SystemCallArchitectures",
    "SystemCallFilter",
    "SystemCallErrorNumber",
  ]);
  for (const line of service.split("\n")) {
    const m = /^(\w+)=(.*)$/.exec(line.trim());
    if (!m || noView.has(m[1])) continue;
    assert.ok(sameView[m[1]], `${m[1]}: not known to keep the gate's file system view`);
    assert.match(m[2], sameView[m[1]], `${m[1]}=${m[2]} changes the gate's file system view`);
  }
});

Deno.test("no-escape: what docker-py sends passes, read as Go reads it", () => {
  const body = (text: string) => parseStrictJson(new TextEncoder().encode(text));
  const pass = (kind: "create" | "exec", text: string) =>
    assert.equal(checkBody(kind, body(text), ctx), undefined, text);
  // docker/api/exec_api.py exec_create: `Container` (no daemon reads it), `detachKeys`.
  pass(
    "exec",
    '{"Container":"abc","User":"","Privileged":false,"Tty":false,"AttachStdin":false,' +
      '"AttachStdout":true,"AttachStderr":true,"Cmd":["echo","hi"]}',
  );
  pass("exec", '{"Container":"abc","Cmd":["sh"],"detachKeys":"ctrl-p,q"}');
  // docker/models/containers.py run(network="n"): {network: None}, in both docker-py shapes.
  pass(
    "create",
    '{"Tty":false,"OpenStdin":false,"StdinOnce":false,"AttachStdin":false,' +
      '"AttachStdout":false,"AttachStderr":false,"Cmd":["true"],"Image":"bb:latest",' +
      '"NetworkDisabled":false,"HostConfig":{"NetworkMode":"n"},"NetworkingConfig":{"n":null}}',
  );
  pass(
    "create",
    '{"Image":"bb","HostConfig":{"NetworkMode":"n"},"NetworkingConfig":{"EndpointsConfig":{"n":null}}}',
  );
  // Go folds keys: a folded resource key is that resource, with its rule.
  pass("create", '{"Image":"bb","HostConfig":{"CPURealtimePeriod":1000}}');
  denied(
    checkBody("create", body('{"Image":"bb","HostConfig":{"cpuRealtimeRuntime":950000}}'), ctx),
    /real-time/,
    "a folded key gets its field's rule",
  );
  denied(
    checkBody("exec", body('{"Cmd":["sh"],"DetachKeys":"a","detachKeys":"b"}'), ctx),
    /second spelling/,
    "two spellings of one field",
  );
  denied(
    checkBody("create", body('{"HostConfig":{"Memory":1,"memory":2}}'), ctx),
    /second spelling/,
    "two spellings of a resource",
  );
  // A null under a key that is no field is nothing to Go; a value there is still undecided.
  denied(checkBody("exec", body('{"Cmd":["sh"],"Sneaky":1}'), ctx), /unknown field/, "value");
  // HostConfig fields at the top level (moby reads them when HostConfig is absent).
  pass("create", '{"Image":"bb","Runtime":"runc","Memory":1048576,"Cpuset":"0"}');
  denied(
    checkBody("create", body('{"Image":"bb","Runtime":"kata"}'), ctx),
    /^Runtime=kata: runtime not on the role's allowRuntimes/,
    "top-level Runtime",
  );
  denied(checkBody("create", body('{"Image":"bb","Privileged":true}'), ctx), /privileged/, "top");
  denied(
    checkBody("create", body('{"Image":"bb","Binds":["/:/h"]}'), ctx),
    /Binds/,
    "top-level Binds",
  );
  denied(
    checkBody("create", body('{"Image":"bb","VolumesFrom":["x"],"HostConfig":{}}'), ctx),
    /VolumesFrom/,
    "top-level VolumesFrom",
  );
});
