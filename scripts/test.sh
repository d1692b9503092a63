#!/usr/bin/env bash
# dockgate's test command: `bash scripts/test.sh` (CI: `bash .ci/run`, as root, CI=true).
#
# 1. As root, installs missing system packages from Debian (docker.io for the real-Docker
#    tests, busybox-static for their image, python3-docker (docker-py) for attach, docker-compose (1.29) for isolation, prometheus (promtool) for the metrics check, easy-rsa and golang-cfssl for the PKI-tool tests, golang-go for the differential test's oracle, socat, stunnel4, testssl.sh, openssl, util-linux,
#    ca-certificates). Not root: installs nothing, just runs (dockerd tests then SKIP loudly,
#    except under CI=true where they fail). As root it also unpacks Docker Engine 26.1
#    (Debian 13's docker.io + containerd, not installed) once into /var/cache/dockgate-test.
# 2. npm ci (installs Deno and the npm deps; `npm install` when there is no lock file).
# 3. Static checks, each counted as one test (JUnit in .test-results/static.xml): deno fmt
#    --check, deno lint, deno check of every file (cli.ts, mod.ts, src, tests, scripts, bench),
#    deno doc --lint mod.ts, no import cycles (scripts/check_cycles.ts: each cycle as a chain).
# 4. The unit tier (`deno task test:unit`: no dockerd, loopback only, three processes), then the
#    end-to-end tier (serial), then the doc tests (mod.ts, src/, docs/library.md); console
#    output as usual, JUnit XML into .test-results/. Which file is in which tier: scripts/test_tiers.ts.
# 5. Prints the closing line `N passed, N failed, N skipped` counted from the JUnit results
#    of every tier (top-level tests; see scripts/junit_summary.ts) and exits non-zero if
#    anything failed.
#
# Extra arguments replace `tests/` as what `deno test` runs, and skip the doc tests:
#   bash scripts/test.sh tests/dockerd_harness_test.ts
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '==> %s\n' "$*" >&2; }

# ---------------------------------------------------------------- system packages
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
deb_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

install_system_packages() {
  local missing=()
  have dockerd || missing+=(dockerd)
  have docker || missing+=(docker)
  have containerd || missing+=(containerd)
  have runc || missing+=(runc)
  deb_installed busybox-static || missing+=(busybox-static)
  deb_installed python3-docker || missing+=(python3-docker)
  # tests/docker_py_suite_e2e_test.ts runs docker-py's own tests with these
  for p in python3-pytest python3-pytest-timeout python3-paramiko; do
    deb_installed "$p" || missing+=("$p")
  done
  have docker-compose || missing+=(docker-compose)
  have promtool || missing+=(promtool)
  [ -x /usr/share/easy-rsa/easyrsa ] || missing+=(easy-rsa)
  have cfssl || missing+=(cfssl)
  have socat || missing+=(socat)
  have stunnel4 || have stunnel || missing+=(stunnel)
  have testssl || have testssl.sh || missing+=(testssl)
  have openssl || missing+=(openssl)
  have unshare || missing+=(unshare)
  have nsenter || missing+=(nsenter)
  have tar || missing+=(tar)
  [ -f /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
  have npm || missing+=(npm)
  have go || missing+=(golang-go) # tests/differential_test.ts builds its Go oracle
  have systemd-analyze || missing+=(systemd)  # tests/systemd_unit_test.ts judges the unit
  have logrotate || missing+=(logrotate)
  have setpriv || missing+=(setpriv)
  have zsh || missing+=(zsh) # tests/cli_help_test.ts runs the completion scripts in each shell
  have fish || missing+=(fish)
  have asciinema || missing+=(asciinema) # tests/session_record_e2e_test.ts plays recordings back
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    log "missing ${missing[*]}, but not root: not installing (tests needing them will skip or fail)"
    return 0
  fi
  if ! have apt-get; then
    log "missing ${missing[*]} and no apt-get: not installing"
    return 0
  fi
  log "missing ${missing[*]}: installing from Debian"
  local pkgs=(docker.io busybox-static socat stunnel4 testssl.sh openssl util-linux ca-certificates tar
    python3-docker python3-pytest python3-pytest-timeout python3-paramiko docker-compose prometheus
    easy-rsa golang-cfssl golang-go systemd logrotate zsh fish)
  have npm || pkgs+=(nodejs npm)
  # Don't let docker.io's postinst start a system dockerd (the tests run their own).
  local policy=/usr/sbin/policy-rc.d own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  local rc=0
  apt-get update -q && apt-get install -y -q --no-install-recommends "${pkgs[@]}" || rc=$?
  if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi
  if [ "$rc" -ne 0 ]; then
    log "apt-get failed (exit $rc)"
    return "$rc"
  fi
}

install_system_packages

# ---------------------------------------------------------------- Docker Engine 26 (unpacked)
# A current engine next to Debian 12's 20.10: Debian 13 (trixie)'s docker.io (dockerd 26.1),
# docker-cli (26.1) and containerd (1.7) packages, downloaded through a private apt sources list (the system's apt
# state is not touched: no install, no upgrade) and unpacked with dpkg-deb -x into a cache dir
# outside the repo. The system's runc is kept (trixie's needs a newer glibc). Idempotent: the
# dir appears complete (atomic rename) or not at all. tests/helpers/dockerd.ts reads the same
# path (DOCKGATE_ENGINE26_DIR overrides it in both).
ENGINE26_DIR=${DOCKGATE_ENGINE26_DIR:-/var/cache/dockgate-test/engine-26}

# retry N CMD...: runs CMD up to N times, 5 s apart (a fresh CI machine's mirror can flake).
retry() {
  local n=$1 i
  shift
  for ((i = 1; i <= n; i++)); do
    "$@" && return 0
    [ "$i" -lt "$n" ] && sleep 5
  done
  return 1
}

# fetch_engine_26 WORKDIR MIRROR DEST: download, unpack, then rename into DEST (explicit
# returns: set -e does not apply in a `|| rc=$?` context).
fetch_engine_26() {
  local w=$1 mirror=$2 dest=$3 d
  mkdir -p "$w/lists/partial" "$w/cache/archives/partial" || return 1
  echo "deb $mirror trixie main" >"$w/sources.list" || return 1
  local a=(-q -o "Dir::Etc::SourceList=$w/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$w/lists" -o "Dir::Cache=$w/cache")
  retry 3 apt-get "${a[@]}" update || return 1
  (cd "$w" && retry 3 apt-get "${a[@]}" download docker.io docker-cli containerd) || return 1
  for d in "$w"/*.deb; do dpkg-deb -x "$d" "$w/x" || return 1; done
  rm -f "$w/x/usr/sbin/runc" "$w/x/usr/bin/runc" || return 1
  # docker-init -> tini-static (another package): drop the dangling link, the system's is used.
  [ -e "$w/x/usr/bin/docker-init" ] || rm -f "$w/x/usr/bin/docker-init"
  [ -x "$w/x/usr/sbin/dockerd" ] && [ -x "$w/x/usr/bin/containerd" ] &&
    [ -x "$w/x/usr/bin/docker" ] || return 1
  rm -rf "$dest" && mv "$w/x" "$dest"
}

install_engine_26() {
  local dir=$ENGINE26_DIR
  if [ -x "$dir/usr/sbin/dockerd" ] && [ -x "$dir/usr/bin/containerd" ] &&
    [ -x "$dir/usr/bin/docker" ]; then
    log "docker engine 26: present in $dir"
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    log "docker engine 26: not root, not unpacking into $dir (its tests will skip)"
    return 0
  fi
  if ! have apt-get || ! have dpkg-deb; then
    log "docker engine 26: no apt-get/dpkg-deb, not unpacking (its tests will skip)"
    return 0
  fi
  mkdir -p "${dir%/*}"
  local w mirror
  w=$(mktemp -d "${dir%/*}/.engine-26.XXXXXX")
  mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  local rc=0
  fetch_engine_26 "$w" "$mirror" "$dir" >"$w/log" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    tail -20 "$w/log" >&2
    rm -rf "$w"
    log "docker engine 26: download/unpack failed (exit $rc)"
    return "$rc"
  fi
  log "docker engine 26: unpacked $(cd "$w" && ls -- *.deb | tr '\n' ' ')into $dir"
  rm -rf "$w"
}

install_engine_26

# ---------------------------------------------------------------- npm deps (Deno itself)
if [ -f package-lock.json ]; then
  log "npm ci"
  if ! npm ci --no-audit --no-fund; then
    # e.g. a lock file out of sync with package.json: still test, but say so loudly.
    log "WARNING: npm ci failed (package-lock.json out of sync?); falling back to npm install --no-save"
    npm install --no-save --no-audit --no-fund
  fi
else
  log "npm install (no package-lock.json)"
  npm install --no-audit --no-fund
fi
DENO=node_modules/.bin/deno
if [ ! -x "$DENO" ]; then DENO="npx --no-install deno"; fi
$DENO --version | head -1 >&2

# ---------------------------------------------------------------- tests
RESULTS=.test-results
mkdir -p "$RESULTS"
rm -f "$RESULTS"/*.xml "$RESULTS"/*.log
summary_args=()

# run_deno NAME DENO-TEST-ARGS...: output to the console and to $RESULTS/NAME.log.
run_deno() {
  local name=$1 status=0
  shift
  log "deno test $* (JUnit: $RESULTS/$name.xml)"
  set +e
  $DENO test -A --junit-path="$RESULTS/$name.xml" "$@" 2>&1 | tee "$RESULTS/$name.log"
  status=${PIPESTATUS[0]}
  set -e
  summary_args+=("$name" "$status" "$RESULTS/$name.xml" "$RESULTS/$name.log")
}

# static_checks: one JUnit testcase per check, so a formatting slip fails the run visibly.
static_checks() {
  local xml="$RESULTS/static.xml" log="$RESULTS/static.log" cases="" failed=0 status=0
  : >"$log"
  local checks=(
    "deno fmt --check|$DENO fmt --check"
    "deno lint|$DENO lint"
    "deno check (every file)|$DENO check cli.ts mod.ts src tests scripts bench"
    "deno doc --lint mod.ts|$DENO doc --lint mod.ts"
    "no import cycles|$DENO run -A scripts/check_cycles.ts"
  )
  for entry in "${checks[@]}"; do
    local name=${entry%%|*} cmd=${entry#*|}
    log "$name"
    if out=$($cmd 2>&1); then
      cases+="<testcase classname=\"static\" name=\"$name\"/>"
    else
      failed=$((failed + 1))
      printf '%s\n' "$out" | tail -40 | tee -a "$log" >&2
      cases+="<testcase classname=\"static\" name=\"$name\"><failure message=\"failed\"/></testcase>"
    fi
  done
  [ "$failed" -eq 0 ] || status=1
  printf '<?xml version="1.0"?><testsuites><testsuite name="static" tests="%d" failures="%d">%s</testsuite></testsuites>\n' \
    "${#checks[@]}" "$failed" "$cases" >"$xml"
  summary_args+=(static "$status" "$xml" "$log")
}

# run_unit: the unit tier through scripts/test_tiers.ts (its env, namespace and shards),
# counted like any other run.
run_unit() {
  local status=0
  log "unit tier (JUnit: $RESULTS/junit-unit.xml)"
  set +e
  # --no-check: the static stage above type-checked every file (tests included) already; each
  # shard checking its files again was a fifth of the tier's CPU.
  $DENO run -A scripts/test_tiers.ts run unit --no-check --junit-path="$RESULTS/junit-unit.xml" 2>&1 |
    tee "$RESULTS/junit-unit.log"
  status=${PIPESTATUS[0]}
  set -e
  summary_args+=(unit "$status" "$RESULTS/junit-unit.xml" "$RESULTS/junit-unit.log")
}

if [ "$#" -gt 0 ]; then
  run_deno junit "$@"
else
  static_checks
  t0=$SECONDS
  run_unit
  log "unit tier: $((SECONDS - t0)) s"
  mapfile -t e2e_files < <($DENO run -A scripts/test_tiers.ts list e2e)
  t0=$SECONDS
  if [ "${#e2e_files[@]}" -gt 0 ]; then
    run_deno junit-e2e "${e2e_files[@]}"
  else
    # No list (test_tiers.ts broke): `deno test` with no files would run everything; count
    # it as a failed run instead (exit 1, no JUnit).
    log "e2e tier: scripts/test_tiers.ts listed no files"
    summary_args+=(e2e 1 "$RESULTS/junit-e2e.xml" "$RESULTS/junit-e2e.log")
  fi
  log "e2e tier: $((SECONDS - t0)) s"
  doc_targets=()
  [ -f mod.ts ] && doc_targets+=(mod.ts)
  [ -d src ] && doc_targets+=(src/)
  # The library guide's ts blocks run too (deno test --doc runs a markdown file's code blocks).
  [ -f docs/library.md ] && doc_targets+=(docs/library.md)
  if [ "${#doc_targets[@]}" -gt 0 ]; then
    run_deno junit-doc --doc "${doc_targets[@]}"
  fi
fi

# Prints the closing `N passed, N failed, N skipped` line; non-zero if anything failed.
exec $DENO run --allow-read scripts/junit_summary.ts "${summary_args[@]}"
